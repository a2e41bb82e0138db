"""Channel rules: one op type, one small function, registered in a table.

A *rule* looks at one node and declares, as data, how the axes of its inputs and outputs relate.
The dependency graph (:mod:`onnxprune.depgraph`) follows those declarations from the axes that
carry channels; a generic applier (:mod:`onnxprune.apply`) slices every constant that ends up in a
pruned space. The relation kinds are:

- :class:`Same` — atom *i* of one space is atom *i* of the other (elementwise ops, BatchNorm, the
  weight axis that follows a Conv's output channels).
- :class:`Part` — one space is a contiguous part of another (Concat inputs, Split/Slice outputs).
- :class:`Expand` — every atom of a coarse space is a block of atoms of a fine space
  (Flatten of C×H×W: one channel → H·W features; a grouped Conv's group → its channels).
- :class:`Free` — the node uses that axis without tying channels to anything (a broadcast input,
  an axis a ``Shape`` node never reads).
- :class:`Opaque` — the node mixes or reads that axis in a way nobody may prune; the reason is kept
  and shown by ``onnxprune analyze``.

A node whose op type has no rule is a barrier for every axis that reaches it. Rules that must
also rewrite attributes or shape constants after pruning (Conv ``group``, Reshape shapes, Split
sizes, Slice bounds) register a *rewriter* for the same op type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..graph import const_value

__all__ = [
    "SpaceKey",
    "Same",
    "Part",
    "Expand",
    "Free",
    "Opaque",
    "Relation",
    "RuleContext",
    "ApplyContext",
    "register",
    "rewriter",
    "find_rule",
    "find_rewriter",
    "registered_ops",
]

SpaceKey = tuple[str, int]
"""A channel space: ``(tensor name, axis)``; axes are non-negative."""


@dataclass(frozen=True)
class Same:
    a: SpaceKey
    b: SpaceKey
    #: A seed marks an axis that owns weights (Conv/Gemm/BN channels); analysis starts there.
    seed: bool = False


@dataclass(frozen=True)
class Part:
    whole: SpaceKey
    part: SpaceKey
    offset: int


@dataclass(frozen=True)
class Expand:
    coarse: SpaceKey
    fine: SpaceKey
    outer: int
    inner: int
    #: Whether reaching the fine space may create the coarse space. A grouped Conv's group space
    #: is always created; for Flatten/Reshape the coarse side must carry channels already.
    follow_up: bool = False
    seed: bool = False
    #: Expands sharing a family split one fine axis into factors ([B,S,H*D] -> [B,S,H,D]). A
    #: channel of the fine axis can follow only one factor; the analysis keeps the outermost
    #: factor that is not frozen (the heads) and freezes the others.
    family: str | None = None


@dataclass(frozen=True)
class Free:
    space: SpaceKey


@dataclass(frozen=True)
class Opaque:
    space: SpaceKey
    reason: str


Relation = Same | Part | Expand | Free | Opaque


class _Reader:
    """Constant lookups shared by rules and rewriters."""

    opset: int
    shapes: dict[str, tuple[int | None, ...]]

    def shape(self, t: gs.Tensor) -> tuple[int | None, ...] | None:
        """Static shape of ``t`` (a constant's own shape; otherwise as analysed)."""
        if isinstance(t, gs.Constant):
            return tuple(int(d) for d in t.shape)
        return self.shapes.get(t.name)

    def rank(self, t: gs.Tensor) -> int | None:
        s = self.shape(t)
        return None if s is None else len(s)

    def const(self, t: gs.Tensor | None) -> np.ndarray | None:
        """The value of a constant; also of a ``Cast`` of a small constant (the float16
        converter casts a Resize's scales, a shape vector, back to float32 this way)."""
        if t is None or not t.name:
            return None
        v = const_value(t)
        if v is None and len(t.inputs) == 1 and t.inputs[0].op == "Cast" and t.inputs[0].inputs:
            src = const_value(t.inputs[0].inputs[0])
            to = t.inputs[0].attrs.get("to")
            if src is not None and src.size <= 64 and to is not None:
                try:
                    v = src.astype(onnx.helper.tensor_dtype_to_np_dtype(int(to)))
                except (TypeError, ValueError, KeyError):
                    v = None
        return v

    def weight(self, t: gs.Tensor | None) -> bool:
        """A constant, or a tensor ``ConstantOfShape`` makes at run time (weight-free zoo graphs
        store their weights so): a weight whose axes seed channel spaces."""
        if self.const(t) is not None:
            return True
        return t is not None and len(t.inputs) == 1 and t.inputs[0].op == "ConstantOfShape"

    def ints(self, node: gs.Node, index: int, attr: str | None = None) -> list[int] | None:
        """An integer list given as input ``index`` (new opsets) or attribute ``attr`` (old)."""
        if index < len(node.inputs) and node.inputs[index].name:
            v = self.const(node.inputs[index])
            return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]
        if attr is not None and attr in node.attrs:
            return [int(x) for x in np.asarray(node.attrs[attr]).reshape(-1)]
        return None


