#!/usr/bin/env python
"""Benchmark onnxprune on torchvision ResNet-50 (random weights), both torch exporters.

For each export (TorchScript ``dynamo=False`` opset 17, and ``torch.export`` ``dynamo=True``
opset 18, both with a dynamic batch dimension) and each ``--ratios`` x ``--round-to``
configuration, this script:

1. runs ``analyze`` + ``prune`` + ``save`` in fresh child processes (``--child-runs`` of them)
   and records, measured inside the child after its imports: wall time, peak RSS
   (``ru_maxrss``) and RSS right after the imports (``VmRSS``), so both the absolute peak and
   the increment over the post-import baseline can be compared with the model file size;
2. reports MACs and parameter ratios (after/before), the share of Conv/Gemm/MatMul MACs that
   ``analyze`` reports prunable, whether the pruned file passes
   ``onnx.checker.check_model(full_check=True)`` and runs, the output cosine similarity
   (informational: the weights are random), and the CPU latency ratio pruned/original
   (batch 1, 2 intra-op threads, warm-up, median of ``--repeat`` runs, both models
   interleaved in one process);
3. writes the section between ``<!-- resnet50:begin -->`` and ``<!-- resnet50:end -->`` of
   ``--out-md`` (other sections of the file are kept).

The models are exported into ``--workdir`` (a temporary folder by default), never into the
repository. Nothing is downloaded: ``resnet50(weights=None)``.

Usage (from the repository root)::

    PYTHONPATH=. python tools/bench_resnet50.py
    PYTHONPATH=. python tools/bench_resnet50.py --repeat 50 --profile 15
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- resnet50:begin -->"
END = "<!-- resnet50:end -->"
SECTION_TITLE = "## ResNet-50 (torchvision, random weights)"

# Acceptance targets.
TARGET_MACS = 0.30  # pruned/original MACs at ratio 0.5
TARGET_LATENCY = 0.30  # pruned/original median latency
TARGET_SECONDS = 3.0  # analyze + prune + save, in a fresh process, after imports
TARGET_MEMORY = 3.0  # peak RSS as a multiple of the model file size

EXPORTERS = {
    "legacy": "TorchScript exporter (`dynamo=False`, opset 17)",
    "dynamo": "torch.export exporter (`dynamo=True`, `external_data=False`, opset 18)",
}


# ------------------------------------------------------------------------------ child mode


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(args: argparse.Namespace) -> int:
    """Analyze + prune + save one model; timings and memory measured after the imports."""
    import onnxprune  # noqa: F401
    from onnxprune.api import analyze, prune

    baseline_rss = _proc_status_bytes("VmRSS")
    profiler = None
    if args.child_profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    an = None if args.child_skip_analyze else analyze(args.child_model)
    share = an.prunable_macs_share if an is not None else None
    t1 = time.perf_counter()
    # prune reuses the analysed model: one load, one dependency graph
    res = prune(
        args.child_model,
        ratio=args.child_ratio,
        round_to=args.child_round_to,
        depgraph=an.depgraph if an is not None else None,
    )
    del an
    t2 = time.perf_counter()
    res.save(args.child_out)
    t3 = time.perf_counter()
    if profiler is not None:
        profiler.disable()
    # ru_maxrss also counts the parent's RSS at fork time (it survives execve); the parent
    # is kept small (no torch) while children run, and VmHWM (the peak of this process's own
    # address space) is recorded as a cross-check.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    hwm = _proc_status_bytes("VmHWM")
    out = {
        "analyze_s": t1 - t0,
        "prune_s": t2 - t1,
        "save_s": t3 - t2,
        "total_s": t3 - t0,
        "baseline_rss": baseline_rss,
        "peak_rss": peak_rss,
        "vmhwm": hwm,
        "groups": len(res.depgraph.groups),
        "prunable_macs_share": share,
        "before_macs": res.before.macs,
        "after_macs": res.after.macs,
        "before_params": res.before.params,
        "after_params": res.after.params,
    }
    if profiler is not None:
        import io
        import pstats

        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("cumulative").print_stats(args.child_profile)
        Path(args.child_profile_out).write_text(buf.getvalue())
    Path(args.child_json).write_text(json.dumps(out))
    return 0


def spawn_child(
    model: Path,
    out: Path,
    ratio: float,
    round_to: int,
    workdir: Path,
    profile_top: int = 0,
    skip_analyze: bool = False,
) -> dict:
    tag = f"{model.stem}-r{ratio}-k{round_to}" + ("-prune-only" if skip_analyze else "")
    js = workdir / f"{tag}.child.json"
    prof_out = workdir / f"{tag}.profile.txt"
    js.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--child-model",
        str(model),
        "--child-out",
        str(out),
        "--child-ratio",
        str(ratio),
        "--child-round-to",
        str(round_to),
        "--child-json",
        str(js),
    ]
    if skip_analyze:
        cmd.append("--child-skip-analyze")
    if profile_top:
        cmd += ["--child-profile", str(profile_top), "--child-profile-out", str(prof_out)]
    proc = subprocess.run(cmd, env=_child_env(), cwd=str(REPO_ROOT), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"child failed ({proc.returncode}) on {model.name}:\n{proc.stderr[-4000:]}"
        )
    data = json.loads(js.read_text())
    if profile_top:
        data["profile_text"] = prof_out.read_text()
    return data


# ------------------------------------------------------------------------------ export


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def model_paths(workdir: Path) -> dict[str, Path]:
    return {name: workdir / f"resnet50_{name}.onnx" for name in EXPORTERS}


def export_models(workdir: Path) -> dict[str, Path]:
    """Exports in a child process, so this process never holds torch or a large peak RSS
    (a child's ``ru_maxrss`` starts from its parent's RSS at fork time)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--export-to", str(workdir)]
    subprocess.run(cmd, env=_child_env(), cwd=str(REPO_ROOT), check=True)
    return model_paths(workdir)


