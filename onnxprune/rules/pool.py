"""Pooling and reductions: they keep the channel axis and mix only the axes they pool or reduce."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from . import ApplyContext, Free, Opaque, Relation, RuleContext, Same, norm_axis, register, rewriter

REDUCE = (
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
)  # fmt: skip


@register("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "MaxRoiPool")
def pool(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    rels: list[Relation] = [Same((x.name, 0), (y.name, 0)), Same((x.name, 1), (y.name, 1))]
    reason = f"{node.op} '{node.name}' pools over this spatial axis"
    # tf2onnx writes a Keras LayerNormalization's mean and variance of a [B, S, C] tensor as
    # GlobalAveragePool: the one pooled axis is the channel axis, a statistic like ReduceMean's
    statistic = node.op == "GlobalAveragePool" and r == 3
    if statistic:
        reason += " (a normalization statistic; --prune-hidden prunes through it)"
    for a in range(2, r):
        if statistic and ctx.prune_hidden:
            rels += [Free((x.name, a)), Free((y.name, a))]
        else:
            rels += [Opaque((x.name, a), reason), Opaque((y.name, a), reason)]
    if len(node.outputs) > 1 and node.outputs[1].name and node.outputs[1].outputs:
        why = f"MaxPool '{node.name}': its Indices output encodes channel positions"
        rels = [Opaque((x.name, a), why) for a in range(r)] + [Opaque((node.outputs[1].name, a), why) for a in range(r)]
    return rels


@register(*REDUCE)
def reduce(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    axes_from_input = node.op == "ReduceSum" and ctx.opset >= 13 or ctx.opset >= 18
    axes = ctx.ints(node, 1) if axes_from_input else ctx.ints(node, 99, "axes")
    if axes_from_input and len(node.inputs) > 1 and node.inputs[1].name and axes is None:
        return [Opaque((x.name, a), f"{node.op} '{node.name}': axes computed at run time") for a in range(r)]
    if not axes:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            return [Same((x.name, a), (y.name, a)) for a in range(r)]
        axes = list(range(r))
    reduced = {norm_axis(a, r) for a in axes}
    keep = int(node.attrs.get("keepdims", 1))
    rels: list[Relation] = []
    j = 0
    # jax2tf/tf2onnx write a mean as ReduceSum(keepdims=0) times 1/n (see rewrite_sum)
    statistic = node.op in ("ReduceMean", "ReduceSumSquare", "ReduceL2", "ReduceSum") and (
        keep or node.op in ("ReduceMean", "ReduceSum"))
    for a in range(r):
        if a in reduced:
            if ctx.prune_hidden and statistic and a == r - 1:
                # a decomposed LayerNorm/RMSNorm statistic: reads every channel, carries none
                rels.append(Free((x.name, a)))
                if keep:
                    rels.append(Free((y.name, j)))
                    j += 1
                continue
            reason = f"{node.op} '{node.name}' reduces over axis {a}"
            if a == r - 1 and node.op in ("ReduceMean", "ReduceSum"):
                reason += " (a normalization statistic; --prune-hidden prunes through it)"
            rels.append(Opaque((x.name, a), reason))
            if keep:
                rels.append(Opaque((y.name, j), reason))
                j += 1
        else:
            rels.append(Same((x.name, a), (y.name, j)))
            j += 1
    return rels


@rewriter("ReduceSum")
def rewrite_sum(node: gs.Node, ctx: ApplyContext) -> None:
    """A mean written as ``ReduceSum(x) * (1/n)`` (or ``/ n``) over an axis that lost channels:
    the scale of that consumer becomes 1/n' for the n' kept channels (a copy of the constant, so a
    scale shared with other means stays as it was)."""
    x, y = node.inputs[0], node.outputs[0]
    xs = ctx.shapes.get(x.name)
    if xs is None or not xs:
        return
    n_old, n_new = xs[-1], ctx.new_size((x.name, len(xs) - 1))
    if n_new is None or n_old in (None, 0) or n_new == n_old:
        return
    for user in list(y.outputs):
        if user.op not in ("Mul", "Div") or len(user.inputs) != 2:
            continue
        slot = 1 if user.inputs[0] is y else 0
        if user.op == "Div" and slot != 1:
            continue
        c = ctx.const(user.inputs[slot])
        if c is None or np.asarray(c).size != 1:
            continue
        v = float(np.asarray(c).reshape(-1)[0])
        want, new = (1.0 / n_old, 1.0 / n_new) if user.op == "Mul" else (float(n_old), float(n_new))
        if abs(v - want) <= 1e-6 * abs(want):
            arr = np.asarray(c)
            user.inputs[slot] = ctx.new_const(user.inputs[slot].name, np.full(arr.shape, new, dtype=arr.dtype))
