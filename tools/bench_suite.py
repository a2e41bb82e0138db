#!/usr/bin/env python
"""Side-by-side benchmark suite: onnxprune against the peers that are installed.

Run from the repository root (CPU; about 10 minutes on 2 cores)::

    PYTHONPATH=. python tools/bench_suite.py

and on a machine with onnxruntime-gpu and an NVIDIA GPU::

    PYTHONPATH=. python tools/bench_suite.py --ep cuda --label "NVIDIA H100"

Models: the zoo (``models/zoo.py``), torchvision ``resnet50``, ``mobilenet_v2`` (``tv_mobilenet_v2``),
``efficientnet_b0``, ``densenet121`` and ``vit_b_16`` with random weights (BatchNorm statistics
calibrated on random images and the classifier re-drawn, so outputs mean something; nothing is
downloaded), and the trained models of ``models/trained/`` when present. Each is pruned at
ratios 0.3 and 0.5 by:

- **onnxprune**: ``onnxprune.api.prune(model, ratio)`` (uniform per group, L1), and
  **onnxprune-r8** the same with ``round_to=8`` (kept channel counts a multiple of 8);
- **onnxsim** (when ``onnxsim`` is installed): ``onnxsim.simplify`` (which fuses BatchNorm) then
  ``onnxsim.pruning.apply_structured_pruning(sparsity=ratio)``;
- **Torch-Pruning** (when ``torch_pruning`` is installed, torchvision models only): a
  ``MagnitudePruner`` with ``pruning_ratio=ratio`` (L1, classifier kept) on the torch module, then
  the same ONNX export as the original.

Each tool runs in a fresh child process, which measures its wall time and peak resident memory
after the imports. Every output is checked (``check_model(full_check=True)``), profiled with
onnxprune's profiler, compared with the original on seeded inputs (cosine similarity of the
first output), and timed together with the original and every other output in ONE interleaved
loop (A B C ... A B C ...), so machine drift hits all alike. Speedup = median latency of the
original / median of the pruned model; efficiency = speedup / (MACs before / MACs after).

Results replace the section ``<!-- suite-EP:begin -->`` ... ``<!-- suite-EP:end -->`` of
``--out-md`` and a plot ``docs/figures/suite-EP.png``; the raw numbers go to ``--workdir``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("onnxprune", "onnxprune-r8", "onnxsim", "torch-pruning")
#: suite name -> torchvision constructor ("tv_" keeps them apart from the zoo's small namesakes)
TORCHVISION = {"resnet50": "resnet50", "tv_mobilenet_v2": "mobilenet_v2", "efficientnet_b0": "efficientnet_b0",
               "densenet121": "densenet121", "vit_b_16": "vit_b_16"}
IMAGE_SIZE = 224


# ---------------------------------------------------------------------------- children
def _rss(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]


def _torchvision():
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    from torchvision_compat import import_torchvision

    return import_torchvision()


def _tv_model(name: str):
    tv = _torchvision()
    return getattr(tv.models, TORCHVISION[name])(weights=None)


def _export(model, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def child(args: argparse.Namespace) -> int:
    """One tool on one model: writes the pruned model and prints time and memory as JSON."""
    out: dict = {}
    try:
        if args.child in ("onnxprune", "onnxprune-r8"):
            from onnxprune.api import prune

            base, t0 = _rss("VmRSS"), time.perf_counter()
            prune(args.model, ratio=args.ratio, round_to=8 if args.child == "onnxprune-r8" else 1).save(args.out)
        elif args.child == "onnxsim":
            import onnx
            import onnxsim
            from onnxsim import pruning

            base, t0 = _rss("VmRSS"), time.perf_counter()
            simplified, ok = onnxsim.simplify(args.model)
            if not ok:
                raise RuntimeError("onnxsim.simplify could not validate its output")
            onnx.save(pruning.apply_structured_pruning(simplified, sparsity=args.ratio), args.out)
        else:
            import torch
            import torch_pruning as tp

            model = _tv_model(args.tv_name)
            model.load_state_dict(torch.load(args.state, weights_only=True))
            model.eval()
            example = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
            head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
            base, t0 = _rss("VmRSS"), time.perf_counter()
            kw = {}
            if TORCHVISION[args.tv_name].startswith("vit"):
                mha = [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
                kw = {"num_heads": {m: m.num_heads for m in mha}}
            pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                               pruning_ratio=args.ratio, ignored_layers=[head], **kw)
            pruner.step()
            out["seconds"] = time.perf_counter() - t0
            out["peak_rss_delta"] = max(_rss("VmHWM") - base, 0)
            if kw:  # keep the attention module's bookkeeping consistent with the pruned widths
                for m in kw["num_heads"]:
                    m.embed_dim = m.out_proj.in_features
                    m.head_dim = m.embed_dim // m.num_heads
                torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX export
            with torch.no_grad():
                _export(model, Path(args.out))
        out.setdefault("seconds", time.perf_counter() - t0)
        out.setdefault("peak_rss_delta", max(_rss("VmHWM") - base, 0))
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result, not a crash
        out = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def spawn(args: list[str], timeout: int = 1200) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        cp = subprocess.run(cmd, env=env, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in cp.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (cp.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {cp.returncode}: {tail[:240]}"}


# ---------------------------------------------------------------------------- models
def prepare_models(names: list[str], workdir: Path) -> dict[str, dict]:
    """Writes each original model; torchvision ones also keep their weights for Torch-Pruning."""
    from models.zoo import ZOO, build
    from onnxprune.io import save_proto

    out: dict[str, dict] = {}
    for name in names:
        path = workdir / f"{name}.onnx"
        entry = {"path": path, "kind": "zoo"}
        if name in ZOO:
            if not path.exists():
                save_proto(build(name), path)
        elif name in TORCHVISION:
            import torch

            sys.path.insert(0, str(REPO_ROOT / "tools"))
            from export_torch_models import condition_weights

            state = workdir / f"{name}.pt"
            entry.update(kind="torchvision", state=state)
            if not path.exists():
                torch.manual_seed(0)
                model = _tv_model(name)
                condition_weights(model, batches=2, batch_size=8, image_size=IMAGE_SIZE)
                torch.save(model.state_dict(), state)
                _export(model, path)
        else:
            trained = REPO_ROOT / "models" / "trained" / f"{name}.onnx"
            if not trained.exists():
                raise SystemExit(f"unknown model '{name}'")
            entry.update(path=trained, kind="trained")
        out[name] = entry
    return out


def default_models() -> list[str]:
    from models.zoo import ZOO

    trained = sorted(p.stem for p in (REPO_ROOT / "models" / "trained").glob("*.onnx"))
    return list(ZOO) + list(TORCHVISION) + trained


# ---------------------------------------------------------------------------- measuring
def _feeds(path: str, batch: int, seed: int) -> dict:
    from onnxprune.bench import batch_feeds

    try:
        return batch_feeds(path, batch, seed=seed)
    except Exception:  # fixed batch
        return batch_feeds(path, 1, seed=seed)


def evaluate(name: str, entry: dict, results: dict, args: argparse.Namespace, provider: str) -> None:
    """Checks, profiles, compares and times every pruned output of one model (in place)."""
    import numpy as np
    import onnx

    from onnxprune.bench import interleaved_latency
    from onnxprune.graph import load
    from onnxprune.profile import LINEAR_OPS, profile
    from onnxprune.verify import session

    def layer_macs(prof) -> int:  # Conv/Gemm/MatMul only: fusing BatchNorm must not count as pruning
        return sum(n.macs for n in prof.nodes if n.op in LINEAR_OPS)

    orig = str(entry["path"])
    base = profile(load(orig))
    results["macs"], results["params"] = base.macs, base.params
    feeds = _feeds(orig, 4, seed=1)
    ref = session(orig).run(None, feeds)[0]
    timed: list[tuple[str, str]] = []
    for key, r in results["runs"].items():
        if "error" in r:
            continue
        try:
            onnx.checker.check_model(r["out"], full_check=True)
            p = profile(load(r["out"]))
            r["macs_ratio"], r["params_ratio"] = p.macs / base.macs, p.params / base.params
            r["layer_macs_ratio"] = layer_macs(p) / layer_macs(base)
            got = session(r["out"]).run(None, feeds)[0]
            a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
            r["cosine"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            timed.append((key, r["out"]))
        except Exception as exc:  # noqa: BLE001
            r["error"] = f"invalid output: {_first_line(exc)}"
    lat_feeds = _feeds(orig, args.batch, seed=2)
    try:
        lat = interleaved_latency([orig] + [p for _, p in timed], lat_feeds, threads=args.threads,
                                  warmup=args.warmup, repeat=args.repeat, provider=provider)
    except Exception as exc:  # noqa: BLE001 - e.g. an EP that cannot start
        results["latency_error"] = _first_line(exc)
        return
    med = lat.medians_ms
    results["latency_ms"] = med[0]
    for i, (key, _) in enumerate(timed, start=1):
        r = results["runs"][key]
        r["latency_ms"] = med[i]
        r["speedup"] = med[0] / med[i]
        r["efficiency"] = r["speedup"] * r["macs_ratio"]
        pair = lat.samples_ms[0] / lat.samples_ms[i]
        r["speedup_iqr"] = [float(np.percentile(pair, 25)), float(np.percentile(pair, 75))]


def run_model(name: str, entry: dict, args: argparse.Namespace, provider: str, workdir: Path) -> dict:
    results: dict = {"name": name, "kind": entry["kind"], "runs": {}}
    for ratio in args.ratios:
        for tool in args.tools:
            if tool == "torch-pruning" and entry["kind"] != "torchvision":
                continue
            out = workdir / f"{name}-{tool}-{ratio}.onnx"
            cargs = ["--child", tool, "--model", str(entry["path"]), "--ratio", str(ratio), "--out", str(out)]
            if tool == "torch-pruning":
                cargs += ["--tv-name", name, "--state", str(entry["state"])]
            r = spawn(cargs)
            r.update(tool=tool, ratio=ratio, out=str(out))
            results["runs"][f"{tool}@{ratio}"] = r
            status = r.get("error") or f"{r['seconds']:.2f} s"
            print(f"  {name} {tool} {ratio}: {status}", flush=True)
    evaluate(name, entry, results, args, provider)
    return results


# ---------------------------------------------------------------------------- report
def _fmt(r: dict, key: str, spec: str) -> str:
    v = r.get(key)
    return format(v, spec) if isinstance(v, (int, float)) else "—"


def acceptance(all_results: list[dict]) -> list[str]:
    lines = []
    r50 = next((m for m in all_results if m["name"] == "resnet50"), None)
    if r50:
        ours, theirs = r50["runs"].get("onnxprune@0.5", {}), r50["runs"].get("torch-pruning@0.5", {})
        if "latency_ms" in ours and "latency_ms" in theirs:
            rel = ours["latency_ms"] / theirs["latency_ms"]
            ok = rel <= 1.0
            lines.append(
                f"- resnet50 at 0.5: onnxprune {ours['latency_ms']:.2f} ms vs Torch-Pruning "
                f"{theirs['latency_ms']:.2f} ms (ratio {rel:.3f}, {'pass' if ok else 'FAIL'}: at least as fast) at "
                f"MACs {ours['macs_ratio']:.3f}x vs {theirs['macs_ratio']:.3f}x of the original"
            )
    more, equal, fewer = [], [], []
    for m in all_results:
        for ratio in sorted({r["ratio"] for r in m["runs"].values()}):
            ours, sim = m["runs"].get(f"onnxprune@{ratio}", {}), m["runs"].get(f"onnxsim@{ratio}", {})
            if "layer_macs_ratio" in ours and "layer_macs_ratio" in sim:
                a, b = ours["layer_macs_ratio"], sim["layer_macs_ratio"]
                (more if a < b - 1e-9 else equal if abs(a - b) <= 1e-9 else fewer).append(f"{m['name']}@{ratio}")
    if more or equal or fewer:
        lines.append(
            f"- Conv/Gemm/MatMul MACs removed, onnxprune vs onnxsim at the same nominal ratio: more in "
            f"{len(more)}, equal in {len(equal)}" + (f" ({', '.join(equal)}: both cut every layer by the ratio)" if equal else "")
            + f", fewer in {len(fewer)}" + (f" ({', '.join(fewer)})" if fewer else "")
            + f" of {len(more) + len(equal) + len(fewer)} model/ratio pairs ({'pass' if not fewer else 'FAIL'})"
        )
    return lines


def render(all_results: list[dict], info: dict, command: str, ep: str, plot: str | None) -> str:
    lines = [
        f"### Side-by-side suite on {ep.upper()}, batch {info['batch']} ({info['label']})",
        "",
        f"Command: `{command}` — {info['date']}, onnxruntime {info['onnxruntime']}, {info['peers']}; "
        + (f"{info['threads']} intra-op threads, " if ep == "cpu" else "inputs bound on the device (IO binding), ")
        + f"batch {info['batch']}, {info['repeat']} interleaved turns after "
        f"{info['warmup']} warm-up runs.",
        "",
        "MACs and params: after/before from onnxprune's profiler (MACs include pools and norms, so "
        "onnxsim's BatchNorm fusion lowers them without pruning; layer MACs count Conv/Gemm/MatMul only "
        "and are what pruning removes). Speedup: median latency of the original "
        "over the pruned model's, all outputs of a model timed in one interleaved loop. Efficiency: speedup × "
        "MACs after/before (1 = latency fell as much as the arithmetic). Cosine: first output against the "
        "original on 4 seeded inputs (random weights; BatchNorm statistics calibrated). Tool time and peak "
        "memory: the tool's own step in a fresh process, after imports (Torch-Pruning: the pruning step, "
        "not the export).",
        "",
        "| model | tool | ratio | MACs | layer MACs | params | speedup (IQR) | efficiency | cosine | tool s | tool peak MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in all_results:
        if "latency_error" in m:
            lines.append(f"| {m['name']} | all | — | — | — | — | {m['latency_error']} | | | | |")
        for r in m["runs"].values():
            if "error" in r:
                lines.append(f"| {m['name']} | {r['tool']} | {r['ratio']} | failed: {r['error']} | | | | | | | |")
                continue
            iqr = r.get("speedup_iqr")
            sp = f"{r['speedup']:.2f}x ({iqr[0]:.2f}–{iqr[1]:.2f})" if "speedup" in r else "—"
            lines.append(
                f"| {m['name']} | {r['tool']} | {r['ratio']} | {_fmt(r, 'macs_ratio', '.3f')} | "
                f"{_fmt(r, 'layer_macs_ratio', '.3f')} | {_fmt(r, 'params_ratio', '.3f')} | {sp} | {_fmt(r, 'efficiency', '.2f')} | "
                f"{_fmt(r, 'cosine', '.4f')} | {r['seconds']:.2f} | {r['peak_rss_delta'] / 2**20:.0f} |"
            )
    acc = acceptance(all_results)
    if acc:
        lines += ["", "Acceptance checks (same run):", "", *acc]
    if plot:
        lines += ["", f"![speedup against MACs kept]({plot})"]
    return "\n".join(lines) + "\n"


def draw(all_results: list[dict], path: Path, ep: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    markers = {"onnxprune": "o", "onnxprune-r8": "D", "onnxsim": "s", "torch-pruning": "^"}
    for tool in TOOLS:
        pts = [(r["macs_ratio"], r["speedup"]) for m in all_results for r in m["runs"].values()
               if r.get("tool") == tool and "speedup" in r]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, marker=markers[tool], label=tool, alpha=0.8)
    xs = [x / 100 for x in range(20, 101)]
    ax.plot(xs, [1 / x for x in xs], linestyle="--", color="grey", alpha=0.6, label="speedup = MACs gain")
    ax.set_xlabel("MACs after / before")
    ax.set_ylabel(f"measured {ep.upper()} speedup")
    ax.set_title(f"Speedup against MACs kept ({ep.upper()})")
    ax.legend()
    fig.tight_layout()
    from onnxprune.io import save_figure

    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)
    return True


def write_doc(path: Path, section: str, ep: str) -> None:
    from onnxprune.report import replace_section

    begin, end = f"<!-- suite-{ep}:begin -->", f"<!-- suite-{ep}:end -->"
    replace_section(path, begin, end, f"{begin}\n{section}{end}", title="# Benchmarks\n")


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", help="zoo, torchvision or trained model names (default: all)")
    ap.add_argument("--ratios", nargs="*", type=float, default=[0.3, 0.5])
    ap.add_argument("--tools", nargs="*", default=list(TOOLS), choices=TOOLS)
    ap.add_argument("--ep", default="cpu", help="execution provider: cpu, cuda, tensorrt")
    ap.add_argument("--label", default=None, help="device label for the section title")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--onnxruntime-version", help="with --render-only: the version the results were measured with")
    ap.add_argument("--render-only", type=Path, metavar="RESULTS_JSON",
                    help="rewrite the section from a saved results.json without measuring")
    ap.add_argument("--resume", action="store_true",
                    help="keep the models already measured in WORKDIR/results.json by an interrupted run")
    ap.add_argument("--out-md", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--figures", type=Path, default=REPO_ROOT / "docs" / "figures")
    # child mode
    ap.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--ratio", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tv-name", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    import importlib.util

    from onnxprune.bench import resolve_eps

    provider = None if args.render_only else resolve_eps(args.ep)[0]
    args.tools = [t for t in args.tools
                  if t.startswith("onnxprune") or importlib.util.find_spec(t.replace("-", "_")) is not None]
    peers = []
    for t, mod in (("onnxsim", "onnxsim"), ("Torch-Pruning", "torch_pruning")):
        try:
            from importlib.metadata import version

            peers.append(f"{t} {version(mod.replace('_', '-'))}")
        except Exception:  # noqa: BLE001
            peers.append(f"{t} not installed")
    if args.render_only:
        return publish(json.loads(args.render_only.read_text()), args, peers, argv, None)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="onnxprune-suite-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = args.models or default_models()
    print(f"models: {', '.join(names)}\ntools: {', '.join(args.tools)}\nworkdir: {workdir}", flush=True)
    done: dict[str, dict] = {}
    saved = workdir / "results.json"
    if args.resume and saved.exists():  # models measured by an interrupted run of the same command
        done = {m["name"]: m for m in json.loads(saved.read_text())}
    all_results = []
    for name in names:
        if name in done:
            print(f"{name}: kept from {saved}", flush=True)
            all_results.append(done[name])
            continue
        entry = prepare_models([name], workdir)[name]
        print(f"{name}:", flush=True)
        all_results.append(run_model(name, entry, args, provider, workdir))
        saved.write_text(json.dumps(all_results, indent=1, default=str))
    return publish(all_results, args, peers, argv, workdir)


def publish(all_results: list[dict], args: argparse.Namespace, peers: list[str], argv: list[str] | None,
            workdir: Path | None) -> int:
    import onnxruntime as ort

    ep = args.ep.split(",")[0].lower()
    info = {
        "date": _dt.date.today().isoformat(),
        "onnxruntime": args.onnxruntime_version or ort.__version__,
        "peers": ", ".join(peers),
        "label": args.label or f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads or "default",
        "batch": args.batch,
        "repeat": args.repeat,
        "warmup": args.warmup,
    }
    fig = args.figures / (f"suite-{ep}.png" if args.batch == 1 else f"suite-{ep}-b{args.batch}.png")
    plotted = draw(all_results, fig, ep)
    rel_fig = os.path.relpath(fig, args.out_md.parent) if plotted else None
    raw = list(argv if argv is not None else sys.argv[1:])
    for flag in ("--workdir", "--render-only", "--out-md", "--figures", "--onnxruntime-version"):  # where files went, not what ran
        if flag in raw:
            i = raw.index(flag)
            del raw[i:i + 2]
    shown = ["python", "tools/bench_suite.py", *raw]
    section = render(all_results, info, "PYTHONPATH=. " + shlex.join(shown), ep, rel_fig)
    write_doc(args.out_md, section, ep if args.batch == 1 else f"{ep}-b{args.batch}")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
