"""Pruning plans: which channels go.

A plan is a boolean per channel of a :class:`~onnxprune.depgraph.DepGraph`. The uniform planner
applies the ratio to every *stratum* of every group — channels that sit in exactly the same
spaces, e.g. the output channels of one Conv, or one input of a Concat — so every layer loses the
same share. Per stratum of ``n`` channels it removes ``n·ratio`` rounded to the nearest integer
(halves up), so the share removed is as close to the nominal ratio as whole channels allow; then
it keeps at least ``min_channels`` and rounds the kept count up so the kept *weight width* is a
multiple of ``round_to`` (never above ``n``; a channel that spans several weight elements, such as
an attention head of width 64, counts as that many), and removes the least important prunable ones; ties break by channel index,
so plans are deterministic.

The global planner (:func:`global_plan`) instead ranks every prunable channel of the model by its
normalized score (:func:`~onnxprune.importance.normalized_importance`) and removes the lowest
``ratio`` of them, so layers that matter less lose more. Each stratum still keeps at least
``min_channels`` and a multiple of ``round_to`` (rounding up, i.e. removing fewer), so the share
actually removed can fall slightly below ``ratio``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .depgraph import DepGraph, Group
from .errors import PlanError, UsageError
from .importance import channel_importance, normalized_importance
from .profile import CostModel

#: Kept channel counts are a multiple of this unless told otherwise: onnxruntime's CPU kernels
#: (MLAS) lay channels out in blocks of 16 on AVX-512 and 8 on AVX2, and CUDA's tensor-core tiles
#: want multiples of 8, so widths like 17 or 45 run slower than the next full block and an
#: unrounded pruned model can be slower than its original. 16 is a full block everywhere; with
#: 8, a 24-wide layer runs as 32 on AVX-512 (EfficientNet-B0 at ratio 0.3: latency 0.736x of the
#: original with 8, 0.697x with 16, for fewer channels removed; docs/benchmarks.md `defaults`).
DEFAULT_ROUND_TO = 16

__all__ = ["DEFAULT_ROUND_TO", "Plan", "GroupPlan", "uniform_plan", "global_plan", "group_removal", "channel_step",
           "plan_from_channels", "parse_target", "ratio_for_target"]


@dataclass
class GroupPlan:
    group: int
    before: int
    after: int


@dataclass
class Plan:
    """Channels to remove (bool per channel) and a per-group summary."""

    removed: np.ndarray
    groups: list[GroupPlan] = field(default_factory=list)

    @property
    def n_removed(self) -> int:
        return int(self.removed.sum())


def _summarize(dg: DepGraph, removed: np.ndarray) -> list[GroupPlan]:
    return [
        GroupPlan(g.id, g.size, g.size - int(removed[g.channels].sum()))
        for g in dg.groups
        if removed[g.channels].any()
    ]


def uniform_plan(
    dg: DepGraph,
    ratio: float,
    criterion: str = "l1",
    round_to: int = 1,
    min_channels: int = 1,
    seed: int = 0,
    importance: np.ndarray | None = None,
) -> Plan:
    """Removes ``ratio`` of the channels of every stratum of every group."""
    _check_options(ratio, round_to, min_channels)
    score = channel_importance(dg, criterion, seed) if importance is None else importance
    removed = np.zeros(dg.n_channels, dtype=bool)
    for g in dg.groups:
        if not g.is_barrier:
            removed[group_removal(g, ratio, score, round_to, min_channels)] = True
    return Plan(removed, _summarize(dg, removed))


def group_removal(g: Group, ratio: float, score: np.ndarray, round_to: int = 1,
                  min_channels: int = 1) -> np.ndarray:
    """The channels of ``g`` that ``ratio`` removes: per stratum, the least important ones.

    Each stratum of ``n`` channels loses ``round(n·ratio)`` (halves up), keeps at least
    ``min_channels`` and a kept count rounded up to a multiple of :func:`channel_step`; ties in
    ``score`` go to the lower channel id. Returns sorted channel ids.
    """
    round_to = channel_step(g, round_to)
    out = []
    for s in np.unique(g.strata):
        idx = np.flatnonzero(g.strata == s)
        n = len(idx)
        keep = max(min_channels, n - math.floor(n * ratio + 0.5 + 1e-9))
        keep = min(n, math.ceil(keep / round_to) * round_to)
        chans = g.channels[idx[g.prunable[idx]]]
        n_remove = min(n - keep, len(chans))
        if n_remove > 0:
            order = np.lexsort((chans, score[chans]))
            out.append(chans[order[:n_remove]])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def channel_step(g: Group, round_to: int) -> int:
    """The multiple a kept channel count of ``g`` rounds to so its weight width is a multiple of
    ``round_to``: ``round_to`` for plain channels, 1 for 64-wide attention heads."""
    return round_to // math.gcd(round_to, max(1, g.unit))


def _check_options(ratio: float, round_to: int, min_channels: int) -> None:
    if not 0.0 <= ratio < 1.0:
        raise PlanError(f"--ratio must be in [0, 1), got {ratio}")
    if round_to < 1:
        raise PlanError(f"--round-to must be >= 1, got {round_to}")
    if min_channels < 1:
        raise PlanError(f"--min-channels must be >= 1, got {min_channels}")


def global_plan(
    dg: DepGraph,
    ratio: float,
    criterion: str = "l1",
    round_to: int = 1,
    min_channels: int = 1,
    seed: int = 0,
    importance: np.ndarray | None = None,
) -> Plan:
    """Removes the ``ratio`` of all prunable channels with the lowest normalized scores."""
    _check_options(ratio, round_to, min_channels)
    score = channel_importance(dg, criterion, seed) if importance is None else importance
    norm = normalized_importance(dg, score)
    # Every prunable channel with its stratum's capacity (how many it may lose at most).
    stratum_of = np.full(dg.n_channels, -1, dtype=np.int64)
    sizes: list[int] = []
    caps: list[int] = []
    steps: list[int] = []
    for g in dg.groups:
        if g.is_barrier:
            continue
        for s in np.unique(g.strata):
            idx = np.flatnonzero(g.strata == s)
            n = len(idx)
            chans = g.channels[idx[g.prunable[idx]]]
            keep = min(n, max(min_channels, 1))
            stratum_of[chans] = len(sizes)
            steps.append(channel_step(g, round_to))
            sizes.append(n)
            caps.append(min(n - keep, len(chans)))
    cand = np.flatnonzero(stratum_of >= 0)
    target = int(round(ratio * len(cand)))
    order = cand[np.lexsort((cand, norm[cand]))]
    taken = np.zeros(len(sizes), dtype=np.int64)
    chosen: list[list[int]] = [[] for _ in sizes]
    n_taken = 0
    for ch in order:
        if n_taken >= target:
            break
        st = stratum_of[ch]
        if taken[st] < caps[st]:
            taken[st] += 1
            chosen[st].append(int(ch))
            n_taken += 1
    removed = np.zeros(dg.n_channels, dtype=bool)
    for st, chans in enumerate(chosen):
        if not chans:
            continue
        keep = sizes[st] - len(chans)
        keep = min(sizes[st], math.ceil(keep / steps[st]) * steps[st])
        n_remove = sizes[st] - keep
        removed[chans[:n_remove]] = True  # chosen in ascending score order
    return Plan(removed, _summarize(dg, removed))


def plan_from_channels(dg: DepGraph, channels: np.ndarray | list[int]) -> Plan:
    """A plan removing exactly the given channel ids (frozen ones are refused)."""
    removed = np.zeros(dg.n_channels, dtype=bool)
    removed[np.asarray(channels, dtype=np.int64)] = True
    bad = removed & dg.channel_frozen
    if bad.any():
        raise PlanError(f"{int(bad.sum())} requested channels are frozen by barriers")
    for g in dg.groups:
        for s in np.unique(g.strata):
            idx = g.channels[g.strata == s]
            if removed[idx].all():
                raise PlanError(f"plan would remove every channel of a stratum in group {g.id}")
    return Plan(removed, _summarize(dg, removed))


# --------------------------------------------------------------------- sizing by cost
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_target(text: str | None, what: str, unit: str | None = None) -> tuple[str, float] | None:
    """``0.5x`` -> ("ratio", 0.5); ``12ms`` -> ("abs", 12.0); ``1.2G`` -> ("abs", 1.2e9)."""
    if text is None:
        return None
    t = text.strip().lower()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*x", t)
    if m:
        v = float(m.group(1))
        if not 0 < v <= 1:
            raise UsageError(f"--target-{what} {text}: a ratio must be in (0, 1]")
        return ("ratio", v)
    if unit == "ms":
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s)", t)
        if not m:
            raise UsageError(f"--target-{what} {text}: expected a ratio such as 0.5x or a time such as 12ms")
        v = float(m.group(1)) * (1e3 if m.group(2) == "s" else 1.0)
    else:
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kmgt]?)", t)
        if not m:
            raise UsageError(f"--target-{what} {text}: expected a ratio such as 0.5x or a count such as 1.2G")
        v = float(m.group(1)) * _SUFFIX[m.group(2)]
    if v <= 0:
        raise UsageError(f"--target-{what} {text}: must be positive")
    return ("abs", v)


def ratio_for_target(
    dg: DepGraph,
    make: Callable[..., Plan],
    score: np.ndarray,
    cost: CostModel,
    target_macs: float | None = None,
    target_params: float | None = None,
    round_to: int = 1,
    min_channels: int = 1,
) -> tuple[float, bool]:
    """The smallest ratio whose plan (``make``: uniform or global) meets every absolute target.

    Bisection: the channels a planner removes grow with the ratio, so MACs and params only
    fall. Returns ``(ratio, met)``; when even the largest ratio misses (barriers freeze too
    much), that ratio and ``False``.
    """
    def fits(r: float) -> bool:
        macs, params = cost.macs_params(make(dg, r, round_to=round_to, min_channels=min_channels,
                                             importance=score).removed)
        return (target_macs is None or macs <= target_macs) and (target_params is None or params <= target_params)

    lo, hi = 0.0, 0.95
    if fits(lo):
        return lo, True
    if not fits(hi):
        return hi, False
    for _ in range(24):  # 0.95 / 2**24: far below one channel of any layer
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi, True
