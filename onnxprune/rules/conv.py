"""Convolutions (1-D/2-D/3-D, grouped, depthwise) and transposed convolutions.

``Conv``: ``W`` is ``[C_out, C_in/g, *k]``. With ``g == 1`` the input channels follow ``W`` axis 1
and the output channels follow ``W`` axis 0 and the bias; the two spaces are independent.
With ``g > 1`` channels of group *j* only see channels of group *j*, so a virtual space of *g*
atoms expands to ``C_in/g`` input and ``C_out/g`` output channels each: pruning removes whole
groups, ``W`` axis 1 is untouched and the ``group`` attribute shrinks. A depthwise conv
(``g == C_in``) is the case ``C_in/g == 1``; a channel multiplier *m* gives ``C_out/g == m``.

``ConvTranspose``: ``W`` is ``[C_in, C_out/g, *k]`` — the roles of the axes swap.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from . import (
    ApplyContext,
    Expand,
    Opaque,
    Relation,
    RuleContext,
    Same,
    axes_of,
    register,
    rewriter,
)


def _conv_rule(node: gs.Node, ctx: RuleContext, transposed: bool) -> list[Relation]:
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    y = node.outputs[0]
    xs, ws, ys = ctx.shape(x), ctx.shape(w), ctx.shape(y)
    if xs is None or ws is None or ys is None:
        reason = f"{node.op} '{node.name}': shapes unknown"
        return [Opaque(k, reason) for t in (x, w, y) for k in axes_of(t, ctx)]
    g = int(node.attrs.get("group", 1))
    rels: list[Relation] = [Same((x.name, 0), (y.name, 0))]
    spatial = f"{node.op} '{node.name}' slides a kernel over this spatial axis"
    for a in range(2, len(xs)):
        rels.append(Opaque((x.name, a), spatial))
    for a in range(2, len(ys)):
        rels.append(Opaque((y.name, a), spatial))
    for a in range(2, len(ws)):
        rels.append(Opaque((w.name, a), spatial))
    w_in, w_out = (0, 1) if transposed else (1, 0)
    c_in, c_out = xs[1], ys[1]
    if g == 1:
        rels.append(Same((x.name, 1), (w.name, w_in), seed=True))
        rels.append(Same((y.name, 1), (w.name, w_out), seed=True))
    else:
        if c_in is None or c_out is None or c_in % g or c_out % g:
            reason = f"{node.op} '{node.name}': channel counts do not divide group={g}"
            return rels + [Opaque((x.name, 1), reason), Opaque((y.name, 1), reason)]
        gk = ctx.virtual(node, "groups", g)
        rels.append(Expand(gk, (x.name, 1), 1, c_in // g, follow_up=True, seed=True))
        rels.append(Expand(gk, (y.name, 1), 1, c_out // g, follow_up=True, seed=True))
        if transposed:
            rels.append(Same((x.name, 1), (w.name, 0), seed=True))
            rels.append(Opaque((w.name, 1), f"{node.op} '{node.name}': per-group output channels"))
        else:
            rels.append(Same((y.name, 1), (w.name, 0), seed=True))
            rels.append(Opaque((w.name, 1), f"{node.op} '{node.name}': per-group input channels"))
    if b is not None:
        rels.append(Same((y.name, 1), (b.name, 0), seed=True))
    return rels


@register("Conv")
def conv(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    return _conv_rule(node, ctx, transposed=False)


@register("ConvTranspose")
def conv_transpose(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    return _conv_rule(node, ctx, transposed=True)


@rewriter("Conv", "ConvTranspose")
def rewrite_group(node: gs.Node, ctx: ApplyContext) -> None:
    n = ctx.new_size((f"{node.name}#groups", 0))
    if n is not None:
        node.attrs["group"] = int(n)
