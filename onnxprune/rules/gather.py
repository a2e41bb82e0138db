"""Gather: embeddings and index selection.

``Gather(data, indices, axis)`` has shape ``data[:axis] + indices.shape + data[axis+1:]``. Axes of
``data`` other than ``axis`` pass through (an embedding table's width is the width of every token
vector it produces), as do the axes of ``indices``; the gathered axis of ``data`` is read by index
values and cannot be pruned.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from . import Opaque, Relation, RuleContext, Same, norm_axis, register


@register("Gather")
def gather(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    data, idx, y = node.inputs[0], node.inputs[1], node.outputs[0]
    rd, ri = ctx.rank(data), ctx.rank(idx)
    if rd is None or ri is None:
        return []
    axis = norm_axis(int(node.attrs.get("axis", 0)), rd)
    table = ctx.const(data) is not None
    rels: list[Relation] = []
    for a in range(rd):
        if a < axis:
            rels.append(Same((data.name, a), (y.name, a)))
        elif a == axis:
            rels.append(Opaque((data.name, a), f"Gather '{node.name}' indexes axis {a} of '{data.name}'"))
        else:
            rels.append(Same((data.name, a), (y.name, a + ri - 1), seed=table))
    for b in range(ri):
        rels.append(Same((idx.name, b), (y.name, axis + b)))
    return rels
