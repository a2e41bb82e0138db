"""The side-by-side suite end to end on one zoo model (onnxprune only: the peers are optional)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _suite():
    spec = importlib.util.spec_from_file_location("bench_suite", ROOT / "tools" / "bench_suite.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_suite"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_suite_measures_and_writes_its_section(tmp_path: Path):
    suite = _suite()
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\nkept text\n")
    argv = ["--models", "resnet_basic", "--ratios", "0.5", "--tools", "onnxprune", "--repeat", "3",
            "--warmup", "1", "--threads", "1", "--workdir", str(tmp_path / "w"), "--out-md", str(md),
            "--figures", str(tmp_path / "fig")]
    assert suite.main(argv) == 0
    text = md.read_text()
    assert "kept text" in text and "<!-- suite-cpu:begin -->" in text and "<!-- suite-cpu:end -->" in text
    row = next(line for line in text.splitlines() if line.startswith("| resnet_basic | onnxprune | 0.5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert 0.2 < float(cells[3]) < 0.35  # MACs after/before at ratio 0.5
    assert cells[6].endswith(")") and "x (" in cells[6]  # speedup with its IQR
    results = json.loads((tmp_path / "w" / "results.json").read_text())
    run = results[0]["runs"]["onnxprune@0.5"]
    assert run["layer_macs_ratio"] <= run["macs_ratio"] + 0.05 and run["seconds"] > 0
    # a second publish replaces the section instead of appending another
    assert suite.main(argv[:-6] + ["--render-only", str(tmp_path / "w" / "results.json"), "--out-md", str(md),
                                   "--figures", str(tmp_path / "fig")]) == 0
    assert md.read_text().count("<!-- suite-cpu:begin -->") == 1


def test_acceptance_lines_count_ties_and_losses():
    suite = _suite()
    def run(tool, ratio, lm, lat=None):
        r = {"tool": tool, "ratio": ratio, "layer_macs_ratio": lm, "macs_ratio": lm}
        if lat:
            r["latency_ms"] = lat
        return r
    results = [
        {"name": "a", "runs": {"onnxprune@0.5": run("onnxprune", 0.5, 0.25), "onnxsim@0.5": run("onnxsim", 0.5, 0.5)}},
        {"name": "b", "runs": {"onnxprune@0.5": run("onnxprune", 0.5, 0.3), "onnxsim@0.5": run("onnxsim", 0.5, 0.3)}},
        {"name": "resnet50", "runs": {"onnxprune@0.5": run("onnxprune", 0.5, 0.26, 10.0),
                                      "torch-pruning@0.5": run("torch-pruning", 0.5, 0.26, 11.0)}},
    ]
    lines = suite.acceptance(results)
    assert any("resnet50 at 0.5" in ln and "pass" in ln for ln in lines)
    macs = next(ln for ln in lines if "MACs removed" in ln)
    assert "more in 1, equal in 1 (b@0.5" in macs and "fewer in 0" in macs and "(pass)" in macs
    results[0]["runs"]["onnxprune@0.5"]["layer_macs_ratio"] = 0.6
    assert "FAIL" in next(ln for ln in suite.acceptance(results) if "MACs removed" in ln)
