"""Removing nodes that compute nothing: Identity, inference Dropout, and no-op shape ops.

A node is removed only when its output provably equals its input for every input the model
accepts: a ``Transpose`` whose permutation is the identity, a ``Cast`` to the type the tensor
already has, a ``Reshape`` to the shape the tensor already has (read from static or symbolic
annotations: a target whose every dimension but at most one ``-1`` matches is a no-op even with
symbolic sizes), a one-input ``Concat``, an ``Expand`` to ones, a ``Pad`` of zeros, a ``Slice``
over the whole axis, and ``x + 0``, ``x - 0``, ``x * 1``, ``x / 1`` with a constant that does
not widen ``x`` by broadcasting (zero biases of freshly initialized layers).

Chains are shortened too: ``Transpose(Transpose(x))`` becomes one Transpose with the composed
permutation (or nothing); ``Reshape(Reshape(x))`` one Reshape, also through a Flatten, Squeeze,
Unsqueeze or a Transpose that only moves axes of size 1 (which moves no data);
``Slice(Slice(x))`` on disjoint axes one Slice; ``Unsqueeze(Squeeze(x, a), a)`` nothing.
Graph outputs keep their names (see :func:`~passes.rewrite.bypass`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import bypass, compact, is_graph_output, new_constant

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
        if node.op != "Transpose" or not node.outputs:
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


def _moves_only_unit_axes(node: gs.Node) -> bool:
    """A Transpose that keeps the order of every axis not known to have size 1 moves no data:
    it is a reshape."""
    perm = node.attrs.get("perm")
    s = _shape(node.inputs[0])
    if perm is None or s is None or len(perm) != len(s):
        return False
    kept = [int(a) for a in perm if not (isinstance(s[int(a)], int) and s[int(a)] == 1)]
    return kept == sorted(kept)


def _compose_reshapes(graph: gs.Graph) -> int:
    """``Reshape(Reshape(x, a), b)`` is ``Reshape(x, b)`` when what ``b`` copies (its zeros) is
    the same in ``x``; the same for a Flatten, Squeeze, Unsqueeze or data-preserving Transpose
    in place of the inner Reshape."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "Reshape" or len(node.inputs) < 2:
            continue
        x = node.inputs[0]
        if not isinstance(x, gs.Variable) or len(x.inputs) != 1:
            continue
        inner = x.inputs[0].op
        if inner not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze") and not (
            inner == "Transpose" and _moves_only_unit_axes(x.inputs[0])
        ):
            continue
        target = const_value(node.inputs[1])
        if target is None or not _copies_survive(x.inputs[0], target, int(node.attrs.get("allowzero", 0))):
            continue
        node.inputs[0] = x.inputs[0].inputs[0]
        done += 1
    return done


def _copies_survive(inner: gs.Node, target: np.ndarray, allowzero: int) -> bool:
    """Whether every ``0`` (copy this dimension) in the outer target copies the same size from
    the inner op's input as from its output: a Transpose that keeps that axis in place, or a
    Reshape whose own target copies it too."""
    zeros = [i for i, v in enumerate(target.tolist()) if v == 0]
    if not zeros or allowzero:
        return True
    if inner.op == "Transpose":
        perm = inner.attrs.get("perm")
        return perm is not None and all(i < len(perm) and int(perm[i]) == i for i in zeros)
    if inner.op == "Reshape" and not int(inner.attrs.get("allowzero", 0)) and len(inner.inputs) > 1:
        t = const_value(inner.inputs[1])
        if t is None:
            return False
        tl = [int(v) for v in t.reshape(-1)]
        xs = _shape(inner.inputs[0])
        return all(i < len(tl) and (tl[i] == 0 or (tl[i] == -1 and _inferred_is_same(xs, tl, i))) for i in zeros)
    return False


def _inferred_is_same(xs: list[int | str | None] | None, t: list[int], i: int) -> bool:
    """Whether the ``-1`` at position ``i`` of Reshape target ``t`` works out to input dim ``i``:
    true when every other input dimension is static and their product equals that of the other
    target entries (a ``0`` entry copying a static input dimension)."""
    if xs is None or i >= len(xs):
        return False
    others_x = [d for j, d in enumerate(xs) if j != i]
    if not all(isinstance(d, int) for d in others_x):
        return False
    others_t = []
    for j, v in enumerate(t):
        if j == i:
            continue
        if v > 0:
            others_t.append(v)
        elif v == 0 and j < len(xs) and isinstance(xs[j], int):
            others_t.append(int(xs[j]))  # type: ignore[arg-type]
        else:
            return False
    return int(np.prod(others_x)) == int(np.prod(others_t)) and int(np.prod(others_t)) > 0


