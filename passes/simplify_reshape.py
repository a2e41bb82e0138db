"""Constant Reshape targets from shape arithmetic, where the arithmetic is provably constant.

Exporters compute Reshape targets at run time: ``Concat(Slice(Shape(x), 0, 1), [-1])`` for a
flatten, ``Concat(Unsqueeze(Gather(Shape(x), 0)), Unsqueeze(Gather(Shape(x), 1)), [4], [8])``
to split heads. When each element of such a target is a constant, a static dimension, or the
symbolic dimension that the Reshape's input already has at the same position, the target is
replaced by a constant: static dimensions by their value, same-position symbolic ones by ``0``
(which, with ``allowzero=0``, copies the input's dimension), and at most one remaining unknown
element by ``-1`` (inferred from the element count, which a Reshape preserves). Dimensions are
compared through shape annotations, where one symbol names one value (names that exporters
give every unknown alike, such as ``?``, are not trusted); nothing about symbolic sizes is
guessed. A target ``[-1, prod(shape(x)[k:])]`` of the Reshape's own input ``x`` (or
``[prod(shape(x)[:k]), -1]``) is ``Flatten(x, axis=k)``, whatever the sizes. The shape subgraph
then becomes dead and is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import new_constant
from .shape_inference import infer_shapes

__all__ = ["SimplifyReshape", "simplify_reshape"]


@dataclass(frozen=True)
class _Dim:
    """Dimension ``axis`` of ``tensor``, taken at run time by a Shape op."""

    tensor: gs.Tensor
    axis: int


@dataclass(frozen=True)
class _Prod:
    """The product of some elements (``ReduceProd`` of a shape vector)."""

    factors: tuple[object, ...]


Elem = int | _Dim | _Prod | None  # None: not known


def _static(e: object) -> int | None:
    """The value of an element if it is the same for every input."""
    if isinstance(e, int):
        return e
    if isinstance(e, _Dim) and e.tensor.shape is not None:
        d = e.tensor.shape[e.axis]
        return int(d) if isinstance(d, int | np.integer) and d >= 0 else None
    if isinstance(e, _Prod):
        vals = [_static(f) for f in e.factors]
        return int(np.prod(vals)) if all(v is not None for v in vals) else None
    return None


def _div(a: int, b: int) -> int | None:
    # Integer Div truncates toward zero in onnxruntime; only exact, non-negative cases are used.
    return a // b if b > 0 and a >= 0 else None


_ARITHMETIC = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": _div,
}


def _resolve(t: gs.Tensor, depth: int = 0) -> tuple[list[Elem], bool] | None:
    """The elements of an int shape vector (or scalar), as far as they can be told."""
    if depth > 12:
        return None
    v = const_value(t)
    if v is not None:
        if v.dtype.kind not in "iu" or v.ndim > 1:
            return None
        return [int(x) for x in v.reshape(-1)], v.ndim == 0
    if not isinstance(t, gs.Variable) or len(t.inputs) != 1:
        return None
    node = t.inputs[0]
    op = node.op
    if op == "Shape":
        src = node.inputs[0]
        if src.shape is None:
            return None
        rank = len(src.shape)
        start = int(node.attrs.get("start", 0))
        end = int(node.attrs.get("end", rank))
        start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
        return [_Dim(src, j) for j in range(max(start, 0), min(end, rank))], False
    if op == "Cast":
        return _resolve(node.inputs[0], depth + 1)
    if op == "Concat" and int(node.attrs.get("axis", 0)) in (0, -1):
        out: list[Elem] = []
        for inp in node.inputs:
            r = _resolve(inp, depth + 1)
            if r is None:
                return None
            out += r[0]
        return out, False
    if op == "Unsqueeze":
        r = _resolve(node.inputs[0], depth + 1)
        return (r[0], False) if r is not None and r[1] else None
    if op == "Squeeze":
        r = _resolve(node.inputs[0], depth + 1)
        return (r[0], True) if r is not None and len(r[0]) == 1 and not r[1] else None
    if op in _ARITHMETIC and len(node.inputs) == 2:
        a, b = _resolve(node.inputs[0], depth + 1), _resolve(node.inputs[1], depth + 1)
        if a is None or b is None:
            return None
        n = max(len(a[0]), len(b[0]))
        if {len(a[0]), len(b[0])} - {1, n}:
            return None
        left = a[0] * n if len(a[0]) == 1 else a[0]
        right = b[0] * n if len(b[0]) == 1 else b[0]
        out = []
        for x, y in zip(left, right):
            vx, vy = _static(x), _static(y)
            out.append(None if vx is None or vy is None else _ARITHMETIC[op](vx, vy))
        return out, a[1] and b[1]
    if op == "ReduceProd":
        r = _resolve(node.inputs[0], depth + 1)
        axes = node.attrs.get("axes")
        if len(node.inputs) > 1 and node.inputs[1].name:
            v = const_value(node.inputs[1])
            axes = None if v is None else v.reshape(-1).tolist()
            if v is None:
                return None
        if r is None or r[1] or (axes not in (None, [], [0], [-1])):
            return None
        keep = int(node.attrs.get("keepdims", 1))
        prod = _Prod(tuple(r[0]))
        v = _static(prod)
        return [v if v is not None else prod], not keep
    if op == "Gather" and int(node.attrs.get("axis", 0)) == 0:
        r = _resolve(node.inputs[0], depth + 1)
        idx = const_value(node.inputs[1])
        if r is None or idx is None or idx.ndim > 1:
            return None
        n = len(r[0])
        try:
            picked = [r[0][int(i)] for i in idx.reshape(-1) if -n <= int(i) < n]
        except IndexError:
            return None
        if len(picked) != idx.size:
            return None
        return picked, idx.ndim == 0
    if op == "Slice":
        r = _resolve(node.inputs[0], depth + 1)
        vals = [const_value(x) if x.name else None for x in node.inputs[1:]]
        if r is None or len(vals) < 2 or vals[0] is None or vals[1] is None:
            return None
        if len(vals) > 2 and node.inputs[3].name and (vals[2] is None or vals[2].reshape(-1).tolist() not in ([0], [-1])):
            return None
        step = 1
        if len(vals) > 3 and node.inputs[4].name:
            if vals[3] is None:
                return None
            step = int(vals[3].reshape(-1)[0])
        s, e = int(vals[0].reshape(-1)[0]), int(vals[1].reshape(-1)[0])
        return r[0][slice(s, e, step)], False
    return None


#: Names some exporters give every unknown dimension alike; equal names prove nothing there.
_GENERIC_SYMBOLS = frozenset({"?", "-1", "None", "none", "null", "unk", "unknown", "dynamic", "*"})


def untrusted_symbols(graph: gs.Graph) -> set[str]:
    """Dimension names that may stand for different values: generic placeholders, and names a
    graph input uses on two of its axes (an exporter naming all unknowns alike)."""
    bad = set(_GENERIC_SYMBOLS)
    for t in graph.inputs:
        names = [d for d in (t.shape or []) if isinstance(d, str)]
        bad.update(n for n in names if names.count(n) > 1)
    return bad


def _target(node: gs.Node, untrusted: set[str] | frozenset[str] = frozenset()) -> np.ndarray | None:
    x, shape = node.inputs[0], node.inputs[1]
    resolved = _resolve(shape)
    if resolved is None or resolved[1]:
        return None
    elems = resolved[0]
    xs = list(x.shape) if x.shape is not None else None
    out: list[int | None] = []
    for i, e in enumerate(elems):
        v = _static(e)
        if v is not None:
            out.append(v)
            continue
        if isinstance(e, _Dim) and e.tensor is x and xs is not None and e.axis % len(xs) == i:
            out.append(0)  # the input's own dimension at this position: copy it
            continue
        if isinstance(e, _Dim) and e.tensor.shape is not None:
            d = e.tensor.shape[e.axis]
            if (
                isinstance(d, str) and d and d not in untrusted
                and xs is not None and i < len(xs) and xs[i] == d
            ):
                out.append(0)
                continue
        out.append(None)
    unknown = [i for i, v in enumerate(out) if v is None]
    if len(unknown) > 1 or (unknown and -1 in out):
        return None
    for i in unknown:
        out[i] = -1
    return np.array(out, dtype=np.int64)


def _flatten_axis(node: gs.Node) -> int | None:
    """``k`` when the target is ``[-1, prod(x.shape[k:])]`` or ``[prod(x.shape[:k]), -1]``
    of the Reshape's own input ``x``: that is ``Flatten(x, axis=k)``."""
    x = node.inputs[0]
    resolved = _resolve(node.inputs[1])
    if x.shape is None or resolved is None or resolved[1] or len(resolved[0]) != 2:
        return None
    rank = len(x.shape)
    a, b = resolved[0]

    def dims_of(e: object) -> list[int] | None:
        if isinstance(e, _Dim):
            e = _Prod((e,))
        if not isinstance(e, _Prod) or not all(isinstance(f, _Dim) and f.tensor is x for f in e.factors):
            return None
        return [f.axis % rank for f in e.factors]  # type: ignore[union-attr]

    if a == -1 and (d := dims_of(b)) and d == list(range(d[0], rank)):
        return d[0]
    if b == -1 and (d := dims_of(a)) and d == list(range(0, len(d))):
        return len(d)
    return None


