"""Matrix products: ``Gemm`` (with transA/transB) and ``MatMul``.

``Gemm``: ``Y[M,N] = A'[M,K] · B'[K,N] + C``. The contraction axis K of A and B is one space (an
input channel removed from A must be removed from B's rows); N is the output space shared by B's
columns, C's last axis and Y's axis 1. ``MatMul`` follows numpy: ``[..., M, K] @ [..., K, N]``;
batch axes broadcast like an elementwise op. Both operands may be activations (attention scores):
the relations are the same, only constant operands are sliced.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from . import Free, Opaque, Relation, RuleContext, Same, axes_of, register


@register("Gemm")
def gemm(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    if ctx.rank(a) != 2 or ctx.rank(b) != 2:
        return [Opaque(k, f"Gemm '{node.name}': operands are not 2-D") for t in (a, b, y) for k in axes_of(t, ctx)]
    ta, tb = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    a_m, a_k = (1, 0) if ta else (0, 1)
    b_k, b_n = (1, 0) if tb else (0, 1)
    wa, wb = ctx.weight(a), ctx.weight(b)
    rels: list[Relation] = [
        Same((a.name, a_k), (b.name, b_k), seed=wa or wb),
        Same((y.name, 1), (b.name, b_n), seed=wb),
        Same((y.name, 0), (a.name, a_m), seed=wa),
    ]
    if c is not None:
        cs = ctx.shape(c)
        ys = ctx.shape(y)
        if cs is not None and ys is not None:
            for ax in range(len(cs)):
                j = ax + (2 - len(cs))
                if cs[ax] == ys[j] and cs[ax] != 1:
                    rels.append(Same((c.name, ax), (y.name, j), seed=ctx.weight(c)))
                else:
                    rels.append(Free((c.name, ax)))
    return rels


@register("MatMul")
def matmul(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    sa, sb, sy = ctx.shape(a), ctx.shape(b), ctx.shape(y)
    if sa is None or sb is None or sy is None or len(sa) < 2 or len(sb) < 2:
        return [Opaque(k, f"MatMul '{node.name}': 1-D or unknown operand shapes") for t in (a, b, y) for k in axes_of(t, ctx)]
    ra, rb, ry = len(sa), len(sb), len(sy)
    wa, wb = ctx.weight(a), ctx.weight(b)
    rels: list[Relation] = [
        Same((a.name, ra - 1), (b.name, rb - 2), seed=wa or wb),
        Same((y.name, ry - 1), (b.name, rb - 1), seed=wb),
        Same((y.name, ry - 2), (a.name, ra - 2), seed=wa),
    ]
    for t, s, r in ((a, sa, ra), (b, sb, rb)):
        for ax in range(r - 2):
            j = ax + (ry - r)
            if s[ax] == sy[j]:
                rels.append(Same((t.name, ax), (y.name, j)))
            elif s[ax] == 1:
                rels.append(Free((t.name, ax)))
            else:
                rels.append(Opaque((t.name, ax), f"MatMul '{node.name}': unclear batch broadcast"))
    return rels


@register("Einsum", since=12)
def einsum(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    """Einsum by its subscripts: axes named by the same letter are the same space.

    A letter kept in the output ties that output axis to every input axis carrying it; a letter
    contracted between inputs ties those input axes (removing index *i* removes a zero term); a
    letter summed inside a single input mixes that axis and is opaque. Ellipses are opaque.
    """
    eq = str(node.attrs.get("equation", "")).replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    y = node.outputs[0]
    if "." in eq or len(terms) != len(node.inputs) or not _:
        reason = f"Einsum '{node.name}': equation '{eq}' uses ellipsis or implicit output"
        return [Opaque(k, reason) for t in list(node.inputs) + [y] for k in axes_of(t, ctx)]
    rels: list[Relation] = []
    places: dict[str, list[tuple[str, int, bool]]] = {}
    for t, term in zip(node.inputs, terms):
        const = ctx.weight(t)
        for a, letter in enumerate(term):
            places.setdefault(letter, []).append((t.name, a, const))
    for letter, where in places.items():
        if letter in rhs:
            j = rhs.index(letter)
            for name, a, const in where:
                rels.append(Same((name, a), (y.name, j), seed=const))
        elif len(where) >= 2:
            for (n1, a1, c1), (n2, a2, c2) in zip(where, where[1:]):
                rels.append(Same((n1, a1), (n2, a2), seed=c1 or c2))
        else:
            name, a, _c = where[0]
            rels.append(Opaque((name, a), f"Einsum '{node.name}' sums axis {a} of '{name}'"))
    return rels