def _slice_params(node: gs.Node, rank: int | None) -> tuple[list[int], ...] | None:
    """(starts, ends, axes, steps) of a Slice with constant parameters; axes made non-negative."""
    if len(node.inputs) < 3:
        return None
    vals = []
    for i in range(1, 5):
        t = node.inputs[i] if i < len(node.inputs) else None
        if t is None or not t.name:
            vals.append(None)
            continue
        v = const_value(t)
        if v is None:
            return None
        vals.append([int(x) for x in v.reshape(-1)])
    starts, ends, axes, steps = vals
    if starts is None or ends is None:
        return None
    axes = list(range(len(starts))) if axes is None else axes
    if any(a < 0 for a in axes):
        if rank is None:
            return None
        axes = [a + rank if a < 0 else a for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    return starts, ends, axes, steps


def _merge_slices(graph: gs.Graph) -> int:
    """``Slice(Slice(x, axes=a), axes=b)`` with disjoint axes is one Slice over ``a + b``."""
    done = 0
    taken = set(graph.tensors())
    for node in list(graph.nodes):
        if node.op != "Slice":
            continue
        x = node.inputs[0]
        if not isinstance(x, gs.Variable) or len(x.inputs) != 1 or x.inputs[0].op != "Slice":
            continue
        inner = x.inputs[0]
        s = _shape(inner.inputs[0])
        rank = len(s) if s is not None else None
        p, q = _slice_params(inner, rank), _slice_params(node, rank)
        if p is None or q is None or set(p[2]) & set(q[2]):
            continue
        merged = [np.array(a + b, dtype=np.int64) for a, b in zip(p, q)]
        names = ("starts", "ends", "axes", "steps")
        consts = [new_constant(graph, f"{node.name}.{n}", v, taken) for n, v in zip(names, merged)]
        while len(node.inputs) > 0:
            node.inputs.pop()
        node.inputs.extend([inner.inputs[0], *consts])
        done += 1
    return done


def _merge_squeeze_unsqueeze(graph: gs.Graph) -> int:
    """``Unsqueeze(Squeeze(x, axes), axes)`` with the same constant axes is ``x``."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "Unsqueeze" or not node.outputs:
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


_NEUTRAL = {"Add": 0.0, "Sub": 0.0, "Mul": 1.0, "Div": 1.0}


def _neutral_input(graph: gs.Graph, node: gs.Node) -> gs.Tensor | None:
    """The input ``x`` of ``x + 0``, ``x - 0``, ``x * 1``, ``x / 1`` (either side for + and *),
    when the constant does not widen ``x`` by broadcasting and the types agree."""
    if len(node.inputs) != 2 or node.inputs[0] is node.inputs[1]:
        return None
    sides = (1, 0) if node.op in ("Add", "Mul") else (1,)
    for k in sides:
        c = const_value(node.inputs[k])
        x = node.inputs[1 - k]
        if c is None or c.dtype.kind not in "fiu" or not np.all(c == _NEUTRAL[node.op]):
            continue
        xs = _shape(x)
        if xs is None or c.ndim > len(xs) or x.dtype is None or np.dtype(x.dtype) != c.dtype:
            continue
        if all(d == 1 or (isinstance(h, int) and h == d) for d, h in zip(c.shape[::-1], xs[::-1])):
            return x
    return None


def _eliminate_neutral(graph: gs.Graph) -> int:
    removed = 0
    for node in list(graph.nodes):
        if node.op not in _NEUTRAL:
            continue
        x = _neutral_input(graph, node)
        if x is not None and bypass(graph, node, x, node.outputs[0]):
            removed += 1
    return removed


def eliminate_identity(graph: gs.Graph) -> int:
    """Removes Identity and inference-mode Dropout nodes; returns the count."""
    n = _eliminate(graph, _IDENTITY)
    compact(graph)
    return n


def eliminate_noops(graph: gs.Graph) -> int:
    """Removes no-op shape/type ops and shortens Transpose/Reshape chains; returns the count."""
    n = 0
    for step in (_compose_transposes, _compose_reshapes, _merge_squeeze_unsqueeze, _merge_slices):
        n += step(graph)
        compact(graph)
    if n:
        graph.cleanup(remove_unused_graph_inputs=False)
    n += _eliminate(graph, _NOOPS)
    compact(graph)
    n += _eliminate_neutral(graph)
    compact(graph)
    return n


@register
class EliminateIdentity(InPlacePass):
    """Remove Identity and inference-mode Dropout nodes."""

    name = "eliminate-identity"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, eliminate_identity(model.graph) > 0)


@register
class EliminateNoOps(InPlacePass):
    """Remove no-op Transpose/Reshape/Cast/Concat/Expand/Pad/Slice, x+0, x*1; merge Transpose/Reshape chains."""

    name = "eliminate-noops"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, eliminate_noops(model.graph) > 0)

