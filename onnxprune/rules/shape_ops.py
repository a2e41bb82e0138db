"""Ops that move, join, cut or re-view axes without arithmetic.

Transpose/Squeeze/Unsqueeze only renumber axes. Concat places its inputs' spaces one after the
other (:class:`Part` at each input's offset); Split and Slice take contiguous parts. Flatten and
Reshape are analysed by factoring the input and output shapes into runs with equal products:
a run of one axis onto one axis is :class:`Same`; several input axes merged into one output axis
make each input atom a block of ``inner`` consecutive features repeated ``outer`` times
(:class:`Expand`, e.g. C×H×W → features feeding a Gemm). Anything else is opaque with a reason.
Rewriters keep Reshape shape vectors, Split sizes, Slice bounds and Resize sizes in step with the
pruned sizes.

Target shapes computed at run time are evaluated entry by entry (:func:`shape_sources`): an entry
is a constant, the size of one axis, or a product of sizes (``ReduceProd``/``Mul``/``Max`` as
tf2onnx writes ``B·heads``). A product whose only factor other than 1 is a channel axis is tied to
the output axis it sizes, so both shrink together while batch and sequence stay run-time values.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs

from . import (
    ApplyContext,
    Expand,
    Free,
    Opaque,
    Part,
    Relation,
    RuleContext,
    Same,
    axes_of,
    norm_axis,
    register,
    rewriter,
)

_INT64_MAX = np.iinfo(np.int64).max


@register("Transpose")
def transpose(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    perm = node.attrs.get("perm") or list(reversed(range(r)))
    return [Same((x.name, int(p)), (y.name, j)) for j, p in enumerate(perm)]


def _squeeze_like(node: gs.Node, ctx: RuleContext, inserting: bool) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    xs, ys = ctx.shape(x), ctx.shape(y)
    if xs is None or ys is None:
        return []
    axes = ctx.ints(node, 1, "axes") if ctx.opset >= 13 else ctx.ints(node, 99, "axes")
    rels: list[Relation] = []
    if axes is None:
        if inserting:
            return [Opaque(k, f"{node.op} '{node.name}': axes unknown") for k in axes_of(x, ctx)]
        axes = [a for a, d in enumerate(xs) if d == 1]
    if inserting:
        added = {norm_axis(a, len(ys)) for a in axes}
        kept_out = [j for j in range(len(ys)) if j not in added]
        rels += [Same((x.name, a), (y.name, j)) for a, j in zip(range(len(xs)), kept_out)]
    else:
        removed = {norm_axis(a, len(xs)) for a in axes}
        kept_in = [a for a in range(len(xs)) if a not in removed]
        rels += [Same((x.name, a), (y.name, j)) for j, a in enumerate(kept_in)]
        rels += [Opaque((x.name, a), f"Squeeze '{node.name}' removes axis {a}") for a in removed]
    return rels


@register("Squeeze")
def squeeze(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    return _squeeze_like(node, ctx, inserting=False)


@register("Unsqueeze")
def unsqueeze(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    return _squeeze_like(node, ctx, inserting=True)


def reshape_runs(
    ins: tuple[int | None, ...], outs: tuple[int | None, ...]
) -> list[tuple[list[int], list[int]]] | None:
    """Factors a reshape into runs of input and output axes with equal products.

    Size-1 axes are left out of the runs. Returns ``None`` when a size is unknown or the products
    never meet.
    """
    nin = [i for i, d in enumerate(ins) if d != 1]
    nout = [j for j, d in enumerate(outs) if d != 1]
    runs: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(nin) and j < len(nout):
        if ins[nin[i]] is None or outs[nout[j]] is None:
            # an unknown size (a dynamic sequence) can only be carried over unchanged
            if ins[nin[i]] is not None or outs[nout[j]] is not None:
                return None
            runs.append(([nin[i]], [nout[j]]))
            i, j = i + 1, j + 1
            continue
        gi, gj = [nin[i]], [nout[j]]
        pi, po = ins[nin[i]], outs[nout[j]]
        i, j = i + 1, j + 1
        while pi != po:
            if pi < po:
                if i >= len(nin) or ins[nin[i]] is None:
                    return None
                gi.append(nin[i])
                pi *= ins[nin[i]]  # type: ignore[operator]
                i += 1
            else:
                if j >= len(nout) or outs[nout[j]] is None:
                    return None
                gj.append(nout[j])
                po *= outs[nout[j]]  # type: ignore[operator]
                j += 1
        runs.append((gi, gj))
    if i != len(nin) or j != len(nout):
        return None
    return runs


def _reshape_relations(
    node: gs.Node, ctx: RuleContext, x: gs.Tensor, y: gs.Tensor, dynamic_ok: set[int] | None
) -> list[Relation]:
    xs, ys = ctx.shape(x), ctx.shape(y)
    if xs is None or ys is None:
        return [Opaque(k, f"{node.op} '{node.name}': shapes unknown") for k in axes_of(x, ctx)]
    runs = reshape_runs(xs, ys)
    if runs is None:
        return [Opaque(k, f"{node.op} '{node.name}': cannot factor reshape {xs} -> {ys}") for k in axes_of(x, ctx)]
    rels: list[Relation] = []
    for a, d in enumerate(xs):
        if d == 1:
            rels.append(Opaque((x.name, a), f"{node.op} '{node.name}' drops or moves size-1 axis {a}"))
    for j, d in enumerate(ys):
        if d == 1:
            rels.append(Opaque((y.name, j), f"{node.op} '{node.name}' inserts size-1 axis {j}"))
    for gi, gj in runs:
        if dynamic_ok is not None and any(j not in dynamic_ok for j in gj):
            reason = f"{node.op} '{node.name}': target shape computed at run time fixes output axis {gj}"
            rels += [Opaque((x.name, a), reason) for a in gi] + [Opaque((y.name, j), reason) for j in gj]
        elif len(gi) == 1 and len(gj) == 1:
            rels.append(Same((x.name, gi[0]), (y.name, gj[0])))
        elif len(gj) == 1:
            # a constant's axes can be created from its merged features (a weight stored as
            # [.., H, D, E] and reshaped to [H*D, E] is sliced per head)
            weight = ctx.const(x) is not None
            for p, a in enumerate(gi):
                outer = math.prod(xs[b] for b in gi[:p])  # type: ignore[misc]
                inner = math.prod(xs[b] for b in gi[p + 1 :])  # type: ignore[misc]
                rels.append(
                    Expand((x.name, a), (y.name, gj[0]), outer, inner, follow_up=weight, family=f"{node.name}:{gj[0]}")
                )
        elif len(gi) == 1:
            # One axis split into several ([B,S,H*D] -> [B,S,H,D], [B,N,3*H*D] -> [B,N,3,H,D]):
            # every factor is explored; the analysis keeps one as the channel carrier.
            for p, j in enumerate(gj):
                outer = math.prod(ys[b] for b in gj[:p])  # type: ignore[misc]
                inner = math.prod(ys[b] for b in gj[p + 1 :])  # type: ignore[misc]
                rels.append(
                    Expand((y.name, j), (x.name, gi[0]), outer, inner, follow_up=True, family=f"{node.name}:{gi[0]}")
                )
        else:
            rels += _regrouped(node, ctx, x, y, xs, ys, gi, gj)
    return rels


def _regrouped(node: gs.Node, ctx: RuleContext, x: gs.Tensor, y: gs.Tensor, xs: tuple, ys: tuple,
               gi: list[int], gj: list[int]) -> list[Relation]:
    """Axes regrouped ([B, 2048, 64] -> [B, 512, 256]): in row-major order the last axis of one
    side is the innermost block of the last axis of the other (256 = 4 x 64), so a feature ``c``
    of the narrower one sits at ``k * 64 + c`` in the wider one. That pair is an Expand (outer =
    the quotient, inner = 1); the other axes of the run are mixed."""
    a, j = gi[-1], gj[-1]
    reason = f"{node.op} '{node.name}' mixes axes {gi} into {gj}"
    rels: list[Relation] = []
    if ys[j] % xs[a] == 0:
        weight = ctx.const(x) is not None
        rels.append(Expand((x.name, a), (y.name, j), ys[j] // xs[a], 1, follow_up=weight))
    elif xs[a] % ys[j] == 0:
        rels.append(Expand((y.name, j), (x.name, a), xs[a] // ys[j], 1, follow_up=True))
    else:
        a = j = -1
    rels += [Opaque((x.name, b), reason) for b in gi if b != a]
    rels += [Opaque((y.name, k), reason) for k in gj if k != j]
    return rels


ShapeSource = tuple
"""Where a shape entry comes from: ``(node reading the constant, input index, flat index)`` for a
constant that can be patched, ``("dim", tensor, axis)`` for the run-time size of an axis, or
``("prod", factors)`` for a product of run-time sizes (``ReduceProd`` of gathered sizes, ``Mul``):
each factor is a tuple of ``(tensor, axis)`` keys whose sizes are equal (``Max`` of two sizes that
``Reshape`` then treats as one axis)."""

#: Ops between ``Shape`` and a ``Reshape`` target that :func:`shape_sources` evaluates entry by entry
#: (``Div`` is evaluated too, but a size divided is not followed: see :func:`sizes_follow`).
SHAPE_ARITHMETIC = ("Cast", "Identity", "Unsqueeze", "Squeeze", "Gather", "Slice", "Concat", "ReduceProd", "Mul", "Max")


def _kind(src: ShapeSource | None) -> str | None:
    """``dim``, ``prod``, ``scaled`` or ``fixed`` for a computed entry; None for a constant's place."""
    return src[0] if src is not None and src and isinstance(src[0], str) else None


