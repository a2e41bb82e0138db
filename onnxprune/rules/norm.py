"""Normalizations with per-channel parameters.

``BatchNormalization`` is elementwise per channel: ``y = (x - mean) / sqrt(var + eps) * scale + B``,
so all four parameter vectors follow the channel axis and every other axis is :class:`Same`.
``InstanceNormalization`` normalizes over the spatial axes (opaque there) with per-channel
scale/bias. ``GroupNormalization`` normalizes each group of ``C/G`` channels on its own, so
whole groups are removable: a virtual group space expands to the channels, and ``num_groups``
shrinks. Its scale/bias are per group (opset 18) or per channel (opset 21).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from . import ApplyContext, Expand, Opaque, Relation, RuleContext, Same, register, rewriter


@register("BatchNormalization")
def batchnorm(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    rels: list[Relation] = [Same((x.name, a), (y.name, a)) for a in range(r)]
    for p in node.inputs[1:5]:
        if p.name:
            rels.append(Same((x.name, 1), (p.name, 0), seed=True))
    for extra in node.outputs[1:]:  # training-mode running statistics
        if extra.name:
            rels.append(Same((x.name, 1), (extra.name, 0)))
    return rels


@register("InstanceNormalization")
def instancenorm(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    rels: list[Relation] = [Same((x.name, 0), (y.name, 0)), Same((x.name, 1), (y.name, 1))]
    for p in node.inputs[1:3]:
        rels.append(Same((x.name, 1), (p.name, 0), seed=True))
    reason = f"InstanceNormalization '{node.name}' normalizes over this spatial axis"
    for a in range(2, r):
        rels += [Opaque((x.name, a), reason), Opaque((y.name, a), reason)]
    return rels


@register("GroupNormalization", since=18)
def groupnorm(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, scale, bias = node.inputs[0], node.inputs[1], node.inputs[2]
    y = node.outputs[0]
    xs = ctx.shape(x)
    if xs is None:
        return []
    G = int(node.attrs["num_groups"])
    C = xs[1]
    rels: list[Relation] = [Same((x.name, 0), (y.name, 0)), Same((x.name, 1), (y.name, 1))]
    reason = f"GroupNormalization '{node.name}' normalizes over this spatial axis"
    for a in range(2, len(xs)):
        rels += [Opaque((x.name, a), reason), Opaque((y.name, a), reason)]
    if C is None or C % G:
        return rels + [Opaque((x.name, 1), f"GroupNormalization '{node.name}': C not divisible by num_groups")]
    gk = ctx.virtual(node, "groups", G)
    rels.append(Expand(gk, (x.name, 1), 1, C // G, follow_up=True, seed=True))
    for p in (scale, bias):
        ps = ctx.shape(p)
        if ps is not None and ps[0] == C and C != G:
            rels.append(Same((x.name, 1), (p.name, 0), seed=True))
        else:
            rels.append(Same(gk, (p.name, 0), seed=True))
    return rels


@rewriter("GroupNormalization")
def rewrite_groupnorm(node: gs.Node, ctx: ApplyContext) -> None:
    n = ctx.new_size((f"{node.name}#groups", 0))
    if n is not None:
        node.attrs["num_groups"] = int(n)
