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


@register("LayerNormalization", "SimplifiedLayerNormalization", since=1)
def layernorm(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    """Normalizes over axes ``axis..rank-1`` with scale/bias of those trailing dims.

    The leading axes are independent (Same). The normalized axes mix every channel into the
    statistics, so they are opaque unless ``prune_hidden`` is on; then the last axis is treated as
    a channel axis whose scale and bias follow it (removing a channel changes the mean and the
    variance a little, which is why hidden-width pruning is opt-in).
    """
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    axis = int(node.attrs.get("axis", -1))
    axis = axis + r if axis < 0 else axis
    rels: list[Relation] = [Same((x.name, a), (y.name, a)) for a in range(axis)]
    for extra in node.outputs[1:]:  # Mean / InvStdDev outputs keep the leading axes
        if extra.name:
            rels += [Same((x.name, a), (extra.name, a)) for a in range(axis)]
    for a in range(axis, r):
        if ctx.prune_hidden and a == r - 1:
            rels.append(Same((x.name, a), (y.name, a)))
            for p in node.inputs[1:3]:
                pr = ctx.rank(p) if p.name else None
                if pr:
                    rels.append(Same((x.name, a), (p.name, pr - 1), seed=True))
        else:
            reason = (
                f"{node.op} '{node.name}' normalizes over axis {a} (the hidden width; "
                "use --prune-hidden to prune it)"
            )
            rels += [Opaque((x.name, a), reason), Opaque((y.name, a), reason)]
    return rels
