#!/usr/bin/env python
"""ResNet-50 benchmark of onnxprune (torchvision, random weights, both torch exporters).

Run from the repository root::

    PYTHONPATH=. python tools/bench_resnet50.py [--repeat N] [--ratios R ...] [--round-to K ...]

Exports ``resnet50(weights=None)`` with the TorchScript (``dynamo=False``, opset 17) and the
``torch.export`` (``dynamo=True``, opset 18) exporters into ``--workdir`` (a temporary folder by
default; nothing is downloaded) and, per export and ratio/round_to setting, measures: wall time
and peak RSS of ``analyze`` + ``prune(depgraph=...)`` + ``save`` in fresh child processes (and of
``prune`` alone); MACs and parameter ratios, channel groups, ``check_model(full_check=True)`` and
an onnxruntime run of the pruned file; the CPU latency ratio pruned/original from interleaved runs
(``onnxprune.bench.interleaved_latency``) with ``--threads`` threads and with one thread. The
results replace the section between ``<!-- resnet50:begin -->`` and ``<!-- resnet50:end -->`` of
``--out-md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine_info  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- resnet50:begin -->"
END = "<!-- resnet50:end -->"

# Acceptance targets.
TARGET_MACS = 0.30  # pruned/original MACs at ratio 0.5
TARGET_LATENCY = 0.30  # pruned/original median latency
TARGET_SECONDS = 3.0  # analyze + prune + save, in a fresh process, after imports
TARGET_MEMORY = 3.0  # peak RSS as a multiple of the model file size

EXPORTERS = {
    "legacy": "TorchScript exporter (`dynamo=False`, opset 17)",
    "dynamo": "torch.export exporter (`dynamo=True`, `external_data=False`, opset 18)",
}


def _run_self(args: list[str]) -> subprocess.CompletedProcess:
    """Runs this script in a fresh interpreter with the repository on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.run(cmd, env=env, cwd=str(REPO_ROOT), capture_output=True, text=True)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(args: argparse.Namespace) -> int:
    """Analyze + prune + save one model; time and memory are measured after the imports."""
    from onnxprune.api import analyze, prune

    baseline_rss = _proc_status_bytes("VmRSS")
    t0 = time.perf_counter()
    an = None if args.child_skip_analyze else analyze(args.child_model)
    share = an.prunable_macs_share if an is not None else None
    t1 = time.perf_counter()
    kw = {"ratio": args.child_ratio, "round_to": args.child_round_to}
    res = prune(args.child_model, depgraph=an.depgraph if an is not None else None, **kw)
    del an
    t2 = time.perf_counter()
    res.save(args.child_out)
    t3 = time.perf_counter()
    out = {
        "analyze_s": t1 - t0, "prune_s": t2 - t1, "save_s": t3 - t2, "total_s": t3 - t0,
        # VmHWM, unlike ru_maxrss, does not start from the parent's RSS at fork time
        "baseline_rss": baseline_rss, "peak_rss": _proc_status_bytes("VmHWM"),
        "groups": len(res.depgraph.groups), "prunable_macs_share": share,
        "before_macs": res.before.macs, "after_macs": res.after.macs,
        "before_params": res.before.params, "after_params": res.after.params,
    }
    Path(args.child_json).write_text(json.dumps(out))
    return 0


def spawn_child(
    model: Path, out: Path, ratio: float, round_to: int, workdir: Path, skip_analyze: bool = False
) -> dict:
    js = out.with_suffix(".json")
    js.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    cmd = ["--child", "--child-model", str(model), "--child-out", str(out), "--child-json", str(js),
           "--child-ratio", str(ratio), "--child-round-to", str(round_to)]
    proc = _run_self(cmd + (["--child-skip-analyze"] if skip_analyze else []))
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}) on {model.name}:\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(js.read_text())


def model_paths(workdir: Path) -> dict[str, Path]:
    return {name: workdir / f"resnet50_{name}.onnx" for name in EXPORTERS}


