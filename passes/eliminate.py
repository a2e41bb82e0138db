"""Removing nodes that compute nothing: Identity, inference Dropout, and no-op shape ops.

A node is removed only when its output provably equals its input for every input the model
accepts: a ``Transpose`` whose permutation is the identity, a ``Cast`` to the type the tensor
already has, a ``Reshape`` to the shape the tensor already has (read from static or symbolic
annotations: a target whose every dimension but at most one ``-1`` matches is a no-op even with
symbolic sizes), a one-input ``Concat``, an ``Expand`` to ones, a ``Pad`` of zeros, a ``Slice``
over the whole axis. Chains are shortened too: ``Transpose(Transpose(x))`` becomes one
Transpose with the composed permutation (or nothing), ``Reshape(Reshape(x))`` one Reshape.
Graph outputs keep their names (see :func:`~passes.rewrite.bypass`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import bypass, is_graph_output

__all__ = ["EliminateIdentity", "EliminateNoOps", "eliminate_identity", "eliminate_noops"]

_INT_MAX = 2**62


def _shape(t: gs.Tensor) -> list[int | str | None] | None:
    if isinstance(t, gs.Constant):
        return list(t.shape)
    return list(t.shape) if t.shape is not None else None


def _same_dim(a: object, b: object) -> bool:
    """Equal and known: both the same int, or the same symbolic name."""
    return a is not None and a == b and (isinstance(a, int) or (isinstance(a, str) and a != ""))


# ------------------------------------------------------------- per-op no-op tests
def _identity(node: gs.Node) -> bool:
    return True


def _dropout(node: gs.Node) -> bool:
    if len(node.inputs) >= 3 and node.inputs[2].name:
        mode = const_value(node.inputs[2])
        return mode is not None and not bool(np.asarray(mode).reshape(-1)[0])
    return True


def _transpose(node: gs.Node) -> bool:
    perm = node.attrs.get("perm")
    if perm is None:
        s = _shape(node.inputs[0])
        return s is not None and len(s) <= 1
    return list(perm) == list(range(len(perm)))


def _cast(node: gs.Node) -> bool:
    src = node.inputs[0].dtype
    to = node.attrs.get("to")
    if src is None or to is None:
        return False
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(to))) == np.dtype(src)
    except (TypeError, KeyError, ValueError):
        return False


def _reshape(node: gs.Node) -> bool:
    if len(node.inputs) < 2:
        return False
    target = const_value(node.inputs[1])
    s = _shape(node.inputs[0])
    if target is None or s is None or len(target) != len(s):
        return False
    allowzero = int(node.attrs.get("allowzero", 0))
    free = 0
    for want, have in zip(target.tolist(), s):
        if want == -1:
            free += 1
        elif want == 0 and not allowzero:
            continue
        elif not (isinstance(have, int) and have == want):
            return False
    return free <= 1


def _concat(node: gs.Node) -> bool:
    return len(node.inputs) == 1


def _expand(node: gs.Node) -> bool:
    shape = const_value(node.inputs[1]) if len(node.inputs) > 1 else None
    s = _shape(node.inputs[0])
    if shape is None or s is None or len(shape) > len(s):
        return False
    # Expand broadcasts: dimensions of 1 in the target keep the input's size.
    return all(
        int(d) == 1 or (isinstance(h, int) and h == int(d)) for d, h in zip(shape.tolist()[::-1], s[::-1])
    )


def _pad(node: gs.Node) -> bool:
    if len(node.inputs) > 1:
        pads = const_value(node.inputs[1])
    else:
        pads = np.asarray(node.attrs.get("pads", []))
    return pads is not None and pads.size > 0 and not np.any(pads)


def _slice(node: gs.Node) -> bool:
    if len(node.inputs) < 3:
        return False
    vals = [const_value(t) if t.name else None for t in node.inputs[1:]]
    starts, ends = vals[0], vals[1]
    axes = vals[2] if len(vals) > 2 else None
    steps = vals[3] if len(vals) > 3 else None
    s = _shape(node.inputs[0])
    if starts is None or ends is None or s is None:
        return False
    if len(node.inputs) > 3 and node.inputs[3].name and axes is None:
        return False
    if len(node.inputs) > 4 and node.inputs[4].name and steps is None:
        return False
    axes_l = axes.tolist() if axes is not None else list(range(len(starts)))
    for i, (st, en) in enumerate(zip(starts.tolist(), ends.tolist())):
        if steps is not None and steps.tolist()[i] != 1:
            return False
        dim = s[axes_l[i]]
        if st != 0:
            return False
        if not (en >= _INT_MAX or (isinstance(dim, int) and en >= dim)):
            return False
    return True


def _flatten(node: gs.Node) -> bool:
    s = _shape(node.inputs[0])
    axis = int(node.attrs.get("axis", 1))
    return s is not None and len(s) == 2 and axis in (1, -1)


_IDENTITY: dict[str, Callable[[gs.Node], bool]] = {"Identity": _identity, "Dropout": _dropout}

_NOOPS: dict[str, Callable[[gs.Node], bool]] = {
    "Transpose": _transpose,
    "Cast": _cast,
    "Reshape": _reshape,
    "Concat": _concat,
    "Expand": _expand,
    "Pad": _pad,
    "Slice": _slice,
    "Flatten": _flatten,
}


def _eliminate(graph: gs.Graph, table: dict[str, Callable[[gs.Node], bool]]) -> int:
    removed = 0
    for node in list(graph.nodes):
        test = table.get(node.op)
        if test is None or not node.inputs or not node.outputs:
            continue
        if any(o.outputs or is_graph_output(graph, o) for o in node.outputs[1:]):
            continue  # a second output (Dropout's mask) is read
        if not test(node):
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if bypass(graph, node, src, dst):
            removed += 1
    return removed


def _compose_transposes(graph: gs.Graph) -> int:
    """``Transpose(Transpose(x, p), q)`` is ``Transpose(x, p[q])``."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "Transpose" or node not in graph.nodes:
            continue
        x = node.inputs[0]
        if not isinstance(x, gs.Variable) or len(x.inputs) != 1 or x.inputs[0].op != "Transpose":
            continue
        first = x.inputs[0]
        p, q = first.attrs.get("perm"), node.attrs.get("perm")
        if p is None or q is None or len(p) != len(q):
            continue
        node.attrs["perm"] = [int(p[i]) for i in q]
        node.inputs[0] = first.inputs[0]
        done += 1
    return done


