#!/usr/bin/env python
"""Gradient-free repair on pretrained models: what helps on inputs the repair never saw.

Prunes the same models as ``bench_heal.py`` (pinned wheels, real inputs, calibration and test
disjoint) to 30 % of MACs removed with ``wanda`` + ``--reconstruct`` and varies one repair knob
at a time: the number of calibration samples, the ridge, and error feedback (``correction_passes``,
refit stage by stage in dependency order), statistics matching (``match_stats``: each pruned
layer's kept output channels get the original's mean and variance), global ranking, and the
``obs`` criterion (channels chosen jointly with the refit from the layers' input covariance). Each row gives the cosine to the original's outputs on
the calibration samples the refit used (in-sample) and on the test inputs (held out): a repair
that raises the first and lowers the second fits the calibration data, not the model. Results
go to the ``repair`` section of ``docs/accuracy.md``.

Usage::

    python tools/bench_repair.py                 # reid and minilm, about 15 minutes on 2 cores
    python tools/bench_repair.py --models reid
    python tools/bench_repair.py --only obs      # rerun the matching rows, keep the others written
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import bench_heal  # noqa: E402
from harness import describe_machine, machine_info, write_section  # noqa: E402

from onnxprune import api  # noqa: E402

#: (label, prune keyword arguments); one knob changes per row against the first of its block
CONFIGS = [
    ("256 samples (the old default)", dict(calib_samples=256)),
    ("256 samples, ridge 0.1", dict(calib_samples=256, ridge=0.1)),
    ("256 samples, error feedback 1 pass", dict(calib_samples=256, correction_passes=1)),
    ("1024 samples (the default)", dict()),
    ("1024 samples, ridge 0.03", dict(ridge=0.03)),
    ("1024 samples, 32768 Gram rows", dict(max_rows=32768)),
    ("1024 samples, error feedback 1 pass", dict(correction_passes=1)),
    ("1024 samples, channel statistics matched", dict(match_stats=True)),
    ("1024 samples, global ranking", dict(global_ranking=True)),
    ("1024 samples, `obs` selection", dict(criterion="obs")),
    ("1024 samples, `obs` selection, global ranking", dict(criterion="obs", global_ranking=True)),
]


def _written_blocks() -> dict[str, str]:
    """Each model's table as docs/accuracy.md's ``repair`` section has it, by its ``###`` title."""
    text = bench_heal.DOC.read_text() if bench_heal.DOC.exists() else ""
    begin, end = text.find("<!-- repair:begin -->"), text.find("<!-- repair:end -->")
    blocks: dict[str, list[str]] = {}
    title = None
    for line in text[begin:end].splitlines() if begin >= 0 else []:
        if line.startswith("### "):
            title = line[4:].strip()
            blocks[title] = []
        if title is not None and not line.startswith("(The table above is from an earlier run"):
            blocks[title].append(line)
    return {t: "\n".join(b) for t, b in blocks.items()}


def _written_rows() -> dict[tuple[str, str], str]:
    """The rows of the written ``repair`` section, by (model title, repair label)."""
    return {(title, line.split(" | ")[0][2:]): line for title, block in _written_blocks().items()
            for line in block.splitlines() if line.startswith("| ") and not line.startswith("| repair")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="reid,minilm", help="bench_heal tasks (default reid,minilm)")
    ap.add_argument("--cut", type=float, default=0.3, help="share of MACs removed (default 0.3)")
    ap.add_argument("--only", metavar="TEXT", help="rerun only the rows whose label contains TEXT (comma-separated "
                    "for several); the other rows are kept as docs/accuracy.md has them")
    args = ap.parse_args(argv)
    wanted = [t for t in (args.only or "").split(",") if t]
    written = _written_rows() if wanted else {}
    rerun = (f" Only the rows whose label contains {' or '.join(repr(t) for t in wanted)} were measured by this "
             f"command (`--only {shlex.quote(args.only)}`); the others are an earlier run's, the same command without it." if wanted else "")
    lines = [f"`python tools/bench_repair.py --models {args.models} --cut {args.cut}"
             f"{' --only ' + shlex.quote(args.only) if wanted else ''}` on {describe_machine(machine_info())}.{rerun} "
             f"`wanda` (unless the row names another criterion) + `--reconstruct` at {100 * args.cut:.0f} % of MACs "
             "removed, uniform ratio unless the row says global, `--round-to 8`; cosine to the original's outputs on the "
             "calibration samples the refit used (in-sample) "
             "and on the task's test inputs (held out, from other photographs or other modules' docstrings).", ""]
    titles: list[str] = []
    for name in args.models.split(","):
        task = bench_heal.TASKS[name]()
        n_calib = sum(len(next(iter(f.values()))) for f in task.calib)
        first = task.calib[: max(1, 256 // len(next(iter(task.calib[0].values()))))]  # the first 256: in every fit
        orig_in, orig_out = bench_heal._outputs(task.model, first), bench_heal._outputs(task.model, task.test)
        titles.append(task.title)
        lines += [f"### {task.title}", "", f"{n_calib} calibration samples available; in-sample = the first 256 "
                  "(used by every row).", "", "| repair | in-sample cosine | held-out cosine | seconds |",
                  "|---|---:|---:|---:|"]
        with tempfile.TemporaryDirectory() as tmp:
            for label, kw in CONFIGS:
                if wanted and not any(t in label for t in wanted):
                    if (task.title, label) in written:
                        lines.append(written[(task.title, label)])
                    continue
                t0 = time.perf_counter()
                res = api.prune(str(task.model), target_macs=f"{1 - args.cut:.3f}x", reconstruct=True,
                                calibration=task.calib, batch_size=16, **{"criterion": "wanda", "round_to": 8, **kw})
                path = Path(tmp) / "p.onnx"
                res.save(path)
                secs = time.perf_counter() - t0
                cin = task.metrics(orig_in, bench_heal._outputs(path, first))["cosine"]
                cout = task.metrics(orig_out, bench_heal._outputs(path, task.test))["cosine"]
                lines.append(f"| {label} | {cin:.4f} | {cout:.4f} | {secs:.0f} |")
                print(name, label, f"in {cin:.4f} out {cout:.4f} {secs:.0f}s", flush=True)
        lines.append("")
    for title, block in _written_blocks().items():  # models not run this time keep their tables
        if title not in titles:
            lines += [f"{block.rstrip()}", "", f"(The table above is from an earlier run, without `--models {args.models}`.)", ""]
    write_section(bench_heal.DOC, "repair", "## Repair without gradients: what holds on held-out inputs\n\n"
                  + "\n".join(lines), title="# Accuracy after pruning, repair and healing\n")
    print(f"wrote {bench_heal.DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