def simplify_reshape(graph: gs.Graph) -> int:
    """Replaces computed Reshape targets by constants where sound; returns the count."""
    done = 0
    untrusted = untrusted_symbols(graph)
    taken = set(graph.tensors())
    for node in graph.nodes:
        if node.op != "Reshape" or len(node.inputs) < 2 or int(node.attrs.get("allowzero", 0)):
            continue
        if const_value(node.inputs[1]) is not None:
            continue
        axis = _flatten_axis(node)
        if axis is not None:
            node.op = "Flatten"
            node.attrs.clear()
            node.attrs["axis"] = axis
            while len(node.inputs) > 1:
                node.inputs.pop()
            done += 1
            continue
        target = _target(node, untrusted)
        if target is None:
            continue
        node.inputs[1] = new_constant(graph, f"{node.name}.shape", target, taken)
        done += 1
    return done


@register
class SimplifyReshape(InPlacePass):
    """Replace Reshape targets computed from Shape ops by constants where provably equal."""

    name = "simplify-reshape"

    def __init__(self, infer: bool = True, max_sweeps: int = 64) -> None:
        """
        Args:
            infer: after a sweep that made targets constant, infer shapes again and sweep
                again: a network of Reshapes whose targets read earlier Reshapes' outputs
                (channel shuffles, head splits) then settles in one pass instead of one
                fixed-point round per layer.
            max_sweeps: bound on those sweeps.
        """
        self.infer = infer
        self.max_sweeps = max_sweeps

    def run(self, model: Model) -> PassResult:
        total = 0
        for _ in range(self.max_sweeps if self.infer else 1):
            n = simplify_reshape(model.graph)
            total += n
            if not n or not self.infer:
                break
            infer_shapes(model)
        return PassResult(model, total > 0)