def _is_dim(src: ShapeSource) -> bool:
    return isinstance(src[0], str) and src[0] in ("dim", "prod")


def _factors(src: ShapeSource | None) -> tuple[tuple[tuple[str, int], ...], ...] | None:
    """The factors of a run-time entry (a lone size is a product of one factor), else ``None``."""
    if src is None or not _is_dim(src):
        return None
    if src[0] == "prod":
        return src[1]
    return (((src[1], src[2]),),)


def _product(entries: list[tuple[int | None, ShapeSource | None]],
             ctx: RuleContext | ApplyContext | None = None) -> tuple[int | None, ShapeSource | None]:
    """The product of shape entries: constant when all are, else the product of their factors.

    A constant other than 1 times run-time sizes that are all 1 in the analysed shapes (torch's
    ``B * num_heads`` of ``nn.MultiheadAttention``, the batch fixed to 1 for analysis) is that
    constant, scaled by the batch at run time: ``("scaled", factors, where)``, whose constant the
    rewriter sets to the new head count. Any other constant factor is unknown.
    """
    if all(v is not None for v, _ in entries):
        return int(np.prod([v for v, _ in entries], dtype=np.int64)), None
    factors: list = []
    scale: list[tuple[int, ShapeSource | None]] = []
    for v, src in entries:
        f = _factors(src)
        if v == 1:
            continue
        if f is None:
            if v is None:
                return None, None
            scale.append((v, src))
            continue
        factors += f
    if not scale:
        return None, ("prod", tuple(factors))
    if (len(scale) == 1 and scale[0][1] is not None and not _is_dim(scale[0][1]) and ctx is not None
            and all(_size(k, ctx) == 1 for f in factors for k in f)):
        return scale[0][0], ("scaled", tuple(factors), scale[0][1])
    return None, None


