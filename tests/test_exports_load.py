"""The committed ONNX exports (models/exports/*.onnx) and the packaged demo model load and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORTS_DIR = REPO_ROOT / "models" / "exports"
DEMO_PATH = REPO_ROOT / "onnxprune" / "data" / "demo.onnx"
EXPORTS = sorted(EXPORTS_DIR.glob("*.onnx"))
NUM_CLASSES = 10
EXPECTED_MODELS = {"resnet", "mobilenet_v2", "efficientnet", "densenet"}
EXPECTED_OPSET = {"legacy": 17, "dynamo": 18}


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _run(path: Path, batch: int) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    height, width = inp.shape[2], inp.shape[3]
    assert isinstance(height, int) and isinstance(width, int), inp.shape
    x = np.random.default_rng(batch).standard_normal((batch, inp.shape[1], height, width))
    (out,) = session.run(None, {inp.name: x.astype(np.float32)})
    return out


def _check_outputs(path: Path) -> None:
    for batch in (1, 3):
        out = _run(path, batch)
        assert out.shape == (batch, NUM_CLASSES), (path.name, out.shape)
        assert np.all(np.isfinite(out)), path.name
        assert np.ptp(out) > 1e-4, f"{path.name}: constant output"
        if batch > 1:
            assert np.ptp(out, axis=0).max() > 1e-5, f"{path.name}: same output for every sample"


def test_all_exports_present() -> None:
    names = {p.name for p in EXPORTS}
    want = {f"{m}_{e}.onnx" for m in EXPECTED_MODELS for e in EXPECTED_OPSET}
    assert want <= names, sorted(want - names)
    assert not list(EXPORTS_DIR.glob("*.onnx.data")), "exports must be single files"


@pytest.mark.parametrize("path", EXPORTS, ids=[p.stem for p in EXPORTS])
def test_export_checks_and_runs(path: Path) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    exporter = path.stem.rsplit("_", 1)[-1]
    if exporter in EXPECTED_OPSET:
        assert _default_opset(model) == EXPECTED_OPSET[exporter]
    (inp,) = model.graph.input
    assert inp.type.tensor_type.shape.dim[0].dim_param, "batch dimension must be dynamic"
    _check_outputs(path)


def test_demo_model_runs() -> None:
    assert DEMO_PATH.is_file(), DEMO_PATH
    assert DEMO_PATH.stat().st_size <= 2 * 1024 * 1024
    onnx.checker.check_model(onnx.load(str(DEMO_PATH)), full_check=True)
    _check_outputs(DEMO_PATH)
