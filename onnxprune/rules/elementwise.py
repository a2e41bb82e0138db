"""Elementwise ops with numpy broadcasting: activations, arithmetic, Where, Clip, PRelu, Cast.

Output element ``y[..., c, ...]`` reads only input elements at the same index along every
non-broadcast axis, so each output axis is :class:`Same` as the matching (right-aligned) axis of
every input that has the full size there; an input of size 1 on that axis is broadcast and
:class:`Free`. This covers per-channel constants (``Add`` of a ``[C,1,1]`` bias, PRelu slopes)
and squeeze-excitation gates (``Mul`` by an ``[N,C,1,1]`` tensor) with no special case.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from . import (
    ApplyContext,
    Free,
    Opaque,
    Relation,
    RuleContext,
    Same,
    axes_of,
    norm_axis,
    register,
    rewriter,
)
from .shape_ops import _kind, shape_sources, sizes_follow

UNARY = (
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Mish", "Gelu", "Erf", "ThresholdedRelu", "Abs", "Neg", "Exp", "Log",
    "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Tan", "Asin", "Acos",
    "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Not", "IsNaN", "IsInf", "Identity",
    "Dropout", "Cast", "CastLike", "Clip", "Shrink", "Swish", "BitwiseNot",
)  # fmt: skip
BINARY = (
    "Add", "Sub", "Mul", "Div", "Pow", "PRelu", "Max", "Min", "Mean", "Sum", "Where", "Equal",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "BitShift",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
)  # fmt: skip


@register(*UNARY, *BINARY)
def elementwise(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    out = node.outputs[0]
    oshape = ctx.shape(out)
    rels: list[Relation] = []
    if oshape is None:
        for t in list(node.inputs) + list(node.outputs):
            for key in axes_of(t, ctx):
                rels.append(Opaque(key, f"{node.op} '{node.name}': output shape unknown"))
        return rels
    R = len(oshape)
    # Extra outputs of the same shape (Dropout's mask) follow output 0.
    for extra in node.outputs[1:]:
        if extra.name and ctx.shape(extra) == oshape:
            rels.extend(Same((out.name, j), (extra.name, j)) for j in range(R))
    for t in node.inputs:
        if not t.name:
            continue
        s = ctx.shape(t)
        if s is None:
            rels.extend(Opaque((out.name, j), f"{node.op} '{node.name}': shape of input '{t.name}' unknown") for j in range(R))
            continue
        r = len(s)
        for a in range(r):
            j = a + (R - r)
            if j < 0:
                rels.append(Opaque((t.name, a), f"{node.op} '{node.name}': input rank exceeds output rank"))
            elif s[a] is not None and s[a] == oshape[j]:
                rels.append(Same((t.name, a), (out.name, j)))
            elif s[a] == 1:
                rels.append(Free((t.name, a)))
            else:
                rels.append(Opaque((t.name, a), f"{node.op} '{node.name}': cannot prove how '{t.name}' axis {a} broadcasts"))
    return rels


@register("Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike")
def constant(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    """A constant's axes are free: the applier slices its value like an initializer's."""
    if node.op == "ConstantOfShape":
        return _constant_of_shape(node, ctx)
    if node.op != "Constant":
        return [Opaque(k, f"{node.op} '{node.name}': generated tensor cannot be sliced") for t in node.outputs for k in axes_of(t, ctx)]
    return [Free(k) for t in node.outputs for k in axes_of(t, ctx)]


def _indices_read(t: gs.Tensor, ctx: RuleContext, n: int, depth: int = 0) -> set[int]:
    """Which entries of a shape vector of length ``n`` are read downstream (all when unsure).

    Picking consumers are traced further: ``Gather`` with constant indices (tf2onnx permutes a
    shape to NHWC this way) and ``Slice`` with constant bounds keep only what is read after them.
    """
    every = set(range(n))
    if depth > 6 or not t.outputs:  # no reader in the graph may still be a graph output
        return every
    read: set[int] = set()
    for c in t.outputs:
        if c.op in ("Cast", "Identity"):
            read |= _indices_read(c.outputs[0], ctx, n, depth + 1)
        elif c.op == "Gather" and int(c.attrs.get("axis", 0)) == 0 and c.inputs[0] is t:
            v = ctx.const(c.inputs[1])
            if v is None:
                return every
            idx = [norm_axis(int(i), n) for i in np.asarray(v).reshape(-1)]
            if np.ndim(v) == 0:
                read |= set(idx)
            else:
                read |= {idx[k] for k in _indices_read(c.outputs[0], ctx, len(idx), depth + 1)}
        elif c.op == "Slice" and c.inputs[0] is t:
            starts, ends = ctx.ints(c, 1, "starts"), ctx.ints(c, 2, "ends")
            steps = ctx.ints(c, 4) if len(c.inputs) > 4 and c.inputs[4].name else [1]
            if starts is None or ends is None or steps != [1] or len(starts) != 1:
                return every
            lo = max(0, min(starts[0] + n if starts[0] < 0 else starts[0], n))
            hi = max(lo, min(ends[0] + n if ends[0] < 0 else ends[0], n))
            read |= {lo + k for k in _indices_read(c.outputs[0], ctx, hi - lo, depth + 1)}
        else:
            return every
    return read


def _copies_only(
    t: gs.Tensor, pos: int, x: gs.Tensor, axis: int, ctx: RuleContext, depth: int = 0
) -> bool:
    """True if entry ``pos`` of shape vector ``t`` (the size of ``x`` axis ``axis``) is only ever
    used to copy that same size back into a Reshape of ``x`` at the same position.

    ``x.flatten(2)`` exports as ``Reshape(x, Concat(Shape(x)[:2], [-1]))``: the channel size is
    read, but only to be written back unchanged, so pruning the axis is safe.
    """
    if depth > 8 or not t.outputs:
        return depth > 0 and not t.outputs
    for c in t.outputs:
        if c.op in ("Cast", "Identity", "Unsqueeze") and c.inputs[0] is t:
            ok = _copies_only(c.outputs[0], pos, x, axis, ctx, depth + 1)
        elif c.op == "Slice" and c.inputs[0] is t:
            starts, ends = ctx.ints(c, 1, "starts"), ctx.ints(c, 2, "ends")
            if starts is None or ends is None or len(starts) != 1 or starts[0] < 0:
                return False
            ok = not starts[0] <= pos < ends[0] or _copies_only(c.outputs[0], pos - starts[0], x, axis, ctx, depth + 1)
        elif c.op == "Concat" and int(c.attrs.get("axis", 0)) == 0:
            offset = 0
            for inp in c.inputs:
                if inp is t:
                    break
                s = ctx.shape(inp)
                if s is None or (len(s) == 1 and s[0] is None):
                    return False
                offset += 1 if len(s) == 0 else int(s[0])  # type: ignore[arg-type]
            ok = _copies_only(c.outputs[0], pos + offset, x, axis, ctx, depth + 1)
        elif c.op == "Reshape" and c.inputs[1] is t:
            ok = c.inputs[0] is x and pos == axis
        else:
            return False
        if not ok:
            return False
    return True


@register("Shape")
def shape(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    """``Shape`` reads sizes: an axis is free when no consumer of the shape vector reads it.

    Pruning changes the size of a channel axis, so a dynamic computation that reads it
    (``x.view(x.size(0), x.size(1), -1)``) would change. Reads are traced through ``start``/``end``
    and consumers that pick entries with constant indices: ``Gather`` (``x.size(0)``) and
    ``Slice`` (``x.shape[:2]``), also behind ``Cast``. A size that only reaches Reshape targets
    in entries tied to the axis it measures (``B·heads`` of an attention reshape, a head count
    read from a weight's shape) is free too: the Reshape rule couples the two.
    """
    x = node.inputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    start = norm_axis(int(node.attrs.get("start", 0)), r)
    end = node.attrs.get("end")
    end = r if end is None else min(norm_axis(int(end), r), r)
    start, end = max(start, 0), max(end, start)
    read = {start + i for i in _indices_read(node.outputs[0], ctx, end - start)}
    rels: list[Relation] = []
    for a in range(r):
        copied = False
        if a in read:
            copied = _copies_only(node.outputs[0], a - start, x, a, ctx) or sizes_follow(node, a, ctx)
        if a in read and not copied:
            rels.append(Opaque((x.name, a), f"Shape '{node.name}' reads the size of '{x.name}' axis {a} into a run-time computation"))
        else:
            rels.append(Free((x.name, a)))
    return rels


@register("Softmax", "LogSoftmax", "Hardmax")
def softmax(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    default = -1 if ctx.opset >= 13 else 1
    axis = norm_axis(int(node.attrs.get("axis", default)), r)
    mixed = {axis} if ctx.opset >= 13 else set(range(axis, r))
    rels: list[Relation] = []
    for a in range(r):
        if a in mixed:
            reason = f"{node.op} '{node.name}' normalizes over axis {a}"
            rels += [Opaque((x.name, a), reason), Opaque((y.name, a), reason)]
        else:
            rels.append(Same((x.name, a), (y.name, a)))
    return rels


def _constant_of_shape(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    """One value repeated (weight-free zoo graphs make their Conv weights so; ``zeros_like``):
    any of its channels may go, so an axis whose size is a constant of the shape vector is free
    (the rewriter sets that entry), and an axis sized by another tensor's axis at run time
    follows that axis."""
    y = node.outputs[0]
    r = ctx.rank(y)
    entries = shape_sources(node.inputs[0], ctx, node, 0) if node.inputs else None
    if r is None or entries is None or len(entries) != r:
        return [Opaque(k, f"{node.op} '{node.name}': shape of the generated tensor unknown") for k in axes_of(y, ctx)]
    rels: list[Relation] = []
    for j, (_v, src) in enumerate(entries):
        kind = _kind(src)
        if src is not None and kind is None:
            rels.append(Free((y.name, j)))
        elif kind == "dim":
            rels.append(Same((src[1], src[2]), (y.name, j)))  # type: ignore[index]
        else:
            rels.append(Opaque((y.name, j), f"{node.op} '{node.name}': size of axis {j} computed at run time"))
    return rels


@rewriter("ConstantOfShape")
def rewrite_constant_of_shape(node: gs.Node, ctx: ApplyContext) -> None:
    """Sets the shape-vector entries of the axes that lost channels."""
    if not node.inputs:
        return
    entries = shape_sources(node.inputs[0], ctx, node, 0)
    if entries is None:
        return
    patches: dict[tuple[int, int], tuple[gs.Node, int, np.ndarray]] = {}
    for j, (value, src) in enumerate(entries):
        n = ctx.new_size((node.outputs[0].name, j))
        if n is None or src is None or _kind(src) is not None or value == n:
            continue
        reader, slot, flat = src
        key = (id(reader), slot)
        if key not in patches:
            patches[key] = (reader, slot, np.array(ctx.const(reader.inputs[slot])))
        patches[key][2].reshape(-1)[flat] = n
    for reader, slot, value in patches.values():
        old = reader.inputs[slot]
        if len(old.outputs) == 1 and isinstance(old, gs.Constant):
            old.values = value  # read by this node alone: the file keeps its name (a few bytes each)
        else:
            reader.inputs[slot] = ctx.new_const(old.name, value, share=True)
