"""Models users bring that the zoo does not cover: quantized, control flow, recurrence, custom
domains and functions, old opsets, FP16/BF16 weights, old-exporter layouts, unknown shapes.

Each builder returns a small, valid, seeded :class:`onnx.ModelProto`. Around the unusual part
there is always an ordinary float ``Conv -> Relu -> Conv`` section, so a test can check both that
the unusual part is frozen with a stated reason and that the rest of the graph is still pruned.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "qdq_cnn",
    "qoperator_cnn",
    "dynamic_quant_mlp",
    "if_cnn",
    "loop_cnn",
    "scan_cnn",
    "recurrent",
    "custom_domain_cnn",
    "function_cnn",
    "opset_cnn",
    "typed_weights_cnn",
    "fp16_cnn",
    "initializers_as_inputs_cnn",
    "no_shape_input_cnn",
]

_IR = {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def _ir_for(opset: int) -> int:
    return _IR.get(opset, onnx.IR_VERSION)


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset: int = 17, extra_opsets=(), functions=(), value_info=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits, value_info=list(value_info))
    ops = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, v) for d, v in extra_opsets]]
    m = helper.make_model(g, opset_imports=ops, ir_version=_ir_for(opset), functions=list(functions))
    if m.ir_version < 4:  # IR 3 lists every initializer as a graph input too
        g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits)
        m.graph.CopyFrom(g)
    return m


def _inp(name: str = "input", c: int = 3, hw: int = 8, elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, ["N", c, hw, hw])


def _float_section(rng, x: str, cin: int, mid: int, cout: int, tag: str, inits: list, k: int = 3):
    """``Conv(cin->mid) -> Relu -> Conv(mid->cout)``: the prunable part (``mid`` channels)."""
    inits += [numpy_helper.from_array(_w(rng, mid, cin, k, k), f"{tag}.w1"),
              numpy_helper.from_array((rng.standard_normal(mid) * 0.1).astype(np.float32), f"{tag}.b1"),
              numpy_helper.from_array(_w(rng, cout, mid, k, k), f"{tag}.w2")]
    pads = [k // 2] * 4
    return [
        helper.make_node("Conv", [x, f"{tag}.w1", f"{tag}.b1"], [f"{tag}.c1"], name=f"{tag}.conv1", pads=pads),
        helper.make_node("Relu", [f"{tag}.c1"], [f"{tag}.r1"], name=f"{tag}.relu"),
        helper.make_node("Conv", [f"{tag}.r1", f"{tag}.w2"], [f"{tag}.out"], name=f"{tag}.conv2", pads=pads),
    ]


# ------------------------------------------------------------------------------ quantized
def _quantize(w: np.ndarray, axis: int | None, dtype=np.int8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric int8 quantization, per tensor (``axis=None``) or per channel along ``axis``."""
    if axis is None:
        scale = np.array(np.abs(w).max() / 127.0, dtype=np.float32)
        zp = np.array(0, dtype=dtype)
        q = np.clip(np.round(w / scale), -127, 127).astype(dtype)
        return q, scale, zp
    red = tuple(a for a in range(w.ndim) if a != axis)
    scale = (np.abs(w).max(axis=red) / 127.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(dtype)
    return q, scale, np.zeros_like(scale, dtype=dtype)


def qdq_cnn(seed: int = 0, per_channel: bool = True, opset: int = 17, mid: int = 12) -> onnx.ModelProto:
    """``Q/DQ(input) -> DQ(W1) Conv(+DQ(bias int32)) -> Relu -> Q/DQ -> DQ(W2) Conv -> output``.

    The way QDQ exporters write a statically quantized model: activations are quantized per
    tensor (uint8 with a zero point), weights per channel (``axis=0``) or per tensor (int8,
    symmetric), the bias as int32 with scale ``s_x * s_w``.
    """
    rng = np.random.default_rng(seed)
    cin, cout = 3, 6
    w1, w2 = _w(rng, mid, cin, 3, 3), _w(rng, cout, mid, 3, 3)
    b1 = (rng.standard_normal(mid) * 0.1).astype(np.float32)
    axis = 0 if per_channel else None
    q1, s1, z1 = _quantize(w1, axis)
    q2, s2, z2 = _quantize(w2, axis)
    sx, zx = np.array(0.05, np.float32), np.array(128, np.uint8)
    sa, za = np.array(0.04, np.float32), np.array(0, np.uint8)
    bscale = (sx * s1).astype(np.float32) if per_channel else np.array(sx * s1, np.float32)
    bq = np.round(b1 / bscale).astype(np.int32)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (q1, "w1_q"), (s1, "w1_scale"), (z1, "w1_zp"), (q2, "w2_q"), (s2, "w2_scale"), (z2, "w2_zp"),
        (sx, "x_scale"), (zx, "x_zp"), (sa, "a_scale"), (za, "a_zp"), (bq, "b1_q"), (bscale, "b1_scale"))]
    ax = {"axis": 0} if per_channel else {}
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["x_q"], name="x.q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x.dq"),
        helper.make_node("DequantizeLinear", ["w1_q", "w1_scale", "w1_zp"], ["w1"], name="w1.dq", **ax),
        helper.make_node("DequantizeLinear", ["b1_q", "b1_scale"], ["b1"], name="b1.dq", **ax),
        helper.make_node("Conv", ["x_dq", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("QuantizeLinear", ["r1", "a_scale", "a_zp"], ["r1_q"], name="r1.q"),
        helper.make_node("DequantizeLinear", ["r1_q", "a_scale", "a_zp"], ["r1_dq"], name="r1.dq"),
        helper.make_node("DequantizeLinear", ["w2_q", "w2_scale", "w2_zp"], ["w2"], name="w2.dq", **ax),
        helper.make_node("Conv", ["r1_dq", "w2"], ["output"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", cout, 8, 8])
    return _model(nodes, [_inp(c=cin)], [out], inits, opset=opset)


def qoperator_cnn(seed: int = 0) -> onnx.ModelProto:
    """A float section, then ``QuantizeLinear -> QLinearConv -> DequantizeLinear`` (QOperator)."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 8, "f", inits)
    q, s, z = _quantize(_w(rng, 4, 8, 3, 3), 0)
    inits += [numpy_helper.from_array(a, n) for a, n in (
        (np.array(0.05, np.float32), "xs"), (np.array(0, np.int8), "xz"), (q, "wq"), (s, "ws"), (z, "wz"),
        (np.array(0.05, np.float32), "ys"), (np.array(0, np.int8), "yz"))]
    nodes += [
        helper.make_node("QuantizeLinear", ["f.out", "xs", "xz"], ["fq"], name="f.q"),
        helper.make_node("QLinearConv", ["fq", "xs", "xz", "wq", "ws", "wz", "ys", "yz"], ["yq"],
                         name="qconv", pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["output"], name="y.dq"),
    ]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    return _model(nodes, [_inp()], [out], inits)


def dynamic_quant_mlp(seed: int = 0) -> onnx.ModelProto:
    """What ``quantize_dynamic`` writes: ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul``,
    after a float ``MatMul -> Relu -> MatMul`` section."""
    rng = np.random.default_rng(seed)
    w1 = _w(rng, 24, 16).T.copy()  # [in, out]
    w2 = _w(rng, 12, 24).T.copy()
    qw = np.clip(np.round(_w(rng, 12, 6) / 0.02), 0, 255).astype(np.uint8)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(qw, "qw"), numpy_helper.from_array(np.array(128, np.uint8), "qw_zp"),
             numpy_helper.from_array(np.array(0.02, np.float32), "qw_scale")]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="fc2"),
        helper.make_node("DynamicQuantizeLinear", ["h2"], ["h2_q", "h2_s", "h2_zp"], name="dq"),
        helper.make_node("MatMulInteger", ["h2_q", "qw", "h2_zp", "qw_zp"], ["acc"], name="fc3"),
        helper.make_node("Cast", ["acc"], ["acc_f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["h2_s", "qw_scale"], ["s"], name="scale"),
        helper.make_node("Mul", ["acc_f", "s"], ["output"], name="rescale"),
    ]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 6])
    return _model(nodes, [inp], [out], inits)


# ----------------------------------------------------------------------------- control flow
def _branch(name: str, ops: list[onnx.NodeProto], out: str, shape) -> onnx.GraphProto:
    return helper.make_graph(ops, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)])


def if_cnn(seed: int = 0) -> onnx.ModelProto:
    """``Conv -> Relu -> If(cond){ Conv(w_then) | Identity }``: the branches read outer tensors
    (the activation and a weight also used by an outer Conv); a second, plain section stays
    prunable."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 8, "a", inits)
    inits.append(numpy_helper.from_array(_w(rng, 8, 8, 1, 1), "w_then"))
    then_g = _branch("then", [helper.make_node("Conv", ["a.out", "w_then"], ["t_out"], name="then.conv")], "t_out", None)
    else_g = _branch("else", [helper.make_node("Relu", ["a.out"], ["e_out"], name="else.relu")], "e_out", None)
    inits.append(numpy_helper.from_array(np.array(-1e9, np.float32), "low"))
    nodes += [
        helper.make_node("ReduceMax", ["input"], ["peak"], name="peak", keepdims=0),
        helper.make_node("Greater", ["peak", "low"], ["cond"], name="cond"),  # true, but computed
        helper.make_node("If", ["cond"], ["if_out"], name="if", then_branch=then_g, else_branch=else_g),
    ]
    nodes += _float_section(rng, "if_out", 8, 12, 4, "b", inits)
    nodes.append(helper.make_node("Identity", ["b.out"], ["output"], name="out"))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    return _model(nodes, [_inp()], [out], inits, opset=17)


def loop_cnn(seed: int = 0) -> onnx.ModelProto:
    """A ``Loop`` of 2 iterations adding an outer tensor to its carried state, between two
    prunable sections."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 8, "a", inits)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body.cond"),
         helper.make_node("Add", ["state_in", "a.out"], ["state_out"], name="body.add")],
        "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, None)],
    )
    inits += [numpy_helper.from_array(np.array(2, np.int64), "trip"), numpy_helper.from_array(np.array(True), "cond")]
    nodes.append(helper.make_node("Loop", ["trip", "cond", "a.out"], ["loop_out"], name="loop", body=body))
    nodes += _float_section(rng, "loop_out", 8, 12, 4, "b", inits)
    nodes.append(helper.make_node("Identity", ["b.out"], ["output"], name="out"))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    return _model(nodes, [_inp()], [out], inits)


def scan_cnn(seed: int = 0) -> onnx.ModelProto:
    """A ``Scan`` computing a running sum over the rows of a feature map, after a prunable section."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 8, "a", inits)
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"], name="body.add"),
         helper.make_node("Identity", ["sum_out"], ["scan_out"], name="body.id")],
        "body",
        [helper.make_tensor_value_info("sum_in", TensorProto.FLOAT, ["N", 8, 8]),
         helper.make_tensor_value_info("row", TensorProto.FLOAT, ["N", 8, 8])],
        [helper.make_tensor_value_info("sum_out", TensorProto.FLOAT, ["N", 8, 8]),
         helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, ["N", 8, 8])],
    )
    inits.append(numpy_helper.from_array(np.zeros((1, 8, 8), np.float32), "zero"))
    nodes += [
        helper.make_node("ReduceSum", ["a.out", "axes2"], ["acc0"], name="init", keepdims=1),
        helper.make_node("Squeeze", ["acc0", "axes2"], ["acc"], name="squeeze"),
        helper.make_node("Mul", ["acc", "zero"], ["acc_zero"], name="zero_init"),
        helper.make_node("Scan", ["acc_zero", "a.out"], ["final", "rows"], name="scan", body=body,
                         num_scan_inputs=1, scan_input_axes=[2], scan_output_axes=[2]),
        helper.make_node("Identity", ["rows"], ["output"], name="out"),
    ]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes2"))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 8, 8, 8])
    return _model(nodes, [_inp()], [out], inits)


def recurrent(op: str = "LSTM", seed: int = 0) -> onnx.ModelProto:
    """``MatMul -> Relu -> MatMul`` features, then an ``LSTM``/``GRU``/``RNN`` over the sequence."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    hidden, feat = 6, 8
    inits = [
        numpy_helper.from_array(_w(rng, 12, 5).T.copy(), "w1"),
        numpy_helper.from_array(_w(rng, feat, 12).T.copy(), "w2"),
        numpy_helper.from_array(_w(rng, 1, gates * hidden, feat), "W"),
        numpy_helper.from_array(_w(rng, 1, gates * hidden, hidden), "R"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="fc2"),
        helper.make_node(op, ["h2", "W", "R"], ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else []),
                         name="rnn", hidden_size=hidden),
        helper.make_node("Identity", ["Y_h"], ["output"], name="out"),
    ]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, "N", 5])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, "N", hidden])
    return _model(nodes, [inp], [out], inits)


def custom_domain_cnn(seed: int = 0) -> onnx.ModelProto:
    """A prunable section, then an ``Mish``-like op in the ``com.example`` domain (unknown to
    everyone), then another prunable section. Not runnable in onnxruntime; for analysis."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 8, "a", inits)
    nodes.append(helper.make_node("Mystery", ["a.out"], ["m"], name="mystery", domain="com.example"))
    nodes += _float_section(rng, "m", 8, 12, 4, "b", inits)
    nodes.append(helper.make_node("Identity", ["b.out"], ["output"], name="out"))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    vi = [helper.make_tensor_value_info("m", TensorProto.FLOAT, ["N", 8, 8, 8])]
    return _model(nodes, [_inp()], [out], inits, extra_opsets=[("com.example", 1)], value_info=vi)


def function_cnn(seed: int = 0) -> onnx.ModelProto:
    """A model-local function ``local.Swishy(x) = x * Sigmoid(x)`` between two prunable sections."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 8, "a", inits)
    fn = helper.make_function(
        "local", "Swishy", ["x"], ["y"],
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )
    nodes.append(helper.make_node("Swishy", ["a.out"], ["m"], name="swishy", domain="local"))
    nodes += _float_section(rng, "m", 8, 12, 4, "b", inits)
    nodes.append(helper.make_node("Identity", ["b.out"], ["output"], name="out"))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    return _model(nodes, [_inp()], [out], inits, extra_opsets=[("local", 1)], functions=[fn])


# ------------------------------------------------------------------------- opsets and types
def opset_cnn(opset: int, seed: int = 0) -> onnx.ModelProto:
    """Conv/BN/Relu, a residual Add, a Split and Concat, a Flatten -> Gemm head, written in the
    form each opset requires (BN ``spatial`` before 9, Split sizes as attribute before 13,
    ReduceMean axes as attribute before 18)."""
    rng = np.random.default_rng(seed)
    c = 8
    inits = [
        numpy_helper.from_array(_w(rng, c, 3, 3, 3), "w1"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), "bn.s"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "bn.b"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "bn.m"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), "bn.v"),
        numpy_helper.from_array(_w(rng, c, c, 3, 3) * 0.5, "w2"),
        numpy_helper.from_array(_w(rng, 4, 3, 1, 1), "w3"),
        numpy_helper.from_array(_w(rng, 4, 5, 1, 1), "w4"),
        numpy_helper.from_array(_w(rng, 5, 8 * 4 * 4), "fc.w"),
        numpy_helper.from_array((rng.standard_normal(5) * 0.1).astype(np.float32), "fc.b"),
    ]
    bn_attrs = {"spatial": 1} if opset < 9 else {}
    split_in, split_attrs = ["r2"], {"axis": 1}
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([3, 5], np.int64), "split"))
        split_in.append("split")
    else:
        split_attrs["split"] = [3, 5]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn.s", "bn.b", "bn.m", "bn.v"], ["b1"], name="bn1", **bn_attrs),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s2"], name="add"),
        helper.make_node("Relu", ["s2"], ["r2"], name="relu2"),
        helper.make_node("Split", split_in, ["p1", "p2"], name="split", **split_attrs),
        helper.make_node("Conv", ["p1", "w3"], ["c3"], name="conv3"),
        helper.make_node("Conv", ["p2", "w4"], ["c4"], name="conv4"),
        helper.make_node("Concat", ["c3", "c4"], ["cat"], name="concat", axis=1),
        helper.make_node("MaxPool", ["cat"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 5])
    return _model(nodes, [_inp()], [out], inits, opset=opset)


def typed_weights_cnn(dtype: str, seed: int = 0) -> onnx.ModelProto:
    """Weights stored as ``float16`` or ``bfloat16`` initializers, each read through a ``Cast``
    to float (how mixed-precision exporters keep weights small); activations in float32."""
    rng = np.random.default_rng(seed)
    elem = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}[dtype]
    inits, nodes = [], []
    arrays = {"w1": _w(rng, 10, 3, 3, 3), "b1": (rng.standard_normal(10) * 0.1).astype(np.float32),
              "w2": _w(rng, 6, 10, 3, 3)}
    for name, a in arrays.items():
        t = helper.make_tensor(f"{name}_h", elem, a.shape, a.reshape(-1).tolist())
        inits.append(t)
        nodes.append(helper.make_node("Cast", [f"{name}_h"], [name], name=f"{name}.cast", to=TensorProto.FLOAT))
    nodes += [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["output"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 6, 8, 8])
    return _model(nodes, [_inp()], [out], inits)


def fp16_cnn(seed: int = 0) -> onnx.ModelProto:
    """Everything in float16: input, weights, activations, output."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 6, "a", inits)
    for t in inits:
        a = numpy_helper.to_array(t).astype(np.float16)
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    nodes.append(helper.make_node("Identity", ["a.out"], ["output"], name="out"))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT16, ["N", 6, 8, 8])
    return _model(nodes, [_inp(elem=TensorProto.FLOAT16)], [out], inits)


def initializers_as_inputs_cnn(seed: int = 0) -> onnx.ModelProto:
    """An IR-4+ model that still lists every initializer as a graph input (old exporters)."""
    m = opset_cnn(13, seed)
    m.ir_version = 7
    for t in m.graph.initializer:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def no_shape_input_cnn(seed: int = 0, rank_known: bool = False) -> onnx.ModelProto:
    """The zoo-style section with a graph input carrying no shape (or only its rank)."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes = _float_section(rng, "input", 3, 10, 6, "a", inits)
    nodes.append(helper.make_node("Identity", ["a.out"], ["output"], name="out"))
    shape = ["N", "C", "H", "W"] if rank_known else None
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 6, 8, 8])
    return _model(nodes, [inp], [out], inits)
