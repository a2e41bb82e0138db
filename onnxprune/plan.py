"""Pruning plans: which channels go.

A plan is a boolean per channel of a :class:`~onnxprune.depgraph.DepGraph`. The uniform planner
applies the ratio to every *stratum* of every group — channels that sit in exactly the same
spaces, e.g. the output channels of one Conv, or one input of a Concat — so every layer loses the
same share. Per stratum of ``n`` channels it removes ``n·ratio`` rounded to the nearest integer
(halves up), so the share removed is as close to the nominal ratio as whole channels allow; then
it keeps at least ``min_channels`` and rounds the kept count up to a multiple of ``round_to``
(never above ``n``), and removes the least important prunable ones; ties break by channel index,
so plans are deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .depgraph import DepGraph
from .errors import PlanError
from .importance import channel_importance

__all__ = ["Plan", "GroupPlan", "uniform_plan", "plan_from_channels"]


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
    if not 0.0 <= ratio < 1.0:
        raise PlanError(f"--ratio must be in [0, 1), got {ratio}")
    if round_to < 1:
        raise PlanError(f"--round-to must be >= 1, got {round_to}")
    if min_channels < 1:
        raise PlanError(f"--min-channels must be >= 1, got {min_channels}")
    score = channel_importance(dg, criterion, seed) if importance is None else importance
    removed = np.zeros(dg.n_channels, dtype=bool)
    for g in dg.groups:
        if g.is_barrier:
            continue
        for s in np.unique(g.strata):
            idx = np.flatnonzero(g.strata == s)
            n = len(idx)
            keep = max(min_channels, n - math.floor(n * ratio + 0.5 + 1e-9))
            keep = min(n, math.ceil(keep / round_to) * round_to)
            chans = g.channels[idx[g.prunable[idx]]]
            n_remove = min(n - keep, len(chans))
            if n_remove <= 0:
                continue
            order = np.lexsort((chans, score[chans]))
            removed[chans[order[:n_remove]]] = True
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