def _maximum(
    a: tuple[int | None, ShapeSource | None], b: tuple[int | None, ShapeSource | None], ctx: RuleContext | ApplyContext
) -> tuple[int | None, ShapeSource | None]:
    """``Max`` of two entries, where it provably is a size: ``Max(d, c)`` with ``c <= 1`` is ``d``,
    and ``Max`` of two single sizes equal in the analysed shapes (broadcast partners such as the
    batch·heads of queries and keys) is one factor whose keys a Reshape ties together."""
    if a[0] is not None and b[0] is not None:
        return max(a[0], b[0]), None
    for d, c in ((a, b), (b, a)):
        if c[0] is not None and c[0] <= 1 and _factors(d[1]) is not None:
            return d
    fa, fb = _factors(a[1]), _factors(b[1])
    if fa is None or fb is None or len(fa) != 1 or len(fb) != 1:
        return None, None
    sizes = {_size(k, ctx) for k in fa[0] + fb[0]}
    if len(sizes) != 1 or None in sizes:
        return None, None
    return None, ("prod", (fa[0] + fb[0],))


def _size(key: tuple[str, int], ctx: RuleContext | ApplyContext) -> int | None:
    s = ctx.shapes.get(key[0])
    return None if s is None or key[1] >= len(s) else s[key[1]]


