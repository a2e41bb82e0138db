"""Channel importance scores.

A channel's magnitude score sums over every weight that follows it anywhere in its group — the
producing filters, the consuming filters' input slices, biases, normalization parameters — so
a channel shared by a residual stage is judged by all the layers it feeds:

- ``l1``: ``s_c = Σ_W Σ |W[c, ...]|``;  ``l2``: ``s_c = Σ_W Σ W[c, ...]²``;
- ``bn``: ``s_c = Σ |γ_c|`` over BatchNormalization/InstanceNormalization scales in the group
  (network-slimming); groups without a normalization scale fall back to ``l1``;
- ``random``: seeded uniform scores, the baseline every criterion should beat.

Activation-aware criteria need calibration statistics (:mod:`onnxprune.calibration`). They score
a channel by what removing it takes away from the layers that *read* it: for every consumer
(Conv/Gemm/MatMul with a constant weight ``W``) whose input feature ``j`` belongs to channel
``c``, with ``x_j`` the consumer's input along its channel axis,

- ``wanda`` (structured Wanda): ``s_c = Σ_j ‖x_j‖ · Σ_o |W[o, j]|`` with ``‖x_j‖ = sqrt(E[x_j²])``:
  a weight matters as much as the activation it multiplies;
- ``fluct`` (FLAP's fluctuation): ``s_c = Σ_j Var(x_j) · Σ_o W[o, j]²``: the part of the output
  a constant cannot replace (the mean is restored by bias compensation), so a channel whose
  input barely varies is cheap to remove;
- ``apoz``: ``s_c = 1 - mean_j APoZ(x_j)``, the share of non-zero activations (network
  trimming); ties (channels never exactly zero) are broken by ``wanda``;
- ``obs`` (Optimal Brain Surgeon, structured, chosen jointly with the refit): each consumer's
  input covariance ``C`` says what removing channel ``c``'s input features ``B`` costs once the
  kept features are refit by least squares, ``tr(M_Bᵀ (C⁻¹_BB)⁻¹ M_B)`` with ``M`` the weight
  as ``[features, outputs]``. Channels are removed greedily in rounds, cheapest first, and after
  each round ``C⁻¹`` and ``M`` are updated as the refit would leave them, so a channel whose
  information its neighbours carry goes before one that is merely small. A channel's score is
  the summed cost (over the group's consumers) when it went; channels never removed score above
  every removed one. It needs each consumer's Gram matrix (``--reconstruct`` collects them).

Groups no consumer reads with statistics fall back to ``l1``.

Global ranking (:func:`normalized_importance`) compares channels of different layers: within a
stratum the scores sorted ascending ``s_1 ≤ … ≤ s_n`` become ``s_i / Σ_{k≥i} s_k`` (LAMP's
normalization), which lies in (0, 1], gives 1 to every layer's strongest channel, and makes
scales of different layers comparable.
"""

from __future__ import annotations

import logging

import numpy as np

from .calibration import CalibrationStats, channel_key, find_consumers, ridge_lambda, weight_matrix
from .depgraph import DepGraph
from .errors import PlanError
from .graph import const_value

__all__ = ["CRITERIA", "ACTIVATION_CRITERIA", "GRAM_CRITERIA", "channel_importance", "normalized_importance"]

log = logging.getLogger(__name__)

ACTIVATION_CRITERIA = ("wanda", "fluct", "apoz", "obs")
#: criteria that read each consumer's input Gram matrix, not only channel statistics
GRAM_CRITERIA = ("obs",)
#: consumers with more input features than this are too large for the greedy OBS updates
OBS_MAX_FEATURES = 4608
#: removal rounds over a group's channels (each round takes 1/OBS_ROUNDS of them)
OBS_ROUNDS = 32
#: the share of a group's channels the greedy order covers; the rest keep their last cost
OBS_DEPTH = 0.9
CRITERIA = ("l1", "l2", "bn", "random") + ACTIVATION_CRITERIA


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


