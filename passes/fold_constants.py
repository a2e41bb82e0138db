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

import onnx_graphsurgeon as gs

from onnxprune.graph import Model

from .base import InPlacePass, PassResult
from .registry import register
from .shape_inference import infer_shapes

__all__ = ["FoldConstants", "fold_constants"]

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


def fold_constants(graph: gs.Graph, size_threshold: int | None = None, fold_shapes: bool = True) -> bool:
    """Folds ``graph`` in place; returns whether any node was removed."""
    from onnx_graphsurgeon.logger import G_LOGGER

    outputs = {id(t) for t in graph.outputs}
    n_before = len(graph.nodes)
    import onnxruntime as ort

    before = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR  # the folder logs every node it leaves alone
    ort.set_default_logger_severity(3)  # and its onnxruntime sessions warn about their own rewrites
    try:
        graph.toposort()
        graph.fold_constants(
            fold_shapes=fold_shapes,
            error_ok=True,
            size_threshold=size_threshold,
            should_exclude_node=lambda n: any(id(o) in outputs for o in n.outputs),
        )
        if _restore_outputs(graph):
            graph.toposort()
        graph.cleanup(remove_unused_graph_inputs=False)
    finally:
        G_LOGGER.severity = before
        ort.set_default_logger_severity(2)  # onnxruntime's default: warnings
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
