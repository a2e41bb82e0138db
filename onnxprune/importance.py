"""Channel importance scores.

A channel's magnitude score sums over every weight that follows it anywhere in its group — the
producing filters, the consuming filters' input slices, biases, normalization parameters — so
a channel shared by a residual stage is judged by all the layers it feeds:

- ``l1``: ``s_c = Σ_W Σ |W[c, ...]|``;  ``l2``: ``s_c = Σ_W Σ W[c, ...]²``;
- ``bn``: ``s_c = Σ |γ_c|`` over BatchNormalization/InstanceNormalization scales in the group
  (network-slimming); groups without a normalization scale fall back to ``l1``;
- ``random``: seeded uniform scores, the baseline every criterion should beat.
"""

from __future__ import annotations

import logging

import numpy as np

from .depgraph import DepGraph
from .errors import PlanError
from .graph import const_value

__all__ = ["CRITERIA", "channel_importance"]

log = logging.getLogger(__name__)

CRITERIA = ("l1", "l2", "bn", "random")


def _magnitude(dg: DepGraph, power: int) -> np.ndarray:
    score = np.zeros(dg.n_channels, dtype=np.float64)
    tensors = dg.model.graph.tensors()
    for key, sp in dg.spaces.items():
        if not sp.const or sp.size == 0:
            continue
        value = const_value(tensors[key[0]])
        if value is None or not np.issubdtype(value.dtype, np.floating) and value.dtype.kind != "V":
            continue
        np.add.at(score, dg.space_channels(key), _atom_sums(value, key[1], power))
    return score


def _atom_sums(value: np.ndarray, axis: int, power: int, block_bytes: int = 16 << 20) -> np.ndarray:
    """``Σ |v|^power`` over every axis but ``axis``, in float64, a few MB at a time.

    Blocks along ``axis`` bound the temporaries (a float64 copy of a whole 256 MB weight would
    cost 512 MB more, three times over).
    """
    n = value.shape[axis]
    other = tuple(a for a in range(value.ndim) if a != axis)
    per_atom = max(1, value.size // max(n, 1)) * 8
    step = max(1, block_bytes // per_atom)
    out = np.empty(n, dtype=np.float64)
    index: list[slice] = [slice(None)] * value.ndim
    for s in range(0, n, step):
        index[axis] = slice(s, min(n, s + step))
        blk = np.asarray(value[tuple(index)], dtype=np.float64)
        blk = np.abs(blk) if power == 1 else np.square(blk)
        out[s : s + step] = blk.sum(axis=other) if other else blk
    return out


def _bn_scale(dg: DepGraph) -> np.ndarray:
    score = np.full(dg.n_channels, np.nan)
    graph_tensors = dg.model.graph.tensors()
    for node in dg.model.graph.nodes:
        if node.op not in ("BatchNormalization", "InstanceNormalization"):
            continue
        gamma = node.inputs[1]
        key = (gamma.name, 0)
        if key not in dg.spaces:
            continue
        value = const_value(graph_tensors[gamma.name])
        if value is None:
            continue
        chans = dg.space_channels(key)
        add = np.abs(value.astype(np.float64).reshape(-1))
        base = np.where(np.isnan(score[chans]), 0.0, score[chans])
        score[chans] = base + add
    return score


def channel_importance(dg: DepGraph, criterion: str = "l1", seed: int = 0) -> np.ndarray:
    """Importance of every channel of ``dg`` (higher = keep)."""
    if criterion not in CRITERIA:
        raise PlanError(f"unknown criterion '{criterion}' (choose from {', '.join(CRITERIA)})")
    if criterion == "random":
        return np.random.default_rng(seed).random(dg.n_channels)
    if criterion in ("l1", "l2"):
        return _magnitude(dg, 1 if criterion == "l1" else 2)
    bn = _bn_scale(dg)
    missing = np.isnan(bn)
    if missing.any():
        fallback_groups = np.unique(dg.channel_group[missing & ~dg.channel_frozen])
        if len(fallback_groups):
            log.info("%d groups have no normalization scale; scored by l1", len(fallback_groups))
        l1 = _magnitude(dg, 1)
        # Scores are compared only within a group, so mixing is harmless: a group is either all
        # BN-scored or, where any channel lacks a scale, wholly l1-scored.
        for g in np.unique(dg.channel_group[missing]):
            if g < 0:
                continue
            chans = dg.groups[g].channels
            bn[chans] = l1[chans]
    return bn