def run_export(workdir: Path) -> int:
    """Exports both models (run in a child process, so the parent never holds torch)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torchvision_compat import import_torchvision

    torch.manual_seed(0)
    m = import_torchvision().models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    batch = torch.export.Dim("batch", min=1, max=1024)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    kwargs = {
        "legacy": dict(args=x, dynamo=False, opset_version=17, **names,
                       dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}),
        "dynamo": dict(args=(x,), dynamo=True, external_data=False, opset_version=18, **names,
                       dynamic_shapes=({0: batch},)),
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, path in model_paths(workdir).items():
            if not path.exists():
                t0 = time.perf_counter()
                torch.onnx.export(m, f=str(path), **kwargs[name])
                print(f"exported {path.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


def shared_initializers(path: Path) -> int:
    """Initializers of the file read by more than one node (directly or through ``Identity``)."""
    import collections

    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    is_alias = [n.op_type == "Identity" and n.input[0] in inits for n in m.graph.node]
    alias = {n.output[0]: n.input[0] for n, a in zip(m.graph.node, is_alias) if a}
    uses: collections.Counter[str] = collections.Counter()
    for n, a in zip(m.graph.node, is_alias):
        if not a:
            uses.update({alias.get(name, name) for name in n.input} & inits)
    return sum(1 for c in uses.values() if c > 1)


def _latency(models: list[str], feeds: dict, threads: int, args: argparse.Namespace) -> dict:
    import numpy as np

    from onnxprune.bench import interleaved_latency

    lat = interleaved_latency(models, feeds, threads, warmup=args.warmup, repeat=args.repeat)
    pair = np.asarray(lat.samples_ms[1]) / np.asarray(lat.samples_ms[0])
    return {
        "ms": lat.medians_ms,  # [original, pruned]
        "ratio": lat.ratio(1, 0),
        "pair_q": [float(np.percentile(pair, q)) for q in (25, 50, 75)],
    }


def check_and_time(original: Path, pruned: Path, args: argparse.Namespace) -> dict:
    import onnx

    from onnxprune.verify import compare, make_feeds, session

    out: dict = {"shared_inits": shared_initializers(original), "checker_error": ""}
    try:
        onnx.checker.check_model(str(pruned), full_check=True)
        out["checker"] = True
    except Exception as exc:  # noqa: BLE001
        out.update(checker=False, checker_error=_first_line(exc))
    feeds = make_feeds(session(str(original)), batch=1, seed=0)
    try:
        agree = compare(str(original), str(pruned), feeds=feeds)[0]
    except Exception as exc:  # noqa: BLE001
        out.update(runs=False, run_error=_first_line(exc))
        return out
    out.update(runs=True, cosine=agree.cosine, max_abs=agree.max_abs, out_shape=list(agree.shape))
    models = [str(original), str(pruned)]
    out["lat"] = _latency(models, feeds, args.threads, args)
    out["lat1"] = _latency(models, feeds, 1, args)
    return out


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _pf(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(metric: str, value: str, target: str = "—", ok: bool | None = None) -> str:
    return f"| {metric} | {value} | {target} | {'—' if ok is None else _pf(ok)} |"


def _table(r: dict, args: argparse.Namespace) -> list[str]:
    c, chk, runs, size = r["child"], r["check"], r["child_runs"], r["file_size"]

    def med(key: str) -> float:
        return statistics.median(x[key] for x in runs)

    tot = [x["total_s"] for x in runs]
    inc, peak = statistics.median(x["peak_rss"] - x["baseline_rss"] for x in runs), med("peak_rss")
    macs_r = c["after_macs"] / c["before_macs"]
    params_r = c["after_params"] / c["before_params"]
    mem_target = f"< {TARGET_MEMORY:.0f}x"
    ran = "no: " + chk.get("run_error", "")
    if chk["runs"]:
        ran = f"yes, output {'x'.join(map(str, chk['out_shape']))}"
    lines = [
        f"### {EXPORTERS[r['exporter']]} — ratio {r['ratio']}, round_to {r['round_to']}",
        "",
        f"Model file: {_mb(size)} ({size:,} bytes); pruned file: {_mb(r['pruned_size'])}; "
        f"{c['groups']} channel groups; {chk['shared_inits']} initializers of the file are read "
        "by several nodes.",
        "",
        "| Metric | Value | Target | Result |",
        "|---|---|---|---|",
        _row("MACs after/before", f"{macs_r:.3f}x ({c['after_macs'] / 1e9:.3f} / "
             f"{c['before_macs'] / 1e9:.3f} GMACs)", f"<= {TARGET_MACS:.2f}x",
             macs_r <= TARGET_MACS),
        _row("Params after/before", f"{params_r:.3f}x ({c['after_params'] / 1e6:.2f}M / "
             f"{c['before_params'] / 1e6:.2f}M)"),
        _row("Conv/Gemm MACs reported prunable", f"{100 * c['prunable_macs_share']:.1f}%"),
        _row("Pruned model passes `check_model(full_check=True)`",
             "yes" if chk["checker"] else "no: " + chk["checker_error"], "yes", chk["checker"]),
        _row("Pruned model runs in onnxruntime", ran, "yes", chk["runs"]),
    ]
    for key, label in (("lat", f"{args.threads} threads"), ("lat1", "1 thread (informational)")):
        if chk["runs"]:
            lat, q = chk[key], chk[key]["pair_q"]
            value = (f"{lat['ratio']:.3f}x ({lat['ms'][1]:.2f} / {lat['ms'][0]:.2f} ms; per-pair "
                     f"median {q[1]:.3f}x, IQR {q[0]:.3f}–{q[2]:.3f})")
            target, ok = (f"<= {TARGET_LATENCY:.2f}x", lat["ratio"] <= TARGET_LATENCY) if (
                key == "lat") else ("—", None)
            lines.append(_row(f"Latency pruned/original, {label}", value, target, ok))
    alone = r["prune_alone"]
    a_inc = alone["peak_rss"] - alone["baseline_rss"]
    lines += [
        _row("analyze + prune + save", f"{med('total_s'):.2f} s [{min(tot):.2f}–{max(tot):.2f}] "
             f"(analyze {med('analyze_s'):.2f}, prune {med('prune_s'):.2f}, save "
             f"{med('save_s'):.2f})", f"< {TARGET_SECONDS:.0f} s", med("total_s") < TARGET_SECONDS),
        _row("Peak RSS increment over post-import baseline",
             f"{inc / size:.2f}x file size ({_mb(inc)})", mem_target, inc / size < TARGET_MEMORY),
        _row("Peak RSS, absolute", f"{peak / size:.2f}x file size ({_mb(peak)}; baseline after "
             f"imports {_mb(med('baseline_rss'))})", mem_target, peak / size < TARGET_MEMORY),
        _row("`prune` alone, without `analyze` (informational)", f"{alone['total_s']:.2f} s; "
             f"peak RSS increment {a_inc / size:.2f}x file size ({_mb(a_inc)})"),
    ]
    if chk["runs"]:
        lines.append(_row("Output cosine similarity (informational)",
                          f"{chk['cosine']:.4f} (max abs diff {chk['max_abs']:.3g})"))
    return lines + [""]


def render_section(info: dict, results: list[dict], command: str, args: argparse.Namespace) -> str:
    per_export = {r["exporter"]: r for r in results}
    groups = " and ".join(
        f"{r['child']['groups']} with `dynamo={e == 'dynamo'}` (its file has "
        f"{r['check']['shared_inits']} initializers read by several nodes)"
        for e, r in per_export.items()
    )
    n = args.child_runs
    lines = [
        BEGIN,
        "## ResNet-50 (torchvision, random weights)",
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
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), onnxruntime {info['onnxruntime']}, "
        f"onnx {info['onnx']}, torch {info['torch']}, Python {info['python']}; run {info['date']}. "
        "The machine is shared, so latency is only reported as ratios from runs of the two "
        "models interleaved in one process.",
        "",
        "How each number is measured:",
        "",
        "- *analyze + prune + save*: wall time in a fresh child process, after its imports; "
        f"median of {n} child{'ren' if n != 1 else ''} (min and max in brackets). `prune` "
        "reuses the analysis (`depgraph=analysis.depgraph`) and includes its own validation "
        "(`check_model(full_check=True)` and an onnxruntime run). *`prune` alone*: one more "
        "child that calls `prune` on the file without `analyze`.",
        "- *Peak RSS*: the child's `VmHWM`; the *increment* subtracts its `VmRSS` right after "
        "the imports (Python, onnx, onnxruntime, numpy, onnx-graphsurgeon). Both are given as "
        "multiples of the model file size (median over the children).",
        "- *Prunable share*: the share of Conv/Gemm/MatMul MACs in groups with removable "
        "channels, as reported by `analyze`.",
        f"- *Latency*: `onnxprune.bench.interleaved_latency`, CPU provider, `ORT_ENABLE_ALL`, "
        f"batch 1, {args.warmup} warm-up runs each, then {args.repeat} runs each in the order "
        "A B A B ...; ratio of the medians, with the median and interquartile range of the "
        "per-pair ratios as a noise check. The sessions are created with intra-op spinning off "
        "(`session.intra_op.allow_spinning=0`): each session has its own thread pool, and while "
        "the two take turns, the idle, busy-waiting workers of one would steal the cores from "
        f"the other. The target applies to {args.threads} intra-op threads; the 1-thread row is "
        "informational.",
        "- *Output cosine*: cosine similarity of the logits of original and pruned on the same "
        "seeded input; informational, since the weights are random and nothing is fine-tuned.",
        "- *Channel groups*: sets of channels that must be removed together. The TorchScript "
        "exporter merges identical constants into one initializer read through `Identity` "
        "nodes; with random weights the Conv biases folded from fresh BatchNorms are all zero, "
        "so one tensor is read by many unrelated Convs. On load, onnxprune gives each reader of "
        "a shared constant whose elements are all equal its own copy, so such sharing couples "
        "no channels (shared tensors with varying values still do). Measured groups: "
        f"{groups}.",
        "",
    ]
    for r in results:
        lines += _table(r, args)
    return "\n".join(lines + [END]) + "\n"


def write_doc(path: Path, section: str) -> None:
    from onnxprune.report import replace_section

    replace_section(path, BEGIN, END, section, title="# Benchmarks\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Time and memory are measured in fresh child processes; latency only as ratios "
        "of interleaved runs, since the machine may be shared.",
    )
    p.add_argument("--out-md", default="docs/benchmarks.md",
                   help="markdown file whose resnet50 section is replaced (default: %(default)s)")
    p.add_argument("--workdir", help="folder for the exported and pruned models; exports already "
                   "in it are reused (default: a temporary folder, deleted at the end)")
    p.add_argument("--repeat", type=int, default=30,
                   help="timed runs per model in each latency measurement (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5,
                   help="warm-up runs per model before timing (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2,
                   help="onnxruntime intra-op threads for the latency target (default: "
                   "%(default)s); a 1-thread measurement is always added")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5],
                   help="pruning ratios to benchmark (default: 0.5, the one the targets are for)")
    p.add_argument("--round-to", type=int, nargs="+", default=[1],
                   help="round_to values to benchmark (default: 1)")
    p.add_argument("--child-runs", type=int, default=3,
                   help="fresh processes per setting for time and memory; medians are reported "
                   "(default: %(default)s)")
    p.add_argument("--exporters", nargs="+", choices=list(EXPORTERS), default=list(EXPORTERS),
                   help="exports to benchmark (default: both)")
    # internal: the export and the measured child processes
    for name in ("--export-to", "--child-model", "--child-out", "--child-json"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-ratio", type=float, help=argparse.SUPPRESS)
    p.add_argument("--child-round-to", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-skip-analyze", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bench_setting(exporter: str, model: Path, ratio: float, k: int, workdir: Path,
                  args: argparse.Namespace) -> dict:
    tag = f"[{exporter} r={ratio} k={k}]"
    pruned = workdir / f"{model.stem}_pruned_r{ratio}_k{k}.onnx"
    runs = [spawn_child(model, pruned, ratio, k, workdir) for _ in range(args.child_runs)]
    alone_out = pruned.with_name(pruned.stem + "_prune_alone.onnx")
    alone = spawn_child(model, alone_out, ratio, k, workdir, skip_analyze=True)
    for name, x in [*((f"child {i + 1}", x) for i, x in enumerate(runs)), ("prune alone", alone)]:
        print(f"{tag} {name}: {x['total_s']:.2f} s (analyze {x['analyze_s']:.2f}, prune "
              f"{x['prune_s']:.2f}, save {x['save_s']:.2f}), peak RSS {_mb(x['peak_rss'])}, "
              f"after imports {_mb(x['baseline_rss'])}", flush=True)
    check = check_and_time(model, pruned, args)
    if check["runs"]:
        print(f"{tag} latency ratio {check['lat']['ratio']:.3f} ({args.threads} threads), "
              f"{check['lat1']['ratio']:.3f} (1 thread)", flush=True)
    return {
        "exporter": exporter, "ratio": ratio, "round_to": k,
        "file_size": model.stat().st_size, "pruned_size": pruned.stat().st_size,
        "child": runs[0], "child_runs": runs, "prune_alone": alone, "check": check,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if args.export_to:
        return run_export(Path(args.export_to))

    command = "PYTHONPATH=. python tools/bench_resnet50.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_resnet50_") as tmp:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        proc = _run_self(["--export-to", str(workdir)])
        print(proc.stdout, end="", flush=True)
        if proc.returncode != 0:
            raise RuntimeError(f"export failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        paths = model_paths(workdir)
        info = machine_info()
        results = [
            bench_setting(e, paths[e], ratio, k, workdir, args)
            for e in args.exporters
            for ratio in args.ratios
            for k in args.round_to
        ]
    section = render_section(info, results, command, args)
    out_md = Path(args.out_md)
    write_doc(out_md if out_md.is_absolute() else REPO_ROOT / out_md, section)
    print(section)
    print(f"wrote {args.out_md} in {time.perf_counter() - t_start:.0f} s total", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
