"""Models users bring: quantized (QDQ, QOperator, dynamic), control flow, recurrence, custom
domains and functions, every opset from 7 to the newest, FP16/BF16 weights, old-exporter layouts
and inputs without shapes. Where pruning happens it is lossless; where it cannot, the barrier
reason says what was frozen."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from models import unusual as U
from models.zoo import ZOO
from onnxprune import api, verify
from onnxprune.depgraph import build_depgraph
from onnxprune.errors import UsageError
from onnxprune.feeds import plan_feeds
from onnxprune.graph import load
from onnxprune.plan import plan_from_channels
from onnxprune.testing import choose_channels, kill_channels

from .conftest import assert_valid, lossless


def _reasons(source, **kw) -> list[str]:
    an = api.analyze(source, **kw)
    return [r for g in an.depgraph.groups for r in g.reasons]


def _ops(proto: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in proto.graph.node)


def _inits(proto: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in proto.graph.initializer}


# ------------------------------------------------------------------------------ quantized
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_qdq_weights_scales_and_zero_points_are_sliced_together(per_channel):
    model = U.qdq_cnn(per_channel=per_channel, mid=12)
    res = lossless(model, share=0.5)
    inits = _inits(res.proto)
    q, b = inits["w1_q"], inits["b1_q"]
    assert q.data_type == onnx.TensorProto.INT8 and b.data_type == onnx.TensorProto.INT32
    kept = q.dims[0]
    assert kept < 12 and list(inits["w2_q"].dims)[1] == kept and list(b.dims) == [kept]
    if per_channel:
        assert list(inits["w1_scale"].dims) == [kept] and list(inits["w1_zp"].dims) == [kept]
        assert list(inits["b1_scale"].dims) == [kept]
        assert list(inits["w2_scale"].dims) == [6]  # output channels of the last conv are kept
    # the quantized structure is still there: nothing was dequantized into float weights
    assert _ops(res.proto) == _ops(model)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_onnxruntime_quantize_static_model_prunes_losslessly(tmp_path, per_channel):
    quant = pytest.importorskip("onnxruntime.quantization")

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter([{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    src, out = tmp_path / "m.onnx", tmp_path / "q.onnx"
    onnx.save_model(ZOO["resnet_basic"](), str(src))
    quant.quantize_static(str(src), str(out), Reader(), quant_format=quant.QuantFormat.QDQ,
                          per_channel=per_channel, activation_type=quant.QuantType.QUInt8,
                          weight_type=quant.QuantType.QInt8)
    qmodel = onnx.load(str(out))
    assert _ops(qmodel)["DequantizeLinear"] > 10
    res = lossless(qmodel, share=0.4)
    assert _ops(res.proto) == _ops(qmodel)
    int8 = [t for t in res.proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    orig = {t.name: list(t.dims) for t in qmodel.graph.initializer}
    assert any(list(t.dims) != orig[t.name] for t in int8)


def test_blocked_quantization_is_a_barrier_with_reason():
    model = U.qdq_cnn(per_channel=True, opset=21)
    for n in model.graph.node:
        if n.name == "w1.dq":
            n.attribute.append(onnx.helper.make_attribute("block_size", 3))
            n.attribute[0].i = 1  # axis 1: blocks of input channels
    w1s = [t for t in model.graph.initializer if t.name == "w1_scale"][0]
    scale = np.full((12, 1, 3, 3), 0.01, np.float32)
    w1s.CopyFrom(onnx.numpy_helper.from_array(scale, "w1_scale"))
    zp = [t for t in model.graph.initializer if t.name == "w1_zp"][0]
    zp.CopyFrom(onnx.numpy_helper.from_array(np.zeros((12, 1, 3, 3), np.int8), "w1_zp"))
    reasons = _reasons(model)
    assert any("blocked quantization" in r and "w1.dq" in r for r in reasons)


def test_qoperator_model_freezes_the_quantized_conv_and_prunes_the_rest():
    model = U.qoperator_cnn()
    reasons = _reasons(model)
    assert any("QLinearConv 'qconv'" in r and "not implemented" in r for r in reasons)
    res = lossless(model, share=0.4)
    inits = _inits(res.proto)
    assert list(inits["wq"].dims) == [4, 8, 3, 3]  # untouched
    assert inits["f.w1"].dims[0] < 10


def test_dynamic_quantization_freezes_its_input_and_prunes_the_rest():
    model = U.dynamic_quant_mlp()
    assert any("DynamicQuantizeLinear 'dq'" in r for r in _reasons(model))
    res = lossless(model, share=0.4)
    assert _inits(res.proto)["w1"].dims[1] < 24 and list(_inits(res.proto)["qw"].dims) == [12, 6]


# ------------------------------------------------------------------- control flow, recurrence
def test_if_subgraph_reads_freeze_outer_tensors():
    model = U.if_cnn()
    reasons = _reasons(model)
    assert any("If 'if' reads 'a.out' inside a subgraph" in r for r in reasons)
    res = lossless(model, share=0.4)
    inits = _inits(res.proto)
    assert inits["a.w1"].dims[0] < 10 and inits["b.w1"].dims[0] < 12
    assert inits["a.w2"].dims[0] == 8  # read by the If branches: frozen
    assert _ops(res.proto)["If"] == 1


def test_nested_subgraph_reads_are_found():
    model = U.if_cnn()
    if_node = [n for n in model.graph.node if n.op_type == "If"][0]
    then_g = [a for a in if_node.attribute if a.name == "then_branch"][0].g
    inner = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["a.out"], ["deep"], name="deep.relu")], "inner", [],
        [onnx.helper.make_tensor_value_info("deep", onnx.TensorProto.FLOAT, None)])
    cond = onnx.helper.make_node("Identity", ["cond"], ["cond2"], name="cond2")
    nested = onnx.helper.make_node("If", ["cond2"], ["t_out"], name="inner.if", then_branch=inner, else_branch=inner)
    del then_g.node[:]
    then_g.node.extend([cond, nested])
    assert any("If 'if' reads 'a.out' inside a subgraph" in r for r in _reasons(model))


@pytest.mark.parametrize("build", [U.loop_cnn, U.scan_cnn], ids=["loop", "scan"])
def test_loop_and_scan_are_barriers_and_the_rest_is_pruned(build):
    model = build()
    op = "Loop" if build is U.loop_cnn else "Scan"
    assert any(r.startswith(f"{op} '") for r in _reasons(model))
    res = lossless(model, share=0.4)
    assert _inits(res.proto)["a.w1"].dims[0] < 10
    assert _ops(res.proto)[op] == 1


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_recurrent_ops_are_barriers_and_features_before_them_are_pruned(op):
    model = U.recurrent(op)
    assert any(f"{op} 'rnn' has no channel rule" in r for r in _reasons(model))
    res = lossless(model, share=0.4)
    inits = _inits(res.proto)
    assert inits["w1"].dims[1] < 12 and list(inits["W"].dims) == list(_inits(model)["W"].dims)


def test_custom_domain_op_is_a_barrier_and_the_result_is_still_written(tmp_path, caplog):
    model = U.custom_domain_cnn()
    assert any("Mystery (domain com.example) 'mystery' has no channel rule" in r for r in _reasons(model))
    res = api.prune(model, ratio=0.5, round_to=8)  # its layers are 10-12 wide
    onnx.checker.check_model(res.proto, full_check=True)
    inits = _inits(res.proto)
    assert inits["a.w1"].dims[0] < 10 and inits["b.w1"].dims[0] < 12
    assert inits["a.w2"].dims[0] == 8 and inits["b.w1"].dims[1] == 8
    assert "checked by the ONNX checker only" in caplog.text
    assert any(n.domain == "com.example" for n in res.proto.graph.node)
    res.save(tmp_path / "out.onnx")
    assert onnx.load(str(tmp_path / "out.onnx")).opset_import == model.opset_import


def test_model_local_function_is_a_barrier_and_kept():
    model = U.function_cnn()
    assert any("Swishy (domain local) 'swishy'" in r for r in _reasons(model))
    res = lossless(model, share=0.4)
    assert [f.name for f in res.proto.functions] == ["Swishy"]


# --------------------------------------------------------------------------- opsets, types
@pytest.mark.parametrize("opset", list(range(7, onnx.defs.onnx_opset_version() + 1)))
def test_every_opset_prunes_losslessly_and_keeps_its_opset(opset):
    model = U.opset_cnn(opset)
    res = lossless(model, share=0.4)
    assert res.proto.opset_import[0].version == opset
    assert res.proto.ir_version == model.ir_version
    assert _inits(res.proto)["w1"].dims[0] < 8
    if model.ir_version < 4:  # IR 3 needs initializers listed as inputs
        listed = {i.name for i in res.proto.graph.input}
        assert all(t.name in listed for t in res.proto.graph.initializer)


def test_old_opset_softmax_is_frozen_with_reason():
    """Before opset 13 Softmax flattens every axis from ``axis`` on; the channel axis of a
    ``[N, C, H, W]`` input is then mixed with the others."""
    model = U.opset_cnn(11)
    nodes = list(model.graph.node)
    last = nodes[-1]
    nodes[-1:] = [onnx.helper.make_node("Softmax", ["r2"], ["sm"], name="old_softmax", axis=1)]
    split = [n for n in nodes if n.op_type == "Split"][0]
    split.input[0] = "sm"
    del model.graph.node[:]
    model.graph.node.extend(nodes + [last])
    reasons = _reasons(model)
    assert any("old_softmax" in r for r in reasons), reasons


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_weights_keep_their_type(dtype):
    model = U.typed_weights_cnn(dtype)
    res = lossless(model, share=0.4)
    elem = {"float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}[dtype]
    inits = _inits(res.proto)
    assert {inits[n].data_type for n in ("w1_h", "b1_h", "w2_h")} == {elem}
    assert inits["w1_h"].dims[0] < 10 and inits["w2_h"].dims[1] == inits["w1_h"].dims[0]
    assert _ops(res.proto)["Cast"] == 3


def test_fp16_model_prunes():
    model = U.fp16_cnn()
    res = api.prune(model, ratio=0.5, round_to=1)
    assert_valid(res.proto)
    assert _inits(res.proto)["a.w1"].data_type == onnx.TensorProto.FLOAT16
    assert _inits(res.proto)["a.w1"].dims[0] == 5


def test_initializers_listed_as_graph_inputs():
    model = U.initializers_as_inputs_cnn()
    res = lossless(model, share=0.4)
    inputs = [i.name for i in res.proto.graph.input]
    assert inputs[0] == "input"
    # initializers still listed as inputs are listed with their new shapes (the checker agrees)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in res.proto.graph.input}
    for t in res.proto.graph.initializer:
        if t.name in shapes:
            assert shapes[t.name] == list(t.dims)


def _lossless_fixed(model, shape):
    """Lossless pruning for models whose input sizes only the user knows (``assert_valid`` and
    ``lossless`` feed symbolic sizes 1, which these models cannot take)."""
    m = load(model, {"input": shape})
    dg = build_depgraph(m)
    chans = choose_channels(dg, 0.4, seed=1)
    kill_channels(dg, chans)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref = verify.run(verify.session(m.to_proto()), {"input": x})
    res = api.prune(m, plan=plan_from_channels(dg, chans), depgraph=dg)
    out = verify.run(verify.session(res.proto), {"input": x})
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-4, atol=1e-5)
    return res


def test_input_without_shape_takes_its_rank_from_the_conv_or_input_shape():
    model = U.no_shape_input_cnn()
    plan = plan_feeds(model).require()  # the Conv that reads it says: rank 4, 3 channels
    assert len(plan.shapes()["input"]) == 4 and plan.shapes()["input"][1] == 3
    assert api.analyze(model).prunable_macs_share > 0
    res = _lossless_fixed(model, [2, 3, 8, 8])
    assert _inits(res.proto)["a.w1"].dims[0] < 10
    assert not res.proto.graph.input[0].type.tensor_type.HasField("shape")  # interface unchanged


def test_input_without_shape_or_a_reader_that_tells_its_rank_is_refused():
    model = U.no_shape_input_cnn()
    model.graph.node.insert(0, onnx.helper.make_node("Relu", ["input"], ["input_r"], name="pre"))
    for n in model.graph.node[1:]:
        n.input[:] = ["input_r" if t == "input" else t for t in n.input]
    with pytest.raises(UsageError, match="no shape information.*--input-shape input:"):
        api.analyze(model)


def test_input_with_symbolic_channels_takes_input_shape():
    model = U.no_shape_input_cnn(rank_known=True)
    res = _lossless_fixed(model, [2, 3, 8, 8])
    assert _inits(res.proto)["a.w1"].dims[0] < 10
    onnx.checker.check_model(res.proto, full_check=True)
