"""The committed ONNX exports (models/exports/*.onnx) and the packaged demo model load and run.

Inputs are generated from each file's declared graph inputs: the first dimension
of every input is the batch (always dynamic); any other symbolic dimension is a
sequence length, and such files are run at two sequence lengths.  Output shapes
are checked against a per-file table (and, for files not in the table, against
the declared output shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORTS_DIR = REPO_ROOT / "models" / "exports"
DEMO_PATH = REPO_ROOT / "onnxprune" / "data" / "digits_cnn.onnx"
EXPORTS = sorted(EXPORTS_DIR.glob("*.onnx"))
MAX_EXPORT_BYTES = 5 * 1024 * 1024

TORCHVISION_MODELS = {"resnet", "mobilenet_v2", "efficientnet", "densenet"}
TORCH_OPSET = {"legacy": 17, "dynamo": 18}

# stem -> (default-domain opset, output shape); "batch" / "seq" stand for the run's sizes
EXPECTED: dict[str, tuple[int, tuple[int | str, ...]]] = {
    **{
        f"{model}_{exporter}": (opset, ("batch", 10))
        for model in TORCHVISION_MODELS
        for exporter, opset in TORCH_OPSET.items()
    },
    "bert_tiny_legacy": (17, ("batch", 2)),
    "bert_tiny_dynamo": (18, ("batch", 2)),
    "vit_tiny_legacy": (17, ("batch", 10)),
    "vit_tiny_dynamo": (18, ("batch", 10)),
    "keras_cnn": (17, ("batch", 10)),
    "keras_transformer": (17, ("batch", "seq", 64)),
    "paddle_cnn": (13, ("batch", 10)),
    "paddle_transformer": (11, ("batch", "seq", 10)),
}
# files with a dynamic sequence axis (checked against the declared inputs too)
SEQUENCE_MODELS = {"bert_tiny_legacy", "bert_tiny_dynamo", "keras_transformer", "paddle_transformer"}

BATCHES = (1, 3)
SEQ_LENS = (5, 11)  # BERT's position table has 32 entries
INT_INPUT_HIGH = {"input_ids": 100}  # exclusive upper bound of generated token ids


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _seq_dims(model: onnx.ModelProto) -> set[str]:
    """Symbolic input dimensions other than the leading batch dimension."""
    return {d for inp in model.graph.input for d in _dims(inp)[1:] if isinstance(d, str)}


def _make_feeds(
    session: ort.InferenceSession, batch: int, seq: int | None, seed: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [batch]
        for d in inp.shape[1:]:
            if isinstance(d, int):
                shape.append(d)
            else:
                assert seq is not None, f"{inp.name}: symbolic dim {d!r} needs a sequence length"
                shape.append(seq)
        if inp.type == "tensor(float)":
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
        elif inp.type == "tensor(int64)" and "mask" in inp.name:
            # right-padded 0/1 masks of different lengths; the first sample is unpadded
            lengths = rng.integers(2, shape[1] + 1, size=batch)
            lengths[0] = shape[1]
            feeds[inp.name] = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        elif inp.type == "tensor(int64)":
            feeds[inp.name] = rng.integers(0, INT_INPUT_HIGH.get(inp.name, 2), size=shape)
        else:
            raise AssertionError(f"{inp.name}: unsupported input type {inp.type}")
    return feeds


def _expected_shape(path: Path, model: onnx.ModelProto) -> tuple[int | str, ...]:
    if path.stem in EXPECTED:
        return EXPECTED[path.stem][1]
    (out,) = model.graph.output
    dims = _dims(out)
    seq = _seq_dims(model)
    return tuple("batch" if i == 0 else ("seq" if d in seq else d) for i, d in enumerate(dims))


def _check_outputs(path: Path, model: onnx.ModelProto | None = None) -> None:
    model = model if model is not None else onnx.load(str(path))
    want = _expected_shape(path, model)
    seq_lens: tuple[int | None, ...] = SEQ_LENS if _seq_dims(model) else (None,)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seq in seq_lens:
        for batch in BATCHES:
            feeds = _make_feeds(session, batch, seq, seed=batch * 100 + (seq or 0))
            outs = session.run(None, feeds)
            assert len(outs) == 1, (path.name, len(outs))
            out = outs[0]
            sizes = {"batch": batch, "seq": seq}
            shape = tuple(sizes[d] if isinstance(d, str) else d for d in want)
            assert out.shape == shape, (path.name, seq, out.shape, shape)
            assert np.all(np.isfinite(out)), path.name
            assert np.ptp(out) > 1e-4, f"{path.name}: constant output"
            if batch > 1:
                spread = np.ptp(out, axis=0).max()
                assert spread > 1e-5, f"{path.name}: same output for every sample"


def test_all_exports_present() -> None:
    names = {p.stem for p in EXPORTS}
    assert set(EXPECTED) <= names, sorted(set(EXPECTED) - names)
    assert not list(EXPORTS_DIR.glob("*.onnx.data")), "exports must be single files"


@pytest.mark.parametrize("path", EXPORTS, ids=[p.stem for p in EXPORTS])
def test_export_size(path: Path) -> None:
    assert path.stat().st_size <= MAX_EXPORT_BYTES, (path.name, path.stat().st_size)


@pytest.mark.parametrize("path", EXPORTS, ids=[p.stem for p in EXPORTS])
def test_export_checks_and_runs(path: Path) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    if path.stem in EXPECTED:
        assert _default_opset(model) == EXPECTED[path.stem][0], path.name
    for inp in model.graph.input:
        assert isinstance(_dims(inp)[0], str), f"{inp.name}: batch dimension must be dynamic"
    has_seq = bool(_seq_dims(model))
    if path.stem in SEQUENCE_MODELS:
        assert has_seq, f"{path.name}: sequence dimension must be dynamic"
    elif path.stem in EXPECTED:
        assert not has_seq, f"{path.name}: unexpected symbolic input dimensions"
    if path.stem in EXPECTED:
        (out,) = model.graph.output
        declared = _dims(out)
        want = EXPECTED[path.stem][1]
        assert len(declared) == len(want), (path.name, declared)
        for d, w in zip(declared, want):
            assert isinstance(d, str) if isinstance(w, str) else d == w, (path.name, declared)
    _check_outputs(path, model)


def test_demo_model_runs() -> None:
    assert DEMO_PATH.is_file(), DEMO_PATH
    assert DEMO_PATH.stat().st_size <= 2 * 1024 * 1024
    model = onnx.load(str(DEMO_PATH))
    onnx.checker.check_model(model, full_check=True)
    assert _expected_shape(DEMO_PATH, model) == ("batch", 10)
    _check_outputs(DEMO_PATH, model)


@pytest.mark.parametrize("name", ["bert_tiny_legacy.onnx", "keras_transformer.onnx", "paddle_cnn.onnx",
                                  "vit_mha_tiny_legacy.onnx"])
def test_load_proves_feed_and_measures_shapes_in_one_run(name, monkeypatch):
    """Shapes static inference leaves open are measured in the run that proves the feed:
    loading runs the model once, and the shapes equal those of a separate measuring run."""
    from onnxprune import graph, verify
    from onnxprune.feeds import plan_feeds
    from onnxprune.io import infer_static_shapes

    path = EXPORTS_DIR / name
    proto = onnx.load(path)
    first = plan_feeds(proto, {}, check=False).shapes()
    _, unknown = infer_static_shapes(proto, first, static_only=True)
    assert unknown, f"{name} should need measured shapes for this test to mean anything"
    runs = []
    made = verify.session

    def counting(*args, **kwargs):
        sess = made(*args, **kwargs)
        real = sess.run

        def run(*a, **k):
            runs.append(1)
            return real(*a, **k)

        sess.run = run
        return sess

    monkeypatch.setattr(verify, "session", counting)
    model = graph.load(str(path))
    tried = model.feeds.tried
    assert model.feeds.verified
    # the first sizes ran: that run also measured; otherwise one run more at the proven sizes
    assert len(runs) == (1 if tried == 1 else tried + 1)
    monkeypatch.setattr(verify, "session", made)
    feeds = plan_feeds(proto, {}, runnable=str(path))
    separate = infer_static_shapes(proto, feeds.shapes(), feeds=feeds)
    assert dict(model.shapes) == separate
    assert all(None not in model.shapes[n] for n, _ in unknown)
