"""Constant folding, including shape computations once the shapes they read are static.

Every node whose inputs are all constants is evaluated (in onnxruntime, by onnx-graphsurgeon's
folder) and replaced by its value; ``Shape`` of a tensor whose annotated shape is static, and the
``Gather``/``Slice`` of static dimensions out of a partly symbolic shape, fold too, which turns
exporters' ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains into constant targets.
Symbolic dimensions are never assumed: only what is true for every accepted input is folded.
A node that produces a graph output is not folded, so outputs stay node outputs with their
declared names, types and shapes.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .shape_inference import infer_shapes

__all__ = ["FoldConstants", "flatten_constant_ifs", "fold_constants"]

log = logging.getLogger(__name__)


def _restore_outputs(graph: gs.Graph) -> int:
    """Graph outputs the folder turned into initializers become ``Constant`` node outputs again."""
    fixed = 0
    for k, out in enumerate(graph.outputs):
        if isinstance(out, gs.Constant):
            var = gs.Variable(out.name, dtype=out.dtype, shape=list(out.shape))
            const = gs.Constant(out.name + "_value", out.values)
            for reader in list(out.outputs):
                for i, t in enumerate(reader.inputs):
                    if t is out:
                        reader.inputs[i] = var
            graph.nodes.append(gs.Node("Constant", out.name + "_const", {"value": const}, outputs=[var]))
            graph.outputs[k] = var
            fixed += 1
    return fixed


def _branch_inlinable(branch: gs.Graph) -> bool:
    """Whether every output of ``branch`` is one distinct output of one of its own nodes."""
    outs = branch.outputs
    own = {id(t) for n in branch.nodes for t in n.outputs}
    return len({id(t) for t in outs}) == len(outs) and all(id(t) in own for t in outs)


def flatten_constant_ifs(graph: gs.Graph) -> int:
    """Replaces each ``If`` whose condition is a constant by the nodes of the branch it takes.

    Nested graphs are flattened first. A branch that hands on an outer tensor, a constant or one
    tensor twice as its outputs is left as an ``If``: splicing it in would leave an ``If`` output
    with no producer.
    """
    done = 0
    for node in graph.nodes:
        for value in node.attrs.values():
            if isinstance(value, gs.Graph):
                done += flatten_constant_ifs(value)
    index = 0
    while index < len(graph.nodes):
        node = graph.nodes[index]
        if node.op == "If" and node.inputs and isinstance(node.inputs[0], gs.Constant):
            cond = bool(node.inputs[0].values.reshape(-1)[0])
            branch = node.attrs["then_branch" if cond else "else_branch"]
            if _branch_inlinable(branch) and len(branch.outputs) == len(node.outputs):
                for tensor in branch._local_tensors().values():
                    tensor.name += f"_inlined_{index}_{branch.name}"
                # clearing a tensor's producer also drops it from that node's outputs: pair them first
                for node_out, branch_out in list(zip(node.outputs, branch.outputs, strict=True)):
                    node_out.inputs.clear()
                    producer = branch_out.inputs[0]
                    slot = next(i for i, t in enumerate(producer.outputs) if t is branch_out)
                    producer.outputs[slot] = node_out
                del graph.nodes[index]
                graph.nodes[index:index] = branch.nodes
                index += len(branch.nodes)
                done += 1
                continue
        index += 1
    return done


#: All folded results together may be larger than the constants they are computed from by this
#: share of the model's weights (at least :data:`MIN_SLACK_BYTES`): shape vectors and small
#: tables still fold, repeated-value weights do not.
GROWTH_SHARE = 0.01
MIN_SLACK_BYTES = 1 << 10


def _nbytes(t: gs.Tensor) -> int | None:
    if isinstance(t, gs.Constant):
        return int(t.values.nbytes)
    value = const_value(t)
    if value is not None:
        return int(value.nbytes)
    return None


def _output_bytes(node: gs.Node) -> int | None:
    """Bytes the outputs of ``node`` would take as initializers, if they can be told beforehand."""
    total = 0
    for i, out in enumerate(node.outputs):
        shape = out.shape
        if node.op == "ConstantOfShape" and i == 0:
            dims = const_value(node.inputs[0]) if node.inputs else None
            shape = None if dims is None else [int(d) for d in np.asarray(dims).reshape(-1)]
        elif node.op in ("Expand", "Tile") and i == 0 and len(node.inputs) > 1:
            arg = const_value(node.inputs[1])
            src = node.inputs[0].shape
            if arg is not None and src is not None and all(isinstance(d, int) for d in src):
                arg = [int(d) for d in np.asarray(arg).reshape(-1)]
                if node.op == "Tile" and len(arg) == len(src):
                    shape = [a * b for a, b in zip(src, arg, strict=True)]
                elif node.op == "Expand":
                    try:
                        shape = list(np.broadcast_shapes(tuple(src), tuple(arg)))
                    except ValueError:
                        shape = None
        if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
            return None
        dtype = out.dtype if out.dtype is not None else (node.inputs[0].dtype if node.inputs else None)
        try:
            itemsize = np.dtype(dtype).itemsize if dtype is not None else 4
        except TypeError:
            itemsize = 4
        total += int(np.prod(shape, dtype=np.int64)) * itemsize
    return total


class _Budget:
    """How many more bytes folding may add to the model, over all the nodes it folds."""

    def __init__(self, nbytes: int) -> None:
        self.left = nbytes


def _grows(node: gs.Node, budget: _Budget) -> bool:
    """Whether folding ``node`` would store much more than the constants it reads.

    ``ConstantOfShape``/``Expand``/``Tile`` of a few bytes into megabytes of weights, a ``Cast``
    of float16 weights to float32, a ``DequantizeLinear`` of int8 weights: folding them makes
    the file bigger (by orders of magnitude for weight-free zoo graphs), so they stay ops.
    """
    out = _output_bytes(node)
    if out is None:
        return False
    sizes = [_nbytes(t) for t in node.inputs if t.name]
    added = out - sum(b for b in sizes if b is not None)
    if added <= 0:
        return False
    if added > budget.left:
        return True
    budget.left -= added
    return False


def _weight_bytes(graph: gs.Graph) -> int:
    return sum(int(t.values.nbytes) for t in graph.tensors().values() if isinstance(t, gs.Constant))


def fold_constants(graph: gs.Graph, size_threshold: int | None = None, fold_shapes: bool = True) -> bool:
    """Folds ``graph`` in place; returns whether any node was removed."""
    from onnx_graphsurgeon.logger import G_LOGGER

    outputs = {id(t) for t in graph.outputs}
    n_before = len(graph.nodes)
    import onnxruntime as ort

    before = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR  # the folder logs every node it leaves alone
    ort.set_default_logger_severity(3)  # and its onnxruntime sessions warn about their own rewrites
    budget = _Budget(max(MIN_SLACK_BYTES, int(GROWTH_SHARE * _weight_bytes(graph))))
    try:
        graph.toposort()
        graph.fold_constants(
            fold_shapes=fold_shapes,
            error_ok=True,
            flatten_subgraphs=False,  # its flattening can orphan If outputs; ours below cannot
            size_threshold=size_threshold,
            should_exclude_node=lambda n: any(id(o) in outputs for o in n.outputs) or _grows(n, budget),
        )
        if flatten_constant_ifs(graph) | _restore_outputs(graph):
            graph.toposort()
        graph.cleanup(remove_unused_graph_inputs=False)
    finally:
        G_LOGGER.severity = before
        ort.set_default_logger_severity(4)  # silent again, as every session of the tool is
    return len(graph.nodes) < n_before


@register
class FoldConstants(InPlacePass):
    """Evaluate nodes whose inputs are constant, shape computations of static shapes included."""

    name = "fold-constants"

    def __init__(self, size_threshold: int | None = None, infer: bool = True) -> None:
        """
        Args:
            size_threshold: leave results larger than this many bytes unfolded (None: fold all).
            infer: annotate shapes first, so ``Shape`` of static tensors folds.
        """
        self.size_threshold = size_threshold
        self.infer = infer

    def run(self, model: Model) -> PassResult:
        if self.infer:
            infer_shapes(model)
        return PassResult(model, fold_constants(model.graph, self.size_threshold))