def shape_sources(
    t: gs.Tensor, ctx: RuleContext | ApplyContext, reader: gs.Node, slot: int, depth: int = 0
) -> list[tuple[int | None, ShapeSource | None]] | None:
    """Evaluates a 1-D shape vector entry by entry, remembering where constants come from.

    Each entry is ``(value, source)``: a constant int with the place it can be rewritten (source
    ``None`` when it is computed from constants), a run-time size or product of sizes (see
    :data:`ShapeSource`), or ``(None, None)`` for anything else. Follows Concat, Unsqueeze,
    Squeeze, Cast, Identity, Gather, Slice, ``Reshape(v, [-1])``, ReduceProd, Mul, Max,
    ``ConstantOfShape(Shape(v))`` and ``Where(Equal(..), a, b)`` with a known condition; returns
    ``None`` when even the length is unknown.
    """
    v = ctx.const(t)
    if v is not None:
        flat = np.asarray(v).reshape(-1)
        return [(int(e), (reader, slot, i)) for i, e in enumerate(flat)]
    if depth > 8 or not t.inputs:
        return None
    node = t.inputs[0]
    if node.op in ("Unsqueeze", "Squeeze", "Cast", "Identity"):
        return shape_sources(node.inputs[0], ctx, node, 0, depth + 1)
    if node.op == "Gather" and int(node.attrs.get("axis", 0)) == 0:
        inner = shape_sources(node.inputs[0], ctx, node, 0, depth + 1)
        idx = ctx.const(node.inputs[1])
        if inner is None or idx is None:
            return None
        return [inner[int(i)] for i in np.asarray(idx).reshape(-1)]
    if node.op == "Slice" and node.inputs[0] is not t:
        inner = shape_sources(node.inputs[0], ctx, node, 0, depth + 1)
        starts, ends = ctx.ints(node, 1, "starts"), ctx.ints(node, 2, "ends")
        has_steps = len(node.inputs) > 4 and node.inputs[4].name
        if inner is None or starts is None or ends is None or len(starts) != 1 or has_steps:
            return None
        n = len(inner)
        lo = max(0, min(starts[0] + n if starts[0] < 0 else starts[0], n))
        hi = max(0, min(ends[0] + n if ends[0] < 0 else ends[0], n))
        return inner[lo:hi]
    if node.op == "Shape":
        s = ctx.shape(node.inputs[0])
        if s is None:
            return None
        axes = range(len(s))[int(node.attrs.get("start", 0)) : node.attrs.get("end")]
        return [(None, ("dim", node.inputs[0].name, a)) for a in axes]  # type: ignore[misc]
    if node.op == "ReduceProd" and int(node.attrs.get("noop_with_empty_axes", 0)) == 0:
        axes = ctx.ints(node, 1) if ctx.opset >= 18 else ctx.ints(node, 99, "axes")
        inner = shape_sources(node.inputs[0], ctx, node, 0, depth + 1)
        if inner is None or (axes is not None and [norm_axis(a, 1) for a in axes] != [0]):
            return None
        return [_product(inner)]
    if node.op in ("Mul", "Max") and len(node.inputs) == 2:
        a, b = (shape_sources(i, ctx, node, k, depth + 1) for k, i in enumerate(node.inputs))
        if a is None or b is None or (len(a) != len(b) and 1 not in (len(a), len(b))):
            return None
        n = max(len(a), len(b))
        a, b = a * n if len(a) == 1 else a, b * n if len(b) == 1 else b
        if node.op == "Mul":
            return [_product([ea, eb], ctx) for ea, eb in zip(a, b)]
        return [_maximum(ea, eb, ctx) for ea, eb in zip(a, b)]
    if node.op == "Div" and len(node.inputs) == 2:
        # a head width (``E // num_heads`` read from the hidden size): known in the analysed
        # shapes and fixed at run time (``("fixed",)``); Shape's own rule keeps the size it reads
        # from being pruned, so the value stays right
        a, b = (shape_sources(i, ctx, node, k, depth + 1) for k, i in enumerate(node.inputs))
        if a is None or b is None or len(a) != 1 or len(b) != 1 or not b[0][0]:
            return None
        f = _factors(a[0][1])
        top = a[0][0] if a[0][0] is not None else (
            _size(f[0][0], ctx) if f is not None and len(f) == 1 and len(f[0]) >= 1 else None)
        if top is None:
            return [(None, None)]
        return [(int(top) // int(b[0][0]), None if a[0][0] is not None and a[0][1] is None else ("fixed",))]
    if node.op == "Reshape" and node.inputs[0] is not t and ctx.ints(node, 1) == [-1]:
        return shape_sources(node.inputs[0], ctx, node, 0, depth + 1)
    if node.op == "ConstantOfShape" and isinstance(node.attrs.get("value"), gs.Constant):
        # a vector as long as another shape vector (ones or -1s to compare a target with)
        v = node.inputs[0].inputs[0] if node.inputs[0].inputs else None
        vs = ctx.shape(v.inputs[0]) if v is not None and v.op == "Shape" else None
        fill = np.asarray(node.attrs["value"].values).reshape(-1)
        if vs is None or len(vs) != 1 or vs[0] is None or not np.issubdtype(fill.dtype, np.integer):
            return None
        return [(int(fill[0]), None)] * vs[0]
    if node.op == "Where" and node.inputs[0].inputs and node.inputs[0].inputs[0].op == "Equal":
        # torch's ``expand(B, -1, -1)``: Where(shape == -1, 1, shape) picks per entry
        eq = node.inputs[0].inputs[0]
        parts = [shape_sources(i, ctx, r, k, depth + 1) for r, k, i in
                 ((eq, 0, eq.inputs[0]), (eq, 1, eq.inputs[1]), (node, 1, node.inputs[1]), (node, 2, node.inputs[2]))]
        if any(e is None for e in parts) or len({len(e) for e in parts} - {1}) > 1:  # type: ignore[arg-type]
            return None
        n = max(len(e) for e in parts)  # type: ignore[arg-type]
        u, w, a, b = (e * n if len(e) == 1 else e for e in parts)  # type: ignore[operator,arg-type]
        return [
            (None, None) if ue[0] is None or we[0] is None else (ae if ue[0] == we[0] else be)
            for ue, we, ae, be in zip(u, w, a, b)
        ]
    if node.op == "Concat":
        out: list[tuple[int | None, ShapeSource | None]] = []
        for i, inp in enumerate(node.inputs):
            e = shape_sources(inp, ctx, node, i, depth + 1)
            if e is None:
                return None
            if len(e) == 1 and e[0][1] is not None and _is_dim(e[0][1]) and e[0][1][0] == "dim":
                # a lone run-time size: the whole Concat input can be replaced by a constant
                e = [(None, e[0][1][:3] + (node, i))]
            out += e
        return out
    s = ctx.shape(t)
    if s is not None and len(s) <= 1:
        n = 1 if len(s) == 0 else s[0]
        return None if n is None else [(None, None)] * n
    return None


def following_entries(
    node: gs.Node, ctx: RuleContext, entries: list[tuple[int | None, ShapeSource | None]]
) -> tuple[set[int], list[Relation]]:
    """Entries of a Reshape target computed from run-time sizes that follow pruning by themselves.

    An entry that is a product of sizes (``B·heads`` from ``ReduceProd(Shape(q)[0:2])``, a head
    count read from a weight's shape) keeps meaning the output axis after pruning when the output
    axis is tied to the one factor that is not 1 in the analysed shapes (``Same`` relations, so
    the factor and the axis are cut together), or when the factors are exactly the input axes the
    output axis merges (``x.shape[3] * x.shape[4]`` for ``[.., H, D] -> [.., H*D]``). Factors of
    size 1 (a batch or sequence fixed to 1 for analysis) are never pruned and stay run-time values,
    so batch and sequence stay dynamic. Returns the following entries and the relations to add.
    """
    x, y = node.inputs[0], node.outputs[0]
    xs, ys = ctx.shape(x), ctx.shape(y)
    runs = reshape_runs(xs, ys) if xs is not None and ys is not None else None
    follow: set[int] = set()
    rels: list[Relation] = []
    for j, (_v, src) in enumerate(entries):
        factors = _factors(src)
        if factors is None or ys is None or j >= len(ys):
            continue
        if src[0] == "dim" and len(src) == 5 and src[1:3] != (x.name, j):  # type: ignore[index]
            continue  # a lone size of another tensor: the rewriter makes it a constant instead
        sizes = [{_size(k, ctx) for k in f} for f in factors]
        if any(len(sz) != 1 or None in sz for sz in sizes):
            continue
        big = [f for f, sz in zip(factors, sizes) if sz != {1}]
        if not big:
            if ys[j] == 1:
                follow.add(j)
            continue
        if len(big) == 1:
            follow.add(j)
            rels += [Same(k, (y.name, j)) for k in big[0]]
            continue
        own = [next((k for k in f if k[0] == x.name), None) for f in big]
        run = next((gi for gi, gj in runs or [] if gj == [j]), None)
        if run is not None and None not in own and sorted(k[1] for k in own) == sorted(run):  # type: ignore[union-attr]
            follow.add(j)
            rels += [Same(k, o) for f, o in zip(big, own) for k in f if k != o]  # type: ignore[arg-type]
    return follow, rels


def _is_lone_size(src: ShapeSource | None, node: gs.Node, j: int) -> bool:
    """A whole Concat input that is the run-time size of another tensor's axis (``reshape(B, N, C)``
    with C read from the block input); the Reshape rewriter turns it into a constant."""
    return src is not None and _is_dim(src) and src[0] == "dim" and len(src) == 5 and src[1:3] != (node.inputs[0].name, j)


def sizes_follow(shape_node: gs.Node, axis: int, ctx: RuleContext) -> bool:
    """True when the size of ``axis`` read by ``shape_node`` only ever reaches Reshape targets
    through :data:`SHAPE_ARITHMETIC`, in entries that follow pruning (:func:`following_entries`)
    or that the Reshape rewriter replaces by constants (a lone size of another tensor: its value
    is a static channel count, so the rewriter writes the output axis's size in its place).
    """
    key = (shape_node.inputs[0].name, axis)
    reshapes: list[gs.Node] = []
    stack, seen = [shape_node.outputs[0]], set()
    while stack:
        t = stack.pop()
        if not t.outputs:
            return False
        for c in t.outputs:
            if c.op == "Reshape" and c.inputs[1] is t and c.inputs[0] is not t:
                reshapes.append(c)
            elif c.op in SHAPE_ARITHMETIC and c.outputs[0].name not in seen:
                seen.add(c.outputs[0].name)
                stack.append(c.outputs[0])
            elif c.op not in SHAPE_ARITHMETIC:
                return False
    for r in {id(r): r for r in reshapes}.values():
        entries = shape_sources(r.inputs[1], ctx, r, 1)
        if entries is None or any(v is None and src is None for v, src in entries):
            return False
        follow, _ = following_entries(r, ctx, entries)
        for j, (_v, src) in enumerate(entries):
            f = _factors(src)
            if f is not None and any(key in g for g in f) and j not in follow and not _is_lone_size(src, r, j):
                return False
    return True


@register("Reshape")
def reshape(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, shp, y = node.inputs[0], node.inputs[1], node.outputs[0]
    dynamic_ok = None
    extra: list[Relation] = []
    if ctx.const(shp) is None:
        entries = shape_sources(shp, ctx, node, 1)
        if entries is None:
            return [Opaque(k, f"Reshape '{node.name}': target shape unknown") for k in axes_of(x, ctx)]
        # An output axis may change size only if its entry is -1/0 (inferred or copied) or a
        # constant the rewriter can patch where it is defined; a run-time value would not follow.
        # A run-time entry that is the size of the input's own axis j (``x.shape[:2]``) follows
        # that axis as 0 would; products of sizes follow as :func:`following_entries` says.
        follow, extra = following_entries(node, ctx, entries)
        # a size computed at run time from a width that is not pruned (a head width) stays as is
        extra = extra + [Opaque((y.name, j), f"Reshape '{node.name}': the size of output axis {j} is computed "
                                "at run time from a width that is not pruned")
                         for j, (_v, src) in enumerate(entries) if _kind(src) == "fixed"]
        dynamic_ok = follow | {
            j
            for j, (v, src) in enumerate(entries)
            if v in (-1, 0)
            or (src is not None and not _is_dim(src))
            or (src is not None and _is_dim(src) and src[0] == "dim" and (src[1:3] == (x.name, j) or len(src) == 5))
        }
    return _reshape_relations(node, ctx, x, y, dynamic_ok) + extra


@register("Flatten")
def flatten(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    return _reshape_relations(node, ctx, node.inputs[0], node.outputs[0], None)


@rewriter("Reshape")
def rewrite_reshape(node: gs.Node, ctx: ApplyContext) -> None:
    """Patches the constant entries of the target shape whose output axis changed size."""
    y = node.outputs[0]
    entries = shape_sources(node.inputs[1], ctx, node, 1)
    if entries is None:
        return
    patches: dict[tuple[int, int], tuple[gs.Node, int, np.ndarray]] = {}
    for j, (value, src) in enumerate(entries):
        n = ctx.new_size((y.name, j))
        if n is None and _is_lone_size(src, node, j) and ctx.new_size(src[1:3]) is not None:  # type: ignore[index]
            # the tensor the size is read from lost channels, this axis did not: keep its size
            ys = ctx.shapes.get(y.name)
            n = ys[j] if ys is not None and j < len(ys) else None
        kind = _kind(src)
        if n is None or value in (0, -1) or value == n or src is None or kind == "fixed":
            continue
        if kind == "scaled":  # B * heads: the constant becomes the new head count
            src = src[2]
        elif _is_dim(src):
            if src[1:3] == (node.inputs[0].name, j) or len(src) < 5:
                continue  # the size of the input's own axis: follows by itself
            # a run-time size read from another tensor (``reshape(B, N, C)`` with C from the
            # block input): the pruned width is static, so it becomes a constant
            reader, slot = src[3], src[4]
            like = next((ctx.const(i) for i in reader.inputs if ctx.const(i) is not None), None)
            dtype = like.dtype if like is not None else np.int64
            reader.inputs[slot] = ctx.new_const(f"{reader.name}_size", np.array([n], dtype=dtype))
            continue
        reader, slot, flat = src
        key = (id(reader), slot)
        if key not in patches:
            old = np.array(ctx.const(reader.inputs[slot]))
            patches[key] = (reader, slot, old)
        patches[key][2].reshape(-1)[flat] = n
    for reader, slot, value in patches.values():
        reader.inputs[slot] = ctx.new_const(reader.inputs[slot].name, value)


@register("Concat")
def concat(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    y = node.outputs[0]
    r = ctx.rank(y)
    if r is None:
        return []
    axis = norm_axis(int(node.attrs["axis"]), r)
    rels: list[Relation] = []
    offset = 0
    for t in node.inputs:
        s = ctx.shape(t)
        if s is None or s[axis] is None:
            reason = f"Concat '{node.name}': size of input '{t.name}' unknown"
            return [Opaque(k, reason) for i in node.inputs for k in axes_of(i, ctx)] + [Opaque(k, reason) for k in axes_of(y, ctx)]
        rels.append(Part((y.name, axis), (t.name, axis), offset))
        offset += s[axis]
        rels += [Same((t.name, a), (y.name, a)) for a in range(r) if a != axis]
    return rels


def _split_sizes(node: gs.Node, ctx: RuleContext | ApplyContext, dim: int) -> list[int] | None:
    if ctx.opset >= 13:
        v = ctx.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1].name else None
        if v is not None:
            return [int(s) for s in np.asarray(v).reshape(-1)]
        if len(node.inputs) > 1 and node.inputs[1].name:
            return None
    elif "split" in node.attrs:
        return [int(s) for s in node.attrs["split"]]
    n = len(node.outputs)
    step = -(-dim // n)
    return [min(step, dim - i * step) for i in range(n)]


@register("Split")
def split(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x = node.inputs[0]
    xs = ctx.shape(x)
    if xs is None:
        return []
    axis = norm_axis(int(node.attrs.get("axis", 0)), len(xs))
    sizes = _split_sizes(node, ctx, xs[axis]) if xs[axis] is not None else None
    if sizes is None:
        return [Opaque((x.name, axis), f"Split '{node.name}': sizes unknown")]
    rels: list[Relation] = []
    offset = 0
    for y, n in zip(node.outputs, sizes):
        rels.append(Part((x.name, axis), (y.name, axis), offset))
        offset += n
        rels += [Same((x.name, a), (y.name, a)) for a in range(len(xs)) if a != axis]
    return rels


@rewriter("Split")
def rewrite_split(node: gs.Node, ctx: ApplyContext) -> None:
    x = node.inputs[0]
    xs = ctx.shapes.get(x.name)
    if xs is None:
        return
    axis = norm_axis(int(node.attrs.get("axis", 0)), len(xs))
    if ctx.new_size((x.name, axis)) is None:
        return
    old = _split_sizes(node, ctx, xs[axis]) or []
    new = [ctx.new_size((y.name, axis)) or n for y, n in zip(node.outputs, old)]
    if ctx.opset >= 13:
        split_t = ctx.new_const(f"{node.name}_split", np.array(new, dtype=np.int64))
        if len(node.inputs) > 1:
            node.inputs[1] = split_t
        else:
            node.inputs.append(split_t)
        node.attrs.pop("num_outputs", None)
    else:
        node.attrs["split"] = new


def _slice_params(node: gs.Node, ctx: RuleContext | ApplyContext, rank: int):
    if ctx.opset >= 10:
        starts, ends = ctx.ints(node, 1), ctx.ints(node, 2)  # type: ignore[union-attr]
        has_axes = len(node.inputs) > 3 and node.inputs[3].name
        has_steps = len(node.inputs) > 4 and node.inputs[4].name
        axes = ctx.ints(node, 3) if has_axes else list(range(len(starts or [])))  # type: ignore[union-attr]
        steps = ctx.ints(node, 4) if has_steps else [1] * len(starts or [])  # type: ignore[union-attr]
    else:
        starts, ends = node.attrs.get("starts"), node.attrs.get("ends")
        axes = node.attrs.get("axes", list(range(len(starts or []))))
        steps = [1] * len(starts or [])
    if starts is None or ends is None or axes is None or steps is None:
        return None
    return [
        (norm_axis(int(a), rank), int(s), int(e), int(st))
        for a, s, e, st in zip(axes, starts, ends, steps)
    ]


def _clamp(v: int, dim: int) -> int:
    if v < 0:
        v += dim
    return max(0, min(v, dim))


@register("Slice")
def slice_(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    xs = ctx.shape(x)
    if xs is None:
        return []
    params = _slice_params(node, ctx, len(xs))
    if params is None:
        # bounds known only at run time: the sliced axes are opaque, the others pass through
        axes = ctx.ints(node, 3) if ctx.opset >= 10 else node.attrs.get("axes")
        cut = None if axes is None else {norm_axis(int(a), len(xs)) for a in axes}
        reason = f"Slice '{node.name}': bounds computed at run time"
        return [
            Same((x.name, a), (y.name, a)) if cut is not None and a not in cut else Opaque((x.name, a), reason)
            for a in range(len(xs))
        ]
    sliced = {a: (s, e, st) for a, s, e, st in params}
    rels: list[Relation] = []
    for a, d in enumerate(xs):
        if a not in sliced:
            rels.append(Same((x.name, a), (y.name, a)))
            continue
        s, e, st = sliced[a]
        if st != 1 or d is None:
            rels.append(Opaque((x.name, a), f"Slice '{node.name}': step {st} on axis {a}"))
            continue
        rels.append(Part((x.name, a), (y.name, a), _clamp(s, d)))
    return rels


@rewriter("Slice")
def rewrite_slice(node: gs.Node, ctx: ApplyContext) -> None:
    x = node.inputs[0]
    xs = ctx.shapes.get(x.name)
    if xs is None:
        return
    params = _slice_params(node, ctx, len(xs))
    if params is None:
        return
    changed = False
    new_starts, new_ends = [], []
    for a, s, e, _st in params:
        kept = ctx.kept((x.name, a))
        d = xs[a]
        if kept is None or d is None:
            new_starts.append(s)
            new_ends.append(e)
            continue
        s0, e0 = _clamp(s, d), _clamp(e if e < _INT64_MAX else d, d)
        ns = int(np.count_nonzero(kept < s0))
        ne = ns + int(np.count_nonzero((kept >= s0) & (kept < e0)))
        new_starts.append(ns)
        new_ends.append(ne)
        changed = True
    if not changed:
        return
    if ctx.opset >= 10:
        # starts, ends, axes and steps share one integer type (tf2onnx writes int32)
        old = ctx.const(node.inputs[1])
        dtype = np.int32 if old is not None and np.asarray(old).dtype == np.int32 else np.int64
        node.inputs[1] = ctx.new_const(f"{node.name}_starts", np.array(new_starts, dtype=dtype))
        node.inputs[2] = ctx.new_const(f"{node.name}_ends", np.array(new_ends, dtype=dtype))
    else:
        node.attrs["starts"] = new_starts
        node.attrs["ends"] = new_ends


def _per_axis_factor(node: gs.Node, ctx: RuleContext, rank: int):
    """Scales and sizes of Resize/Upsample spread over all axes (``None`` when not given)."""
    if node.op == "Upsample":
        v = ctx.const(node.inputs[1]) if ctx.opset >= 9 else node.attrs.get("scales")
        scales = None if v is None else [float(s) for s in np.asarray(v).reshape(-1)]
        return scales, None
    if ctx.opset < 11:
        scales_t, sizes_t = node.inputs[1], None
    else:
        scales_t = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
        sizes_t = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3].name else None
    axes = node.attrs.get("axes")

    def spread(t: gs.Tensor | None, fill: float | None) -> list | None:
        v = ctx.const(t)
        if v is None:
            return None
        vals = list(np.asarray(v).reshape(-1))
        if axes is None:
            return vals if len(vals) == rank else None
        full = [fill] * rank
        for a, val in zip(axes, vals):
            full[norm_axis(int(a), rank)] = val
        return full

    return spread(scales_t, 1.0), spread(sizes_t, None)


@register("Resize", "Upsample")
def resize(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    xs = ctx.shape(x)
    if xs is None:
        return []
    scales, sizes = _per_axis_factor(node, ctx, len(xs))
    rels: list[Relation] = []
    for a, d in enumerate(xs):
        same = (scales is not None and float(scales[a]) == 1.0) or (
            sizes is not None and sizes[a] is not None and int(sizes[a]) == d
        )
        if same:
            rels.append(Same((x.name, a), (y.name, a)))
        else:
            rels.append(Opaque((x.name, a), f"{node.op} '{node.name}' resizes axis {a}"))
    return rels


@rewriter("Resize")
def rewrite_resize(node: gs.Node, ctx: ApplyContext) -> None:
    if len(node.inputs) < 4 or not node.inputs[3].name:
        return
    sizes = ctx.const(node.inputs[3])
    if sizes is None:
        return
    x = node.inputs[0]
    new = np.array(sizes, dtype=np.int64).reshape(-1)
    axes = node.attrs.get("axes") or list(range(len(new)))
    changed = False
    for i, a in enumerate(axes):
        n = ctx.new_size((x.name, int(a)))
        if n is not None:
            new[i] = n
            changed = True
    if changed:
        node.inputs[3] = ctx.new_const(f"{node.name}_sizes", new)


@register("Pad")
def pad(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return []
    pads = ctx.ints(node, 1) if ctx.opset >= 11 else node.attrs.get("pads")
    axes = list(range(r))
    if ctx.opset >= 18 and len(node.inputs) > 3 and node.inputs[3].name:
        given = ctx.ints(node, 3)
        axes = None if given is None else [norm_axis(a, r) for a in given]
    if pads is None or axes is None:
        return [Opaque((x.name, a), f"Pad '{node.name}': pads computed at run time") for a in range(r)]
    n = len(axes)
    padded = {axes[i] for i in range(n) if int(pads[i]) != 0 or int(pads[i + n]) != 0}
    rels: list[Relation] = []
    for a in range(r):
        if a in padded:
            rels.append(Opaque((x.name, a), f"Pad '{node.name}' pads axis {a}"))
        else:
            rels.append(Same((x.name, a), (y.name, a)))
    for t in node.inputs[2:3]:
        if t.name:
            rels += [Free(k) for k in axes_of(t, ctx)]
    return rels


@register("Expand")
def expand(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    xs, ys = ctx.shape(x), ctx.shape(y)
    if xs is None or ys is None:
        return []
    # the target, constant or built at run time (``cls_token.expand(B, -1, -1)``), entry by entry
    entries = shape_sources(node.inputs[1], ctx, node, 1)
    t = None if entries is None else [v for v, _ in entries]
    rels: list[Relation] = []
    for a, d in enumerate(xs):
        j = a + len(ys) - len(xs)
        ti = None if t is None else j - (len(ys) - len(t))
        # an entry of 1 keeps the input's size; an entry equal to it (jax2tf's BroadcastTo of
        # LayerNorm statistics to [B, 1, C]) does too, and the rewriter sets it to the new width
        # where it can be patched
        keeps = ti is None or ti < 0 or t[ti] == 1 or (
            t[ti] == d and entries[ti][1] is not None)  # type: ignore[index]
        if d == ys[j] and t is not None and keeps:
            rels.append(Same((x.name, a), (y.name, j)))
        else:
            rels.append(Opaque((x.name, a), f"Expand '{node.name}' fixes the size of axis {a}"))
    if t is not None:
        # an axis the input broadcasts into (absent or of size 1 there): the output's channels
        # there are copies, so any of them may go; the rewriter sets the target entry
        for j, n in enumerate(ys):
            a = j - (len(ys) - len(xs))
            ti = j - (len(ys) - len(t))
            broadcast = a < 0 or (xs[a] == 1 and n not in (None, 1))
            if broadcast and 0 <= ti < len(t) and t[ti] == n and n is not None:
                rels.append(Free((y.name, j)))
    return rels


@rewriter("Expand")
def rewrite_expand(node: gs.Node, ctx: ApplyContext) -> None:
    """Sets the target entries of broadcast axes whose output lost channels (as for Reshape)."""
    rewrite_reshape(node, ctx)
