"""Tests for the code-built transformer models in :mod:`models.transformers`."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.transformers import BATCH, SEQ, TRANSFORMERS, build

BATCH_SIZE = 2
LENGTHS = (5, 9)
TOKEN_RANGE = 50  # below every default vocabulary size

# (name, builder keyword arguments): every model at its defaults plus the variants.
CASES: list[tuple[str, tuple[tuple[str, Any], ...]]] = [(name, ()) for name in TRANSFORMERS] + [
    ("bert_like", (("const_shapes", True),)),
    ("bert_like", (("attention_mask", False),)),
    ("gpt_like", (("opset", 14),)),
    ("llama_like", (("fused_gate_up", True),)),
    ("llama_like", (("opset", 17),)),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw) for name, kw in CASES]


@functools.cache
def _model(name: str, kw: tuple[tuple[str, Any], ...] = (), seed: int = 0) -> onnx.ModelProto:
    return build(name, seed=seed, **dict(kw))


@functools.cache
def _session(name: str, kw: tuple[tuple[str, Any], ...] = ()) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        _model(name, kw).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims]


def _concrete(dims: list[int | str], seq: int) -> tuple[int, ...]:
    return tuple(BATCH_SIZE if d == BATCH else seq if d == SEQ else int(d) for d in dims)


def _feeds(model: onnx.ModelProto, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs; ``attention_mask`` keeps every token of row 0 and pads row 1."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        shape = _concrete(_dims(vi), seq)
        if vi.name == "input_ids":
            feeds[vi.name] = rng.integers(0, TOKEN_RANGE, size=shape, dtype=np.int64)
        elif vi.name == "attention_mask":
            mask = np.ones(shape, dtype=np.int64)
            mask[1, -2:] = 0
            feeds[vi.name] = mask
        else:
            assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _run(name: str, kw: tuple = (), seq: int = LENGTHS[0], seed: int = 0, feeds=None):
    sess = _session(name, kw)
    feeds = _feeds(_model(name, kw), seq, seed) if feeds is None else feeds
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def test_registry_and_unknown_names() -> None:
    assert set(TRANSFORMERS) == {
        "bert_like",
        "vit_like",
        "gpt_like",
        "llama_like",
        "keras_nhwc_cnn",
        "keras_transformer_block",
    }
    with pytest.raises(KeyError, match="unknown transformer model"):
        build("no_such_model")


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_check_model_full_and_strict_inference(name: str, kw: tuple) -> None:
    model = _model(name, kw)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for declared, got in zip(model.graph.output, inferred.graph.output):
        assert len(_dims(declared)) == len(_dims(got))


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_runs_at_two_lengths_with_finite_nontrivial_outputs(name: str, kw: tuple) -> None:
    model = _model(name, kw)
    for seq in LENGTHS:
        outs = _run(name, kw, seq=seq, seed=0)
        other = _run(name, kw, seq=seq, seed=1)
        for vi in model.graph.output:
            out = outs[vi.name]
            assert out.shape == _concrete(_dims(vi), seq)
            assert out.dtype == np.float32
            assert np.all(np.isfinite(out))
            assert out.std() > 1e-3
            assert not np.allclose(out, other[vi.name], atol=1e-4), "output ignores the input"


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_interface_conventions(name: str, kw: tuple) -> None:
    model = _model(name, kw)
    graph = model.graph
    for vi in list(graph.input) + list(graph.output):
        assert _dims(vi)[0] == BATCH
    has_seq = any(SEQ in _dims(vi) for vi in graph.input)
    assert has_seq == (name not in ("vit_like", "keras_nhwc_cnn"))
    node_names = [n.name for n in graph.node]
    assert all(node_names)
    assert len(set(node_names)) == len(node_names)
    tensor_names = [o for n in graph.node for o in n.output] + [t.name for t in graph.initializer]
    assert len(set(tensor_names)) == len(tensor_names)
    assert any(t.data_type == onnx.TensorProto.FLOAT for t in graph.initializer)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset == dict(kw).get("opset", opset)
    assert model.ByteSize() < 2_000_000


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_seeded_weights(name: str) -> None:
    a, b = _model(name), build(name, seed=0)
    assert a.SerializeToString() == b.SerializeToString()
    c = build(name, seed=1)
    wa = {t.name: onnx.numpy_helper.to_array(t) for t in a.graph.initializer}
    wc = {t.name: onnx.numpy_helper.to_array(t) for t in c.graph.initializer}
    assert wa.keys() == wc.keys()
    assert any(w.dtype == np.float32 and not np.array_equal(w, wc[k]) for k, w in wa.items())


EXPECTED_OPS: dict[str, set[str]] = {
    "bert_like": {"LayerNormalization", "Erf", "Range", "Shape", "Concat", "Reshape", "Tanh"},
    "vit_like": {"Conv", "Expand", "Equal", "Where", "LayerNormalization", "Tanh"},
    "gpt_like": {"Split", "Where", "Slice", "Pow", "ReduceMean", "Sqrt", "Div", "Range"},
    "llama_like": {"Reciprocal", "Neg", "Slice", "Sigmoid", "ReduceMean", "Concat"},
    "keras_nhwc_cnn": {"Transpose", "Conv", "MaxPool", "Relu", "Reshape", "MatMul"},
    "keras_transformer_block": {"Cast", "Slice", "Reciprocal", "ReduceMean", "Relu"},
}


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_exporter_patterns_present(name: str) -> None:
    ops = _op_counts(_model(name))
    assert EXPECTED_OPS[name] <= set(ops), EXPECTED_OPS[name] - set(ops)
    if name != "keras_nhwc_cnn":
        assert "Gemm" not in ops  # Linear layers are MatMul + Add


def test_bert_reshape_targets_computed_or_constant() -> None:
    for kw, computed in (((), True), ((("const_shapes", True),), False)):
        model = _model("bert_like", kw)
        inits = {t.name for t in model.graph.initializer}
        reshapes = [n for n in model.graph.node if n.op_type == "Reshape"]
        assert len(reshapes) == 4 * 2  # q, k, v split and context merge per layer
        assert all((n.input[1] not in inits) == computed for n in reshapes)
    computed_shapes = _op_counts(_model("bert_like"))["Shape"]
    const_shapes = _op_counts(_model("bert_like", (("const_shapes", True),)))["Shape"]
    assert const_shapes == 1  # only the sequence length of the position ids
    assert computed_shapes == 1 + 2 * 4 * 2  # batch and seq of every Reshape target


def test_keras_cnn_wraps_every_conv_and_pool_in_transposes() -> None:
    model = _model("keras_nhwc_cnn")
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    wrapped = [n for n in model.graph.node if n.op_type in ("Conv", "MaxPool")]
    assert len(wrapped) == 5
    for n in wrapped:
        before = producers[n.input[0]]
        (after,) = consumers[n.output[0]]
        assert before.op_type == "Transpose" and list(before.attribute[0].ints) == [0, 3, 1, 2]
        assert after.op_type == "Transpose" and list(after.attribute[0].ints) == [0, 2, 3, 1]
        if n.op_type == "Conv":
            assert len(n.input) == 2  # the bias is an Add in NHWC


def test_gpt_lm_head_is_tied_to_the_token_embedding() -> None:
    model = _model("gpt_like")
    users = [n for n in model.graph.node if "transformer.wte.weight" in n.input]
    assert sorted(n.op_type for n in users) == ["Gather", "Transpose"]
    (transpose,) = (n for n in users if n.op_type == "Transpose")
    head = [n for n in model.graph.node if transpose.output[0] in n.input]
    assert [n.op_type for n in head] == ["MatMul"]


def test_llama_fused_gate_up_splits_one_matmul() -> None:
    fused = _op_counts(_model("llama_like", (("fused_gate_up", True),)))
    plain = _op_counts(_model("llama_like"))
    layers = 2
    assert plain["MatMul"] - fused["MatMul"] == layers
    assert fused["Split"] == layers and plain["Split"] == 0


@pytest.mark.parametrize("name", ["gpt_like", "llama_like"])
def test_decoders_are_causal(name: str) -> None:
    model = _model(name)
    feeds = _feeds(model, 7, seed=3)
    changed = {k: v.copy() for k, v in feeds.items()}
    changed["input_ids"][:, -1] = (changed["input_ids"][:, -1] + 1) % TOKEN_RANGE
    a = _run(name, feeds=feeds)["logits"]
    b = _run(name, feeds=changed)["logits"]
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[:, -1], b[:, -1], atol=1e-4)


def test_bert_attention_mask_hides_padded_tokens() -> None:
    model = _model("bert_like")
    feeds = _feeds(model, 7, seed=4)  # row 1 pads its last two tokens
    changed = {k: v.copy() for k, v in feeds.items()}
    changed["input_ids"][1, -2:] = (changed["input_ids"][1, -2:] + 1) % TOKEN_RANGE
    a, b = _run("bert_like", feeds=feeds), _run("bert_like", feeds=changed)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        a["last_hidden_state"][1, :-2], b["last_hidden_state"][1, :-2], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("bert_like", {"hidden": 30, "heads": 4}),
        ("llama_like", {"hidden": 36, "heads": 4}),  # odd head size: no rotary halves
        ("vit_like", {"patch": 7}),
        ("gpt_like", {"layers": 0}),
        ("keras_nhwc_cnn", {"widths": (8, 8)}),
        ("gpt_like", {"opset": 12}),
    ],
)
def test_invalid_sizes_are_rejected(name: str, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build(name, **kw)


def test_bert_base_size_builds_and_checks() -> None:
    model = build("bert_like", layers=12, hidden=768, heads=12, ffn=3072)
    onnx.checker.check_model(model, full_check=True)
    ln = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert len(ln) == 1 + 2 * 12
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert weights["encoder.layer.11.intermediate.dense.weight"] == (768, 3072)
    assert weights["encoder.layer.0.attention.self.query.weight"] == (768, 768)
