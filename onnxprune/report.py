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
    "write_html",
    "evaluation_markdown",
    "write_evaluation_report",
    "barrier_markdown",
    "search_markdown",
    "write_search_report",
]

#: what to install for plots and the HTML page, said in one line where they are missing
REPORT_EXTRA = "pip install 'onnxprune[report]'"

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1f2933; line-height: 1.45; }
h1 { border-bottom: 2px solid #2b8a3e; padding-bottom: .2em; }
h2 { margin-top: 1.6em; color: #243b53; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #d9e2ec; padding: .35em .7em; }
th { background: #f0f4f8; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; border: 1px solid #d9e2ec; }
code { background: #f0f4f8; padding: 0 .25em; border-radius: 3px; }
"""


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
def barrier_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The ``barrier_kinds`` table (what keeps channels frozen, largest MACs first) as Markdown lines."""
    if not rows:
        return ["", "## What stays frozen", "", "Every channel group of the original is prunable."]
    lines = ["", "## What stays frozen (barriers of the original, largest MACs first)", "",
             "| kind of barrier | groups | frozen MACs | share of Conv/Gemm/MatMul MACs |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind'].replace('|', '/')} | {r['groups']} | {human(r['macs'])} | {r['macs_share']:.1%} |")
    return lines + ["", "A layer touches two groups (its input and output channels), so shares of different kinds overlap."]


def comparison_markdown(cmp: Comparison, images: dict[str, str] | None = None,
                        barriers: list[dict[str, Any]] | None = None) -> str:
    """A Markdown page: the before/after table, latency per provider, agreement, plots and,
    given ``barriers`` (:func:`barrier_kinds` of the original), what stays frozen."""
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
    lines += _images(images)
    if barriers is not None:
        lines += barrier_markdown(barriers)
    return "\n".join(lines) + "\n"


def _images(images: dict[str, str] | None) -> list[str]:
    out: list[str] = []
    for title, name in (images or {}).items():
        out += ["", f"## {title}", "", f"![{title}]({name})"]
    return out


def write_html(md_path: str | os.PathLike[str], title: str) -> Path | None:
    """Writes ``<name>.html`` beside a Markdown report: one self-contained page (the PNGs it links
    are embedded), or ``None`` when the ``markdown`` package is not installed."""
    import base64
    import html

    try:
        import markdown
    except ImportError:
        return None
    md = Path(md_path)
    body = markdown.markdown(md.read_text(), extensions=["tables"])

    def embed(m: re.Match[str]) -> str:
        img = md.parent / m.group(1)
        if not img.is_file():
            return m.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(img.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"/:]+\.png)"', embed, body)
    page = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
    return save_text(md.with_suffix(".html"), page)


def evaluation_markdown(original: str, results: list[tuple[str, Any]], images: dict[str, str] | None = None,
                        latency: dict[str, Any] | None = None) -> str:
    """The side-by-side accuracy page of ``eval --report``: each model against the original;
    with ``latency`` (:func:`eval_latency`) a latency column from interleaved runs."""
    first = results[0][1]
    ratios = (latency or {}).get("ratios", {})
    lat_col = " latency / original |" if ratios else ""
    lines = ["# onnxprune evaluation", "", f"- original: `{original}`", f"- samples: {first.samples}"]
    if latency:
        lines.append(f"- latency: {short_ep(latency['provider'])}, batch {latency['batch']}, {latency['threads']} "
                     f"threads, {latency['turns']} turns of every model in rotating order (one process); "
                     f"original {latency['original_ms']:.3f} ms")
    lines += ["", "| model | mean cosine | worst relative L2 | top-1 agreement | accuracy | change (points) |" + lat_col,
              "|---|---:|---:|---:|---:|---:|" + ("---:|" if ratios else "")]
    if first.accuracy_original is not None:
        lines.append(f"| `{original}` (original) | 1.000000 | 0 | 100.0% | {100 * first.accuracy_original:.2f}% | — |"
                     + (" 1.000 |" if ratios else ""))
    for path, r in results:
        tops = [o.top1_agreement for o in r.outputs if o.top1_agreement is not None]
        acc = (f"{100 * r.accuracy_pruned:.2f}% | {100 * (r.accuracy_pruned - r.accuracy_original):+.2f}"
               if r.accuracy_pruned is not None else "- | -")
        lines.append(f"| `{path}` | {np.mean([o.cosine for o in r.outputs]):.6f} | "
                     f"{max(o.rel_l2 for o in r.outputs):.4g} | {f'{100 * min(tops):.1f}%' if tops else '-'} | {acc} |"
                     + (f" {ratios[path]:.3f} |" if ratios else ""))
    for path, r in results:
        lines += ["", f"## `{path}` per output", "", "| output | cosine | relative L2 | max abs diff | top-1 agreement |",
                  "|---|---:|---:|---:|---:|"]
        for o in r.outputs:
            top = "-" if o.top1_agreement is None else f"{100 * o.top1_agreement:.1f}%"
            lines.append(f"| {o.name} | {o.cosine:.6f} | {o.rel_l2:.4g} | {o.max_abs:.4g} | {top} |")
    lines += _images(images)
    return "\n".join(lines) + "\n"


def _quality(r: Any) -> tuple[float, str]:
    """What an evaluation is ranked by: accuracy in % with labels, else mean output cosine."""
    if r.accuracy_pruned is not None:
        return 100 * r.accuracy_pruned, "test accuracy (%)"
    return float(np.mean([o.cosine for o in r.outputs])), "cosine to the original"


def pareto_points(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other beats on both (lower cost, higher quality), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def write_evaluation_report(original: str, results: list[tuple[str, Any]], out_dir: str | os.PathLike[str],
                            latency: dict[str, Any] | None = None) -> tuple[Path, Path | None, bool]:
    """``report.md`` (+ an accuracy plot, and with ``latency`` an accuracy-against-latency plot with
    its Pareto front, when matplotlib is installed) and ``report.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    images: dict[str, str] = {}
    if plt is not None:
        fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(results) + 2), 3.6))
        labels = [Path(p).name for p, _ in results]
        vals = [_quality(r)[0] for _, r in results]
        base = 100 * results[0][1].accuracy_original if results[0][1].accuracy_original is not None else 1.0
        ax.axhline(base, color="#9aa5b1", linestyle="--", label="original")
        ax.set_ylabel(_quality(results[0][1])[1])
        ax.bar(labels, vals, color="#2b8a3e")
        lo = min(vals + [ax.get_ylim()[1]])
        ax.set_ylim(lo - 0.1 * (ax.get_ylim()[1] - lo + 1e-9), ax.get_ylim()[1])
        ax.set_title("Accuracy against the original")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, out / "accuracy.png")
        plt.close(fig)
        images["Accuracy against the original"] = "accuracy.png"
        if latency and latency.get("ratios"):
            pts = [(1.0, base)] + [(latency["ratios"][p], _quality(r)[0]) for p, r in results]
            names = ["original"] + labels
            front = pareto_points(pts)
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            ax.scatter([x for x, _ in pts], [y for _, y in pts], color="#2b8a3e", zorder=3)
            for (x, y), n in zip(pts, names):
                ax.annotate(n, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
            ax.set_xlabel(f"latency / original ({short_ep(latency['provider'])}, batch {latency['batch']})")
            ax.set_ylabel(_quality(results[0][1])[1])
            ax.set_title("Accuracy against measured latency")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            save_figure(fig, out / "accuracy_vs_latency.png")
            plt.close(fig)
            images["Accuracy against measured latency"] = "accuracy_vs_latency.png"
    md = save_text(out / "report.md", evaluation_markdown(original, results, images, latency))
    return md, write_html(md, "onnxprune evaluation"), plt is not None


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _layer_macs(cmp: Comparison) -> tuple[list[str], list[int], list[int]]:
    after = {n.name: n.macs for n in cmp.pruned.profile.nodes}
    names, before_m, after_m = [], [], []
    for n in cmp.original.profile.nodes:
        if n.macs and n.op in LINEAR_OPS:
            names.append(n.name)
            before_m.append(n.macs)
            after_m.append(after.get(n.name, 0))
    return names, before_m, after_m


def _width(n: Any) -> int | None:
    """Output channels of a Conv (axis 1) or Gemm/MatMul (last axis) from its output shape."""
    if not n.shape or len(n.shape) < 2:
        return None
    w = n.shape[1] if n.op.startswith("Conv") else n.shape[-1]
    return w if isinstance(w, int) else None


def _layer_widths(cmp: Comparison) -> tuple[list[str], list[int], list[int]]:
    after = {n.name: _width(n) for n in cmp.pruned.profile.nodes}
    names, before_w, after_w = [], [], []
    for n in cmp.original.profile.nodes:
        w = _width(n) if n.macs and n.op in LINEAR_OPS else None
        if w is not None and after.get(n.name) is not None:
            names.append(n.name)
            before_w.append(w)
            after_w.append(after[n.name])  # type: ignore[arg-type]
    return names, before_w, after_w


def _before_after(plt: Any, path: Path, before: list[int], after: list[int], xlabel: str, ylabel: str,
                  title: str, labels: list[str] | None = None) -> None:
    """Bars per layer or group: the original's value in grey, the pruned model's over it in green."""
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.12 * len(before), 24.0)), 4.0))
    x = np.arange(len(before))
    if len(before) <= 40:  # whole-numbered ticks, named where names are given
        ax.set_xticks(x, labels if labels else [str(i) for i in x])
    ax.bar(x, before, label="original", color="#9aa5b1")
    ax.bar(x, after, label="pruned", color="#2b8a3e")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def write_comparison_report(cmp: Comparison, out_dir: str | os.PathLike[str],
                            barriers: list[dict[str, Any]] | None = None) -> tuple[Path, bool]:
    """Writes ``report.md`` (and PNG plots when matplotlib is installed) into ``out_dir``, and the
    same as one self-contained ``report.html`` when the ``markdown`` package is installed.
    ``barriers`` (:func:`barrier_kinds` of the original) adds what stays frozen.

    Returns the Markdown path and whether plots were drawn. Files are written atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    plt = _pyplot()
    if plt is not None:
        names, b, a = _layer_widths(cmp)
        if names:
            _before_after(plt, out / "layer_widths.png", b, a, "Conv/Gemm/MatMul layers in graph order",
                          "output channels", "Output channels per layer, before and after")
            images["Output channels per layer"] = "layer_widths.png"
        names, b, a = _layer_macs(cmp)
        if names:
            _before_after(plt, out / "layer_macs.png", b, a, "Conv/Gemm/MatMul layers in graph order", "MACs",
                          "MACs per layer, before and after")
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
    save_text(md, comparison_markdown(cmp, images, barriers))
    write_html(md, "onnxprune comparison")
    return md, plt is not None


# ---------------------------------------------------------------------------- search reports
def search_markdown(result: Any, images: dict[str, str] | None = None,
                    barriers: list[dict[str, Any]] | None = None) -> str:
    """The page of ``search --report``: targets against the chosen model, the Pareto fronts,
    per-group widths, and what stays frozen."""
    b = result.best
    t = result.targets
    lines = ["# onnxprune search", "", f"- calibration: {result.calibration}",
             f"- {len(result.candidates)} candidates in {result.seconds:.1f} s; targets "
             + ("met" if result.met else "**not met** (the closest candidate was written)")
             + ("; stopped at the time budget" if result.stopped_early else ""), "",
             "| | original | target | chosen | chosen/original |", "|---|---:|---:|---:|---:|"]
    tgt_ms = t.get("latency_ms")
    lines.append(f"| latency predicted | {result.baseline_ms:.3f} ms | {f'{tgt_ms:.3f} ms' if tgt_ms else '-'} "
                 f"| {b.predicted_ms:.3f} ms | {b.predicted_ms / result.baseline_ms:.3f} |")
    if b.measured_ratio is not None:
        lines.append(f"| latency measured (in turns) | | | | {b.measured_ratio:.3f} |")
    for label, base, key, val in (("MACs", result.baseline_macs, "macs", b.macs),
                                  ("params", result.baseline_params, "params", b.params)):
        lines.append(f"| {label} | {human(base)} | {human(t[key]) if t.get(key) else '-'} | {human(val)} "
                     f"| {val / base:.3f} |" if base else f"| {label} | 0 | - | {val} | - |")
    if b.fidelity is not None:
        f = b.fidelity
        extra = (f", top-1 same {f.top1:.1%}" if f.top1 is not None else "") + \
            (f", accuracy {f.accuracy:.1%}" if f.accuracy is not None else "")
        lines.append(f"| agreement on held-out calibration samples | | | cosine {f.cosine:.4f} | "
                     f"rel L2 {f.rel_l2:.3g}{extra} |")
    lines += _images(images)
    lines += ["", "## Per-group ratios chosen", "", "| group | channels | kept | ratio | members |",
              "|---:|---:|---:|---:|---|"]
    for row in result.group_rows:
        lines.append(f"| {row['group']} | {row['channels']} | {row['kept']} | {row['ratio']:.3f} | "
                     + ", ".join(f"`{m}`" for m in row["members"]) + " |")
    if barriers is not None:
        lines += barrier_markdown(barriers)
    return "\n".join(lines) + "\n"


def write_search_report(result: Any, out_dir: str | os.PathLike[str], pareto_png: str | None = None,
                        barriers: list[dict[str, Any]] | None = None) -> tuple[Path, Path | None, bool]:
    """``report.md`` (with ``pareto_png`` and a per-group widths plot when matplotlib is installed)
    and the same as a self-contained ``report.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    if pareto_png:
        images["Fidelity against predicted latency and MACs (Pareto fronts)"] = pareto_png
    plt = _pyplot()
    if plt is not None and result.group_rows:
        _before_after(plt, out / "group_widths.png", [r["channels"] for r in result.group_rows],
                      [r["kept"] for r in result.group_rows], "searched channel groups (ids as in the table)",
                      "channels", "Channels per group, before and after", [str(r["group"]) for r in result.group_rows])
        images["Channels per group"] = "group_widths.png"
    md = save_text(out / "report.md", search_markdown(result, images, barriers))
    return md, write_html(md, "onnxprune search"), plt is not None


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
