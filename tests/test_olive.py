"""The Olive pass: the workflow in tools/examples runs end to end with the released olive-ai."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from onnxprune.graph import load
from onnxprune.profile import profile
from tests.conftest import assert_valid

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "tools" / "examples" / "olive_prune.json"
HAS_OLIVE = importlib.util.find_spec("olive") is not None


def test_the_example_workflow_uses_the_pass_and_the_bundled_model():
    wf = json.loads(WORKFLOW.read_text())
    (step,) = wf["passes"].values()
    assert step["type"] == "OnnxStructuredPruning" and step["target_macs"] == "0.5x"
    assert (ROOT / wf["input_model"]["model_path"]).is_file() and (ROOT / step["calibration"]).is_file()


def test_without_olive_one_line_says_what_to_install(monkeypatch, capsys):
    import onnxprune.olive_pass as op

    monkeypatch.setitem(sys.modules, "olive", None)  # import olive -> ImportError
    assert op.main(["package-config", "-o", os.devnull]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'onnxprune[olive]'" in err[0]


@pytest.mark.skipif(not HAS_OLIVE, reason="olive-ai not installed (pip install 'onnxprune[olive]')")
def test_package_config_adds_the_pass_to_olives_own(tmp_path: Path):
    from onnxprune.olive_pass import main, package_config

    cfg = package_config()
    entry = cfg["passes"]["OnnxStructuredPruning"]
    assert entry["module_path"] == "onnxprune.olive_pass.OnnxStructuredPruning"
    assert "OnnxPeepholeOptimizer" in cfg["passes"]  # Olive's passes stay usable in the same workflow
    assert main(["package-config", "-o", str(tmp_path / "pkg.json")]) == 0
    assert json.loads((tmp_path / "pkg.json").read_text()) == cfg


@pytest.mark.skipif(not HAS_OLIVE, reason="olive-ai not installed (pip install 'onnxprune[olive]')")
@pytest.mark.parametrize("how", ["module", "olive-cli"])
def test_olive_runs_the_example_workflow_end_to_end(tmp_path: Path, how: str):
    wf = json.loads(WORKFLOW.read_text())
    wf["input_model"]["model_path"] = str(ROOT / wf["input_model"]["model_path"])
    (step,) = wf["passes"].values()
    step["calibration"] = str(ROOT / step["calibration"])
    (tmp_path / "wf.json").write_text(json.dumps(wf))
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"}  # tests never touch the network
    if how == "module":
        cmd = [sys.executable, "-m", "onnxprune.olive_pass", "run", "wf.json"]
    else:  # Olive's own command line, told about the pass by the package configuration
        subprocess.run([sys.executable, "-m", "onnxprune.olive_pass", "package-config", "-o", "pkg.json"],
                       cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
        cmd = [sys.executable, "-m", "olive", "run", "--config", "wf.json", "--package-config", "pkg.json"]
    cp = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stdout[-1500:] + cp.stderr[-1500:]
    out = tmp_path / wf["output_dir"]
    model = onnx.load(out / "model.onnx")
    assert_valid(model)
    before, after = profile(load(wf["input_model"]["model_path"])), profile(load(model))
    assert after.macs <= 0.5 * before.macs  # the target the workflow asks for
    original = onnx.load(wf["input_model"]["model_path"])
    assert [n.name for n in model.graph.node] == [n.name for n in original.graph.node]
    # Olive's evaluator ran on the input model and on the pruned one
    for name in ("input_model_metrics.json", "metrics.json"):
        assert json.loads((out / name).read_text())["latency-avg"]["value"] > 0