def _atom_sums(value: np.ndarray, axis: int, power: int, block_bytes: int = 4 << 20) -> np.ndarray:
    """``Σ |v|^power`` over every axis but ``axis``, in float64, a few MB at a time.

    Blocks along ``axis`` bound the temporaries (a float64 copy of a whole 256 MB weight would
    cost 512 MB more, three times over); the power is taken in place.
    """
    n = value.shape[axis]
    other = tuple(a for a in range(value.ndim) if a != axis)
    per_atom = max(1, value.size // max(n, 1)) * 8
    step = max(1, block_bytes // per_atom)
    out = np.empty(n, dtype=np.float64)
    index: list[slice] = [slice(None)] * value.ndim
    for s in range(0, n, step):
        index[axis] = slice(s, min(n, s + step))
        blk = np.array(value[tuple(index)], dtype=np.float64)
        blk = np.abs(blk, out=blk) if power == 1 else np.square(blk, out=blk)
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


def _activation(dg: DepGraph, criterion: str, stats: CalibrationStats) -> np.ndarray:
    score = np.zeros(dg.n_channels)
    count = np.zeros(dg.n_channels)
    tensors = dg.model.graph.tensors()
    for c in find_consumers(dg.model):
        key = (c.w, c.w_in)
        st = stats.channels.get(channel_key(c))
        if key not in dg.spaces or st is None or st.mean is None:
            continue
        w = np.asarray(const_value(tensors[c.w]), dtype=np.float64)
        per_in = np.moveaxis(w, c.w_in, 0).reshape(w.shape[c.w_in], -1)
        if len(st.mean) != per_in.shape[0] or dg.spaces[key].size != per_in.shape[0]:
            continue
        if criterion == "wanda":
            atom = np.sqrt(st.mean_square) * np.abs(per_in).sum(axis=1)
        elif criterion == "fluct":
            atom = st.var * np.square(per_in).sum(axis=1)
        else:
            atom = 1.0 - st.apoz
        chans = dg.space_channels(key)
        np.add.at(score, chans, atom)
        np.add.at(count, chans, 1.0)
    if criterion == "apoz":
        score = np.where(count > 0, score / np.maximum(count, 1), 0.0)
        tie = _activation(dg, "wanda", stats)
        # a tie-break far below one APoZ step (1/n of a channel's elements)
        span = np.max(np.abs(tie)) if tie.size else 0.0
        if span > 0:
            score = score + 1e-9 * tie / span
    missing = count == 0
    if missing.any():
        l1 = _magnitude(dg, 1)
        for g in np.unique(dg.channel_group[missing & ~dg.channel_frozen]):
            chans = dg.groups[g].channels
            if (count[chans] == 0).all():
                score[chans] = l1[chans]
                log.info("group %d has no calibrated consumer; scored by l1", g)
    return score

class _ObsConsumer:
    """One consumer's inverse covariance and weight over the input features still kept."""

    def __init__(self, cov: np.ndarray, m: np.ndarray, feats: dict[int, np.ndarray], ridge: float):
        self.keep = np.arange(cov.shape[0])  # feature ids still present, in order
        a = cov + ridge_lambda(cov, ridge) * np.eye(cov.shape[0])
        try:
            self.hinv = np.linalg.inv(a)  # positive definite with the ridge
        except np.linalg.LinAlgError:
            self.hinv = np.linalg.pinv(a, hermitian=True)
        self.m = m
        self.feats = feats  # group channel -> its feature ids in this consumer

    def _local(self, ch: int) -> np.ndarray:
        return np.searchsorted(self.keep, self.feats[ch])

    def costs(self, chans: list[int]) -> np.ndarray:
        """What removing each of ``chans`` alone costs this consumer once the rest is refit."""
        out = np.zeros(len(chans))
        have = [i for i, ch in enumerate(chans) if ch in self.feats]
        by_size: dict[int, list[int]] = {}
        for i in have:
            by_size.setdefault(len(self.feats[chans[i]]), []).append(i)
        for size, rows in by_size.items():
            # blocks of one size in batches of about 16 MB of weight rows
            chunk = max(1, (2 << 20) // max(1, size * self.m.shape[1]))
            for at in range(0, len(rows), chunk):
                part = rows[at:at + chunk]
                idx = np.stack([self._local(chans[i]) for i in part])  # [n, size]
                hb = self.hinv[idx[:, :, None], idx[:, None, :]]
                mb = self.m[idx]  # [n, size, outputs]
                try:
                    sol = np.linalg.solve(hb, mb)
                except np.linalg.LinAlgError:
                    sol = np.linalg.pinv(hb, hermitian=True) @ mb
                out[part] = np.einsum("nso,nso->n", mb, sol)
        return out

    def remove(self, chans: list[int]) -> None:
        blocks = [self._local(ch) for ch in chans if ch in self.feats]
        if not blocks:
            return
        b = np.concatenate(blocks)
        rest = np.setdiff1d(np.arange(len(self.keep)), b)
        hbb = self.hinv[np.ix_(b, b)]
        hrb = self.hinv[np.ix_(rest, b)]
        try:
            t = np.linalg.solve(hbb, hrb.T).T  # H_RB H_BB⁻¹
        except np.linalg.LinAlgError:
            t = hrb @ np.linalg.pinv(hbb)
        # what the refit leaves: kept weights absorb the removed ones, C⁻¹ of the kept features
        self.m = self.m[rest] - t @ self.m[b]
        self.hinv = self.hinv[np.ix_(rest, rest)] - t @ hrb.T
        self.keep = self.keep[rest]


def _obs(dg: DepGraph, stats: CalibrationStats, ridge: float = 1e-3) -> np.ndarray:
    """Greedy structured OBS scores (see the module docstring); groups it cannot score get ``wanda``."""
    score = _activation(dg, "wanda", stats)
    tensors = dg.model.graph.tensors()
    per_group: dict[int, list[_ObsConsumer]] = {}
    skipped: dict[int, str] = {}
    for c in find_consumers(dg.model):
        key = (c.w, c.w_in)
        if key not in dg.spaces:
            continue
        chans = dg.space_channels(key)
        # a consumer reading a concat serves every group it reads; each greedy keeps the others
        groups = [int(g) for g in np.unique(dg.channel_group[chans]) if g >= 0 and int(g) not in skipped]
        if not groups:
            continue
        gram = stats.grams.get(c.node)
        w = np.asarray(const_value(tensors[c.w]), dtype=np.float64)
        k = w.shape[c.w_in] * c.kernel
        why = (f"consumer '{c.node}' has no Gram statistics"
               if gram is None or gram.gram is None or gram.gram.shape[0] != k else
               f"consumer '{c.node}' has {k} input features (over {OBS_MAX_FEATURES})"
               if k > OBS_MAX_FEATURES else "")
        if why:
            skipped.update({g: why for g in groups})
            continue
        order = np.argsort(chans, kind="stable")  # each channel's atoms, ascending
        ids, starts = np.unique(chans[order], return_index=True)
        feats = {int(ch): c.features(atoms) for ch, atoms in zip(ids, np.split(order, starts[1:]))}
        cov, m = gram.covariance(), weight_matrix(w, c)
        for g in groups:
            per_group.setdefault(g, []).append(_ObsConsumer(cov, m, feats, ridge))
    for g, why in skipped.items():
        per_group.pop(g, None)
        log.info("obs: group %d scored by wanda: %s", g, why)
    for g, consumers in per_group.items():
        grp = dg.groups[g]
        live = [int(ch) for ch in grp.channels[grp.prunable]]
        if len(live) < 2:
            continue
        step = max(1, -(-len(live) // OBS_ROUNDS))
        stop = len(live) - max(1, int(round(len(live) * OBS_DEPTH)))
        total = 0.0
        while len(live) > max(stop, 1):
            cost = sum(cc.costs(live) for cc in consumers)
            order = np.argsort(cost, kind="stable")
            take = [live[i] for i in order[: min(step, len(live) - max(stop, 1))]]
            for i in order[: len(take)]:
                score[live[i]] = total + cost[i]
            total += float(np.sum(cost[order[: len(take)]]))
            for cc in consumers:
                cc.remove(take)
            gone = set(take)
            live = [ch for ch in live if ch not in gone]
        if live:
            cost = sum(cc.costs(live) for cc in consumers)
            score[np.asarray(live)] = total + cost  # above every removed channel's score
    return score


def channel_importance(
    dg: DepGraph, criterion: str = "l1", seed: int = 0, stats: CalibrationStats | None = None,
    ridge: float = 1e-3,
) -> np.ndarray:
    """Importance of every channel of ``dg`` (higher = keep).

    ``stats`` (from :func:`onnxprune.calibration.collect_stats` with channel statistics) is
    required by the activation-aware criteria; ``obs`` also needs its Gram matrices, and
    ``ridge`` is the relative ridge of the refit it anticipates.
    """
    if criterion not in CRITERIA:
        raise PlanError(f"unknown criterion '{criterion}' (choose from {', '.join(CRITERIA)})")
    if criterion in ACTIVATION_CRITERIA:
        if stats is None:
            raise PlanError(f"criterion '{criterion}' needs calibration data (--calib DIR|random)")
        if not stats.channels:  # calibrated, but no prunable group has a channel to measure
            log.info("no calibrated channel statistics (no prunable group reads a measured tensor); scored by l1")
            return _magnitude(dg, 1)
        if criterion == "obs":
            return _obs(dg, stats, ridge)
        return _activation(dg, criterion, stats)
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


def normalized_importance(dg: DepGraph, score: np.ndarray) -> np.ndarray:
    """LAMP-style scores comparable across layers: ``s_i / Σ_{k≥i} s_k`` within each stratum."""
    out = np.zeros_like(score, dtype=np.float64)
    for g in dg.groups:
        for s in np.unique(g.strata):
            chans = g.channels[g.strata == s]
            v = np.maximum(score[chans].astype(np.float64), 0.0)
            order = np.argsort(v, kind="stable")
            tail = np.cumsum(v[order][::-1])[::-1]
            norm = np.where(tail > 0, v[order] / np.where(tail > 0, tail, 1.0), 1.0)
            out[chans[order]] = norm
    return out
