"""Tests for the code-built test models in :mod:`models.zoo`."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.zoo import ZOO, build

NAMES = sorted(ZOO)
BATCH = 2


@functools.cache
def _model(name: str, seed: int = 0) -> onnx.ModelProto:
    return build(name, seed=seed)


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims]


def _concrete(dims: list[int | str]) -> tuple[int, ...]:
    return tuple(BATCH if d == "N" else int(d) for d in dims)


def _run(model: onnx.ModelProto, seed: int = 0) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    shape = _concrete(_dims(model.graph.input[0]))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return sess.run(None, {"input": x})


def test_zoo_is_not_empty_and_build_rejects_unknown_names() -> None:
    assert len(ZOO) >= 14
    with pytest.raises(KeyError, match="unknown zoo model"):
        build("no_such_model")


@pytest.mark.parametrize("name", NAMES)
def test_check_model_full(name: str) -> None:
    onnx.checker.check_model(_model(name), full_check=True)


@pytest.mark.parametrize("name", NAMES)
def test_strict_shape_inference_agrees_with_declared_outputs(name: str) -> None:
    model = _model(name)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for declared, got in zip(model.graph.output, inferred.graph.output):
        assert _dims(declared) == _dims(got)


@pytest.mark.parametrize("name", NAMES)
def test_interface_conventions(name: str) -> None:
    model = _model(name)
    graph = model.graph
    assert [i.name for i in graph.input] == ["input"]
    assert _dims(graph.input[0])[0] == "N"
    assert all(isinstance(d, int) and d > 0 for d in _dims(graph.input[0])[1:])
    assert graph.output[0].name == "output"
    assert 1 <= len(graph.output) <= 2
    for out in graph.output:
        assert _dims(out)[0] == "N"
    node_names = [n.name for n in graph.node]
    assert all(node_names)
    assert len(set(node_names)) == len(node_names)
    float_inits = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert float_inits
    assert model.ByteSize() < 1_000_000
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset >= 17
    assert model.ir_version == {17: 8, 21: 10}[opset]


@pytest.mark.parametrize("name", NAMES)
def test_runs_in_onnxruntime(name: str) -> None:
    model = _model(name)
    outputs = _run(model)
    assert len(outputs) == len(model.graph.output)
    for value_info, y in zip(model.graph.output, outputs):
        assert y.dtype == np.float32
        assert y.shape == _concrete(_dims(value_info))
        assert np.all(np.isfinite(y))
        assert float(y.std()) > 1e-3
        # The two samples differ, so the output depends on the input.
        assert not np.allclose(y[0], y[1])


def test_seed_controls_weights() -> None:
    name = "resnet_basic"
    again = build(name, seed=0)
    other = build(name, seed=1)
    assert again.SerializeToString() == _model(name).SerializeToString()
    assert other.SerializeToString() != again.SerializeToString()
    assert [n.name for n in other.graph.node] == [n.name for n in again.graph.node]
