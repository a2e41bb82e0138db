"""Runs the generated-graph properties over many random models and reports the outcome.

Every seed in ``--start .. --start + --count`` builds one model with
:func:`models.random_graphs.random_model` and checks it with
:func:`models.random_graphs.check_properties` (pruning at each ratio is valid, keeps the output
names/shapes/dtypes, and pruning exactly-dead channels is lossless). Outcomes are counted as:

- ``ok``;
- ``invalid`` — a property failed (invalid model, changed interface, outputs moved);
- ``refused`` — onnxprune raised one of its own errors on a valid model;
- ``crash`` — any other exception (an uncaught bug).

Usage::

    python tools/fuzz_graphs.py --count 1000                 # prints a summary
    python tools/fuzz_graphs.py --count 1000 --record        # also updates docs/reliability.md

Exit status is 1 when any graph is not ``ok``; the failing seeds are listed so a run can be
reproduced with ``--start SEED --count 1``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
import onnxruntime  # noqa: E402
from rich.progress import Progress  # noqa: E402

from models.random_graphs import check_properties, random_model  # noqa: E402
from onnxprune.errors import OnnxPruneError  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fuzz:begin -->", "<!-- fuzz:end -->"


def run(start: int, count: int, ratios: tuple[float, ...]) -> dict:
    outcome: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    failures: list[str] = []
    nodes = removed = lossless = prunable_graphs = 0
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task("generated graphs", total=count)
        for seed in range(start, start + count):
            model = None
            try:
                model = random_model(seed)
                facts = check_properties(model, ratios=ratios)
                outcome["ok"] += 1
                nodes += facts.nodes
                removed += sum(facts.removed.values())
                lossless += facts.lossless_removed
                prunable_graphs += facts.prunable > 0
            except AssertionError as exc:
                outcome["invalid"] += 1
                failures.append(f"seed {seed}: invalid: {str(exc).splitlines()[0]}")
            except OnnxPruneError as exc:
                outcome["refused"] += 1
                failures.append(f"seed {seed}: refused: {exc}")
            except Exception as exc:
                outcome["crash"] += 1
                failures.append(f"seed {seed}: crash: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            if model is not None:
                blocks.update(b.strip() for b in model.doc_string.removeprefix("blocks: ").split(","))
            progress.advance(task)
    return dict(
        start=start, count=count, ratios=ratios, outcome=outcome, blocks=blocks, failures=failures,
        nodes=nodes, removed=removed, lossless=lossless, prunable_graphs=prunable_graphs,
        seconds=time.perf_counter() - t0,
    )


def markdown(r: dict, command: str) -> str:
    o = r["outcome"]
    lines = [
        f"Command: `{command}` (onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}, {r['seconds']:.0f} s).",
        "",
        "| graphs | ok | invalid outputs | refusals | uncaught exceptions | nodes | channels removed (all ratios) | channels removed losslessly |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['count']} | {o['ok']} | {o['invalid']} | {o['refused']} | {o['crash']} | {r['nodes']} | "
        f"{r['removed']} | {r['lossless']} |",
        "",
        f"Seeds {r['start']}..{r['start'] + r['count'] - 1}; ratios {', '.join(str(x) for x in r['ratios'])}; "
        f"{r['prunable_graphs']} graphs had prunable channels. Blocks drawn: "
        + ", ".join(f"{k} {v}" for k, v in r["blocks"].most_common()) + ".",
    ]
    if r["failures"]:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in r["failures"][:50]]
    return "\n".join(lines)


def record(text: str) -> None:
    from onnxprune.report import replace_section

    try:
        replace_section(DOC, BEGIN, END, f"{BEGIN}\n{text}\n{END}", required=True)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="number of graphs (default 1000)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--ratios", default="0.3,0.6", help="pruning ratios to check (default 0.3,0.6)")
    ap.add_argument("--record", action="store_true", help=f"write the summary into {DOC.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # "nothing to prune" warnings are expected on some graphs
    ratios = tuple(float(x) for x in args.ratios.split(","))
    r = run(args.start, args.count, ratios)
    command = "python tools/fuzz_graphs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(r, command.strip())
    print(text)
    if args.record:
        record(text)
    return 0 if r["outcome"]["ok"] == r["count"] else 1


if __name__ == "__main__":
    sys.exit(main())