def run_export(workdir: Path) -> int:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torchvision_compat import import_torchvision

    torchvision = import_torchvision()
    torch.manual_seed(0)
    m = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    paths = model_paths(workdir)
    with torch.no_grad():
        if not paths["legacy"].exists():
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    m,
                    x,
                    str(paths["legacy"]),
                    dynamo=False,
                    opset_version=17,
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                    input_names=["input"],
                    output_names=["logits"],
                )
            print(
                f"exported {paths['legacy'].name} in {time.perf_counter() - t0:.1f} s", flush=True
            )
        if not paths["dynamo"].exists():
            t0 = time.perf_counter()
            batch = torch.export.Dim("batch", min=1, max=1024)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    m,
                    (x,),
                    str(paths["dynamo"]),
                    dynamo=True,
                    external_data=False,
                    opset_version=18,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_shapes=({0: batch},),
                )
            print(
                f"exported {paths['dynamo'].name} in {time.perf_counter() - t0:.1f} s", flush=True
            )
    return 0


# ------------------------------------------------------------------------------ checks


def interleaved_no_spin(
    models: list[Path], feeds: dict, threads: int, warmup: int, repeat: int
) -> list[list[float]]:
    """Like ``interleaved_latency`` but with ``session.intra_op.allow_spinning=0``.

    Each onnxruntime session owns its intra-op thread pool, whose idle workers busy-wait after
    a run. With two sessions alternating on a 2-core machine, the waiting workers of one session
    compete with the running session for the cores, which distorts both timings (and the
    shorter model's the most). Without spinning the workers sleep between runs.
    """
    import onnxruntime as ort

    sessions = []
    for m in models:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions.append(ort.InferenceSession(str(m), opts, providers=["CPUExecutionProvider"]))
    for s in sessions:
        for _ in range(warmup):
            s.run(None, feeds)
    samples: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeat):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            s.run(None, feeds)
            samples[i].append((time.perf_counter() - t0) * 1e3)
    return samples