def _compose_reshapes(graph: gs.Graph) -> int:
    """``Reshape(Reshape(x, a), b)`` is ``Reshape(x, b)`` when ``b`` copies no dimension of ``a``."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "Reshape" or len(node.inputs) < 2:
            continue
        x = node.inputs[0]
        if not isinstance(x, gs.Variable) or len(x.inputs) != 1 or x.inputs[0].op not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
            continue
        target = const_value(node.inputs[1])
        if target is None or (0 in target.tolist() and not int(node.attrs.get("allowzero", 0))):
            continue
        node.inputs[0] = x.inputs[0].inputs[0]
        done += 1
    return done


def _merge_squeeze_unsqueeze(graph: gs.Graph) -> int:
    """``Unsqueeze(Squeeze(x, axes), axes)`` with the same constant axes is ``x``."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "Unsqueeze" or node not in graph.nodes:
            continue
        x = node.inputs[0]
        if not isinstance(x, gs.Variable) or len(x.inputs) != 1 or x.inputs[0].op != "Squeeze":
            continue
        sq = x.inputs[0]

        def axes_of(n: gs.Node) -> list[int] | None:
            if len(n.inputs) > 1:
                v = const_value(n.inputs[1])
                return None if v is None else sorted(v.reshape(-1).tolist())
            a = n.attrs.get("axes")
            return None if a is None else sorted(a)

        a, b = axes_of(sq), axes_of(node)
        if a is None or b is None or a != b or any(v < 0 for v in a):
            continue
        if bypass(graph, node, sq.inputs[0], node.outputs[0]):
            done += 1
    return done


def eliminate_identity(graph: gs.Graph) -> int:
    """Removes Identity and inference-mode Dropout nodes; returns the count."""
    return _eliminate(graph, _IDENTITY)


def eliminate_noops(graph: gs.Graph) -> int:
    """Removes no-op shape/type ops and shortens Transpose/Reshape chains; returns the count."""
    n = _compose_transposes(graph) + _compose_reshapes(graph) + _merge_squeeze_unsqueeze(graph)
    if n:
        graph.cleanup(remove_unused_graph_inputs=False)
    return n + _eliminate(graph, _NOOPS)


@register
class EliminateIdentity(InPlacePass):
    """Remove Identity and inference-mode Dropout nodes."""

    name = "eliminate-identity"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, eliminate_identity(model.graph) > 0)


@register
class EliminateNoOps(InPlacePass):
    """Remove no-op Transpose/Reshape/Cast/Concat/Expand/Pad/Slice and merge Transpose/Reshape chains."""

    name = "eliminate-noops"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, eliminate_noops(model.graph) > 0)