@dataclass
class RuleContext(_Reader):
    """What a rule may ask about the model: static shapes, constant values, the opset."""

    shapes: dict[str, tuple[int | None, ...]]
    opset: int
    #: Let normalizations over the channel axis (LayerNorm, RMSNorm statistics) pass channels
    #: through: pruning the residual width of a transformer. Lossy by nature, so opt-in.
    prune_hidden: bool = False
    virtual_sizes: dict[SpaceKey, int] = field(default_factory=dict)

    def virtual(self, node: gs.Node, tag: str, size: int) -> SpaceKey:
        """A space that belongs to no tensor (the groups of a grouped Conv)."""
        key = (f"{node.name}#{tag}", 0)
        self.virtual_sizes[key] = size
        return key


class ApplyContext(_Reader):
    """What a rewriter may ask after planning: which atoms of each space are kept."""

    def __init__(
        self,
        kept: dict[SpaceKey, np.ndarray],
        sizes: dict[SpaceKey, int],
        shapes: dict[str, tuple[int | None, ...]],
        opset: int,
    ) -> None:
        self._kept = kept
        self._sizes = sizes
        self.shapes = shapes
        self.opset = opset
        self._counter = 0

    def kept(self, key: SpaceKey) -> np.ndarray | None:
        """Indices kept in ``key``, or ``None`` when the space is untouched."""
        return self._kept.get(key)

    def new_size(self, key: SpaceKey) -> int | None:
        k = self._kept.get(key)
        return None if k is None else len(k)

    def new_const(self, base: str, value: np.ndarray, share: bool = False) -> gs.Constant:
        """A fresh constant (never edits a possibly shared one in place). With ``share``, readers
        of one constant that get the same new value get one new constant (shape vectors)."""
        value = np.asarray(value)
        key = (base, value.dtype.str, value.shape, value.tobytes()) if share else None
        memo = self.__dict__.setdefault("_shared", {})
        if key is not None and key in memo:
            return memo[key]
        self._counter += 1
        c = gs.Constant(f"{base}__pruned{self._counter}", value)
        if key is not None:
            memo[key] = c
        return c


RuleFn = Callable[[gs.Node, RuleContext], list[Relation]]
RewriteFn = Callable[[gs.Node, ApplyContext], None]

_RULES: dict[tuple[str, str], list[tuple[int, int, RuleFn]]] = {}
_REWRITERS: dict[tuple[str, str], RewriteFn] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(
    *ops: str, domain: str = "", since: int = 1, until: int = 10_000
) -> Callable[[RuleFn], RuleFn]:
    """Registers a rule for ``ops`` of ``domain`` valid for opsets ``since..until``."""

    def deco(fn: RuleFn) -> RuleFn:
        for op in ops:
            _RULES.setdefault((_norm_domain(domain), op), []).append((since, until, fn))
        return fn

    return deco


def rewriter(*ops: str, domain: str = "") -> Callable[[RewriteFn], RewriteFn]:
    """Registers the attribute/constant rewriter of ``ops`` (runs after weights are sliced)."""

    def deco(fn: RewriteFn) -> RewriteFn:
        for op in ops:
            _REWRITERS[(_norm_domain(domain), op)] = fn
        return fn

    return deco


def find_rule(node: gs.Node, opset: int) -> RuleFn | None:
    domain = _norm_domain(getattr(node, "domain", "") or "")
    for since, until, fn in _RULES.get((domain, node.op), []):
        if since <= opset <= until:
            return fn
    return None


def find_rewriter(node: gs.Node) -> RewriteFn | None:
    domain = _norm_domain(getattr(node, "domain", "") or "")
    return _REWRITERS.get((domain, node.op))


def registered_ops() -> list[tuple[str, str]]:
    return sorted(_RULES)


def axes_of(t: gs.Tensor, ctx: RuleContext) -> list[SpaceKey]:
    """Every ``(tensor, axis)`` key of ``t`` (empty when its rank is unknown)."""
    r = ctx.rank(t)
    return [] if r is None or not t.name else [(t.name, a) for a in range(r)]


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _load_builtin_rules() -> None:
    from . import conv, elementwise, gather, linear, norm, pool, quant, shape_ops  # noqa: F401


_load_builtin_rules()