def shared_initializers(path: Path) -> int:
    """Initializers read by more than one node (directly or through ``Identity``)."""
    import collections

    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    alias = {
        n.output[0]: n.input[0]
        for n in m.graph.node
        if n.op_type == "Identity" and n.input[0] in inits
    }
    uses: collections.Counter[str] = collections.Counter()
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            continue
        for name in set(n.input):
            name = alias.get(name, name)
            if name in inits:
                uses[name] += 1
    return sum(1 for c in uses.values() if c > 1)


def check_and_time(original: Path, pruned: Path, repeat: int, warmup: int, threads: int) -> dict:
    import numpy as np
    import onnx

    from onnxprune.bench import interleaved_latency
    from onnxprune.verify import compare, make_feeds, session

    out: dict = {"shared_inits": shared_initializers(original)}
    try:
        onnx.checker.check_model(str(pruned), full_check=True)
        out["checker"] = True
        out["checker_error"] = ""
    except Exception as exc:  # noqa: BLE001
        out["checker"] = False
        out["checker_error"] = str(exc).strip().splitlines()[0][:200]
    feeds = make_feeds(session(str(original)), batch=1, seed=0)
    try:
        agree = compare(str(original), str(pruned), feeds=feeds)
        out["runs"] = True
        out["cosine"] = agree[0].cosine
        out["max_abs"] = agree[0].max_abs
        out["out_shape"] = list(agree[0].shape)
    except Exception as exc:  # noqa: BLE001
        out["runs"] = False
        out["run_error"] = str(exc).strip().splitlines()[0][:200]
        return out
    lat = interleaved_latency(
        [str(original), str(pruned)], feeds, threads=threads, warmup=warmup, repeat=repeat
    )
    out["lat_orig_ms"], out["lat_pruned_ms"] = lat.medians_ms
    out["lat_ratio"] = lat.ratio(1, 0)
    pair = np.asarray(lat.samples_ms[1]) / np.asarray(lat.samples_ms[0])
    out["lat_pair_ratio_median"] = float(np.median(pair))
    out["lat_pair_ratio_iqr"] = [float(np.percentile(pair, 25)), float(np.percentile(pair, 75))]
    out["lat_orig_iqr_ms"] = [float(np.percentile(lat.samples_ms[0], q)) for q in (25, 75)]
    out["lat_pruned_iqr_ms"] = [float(np.percentile(lat.samples_ms[1], q)) for q in (25, 75)]
    for key, n_threads in (("nospin", threads), ("nospin1", 1)):
        smp = interleaved_no_spin([original, pruned], feeds, n_threads, warmup, repeat)
        med = [float(np.median(x)) for x in smp]
        out[f"lat_{key}_ms"] = med
        out[f"lat_{key}_ratio"] = med[1] / med[0]
        pair = np.asarray(smp[1]) / np.asarray(smp[0])
        out[f"lat_{key}_pair_iqr"] = [float(np.percentile(pair, q)) for q in (25, 50, 75)]
    return out


