"""Plain data for reports: what ``analyze`` and ``prune`` show, as dicts ready for JSON."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .api import Analysis, PruneResult
from .bench import short_ep
from .comparison import Comparison
from .io import save_figure, save_text
from .profile import LINEAR_OPS, Profile
from .rules import SpaceKey

__all__ = [
    "analysis_dict",
    "prune_dict",
    "profile_dict",
    "human",
    "comparison_markdown",
    "write_comparison_report",
    "replace_section",
]


def _space(key: SpaceKey) -> str:
    return f"{key[0]}[{key[1]}]"


def barrier_kind(reason: str) -> str:
    """A barrier reason without the names and numbers of one model: what kind of barrier it is."""
    kind = re.sub(r"'[^']*'", "", reason)
    kind = re.sub(r"\[[^\]]*\]", "[…]", kind)
    kind = re.sub(r"\b\d+\b", "N", kind)
    return re.sub(r"\s+", " ", kind).strip(" ;,")


def barrier_kinds(an: Analysis) -> list[dict[str, Any]]:
    """MACs frozen per barrier kind, largest first.

    A group that is not fully prunable freezes its frozen share of the Conv/Gemm/MatMul MACs it
    touches, counted for the kind of the group's first reason. A layer touches two groups (its
    input and its output channels), so the shares of different kinds overlap.
    """
    frozen: dict[str, list[float]] = {}
    for g in an.depgraph.groups:
        if g.n_prunable == g.size or not g.reasons or not g.size:
            continue
        macs = an.group_macs[g.id] * (1 - g.n_prunable / g.size)
        entry = frozen.setdefault(barrier_kind(g.reasons[0]), [0.0, 0])
        entry[0] += macs
        entry[1] += 1
    total = an.linear_macs or 0
    rows = [{"kind": k, "macs": int(m), "macs_share": m / total if total else 0.0, "groups": int(n)}
            for k, (m, n) in frozen.items()]
    return sorted(rows, key=lambda r: -r["macs"])


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
        "barrier_kinds": barrier_kinds(an),
    }


def prune_dict(res: PruneResult) -> dict[str, Any]:
    return {
        "params_before": res.before.params,
        "params_after": res.after.params,
        "macs_before": res.before.macs,
        "macs_after": res.after.macs,
        "channels_removed": res.plan.n_removed,
        "ratio": res.ratio,
        **({"targets": {k: int(v) for k, v in res.targets.items()}, "targets_met": res.targets_met}
           if res.targets else {}),
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


# ---------------------------------------------------------------------------- comparison reports
def comparison_markdown(cmp: Comparison, images: dict[str, str] | None = None) -> str:
    """A Markdown page: the before/after table, latency per provider, agreement, and plots."""
    o, p = cmp.original, cmp.pruned
    lines = [
        "# onnxprune comparison",
        "",
        f"- original: `{o.path}`",
        f"- pruned: `{p.path}`",
        "",
        "| | original | pruned | pruned/original |",
        "|---|---:|---:|---:|",
    ]
    for label, a, b, unit in (("file size", o.size, p.size, "B"), ("params", o.params, p.params, ""),
                              ("MACs", o.macs, p.macs, ""), ("nodes", o.nodes, p.nodes, "")):
        lines.append(f"| {label} | {human(a, unit)} | {human(b, unit)} | {b / a:.3f} |" if a else f"| {label} | 0 | {b} | - |")
    if cmp.latency:
        lines += [
            "",
            "## Latency (interleaved runs: original and pruned in turns, one process)",
            "",
            "| EP | batch | threads | runs | original p50 | pruned p50 | speedup (IQR of turns) | MACs gain | efficiency | session s (orig / pruned) | peak memory (orig / pruned) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for lat in cmp.latency:
            lo, hi = lat.pair_iqr()
            mem = " / ".join(human(m, "B") if m is not None else "n/a" for m in lat.peak_mem_bytes)
            lines.append(
                f"| {short_ep(lat.provider)} | {lat.batch} | {lat.threads or 'default'} | {lat.original_ms.size} "
                f"| {float(np.median(lat.original_ms)):.3f} ms | {float(np.median(lat.pruned_ms)):.3f} ms "
                f"| {lat.speedup:.2f}x ({lo:.2f}-{hi:.2f}) | {cmp.macs_gain:.2f}x | {cmp.efficiency(lat):.2f} "
                f"| {lat.session_s[0]:.2f} / {lat.session_s[1]:.2f} | {mem} ({lat.mem_kind}) |"
            )
        lines += ["", "Efficiency = measured speedup / MACs reduction (1.0: latency fell as much as the arithmetic)."]
    if cmp.outputs:
        lines += ["", "## Output agreement (seeded inputs, CPU, graph optimizations off)", "",
                  "| output | shape | max abs diff | cosine | relative L2 | top-1 agreement |",
                  "|---|---|---:|---:|---:|---:|"]
        for out in cmp.outputs:
            top1 = f"{out.top1:.1%}" if out.top1 is not None else "-"
            lines.append(f"| {out.name} | {list(out.shape)} | {out.max_abs:.3g} | {out.cosine:.6f} | {out.rel_l2:.3g} | {top1} |")
    for title, name in (images or {}).items():
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def _layer_macs(cmp: Comparison) -> tuple[list[str], list[int], list[int]]:
    after = {n.name: n.macs for n in cmp.pruned.profile.nodes}
    names, before_m, after_m = [], [], []
    for n in cmp.original.profile.nodes:
        if n.macs and n.op in LINEAR_OPS:
            names.append(n.name)
            before_m.append(n.macs)
            after_m.append(after.get(n.name, 0))
    return names, before_m, after_m


def write_comparison_report(cmp: Comparison, out_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Writes ``report.md`` (and PNG plots when matplotlib is installed) into ``out_dir``.

    Returns the Markdown path and whether plots were drawn. Files are written atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        names, b, a = _layer_macs(cmp)
        if names:
            fig, ax = plt.subplots(figsize=(max(6.0, min(0.12 * len(names), 24.0)), 4.0))
            x = np.arange(len(names))
            ax.bar(x, b, label="original", color="#9aa5b1")
            ax.bar(x, a, label="pruned", color="#2b8a3e")
            ax.set_xlabel("Conv/Gemm/MatMul layers in graph order")
            ax.set_ylabel("MACs")
            ax.set_title("MACs per layer, before and after")
            ax.legend()
            fig.tight_layout()
            save_figure(fig, out / "layer_macs.png")
            plt.close(fig)
            images["MACs per layer"] = "layer_macs.png"
        if cmp.latency:
            fig, ax = plt.subplots(figsize=(6.0, 4.0))
            for lat in cmp.latency:
                xs = [cmp.original.macs / 1e6, cmp.pruned.macs / 1e6]
                ys = [float(np.median(lat.original_ms)), float(np.median(lat.pruned_ms))]
                line = ax.plot(xs, ys, marker="o", label=f"{short_ep(lat.provider)} measured")[0]
                ax.plot(xs, [ys[0], ys[0] * xs[1] / xs[0]], linestyle="--", color=line.get_color(),
                        alpha=0.6, label=f"{short_ep(lat.provider)} if latency ∝ MACs")
            ax.set_xlabel("MMACs")
            ax.set_ylabel("median latency (ms)")
            ax.set_title("Latency against MACs")
            ax.legend()
            fig.tight_layout()
            save_figure(fig, out / "latency_vs_macs.png")
            plt.close(fig)
            images["Latency against MACs"] = "latency_vs_macs.png"
    md = out / "report.md"
    save_text(md, comparison_markdown(cmp, images))
    return md, plt is not None


def profile_dict(prof: Profile, groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Profile as plain data: totals, per op type, per node, and per group when given."""
    return {
        "macs": prof.macs,
        "params": prof.params,
        "by_op": prof.by_op(),
        "nodes": [{"name": n.name, "op": n.op, "macs": n.macs, "params": n.params,
                   "shape": list(n.shape) if n.shape is not None else None} for n in prof.nodes],
        "unknown_shapes": prof.unknown,
        "groups": [{"id": g["id"], "channels": g["channels"], "status": g["status"], "macs": g["macs"],
                    "params": g["params"], "members": g["members"]} for g in (groups or [])],
    }


def replace_section(path: str | os.PathLike[str], begin: str, end: str, block: str,
                    title: str = "", required: bool = False) -> None:
    """Replaces the text from marker ``begin`` to marker ``end`` of a Markdown file with ``block``.

    ``block`` carries both markers itself. Where the markers are missing, ``block`` is appended
    (to ``title`` for a new file), or, with ``required``, :class:`ValueError` is raised. The file
    is written atomically. Benchmark scripts use this to regenerate their part of ``docs/``.
    """
    p = Path(path)
    text = p.read_text() if p.exists() else title
    b = text.find(begin)
    e = text.find(end, b + len(begin)) if b != -1 else -1
    if b != -1 and e != -1:
        text = text[:b] + block.rstrip("\n") + text[e + len(end):]
    elif required:
        raise ValueError(f"{p}: markers {begin} / {end} not found")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block.rstrip("\n") + "\n"
    save_text(p, text)
