"""Helpers for testing rules: make channels exactly dead.

Lossless pruning is the strongest test a rule can have: zero every weight that follows the
chosen channels anywhere in their group (producing filters and biases, normalization
parameters, consuming filters' input slices), then remove them. Nothing reads a dead channel
through a non-zero weight, so the model's outputs must not change; any slicing or coupling
mistake shows up as a numeric difference or an invalid model.
"""

from __future__ import annotations

import numpy as np

from .depgraph import DepGraph
from .graph import const_value, set_const_value

__all__ = ["kill_channels", "choose_channels"]

#: Inputs where zero is not neutral: a dead channel's divisor or exponent becomes 1 instead, so the
#: dead channel stays finite (0/1) rather than turning into NaN (0/0).
_NEUTRAL_ONE = {("Div", 1), ("Pow", 1), ("QuantizeLinear", 1)}


def _dequantized_zero(t, value: np.ndarray) -> int | None:
    """The stored value that dequantizes to 0 for an integer tensor read only by
    ``DequantizeLinear`` with a per-tensor zero point (per-channel scales are zeroed instead)."""
    zps = []
    for n in t.outputs:
        if n.op != "DequantizeLinear" or n.inputs[0] is not t:
            return None
        zp = const_value(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2].name else np.zeros(1, value.dtype)
        if zp is None or np.asarray(zp).size != 1:
            return None
        zps.append(int(np.asarray(zp).reshape(-1)[0]))
    return zps[0] if zps and len(set(zps)) == 1 else None


def _is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or "float" in str(dtype)  # ml_dtypes bfloat16


def kill_channels(dg: DepGraph, channels: np.ndarray) -> None:
    """Zeroes, in place, every constant slice that follows one of ``channels``."""
    dead = np.zeros(dg.n_channels, dtype=bool)
    dead[np.asarray(channels, dtype=np.int64)] = True
    tensors = dg.model.graph.tensors()
    for key, sp in dg.spaces.items():
        if not sp.const or sp.size == 0:
            continue
        atoms = np.flatnonzero(dead[dg.space_channels(key)])
        if len(atoms) == 0:
            continue
        t = tensors[key[0]]
        value = np.array(const_value(t))
        index = [slice(None)] * value.ndim
        index[key[1]] = atoms  # type: ignore[call-overload]
        if not _is_float(value.dtype):
            fill = _dequantized_zero(t, value) if value.dtype.kind in "iu" else None
            if fill is not None:
                value[tuple(index)] = fill
                set_const_value(t, value)
            continue
        uses = {(n.op, n.inputs.index(t)) for n in t.outputs}
        value[tuple(index)] = 1 if uses & _NEUTRAL_ONE else 0
        set_const_value(t, value)


def choose_channels(dg: DepGraph, share: float = 0.4, seed: int = 0) -> np.ndarray:
    """A seeded random choice of prunable channels: ``share`` of each stratum, keeping one."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for g in dg.groups:
        for s in np.unique(g.strata):
            idx = np.flatnonzero(g.strata == s)
            cand = g.channels[idx[g.prunable[idx]]]
            n = min(len(cand), max(1, int(round(len(idx) * share))), len(idx) - 1)
            if n > 0:
                chosen.append(rng.choice(cand, size=n, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
