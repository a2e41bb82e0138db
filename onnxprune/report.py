"""Plain data for reports: what ``analyze`` and ``prune`` show, as dicts ready for JSON."""

from __future__ import annotations

from typing import Any

from .api import Analysis, PruneResult
from .rules import SpaceKey

__all__ = ["analysis_dict", "prune_dict", "human"]


def _space(key: SpaceKey) -> str:
    return f"{key[0]}[{key[1]}]"


def analysis_dict(an: Analysis) -> dict[str, Any]:
    dg = an.depgraph
    groups = []
    for g in dg.groups:
        groups.append(
            {
                "id": g.id,
                "channels": g.size,
                "prunable_channels": g.n_prunable,
                "layers": int(g.strata.max()) + 1 if g.size else 0,
                "status": "prunable" if g.n_prunable == g.size else ("barrier" if g.is_barrier else "partial"),
                "macs": an.group_macs[g.id],
                "macs_share": an.group_macs[g.id] / an.linear_macs if an.linear_macs else 0.0,
                "params": an.group_params[g.id],
                "params_share": an.group_params[g.id] / an.linear_params if an.linear_params else 0.0,
                "members": g.members,
                "spaces": [_space(k) for k in g.spaces],
                "reasons": g.reasons,
            }
        )
    return {
        "model": an.model.source,
        "opset": an.model.opset,
        "nodes": len(an.model.graph.nodes),
        "macs": an.profile.macs,
        "params": an.profile.params,
        "linear_macs": an.linear_macs,
        "prunable_macs": an.prunable_macs,
        "prunable_macs_share": an.prunable_macs_share,
        "linear_params": an.linear_params,
        "prunable_params": an.prunable_params,
        "prunable_params_share": an.prunable_params_share,
        "channels": dg.n_channels,
        "prunable_channels": int((~dg.channel_frozen).sum()),
        "groups": groups,
        "barriers": [{"space": _space(k), "reason": r} for k, r in dg.barriers()],
    }


def prune_dict(res: PruneResult) -> dict[str, Any]:
    return {
        "params_before": res.before.params,
        "params_after": res.after.params,
        "macs_before": res.before.macs,
        "macs_after": res.after.macs,
        "channels_removed": res.plan.n_removed,
        "groups": [
            {"id": gp.group, "before": gp.before, "after": gp.after} for gp in res.plan.groups
        ],
    }


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}" if float(n).is_integer() else f"{n:.3g}{unit}"
