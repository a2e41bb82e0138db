"""Elementwise ops with numpy broadcasting: activations, arithmetic, Where, Clip, PRelu, Cast.

Output element ``y[..., c, ...]`` reads only input elements at the same index along every
non-broadcast axis, so each output axis is :class:`Same` as the matching (right-aligned) axis of
every input that has the full size there; an input of size 1 on that axis is broadcast and
:class:`Free`. This covers per-channel constants (``Add`` of a ``[C,1,1]`` bias, PRelu slopes)
and squeeze-excitation gates (``Mul`` by an ``[N,C,1,1]`` tensor) with no special case.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from . import Free, Opaque, Relation, RuleContext, Same, axes_of, norm_axis, register

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
    if node.op != "Constant":
        return [Opaque(k, f"{node.op} '{node.name}': generated tensor cannot be sliced") for t in node.outputs for k in axes_of(t, ctx)]
    return [Free(k) for t in node.outputs for k in axes_of(t, ctx)]


@register("Shape")
def shape(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    """``Shape`` reads sizes: an axis is free when no consumer of the shape vector reads it.

    Pruning changes the size of a channel axis, so a dynamic computation that reads it
    (``x.view(x.size(0), x.size(1), -1)``) would change. Reads are found through ``start``/``end``
    and ``Gather`` consumers with constant indices (``x.size(0)``).
    """
    x = node.inputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    start = norm_axis(int(node.attrs.get("start", 0)), r)
    end = node.attrs.get("end")
    end = r if end is None else min(norm_axis(int(end), r), r)
    read: set[int] = set(range(max(start, 0), max(end, 0)))
    consumers = node.outputs[0].outputs
    if consumers and all(c.op == "Gather" and int(c.attrs.get("axis", 0)) == 0 for c in consumers):
        idx: set[int] = set()
        for c in consumers:
            v = ctx.const(c.inputs[1])
            if v is None:
                idx = set(read)
                break
            n = end - start
            idx |= {start + norm_axis(int(i), n) for i in v.reshape(-1)}
        read &= idx
    rels: list[Relation] = []
    for a in range(r):
        if a in read:
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