# ------------------------------------------------------------------------------ report


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "n/a"


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu": cpu,
        "ort": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "torch": _version("torch"),
        "python": platform.python_version(),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _pf(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render_section(info: dict, results: list[dict], command: str, args: argparse.Namespace) -> str:
    lines = [
        BEGIN,
        SECTION_TITLE,
        "",
        "torchvision `resnet50(weights=None)` after `torch.manual_seed(0)`, eval mode, input "
        "1x3x224x224 with a dynamic batch axis, exported with both torch exporters and pruned "
        'with `prune(ratio=..., criterion="l1", round_to=...)` (uniform ratio per prunable group).',
        "",
        "Regenerate with (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), onnxruntime {info['ort']}, "
        f"onnx {info['onnx']}, torch {info['torch']}, Python {info['python']}; run {info['date']}. "
        "The machine is shared, so latency is only reported as a ratio of medians from runs of the "
        "two models interleaved in one process.",
        "",
        "How each number is measured:",
        "",
        f"- *analyze + prune + save*: wall time inside a fresh child process, after its imports; "
        f"median of {args.child_runs} children (min and max in brackets). `prune` includes its own "
        "validation (`check_model(full_check=True)` and an onnxruntime run).",
        "- *Peak RSS*: the child's `ru_maxrss` (the parent holds no torch and little memory when it "
        "starts the children, since `ru_maxrss` starts from the parent's RSS at fork time; the "
        "child's `VmHWM` is checked to agree); *increment* is that minus the child's `VmRSS` right "
        "after its imports (Python, onnx, onnxruntime, numpy, onnx-graphsurgeon); both are shown as "
        "multiples of the model file size (median over the children).",
        "- *Prunable share*: the share of Conv/Gemm/MatMul MACs that `analyze` reports in groups "
        "with removable channels.",
        f"- *Latency*: CPU provider, `ORT_ENABLE_ALL`, batch 1, {args.threads} intra-op threads, "
        f"{args.warmup} warm-up runs each, then {args.repeat} runs each in the order A B A B ...; "
        "ratio of the medians (the median of the per-pair ratios and its interquartile range are "
        "given as a noise check). This is `onnxprune.bench.interleaved_latency`, whose sessions "
        "keep onnxruntime's default busy-waiting intra-op workers. Because every session has its "
        "own thread pool, the spinning workers of the session that just ran compete for the two "
        "cores with the session being timed, so the same measurement is repeated with "
        "`session.intra_op.allow_spinning=0` (the second latency row), and once more with a "
        "single thread, where no pool is involved.",
        "- *Output cosine*: cosine similarity of the logits of original and pruned on the same "
        "seeded input; informational only, since the weights are random and nothing is fine-tuned.",
        "- *Channel groups*: the TorchScript exporter merges identical constant tensors into one "
        "initializer (read through `Identity` nodes). With random weights, the Conv biases folded "
        "from freshly initialised BatchNorms are all zero and get merged, and a shared tensor "
        "couples the channels of every layer that reads it, so that export has far fewer, larger "
        "groups than the torch.export one. MACs, parameters and latency after pruning are the "
        "same; only which channels are removed differs.",
        "",
    ]
    for r in results:
        c, chk = r["child"], r["check"]
        runs = r["child_runs"]
        tot = [x["total_s"] for x in runs]
        peak = statistics.median(x["peak_rss"] for x in runs)
        inc = statistics.median(x["peak_rss"] - x["baseline_rss"] for x in runs)
        base = statistics.median(x["baseline_rss"] for x in runs)
        size = r["file_size"]
        macs_r = c["after_macs"] / c["before_macs"]
        params_r = c["after_params"] / c["before_params"]
        t_med = statistics.median(tot)
        lines += [
            f"### {EXPORTERS[r['exporter']]} — ratio {r['ratio']}, round_to {r['round_to']}",
            "",
            f"Model file: {_mb(size)} ({size:,} bytes); pruned file: {_mb(r['pruned_size'])}; "
            f"{c['groups']} channel groups; {chk['shared_inits']} initializers are shared by several "
            "nodes.",
            "",
            "| Metric | Value | Target | Result |",
            "|---|---|---|---|",
            f"| MACs after/before | {macs_r:.3f}x ({c['after_macs'] / 1e9:.3f} / "
            f"{c['before_macs'] / 1e9:.3f} GMACs) | <= {TARGET_MACS:.2f}x | "
            f"{_pf(macs_r <= TARGET_MACS)} |",
            f"| Params after/before | {params_r:.3f}x ({c['after_params'] / 1e6:.2f}M / "
            f"{c['before_params'] / 1e6:.2f}M) | — | — |",
            f"| Conv/Gemm MACs reported prunable | {100 * c['prunable_macs_share']:.1f}% | — | — |",
            f"| Pruned model passes `check_model(full_check=True)` | "
            f"{'yes' if chk['checker'] else 'no: ' + chk['checker_error']} | yes | "
            f"{_pf(chk['checker'])} |",
            f"| Pruned model runs in onnxruntime | "
            f"{'yes, output ' + 'x'.join(map(str, chk['out_shape'])) if chk['runs'] else 'no: ' + chk.get('run_error', '')}"
            f" | yes | {_pf(chk['runs'])} |",
        ]
        if chk["runs"]:
            lines += [
                f"| Latency pruned/original | {chk['lat_ratio']:.3f}x ({chk['lat_pruned_ms']:.2f} / "
                f"{chk['lat_orig_ms']:.2f} ms; per-pair median {chk['lat_pair_ratio_median']:.3f}x, "
                f"IQR {chk['lat_pair_ratio_iqr'][0]:.3f}–{chk['lat_pair_ratio_iqr'][1]:.3f}) | "
                f"<= {TARGET_LATENCY:.2f}x | {_pf(chk['lat_ratio'] <= TARGET_LATENCY)} |",
                f"| Latency pruned/original, intra-op spinning off | {chk['lat_nospin_ratio']:.3f}x "
                f"({chk['lat_nospin_ms'][1]:.2f} / {chk['lat_nospin_ms'][0]:.2f} ms; per-pair median "
                f"{chk['lat_nospin_pair_iqr'][1]:.3f}x, IQR {chk['lat_nospin_pair_iqr'][0]:.3f}–"
                f"{chk['lat_nospin_pair_iqr'][2]:.3f}) | <= {TARGET_LATENCY:.2f}x | "
                f"{_pf(chk['lat_nospin_ratio'] <= TARGET_LATENCY)} |",
                f"| Latency pruned/original, 1 thread (informational) | {chk['lat_nospin1_ratio']:.3f}x "
                f"({chk['lat_nospin1_ms'][1]:.2f} / {chk['lat_nospin1_ms'][0]:.2f} ms) | — | — |",
            ]
        lines += [
            f"| analyze + prune + save | {t_med:.2f} s [{min(tot):.2f}–{max(tot):.2f}] "
            f"(analyze {statistics.median(x['analyze_s'] for x in runs):.2f}, "
            f"prune {statistics.median(x['prune_s'] for x in runs):.2f}, "
            f"save {statistics.median(x['save_s'] for x in runs):.2f}) | < {TARGET_SECONDS:.0f} s | "
            f"{_pf(t_med < TARGET_SECONDS)} |",
            f"| Peak RSS increment over post-import baseline | {inc / size:.2f}x file size "
            f"({_mb(inc)}) | < {TARGET_MEMORY:.0f}x | {_pf(inc / size < TARGET_MEMORY)} |",
            f"| Peak RSS, absolute | {peak / size:.2f}x file size ({_mb(peak)}; baseline after "
            f"imports {_mb(base)}) | < {TARGET_MEMORY:.0f}x | {_pf(peak / size < TARGET_MEMORY)} |",
        ]
        alone = r["prune_alone"]
        a_inc = alone["peak_rss"] - alone["baseline_rss"]
        lines.append(
            f"| Peak RSS increment, `prune` alone without `analyze` (informational) | "
            f"{a_inc / size:.2f}x file size ({_mb(a_inc)}; {alone['total_s']:.2f} s) | — | — |"
        )
        if chk["runs"]:
            lines.append(
                f"| Output cosine similarity (informational) | {chk['cosine']:.4f} "
                f"(max abs diff {chk['max_abs']:.3g}) | — | — |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_doc(path: Path, section: str) -> None:
    if path.exists():
        text = path.read_text()
        b, e = text.find(BEGIN), text.find(END)
        if b != -1 and e != -1 and e > b:
            text = text[:b] + section.rstrip("\n") + text[e + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = "# Benchmarks\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-md", default="docs/benchmarks.md", help="markdown file to update")
    p.add_argument(
        "--workdir",
        default=None,
        help="folder for the exported/pruned models (default: a temporary folder)",
    )
    p.add_argument("--repeat", type=int, default=30, help="timed runs per model for latency")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per model for latency")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5], help="pruning ratios")
    p.add_argument("--round-to", type=int, nargs="+", default=[1], help="round_to values")
    p.add_argument(
        "--child-runs",
        type=int,
        default=3,
        help="fresh processes per configuration for time/memory",
    )
    p.add_argument("--exporters", nargs="+", choices=list(EXPORTERS), default=list(EXPORTERS))
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also run one profiled child per configuration and print the top N entries by cumulative time",
    )
    # child mode (internal)
    p.add_argument("--export-to", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-model", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--child-ratio", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--child-round-to", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--child-json", help=argparse.SUPPRESS)
    p.add_argument("--child-skip-analyze", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-profile", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-profile-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if args.export_to:
        return run_export(Path(args.export_to))

    command = "PYTHONPATH=. python tools/bench_resnet50.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    tmp_ctx = None
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="bench_resnet50_")
        workdir = Path(tmp_ctx.name)
    t_start = time.perf_counter()
    try:
        paths = export_models(workdir)
        info = machine_info()
        results = []
        for exporter in args.exporters:
            model = paths[exporter]
            for ratio in args.ratios:
                for k in args.round_to:
                    pruned = workdir / f"{model.stem}_pruned_r{ratio}_k{k}.onnx"
                    runs = []
                    for i in range(args.child_runs):
                        runs.append(spawn_child(model, pruned, ratio, k, workdir))
                        print(
                            f"[{exporter} r={ratio} k={k}] child {i + 1}: "
                            f"{runs[-1]['total_s']:.2f} s (analyze {runs[-1]['analyze_s']:.2f}, "
                            f"prune {runs[-1]['prune_s']:.2f}, save {runs[-1]['save_s']:.2f}), "
                            f"peak {_mb(runs[-1]['peak_rss'])} (VmHWM {_mb(runs[-1]['vmhwm'])}), baseline {_mb(runs[-1]['baseline_rss'])}",
                            flush=True,
                        )
                    alone = spawn_child(model, pruned, ratio, k, workdir, skip_analyze=True)
                    print(
                        f"[{exporter} r={ratio} k={k}] prune alone: {alone['total_s']:.2f} s, "
                        f"peak {_mb(alone['peak_rss'])}, baseline {_mb(alone['baseline_rss'])}",
                        flush=True,
                    )
                    if args.profile:
                        prof = spawn_child(
                            model, pruned, ratio, k, workdir, profile_top=args.profile
                        )
                        print(
                            f"[{exporter} r={ratio} k={k}] cProfile of analyze + prune + save "
                            f"(top {args.profile} by cumulative time):\n{prof['profile_text']}",
                            flush=True,
                        )
                    check = check_and_time(model, pruned, args.repeat, args.warmup, args.threads)
                    print(
                        f"[{exporter} r={ratio} k={k}] checker={check['checker']} runs={check['runs']} "
                        f"latency ratio={check.get('lat_ratio', float('nan')):.3f} "
                        f"({check.get('lat_pruned_ms', 0):.2f} / {check.get('lat_orig_ms', 0):.2f} ms) "
                        f"nospin={check.get('lat_nospin_ratio', float('nan')):.3f} "
                        f"1thread={check.get('lat_nospin1_ratio', float('nan')):.3f} "
                        f"cosine={check.get('cosine', float('nan')):.4f}",
                        flush=True,
                    )
                    results.append(
                        {
                            "exporter": exporter,
                            "ratio": ratio,
                            "round_to": k,
                            "file_size": model.stat().st_size,
                            "pruned_size": pruned.stat().st_size,
                            "child": runs[0],
                            "child_runs": runs,
                            "prune_alone": alone,
                            "check": check,
                        }
                    )
        section = render_section(info, results, command, args)
        out_md = Path(args.out_md)
        if not out_md.is_absolute():
            out_md = REPO_ROOT / out_md
        write_doc(out_md, section)
        print(section)
        print(f"wrote {out_md} in {time.perf_counter() - t_start:.0f} s total", flush=True)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
