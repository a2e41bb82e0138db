"""Small models with the traits that broke real third-party models (see docs/realworld.md).

Each builder reproduces, in a few nodes, what a packaged model from other people does and what
made onnxprune fail on it before: dynamic image sides that must be a multiple of the stride
(detectors), token-type tables of two rows (BERT exports), a reflect-padded audio front end, a
VAD with a state tensor carrying the batch on axis 1 and a sample-rate scalar checked by an
``If``, an LSTM with fixed-batch initial states, ``-1`` written for a dynamic batch
(paddle2onnx), and a graph with no prunable group at all. Around each trait sits an ordinary
``Conv/MatMul -> Relu -> Conv/MatMul`` section, so pruning has something to remove.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "dynamic_hw_detector",
    "bert_like",
    "audio_frontend",
    "vad_like",
    "lstm_fixed_batch",
    "negative_batch_classifier",
    "exact_length_model",
    "single_conv",
    "shapeless_output_cnn",
    "constant_if_passthrough",
    "output_in_value_info",
    "ort_unloadable",
    "zipmap_classifier",
    "weights_from_constant_of_shape",
    "branches_share_a_weight",
    "broadcast_gate",
    "jax_regrouped_layernorm",
    "jax_channel_layernorm",
]


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _b(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) * 0.1).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    m.producer_name = "onnxprune-models"
    return m


def _i64(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def dynamic_hw_detector(seed: int = 0) -> onnx.ModelProto:
    """Two feature maps (stride 4 and 8), the coarse one upsampled and concatenated to the fine.

    The input's height and width are symbolic; the concat only lines up when they are
    multiples of 8, so sides of 1 (or any odd size) cannot run.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(_w(rng, 16, 3, 3, 3), "c1.w"), numpy_helper.from_array(_b(rng, 16), "c1.b"),
        numpy_helper.from_array(_w(rng, 24, 16, 3, 3), "c2.w"), numpy_helper.from_array(_b(rng, 24), "c2.b"),
        numpy_helper.from_array(_w(rng, 32, 24, 3, 3), "c3.w"), numpy_helper.from_array(_b(rng, 32), "c3.b"),
        numpy_helper.from_array(_w(rng, 8, 56, 1, 1), "head.w"), numpy_helper.from_array(_b(rng, 8), "head.b"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "up.scales"),
    ]
    p = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["images", "c1.w", "c1.b"], ["f1"], name="c1", pads=p, strides=[2, 2]),
        helper.make_node("Relu", ["f1"], ["r1"], name="r1"),
        helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["f2"], name="c2", pads=p, strides=[2, 2]),
        helper.make_node("Relu", ["f2"], ["r2"], name="r2"),
        helper.make_node("Conv", ["r2", "c3.w", "c3.b"], ["f3"], name="c3", pads=p, strides=[2, 2]),
        helper.make_node("Relu", ["f3"], ["r3"], name="r3"),
        helper.make_node("Resize", ["r3", "", "up.scales"], ["u3"], name="up", mode="nearest"),
        helper.make_node("Concat", ["r2", "u3"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "head.w", "head.b"], ["boxes"], name="head"),
    ]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 8, "h8", "w8"])
    return _model(nodes, [x], [y], inits)


def bert_like(seed: int = 0, vocab: int = 50, hidden: int = 16, ffn: int = 32) -> onnx.ModelProto:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` (a table of two rows) into an FFN."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "word.emb"),
        numpy_helper.from_array(rng.standard_normal((2, hidden)).astype(np.float32), "type.emb"),
        numpy_helper.from_array(_w(rng, hidden, ffn), "ffn.w1"), numpy_helper.from_array(_b(rng, ffn), "ffn.b1"),
        numpy_helper.from_array(_w(rng, ffn, hidden), "ffn.w2"),
        _i64("axes2", [2]),
    ]
    nodes = [
        helper.make_node("Gather", ["word.emb", "input_ids"], ["we"], name="word"),
        helper.make_node("Gather", ["type.emb", "token_type_ids"], ["te"], name="type"),
        helper.make_node("Add", ["we", "te"], ["emb"], name="emb"),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], name="mask_cast", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes2"], ["mask3"], name="mask_unsq"),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"], name="mask_mul"),
        helper.make_node("MatMul", ["masked", "ffn.w1"], ["h1"], name="ffn1"),
        helper.make_node("Add", ["h1", "ffn.b1"], ["h1b"], name="ffn1_bias"),
        helper.make_node("Relu", ["h1b"], ["a1"], name="ffn_act"),
        helper.make_node("MatMul", ["a1", "ffn.w2"], ["h2"], name="ffn2"),
        helper.make_node("Add", ["h2", "masked"], ["last_hidden_state"], name="residual"),
    ]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])
    return _model(nodes, ins, [out], inits)


def audio_frontend(seed: int = 0, pad: int = 32) -> onnx.ModelProto:
    """A waveform ``[batch, samples]``, reflect-padded and framed by a strided 1-D conv.

    Reflect padding needs more samples than the pad width, so one sample cannot run.
    """
    rng = np.random.default_rng(seed)
    inits = [
        _i64("pads", [0, 0, pad, 0, 0, pad]), _i64("axes1", [1]),
        numpy_helper.from_array(_w(rng, 16, 1, 2 * pad), "frame.w"),
        numpy_helper.from_array(_w(rng, 24, 16, 1), "c1.w"), numpy_helper.from_array(_b(rng, 24), "c1.b"),
        numpy_helper.from_array(_w(rng, 4, 24, 1), "c2.w"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["waveform", "axes1"], ["x3"], name="unsq"),
        helper.make_node("Pad", ["x3", "pads"], ["xp"], name="reflect", mode="reflect"),
        helper.make_node("Conv", ["xp", "frame.w"], ["frames"], name="frame", strides=[pad]),
        helper.make_node("Abs", ["frames"], ["mag"], name="mag"),
        helper.make_node("Conv", ["mag", "c1.w", "c1.b"], ["h"], name="c1"),
        helper.make_node("Relu", ["h"], ["a"], name="act"),
        helper.make_node("Conv", ["a", "c2.w"], ["logits"], name="c2"),
    ]
    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, "frames"])
    return _model(nodes, [x], [y], inits)


def _branch(name: str, nodes: list[onnx.NodeProto], out: str, inits=()) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                             list(inits))


def vad_like(seed: int = 0, hidden: int = 16) -> onnx.ModelProto:
    """A VAD step: audio ``[batch, samples]``, ``state [2, batch, hidden]`` and a scalar ``sr``.

    ``If(sr == 16000)`` picks the supported branch; any other rate reshapes into an impossible
    shape, as real VADs refuse rates they were not trained for. The new state adds features
    to the old one, so the state's batch (axis 1) must match the audio's.
    """
    rng = np.random.default_rng(seed)
    inits = [
        _i64("axes1", [1]), _i64("axes0", [0]), _i64("axes2", [2]),
        numpy_helper.from_array(np.array(16000, dtype=np.int64), "sr16k"),
        numpy_helper.from_array(_w(rng, 24, 1, 16), "c1.w"), numpy_helper.from_array(_b(rng, 24), "c1.b"),
        numpy_helper.from_array(_w(rng, hidden, 24, 1), "c2.w"), numpy_helper.from_array(_b(rng, hidden), "c2.b"),
        numpy_helper.from_array(_w(rng, hidden, 1), "out.w"),
    ]
    then = _branch("supported", [helper.make_node("Identity", ["input"], ["chosen"], name="keep")], "chosen")
    other = _branch("unsupported", [helper.make_node("Reshape", ["input", "bad.shape"], ["chosen_bad"], name="refuse")],
                    "chosen_bad", [_i64("bad.shape", [-1, 7777])])
    nodes = [
        helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="rate_check"),
        helper.make_node("If", ["is16k"], ["audio"], name="rate_if", then_branch=then, else_branch=other),
        helper.make_node("Unsqueeze", ["audio", "axes1"], ["x3"], name="unsq"),
        helper.make_node("Conv", ["x3", "c1.w", "c1.b"], ["h1"], name="c1", strides=[8]),
        helper.make_node("Relu", ["h1"], ["a1"], name="r1"),
        helper.make_node("Conv", ["a1", "c2.w", "c2.b"], ["h2"], name="c2"),
        helper.make_node("ReduceMean", ["h2", "axes2"], ["feat"], name="pool", keepdims=0),
        helper.make_node("Unsqueeze", ["feat", "axes0"], ["feat0"], name="feat_unsq"),
        helper.make_node("Add", ["state", "feat0"], ["stateN"], name="state_update"),
        helper.make_node("ReduceMean", ["stateN", "axes0"], ["summary"], name="state_pool", keepdims=0),
        helper.make_node("MatMul", ["summary", "out.w"], ["logit"], name="out"),
        helper.make_node("Sigmoid", ["logit"], ["output"], name="prob"),
    ]
    ins = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
           helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", hidden]),
           helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", hidden])]
    return _model(nodes, ins, outs, inits, opset=18)


def lstm_fixed_batch(seed: int = 0, feat: int = 8, hidden: int = 16, ffn: int = 24) -> onnx.ModelProto:
    """An LSTM over ``x [1, time, feat]`` with fixed-batch initial states ``h0``/``c0 [1, 1, hidden]``."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(_w(rng, 1, 4 * hidden, feat), "lstm.W"),
        numpy_helper.from_array(_w(rng, 1, 4 * hidden, hidden), "lstm.R"),
        numpy_helper.from_array(np.zeros((1, 8 * hidden), dtype=np.float32), "lstm.B"),
        _i64("axes1", [1]),
        numpy_helper.from_array(_w(rng, hidden, ffn), "ffn.w1"), numpy_helper.from_array(_b(rng, ffn), "ffn.b1"),
        numpy_helper.from_array(_w(rng, ffn, 4), "ffn.w2"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="to_time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "lstm.W", "lstm.R", "lstm.B", "", "h0", "c0"], ["Y", "hn", "cn"],
                         name="lstm", hidden_size=hidden),
        helper.make_node("Squeeze", ["Y", "axes1"], ["y3"], name="squeeze_dir"),
        helper.make_node("MatMul", ["y3", "ffn.w1"], ["f1"], name="ffn1"),
        helper.make_node("Add", ["f1", "ffn.b1"], ["f1b"], name="ffn1_bias"),
        helper.make_node("Relu", ["f1b"], ["fa"], name="ffn_act"),
        helper.make_node("MatMul", ["fa", "ffn.w2"], ["logits"], name="ffn2"),
    ]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "time", feat]),
           helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 1, hidden]),
           helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, 1, hidden])]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["time", 1, 4]),
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, 1, hidden]),
            helper.make_tensor_value_info("cn", TensorProto.FLOAT, [1, 1, hidden])]
    return _model(nodes, ins, outs, inits)


def negative_batch_classifier(seed: int = 0) -> onnx.ModelProto:
    """A text-direction classifier as paddle2onnx writes it: ``-1`` for the dynamic batch."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(_w(rng, 16, 3, 3, 3), "c1.w"), numpy_helper.from_array(_b(rng, 16), "c1.b"),
        numpy_helper.from_array(_w(rng, 24, 16, 3, 3), "c2.w"), numpy_helper.from_array(_b(rng, 24), "c2.b"),
        numpy_helper.from_array(_w(rng, 24, 2), "fc.w"), numpy_helper.from_array(_b(rng, 2), "fc.b"),
    ]
    p = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["h1"], name="c1", pads=p, strides=[2, 2]),
        helper.make_node("Relu", ["h1"], ["a1"], name="r1"),
        helper.make_node("Conv", ["a1", "c2.w", "c2.b"], ["h2"], name="c2", pads=p, strides=[2, 2]),
        helper.make_node("Relu", ["h2"], ["a2"], name="r2"),
        helper.make_node("GlobalAveragePool", ["a2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["softmax_0.tmp_0"], name="softmax", axis=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 48, 192])
    y = helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, [-1, 2])
    return _model(nodes, [x], [y], inits)


def exact_length_model(length: int = 37, seed: int = 0) -> onnx.ModelProto:
    """A symbolic length that only one size fits (a Reshape to ``[batch, 1, length]``)."""
    rng = np.random.default_rng(seed)
    inits = [
        _i64("shape", [-1, 1, length]),
        numpy_helper.from_array(_w(rng, 8, 1, 3), "c1.w"), numpy_helper.from_array(_b(rng, 8), "c1.b"),
        numpy_helper.from_array(_w(rng, 2, 8, 1), "c2.w"),
    ]
    nodes = [
        helper.make_node("Reshape", ["signal", "shape"], ["x3"], name="frame"),
        helper.make_node("Conv", ["x3", "c1.w", "c1.b"], ["h"], name="c1", pads=[1, 1]),
        helper.make_node("Relu", ["h"], ["a"], name="act"),
        helper.make_node("Conv", ["a", "c2.w"], ["y"], name="c2"),
    ]
    x = helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", "length"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, length])
    return _model(nodes, [x], [y], inits)


def single_conv(seed: int = 0) -> onnx.ModelProto:
    """One Conv from input to output: every channel touches the graph's boundary, none is prunable."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_w(rng, 4, 3, 3, 3), "c.w"), numpy_helper.from_array(_b(rng, 4), "c.b")]
    nodes = [helper.make_node("Conv", ["x", "c.w", "c.b"], ["y"], name="c", pads=[1, 1, 1, 1])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 16, 16])
    return _model(nodes, [x], [y], inits)


def shapeless_output_cnn(seed: int = 0) -> onnx.ModelProto:
    """``Conv -> Relu -> Conv`` whose graph output declares a type but no shape.

    Older exporters (a dynamically quantized CRNN among them) write outputs like this;
    onnxruntime runs it, the full checker refuses it ("Field 'shape' of 'type' is required").
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_w(rng, 12, 3, 3, 3), "c1.w"), numpy_helper.from_array(_b(rng, 12), "c1.b"),
             numpy_helper.from_array(_w(rng, 4, 12, 3, 3), "c2.w")]
    p = [1, 1, 1, 1]
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["h"], name="c1", pads=p),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Conv", ["a", "c2.w"], ["y"], name="c2", pads=p)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = onnx.ValueInfoProto()
    y.name = "y"
    y.type.tensor_type.elem_type = TensorProto.FLOAT
    return _model(nodes, [x], [y], inits)


def constant_if_passthrough(seed: int = 0) -> onnx.ModelProto:
    """A VAD-decoder-style ``If`` with a constant condition, three outputs and a nested constant ``If``.

    Constant folding splices the taken branch in place of the ``If``. Rebinding the producers
    of an ``If`` with more than one output while walking its output list (which shrinks as each
    output is unbound) skips every second output: it is left with no producer, and the checker
    says the graph is not topologically sorted.
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_w(rng, 12, 3, 3, 3), "c1.w"), numpy_helper.from_array(_b(rng, 12), "c1.b"),
             numpy_helper.from_array(_w(rng, 4, 12, 3, 3), "c2.w"), numpy_helper.from_array(_b(rng, 4), "c2.b"),
             numpy_helper.from_array(np.array(True), "flag")]
    p = [1, 1, 1, 1]
    f = TensorProto.FLOAT

    def branch(name: str, ops: list[tuple[str, str, str]], outs: list[str], extra=()) -> onnx.GraphProto:
        nodes = list(extra) + [helper.make_node(op, [src], [dst], name=f"{name}_{dst}") for op, src, dst in ops]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(o, f, None) for o in outs])

    inner_then = branch("inner_then", [("Neg", "a", "n_t"), ("Abs", "a", "m_t")], ["n_t", "m_t"])
    inner_else = branch("inner_else", [("Abs", "a", "n_e"), ("Neg", "a", "m_e")], ["n_e", "m_e"])
    inner = helper.make_node("If", ["flag"], ["i0", "i1"], name="inner_if", then_branch=inner_then,
                             else_branch=inner_else)
    then_branch = branch("then", [("Sigmoid", "a", "t2")], ["i0", "i1", "t2"], extra=[inner])
    else_branch = branch("else", [("Relu", "a", "e0"), ("Relu", "a", "e1"), ("Relu", "a", "e2")], ["e0", "e1", "e2"])
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["h"], name="c1", pads=p),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("If", ["flag"], ["o0", "o1", "o2"], name="gate", then_branch=then_branch,
                              else_branch=else_branch),
             helper.make_node("Add", ["o0", "o1"], ["s"], name="join"),
             helper.make_node("Add", ["s", "o2"], ["s2"], name="join2"),
             helper.make_node("Conv", ["s2", "c2.w", "c2.b"], ["y"], name="c2", pads=p)]
    x = helper.make_tensor_value_info("x", f, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("y", f, ["N", 4, 16, 16])
    return _model(nodes, [x], [y], inits)


def output_in_value_info(seed: int = 0) -> onnx.ModelProto:
    """``Conv -> Relu -> Conv`` whose output is listed again in ``value_info`` with no shape.

    An older PyTorch export of a captcha CRNN does this; the output declares ``[N, 4, 16, 16]``
    and the model passes the full checker, but an importer that reads ``value_info`` last
    forgets the shape, and what it writes fails the checker.
    """
    m = shapeless_output_cnn(seed)
    y = m.graph.output[0]
    y.CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 16, 16]))
    vi = m.graph.value_info.add()
    vi.name = "y"
    vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return m


def ort_unloadable(seed: int = 0) -> onnx.ModelProto:
    """``Conv -> Relu -> Conv -> com.microsoft::NoSuchKernel``: the checker accepts it, onnxruntime cannot load it.

    Stands for the real models onnxruntime refuses while the checker passes them (training-only
    ``Gradient`` ops, quantizer output at a too-old opset): pruning is still checked by the
    checker, but nothing that needs onnxruntime on the original can run, and saying so is a
    refusal, not an internal error.
    """
    m = shapeless_output_cnn(seed)
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4, 16, 16]))
    m.graph.node.append(helper.make_node("NoSuchKernel", ["y"], ["z"], name="mystery", domain="com.microsoft"))
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


def zipmap_classifier(seed: int = 0, hidden: int = 16) -> onnx.ModelProto:
    """``MatMul -> Relu -> MatMul -> ai.onnx.ml LinearClassifier -> ZipMap``, as converted scikit-learn pipelines end.

    The second output is a sequence of maps (class -> probability), not a tensor: onnxruntime
    returns a list of dicts, and the graph library writes such a value back as a tensor.
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_w(rng, 8, hidden), "w1"), numpy_helper.from_array(_w(rng, hidden, 6), "w2")]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="act"),
        helper.make_node("MatMul", ["a", "w2"], ["f"], name="fc2"),
        helper.make_node("LinearClassifier", ["f"], ["label", "prob"], name="clf", domain="ai.onnx.ml",
                         coefficients=rng.standard_normal(18).round(3).tolist(), intercepts=[0.0, 0.1, -0.1],
                         classlabels_ints=[0, 1, 2], post_transform="SOFTMAX"),
        helper.make_node("ZipMap", ["prob"], ["probs"], name="zip", domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])
    scores = helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    probs = helper.make_value_info("probs", helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, scores)))
    g = helper.make_graph(nodes, "g", [x], [label, probs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
                          ir_version=8)
    m.producer_name = "onnxprune-models"
    return m


def weights_from_constant_of_shape(channels: int = 128) -> onnx.ModelProto:
    """Conv weights made at run time by ``ConstantOfShape``, as the onnx wheel's weight-free zoo graphs do.

    The file is a few kilobytes; folding every ``ConstantOfShape`` would store megabytes of
    identical values (a 9 kB VGG-19 became 513 MB).
    """
    c = channels

    def filled(name: str, shape: list[int], value: float) -> list[onnx.NodeProto]:
        return [helper.make_node("ConstantOfShape", [f"{name}.shape"], [name], name=f"{name}.make",
                                 value=numpy_helper.from_array(np.array([value], np.float32)))]

    inits = [_i64("w1.shape", [c, 3, 3, 3]), _i64("w2.shape", [c, c, 3, 3]), _i64("w3.shape", [4, c, 3, 3])]
    p = [1, 1, 1, 1]
    nodes = [*filled("w1", [c, 3, 3, 3], 0.05), *filled("w2", [c, c, 3, 3], 0.002), *filled("w3", [4, c, 3, 3], 0.01),
             helper.make_node("Conv", ["x", "w1"], ["h1"], name="c1", pads=p),
             helper.make_node("Relu", ["h1"], ["a1"], name="r1"),
             helper.make_node("Conv", ["a1", "w2"], ["h2"], name="c2", pads=p),
             helper.make_node("Relu", ["h2"], ["a2"], name="r2"),
             helper.make_node("Conv", ["a2", "w3"], ["y"], name="c3", pads=p)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])
    return _model(nodes, [x], [y], inits)


def branches_share_a_weight(seed: int = 0, hidden: int = 16) -> onnx.ModelProto:
    """``Conv -> Relu -> Conv`` then an ``If`` on a scalar input whose two branches read one big outer weight.

    Silero VAD v5 keeps one LSTM for 8 and 16 kHz and reads its weights from both branches of
    the ``If`` on the sample rate; written back naively, each branch gets its own copy.
    """
    rng = np.random.default_rng(seed)
    big = 256
    inits = [numpy_helper.from_array(_w(rng, hidden, 3, 3, 3), "c1.w"), numpy_helper.from_array(_b(rng, hidden), "c1.b"),
             numpy_helper.from_array(_w(rng, 4, hidden, 3, 3), "c2.w"),
             numpy_helper.from_array(_w(rng, 16, big), "shared.w"), _i64("flat", [1, 1024])]
    p = [1, 1, 1, 1]
    f = TensorProto.FLOAT

    def branch(name: str, scale: float) -> onnx.GraphProto:
        nodes = [helper.make_node("MatMul", ["rows", "shared.w"], [f"{name}_m"], name=f"{name}_mm"),
                 helper.make_node("Mul", [f"{name}_m", f"{name}_s"], [f"{name}_out"], name=f"{name}_mul")]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_out", f, None)],
                                 [numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s")])

    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["h"], name="c1", pads=p),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Conv", ["a", "c2.w"], ["y"], name="c2", pads=p),
             helper.make_node("Reshape", ["y", "flat"], ["flat_y"], name="flatten"),
             helper.make_node("Reshape", ["flat_y", "rows_shape"], ["rows"], name="to_rows"),
             helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="is16k"),
             helper.make_node("If", ["is16k"], ["z"], name="by_rate", then_branch=branch("k16", 1.0),
                              else_branch=branch("k8", 0.5))]
    inits += [_i64("rows_shape", [-1, 16]), _i64("sr16k", [16000])]
    x = helper.make_tensor_value_info("x", f, [1, 3, 16, 16])
    sr = helper.make_tensor_value_info("sr", TensorProto.INT64, [1])
    z = helper.make_tensor_value_info("z", f, [64, big])
    y = helper.make_tensor_value_info("y", f, [1, 4, 16, 16])
    return _model(nodes, [x, sr], [z, y], inits)


def broadcast_gate(seed: int = 0, hidden: int = 12) -> onnx.ModelProto:
    """A one-channel gate broadcast with ``Expand`` to the feature width, as jax2tf writes ``BroadcastTo``.

    ``Conv(3->C) -> Relu`` times ``Expand(Sigmoid(Conv(3->1)), [1, C, H, W])`` into ``Conv(C->4)``:
    the expanded axis holds copies, so the C channels stay prunable once the target is rewritten.
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_w(rng, hidden, 3, 3, 3), "c1.w"), numpy_helper.from_array(_b(rng, hidden), "c1.b"),
             numpy_helper.from_array(_w(rng, 1, 3, 3, 3), "g.w"), numpy_helper.from_array(_w(rng, 4, hidden, 3, 3), "c2.w"),
             _i64("g.target", [1, hidden, 16, 16])]
    p = [1, 1, 1, 1]
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["h"], name="c1", pads=p),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Conv", ["x", "g.w"], ["gl"], name="gate_conv", pads=p),
             helper.make_node("Sigmoid", ["gl"], ["g"], name="gate"),
             helper.make_node("Expand", ["g", "g.target"], ["gx"], name="BroadcastTo"),
             helper.make_node("Mul", ["a", "gx"], ["m"], name="gated"),
             helper.make_node("Conv", ["m", "c2.w"], ["y"], name="c2", pads=p)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])
    return _model(nodes, [x], [y], inits)


def _jax_layernorm(x: str, axes: str, inv_n: str, shape: str, gamma: str, beta: str, out: str) -> list[onnx.NodeProto]:
    """A LayerNorm over ``axes`` as jax2tf + tf2onnx spell it: ``ReduceSum(keepdims=0) * inv_n``
    for the mean and ``E[x^2]``, ``max(0, E[x^2] - E[x]^2)``, each statistic ``Reshape``d and
    ``Expand``ed (BroadcastTo) to ``shape``, then ``(x - mean) * rsqrt(var + eps) * gamma + beta``.
    Reads the initializers ``eps`` and ``zero``."""
    mk = helper.make_node
    return [
        mk("ReduceSum", [x, axes], ["s1"], name="LayerNorm/Sum", keepdims=0, noop_with_empty_axes=1),
        mk("Mul", ["s1", inv_n], ["mean"], name="LayerNorm/truediv"),
        mk("Mul", [x, x], ["xsq"], name="LayerNorm/Square"),
        mk("ReduceSum", ["xsq", axes], ["s2"], name="LayerNorm/Sum_1", keepdims=0, noop_with_empty_axes=1),
        mk("Mul", ["s2", inv_n], ["meansq"], name="LayerNorm/truediv_1"),
        mk("Mul", ["mean", "mean"], ["mean2"], name="LayerNorm/Square_1"),
        mk("Sub", ["meansq", "mean2"], ["var0"], name="LayerNorm/Sub"),
        mk("Max", ["zero", "var0"], ["var"], name="LayerNorm/Maximum"),
        mk("Reshape", ["var", shape], ["var_r"], name="LayerNorm/Reshape_1"),
        mk("Expand", ["var_r", shape], ["var_b"], name="LayerNorm/BroadcastTo_1"),
        mk("Add", ["var_b", "eps"], ["var_e"], name="LayerNorm/AddV2"),
        mk("Sqrt", ["var_e"], ["std"], name="LayerNorm/Rsqrt"),
        mk("Reciprocal", ["std"], ["inv_std"], name="LayerNorm/Rsqrt__r"),
        mk("Mul", ["inv_std", gamma], ["scale"], name="LayerNorm/Mul"),
        mk("Reshape", ["mean", shape], ["mean_r"], name="LayerNorm/Reshape"),
        mk("Expand", ["mean_r", shape], ["mean_b"], name="LayerNorm/BroadcastTo"),
        mk("Sub", [x, "mean_b"], ["centered"], name="LayerNorm/Sub_1"),
        mk("Mul", ["centered", "scale"], ["normed"], name="LayerNorm/Mul_1"),
        mk("Add", ["normed", beta], [out], name="LayerNorm/AddV2_1"),
    ]


def jax_regrouped_layernorm(seed: int = 0, seq: int = 32, dense: int = 8, group: int = 4,
                            conv: int = 12) -> onnx.ModelProto:
    """The byte-classifier trunk that jax2tf + tf2onnx writes (a Magika-style model).

    ``MatMul+Add`` to ``dense`` features per position and a tanh-GELU, then a ``Reshape`` built
    at run time (``Concat(Slice(Shape(x)), [seq/group], [group*dense])``) that regroups
    ``[B, seq, dense]`` into ``[B, seq/group, group*dense]``; a LayerNorm over the *position*
    axis spelled ``ReduceSum(keepdims=0) * (1/n)``, ``E[x^2] - E[x]^2``, each statistic
    ``Reshape``d and ``Expand``ed (BroadcastTo) to ``[B, 1, group*dense]`` by a shape vector that
    names the width; then ``Unsqueeze``, a ``Slice`` whose int32 parameters cover every axis,
    ``Transpose`` to NCHW, ``Conv(kx1)``, ``Squeeze``, ``GlobalMaxPool`` and a ``MatMul`` head.
    """
    rng = np.random.default_rng(seed)
    width = group * dense
    positions = seq // group
    f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
    i32 = lambda n, v: numpy_helper.from_array(np.asarray(v, dtype=np.int32), n)  # noqa: E731
    inits = [
        numpy_helper.from_array((rng.standard_normal((6, dense)) * 0.5).astype(np.float32), "dense.w"),
        numpy_helper.from_array(_b(rng, dense).reshape(1, 1, dense), "dense.b"),
        numpy_helper.from_array(f32(0.044715), "gelu.c"), numpy_helper.from_array(f32(0.7978846), "gelu.s"),
        numpy_helper.from_array(f32(1.0), "one"), numpy_helper.from_array(f32(0.5), "half"),
        i32("axis0", [0]), i32("axis1", [1]), i32("n_pos", [positions]), i32("n_one", [1]), i32("n_width", [width]),
        _i64("reduce_axes", [1]),
        numpy_helper.from_array(f32(1.0 / positions), "inv_n"),
        numpy_helper.from_array(f32(1e-6), "eps"), numpy_helper.from_array(f32(0.0), "zero"),
        numpy_helper.from_array((1.0 + 0.1 * rng.standard_normal((1, positions, 1))).astype(np.float32), "ln.gamma"),
        numpy_helper.from_array((0.1 * rng.standard_normal((1, positions, 1))).astype(np.float32), "ln.beta"),
        _i64("unsq_axes", [3]),
        i32("sl.starts", [0, 0, 0, 0]), i32("sl.ends", [10**9] * 4), i32("sl.axes", [0, 2, 1, 3]), i32("sl.steps", [1] * 4),
        numpy_helper.from_array(_w(rng, conv, width, 3, 1), "conv.w"),
        numpy_helper.from_array(_b(rng, conv).reshape(1, conv, 1), "conv.b"),
        _i64("sq_axes", [3]), _i64("sq2_axes", [2]),
        numpy_helper.from_array(_w(rng, 5, conv).T.copy(), "head.w"),
    ]
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["x", "dense.w"], ["d0"], name="Dense_0/einsum"),
        mk("Add", ["d0", "dense.b"], ["d"], name="Dense_0/AddV2"),
        # tanh GELU, as jax.nn.gelu writes it
        mk("Mul", ["d", "d"], ["d2"], name="gelu/sq"), mk("Mul", ["d2", "d"], ["d3"], name="gelu/cube"),
        mk("Mul", ["gelu.c", "d3"], ["d3c"], name="gelu/c"), mk("Add", ["d", "d3c"], ["inner"], name="gelu/add"),
        mk("Mul", ["gelu.s", "inner"], ["inner_s"], name="gelu/s"), mk("Tanh", ["inner_s"], ["th"], name="gelu/tanh"),
        mk("Add", ["one", "th"], ["th1"], name="gelu/one"), mk("Mul", ["half", "th1"], ["th2"], name="gelu/half"),
        mk("Mul", ["d", "th2"], ["g"], name="gelu/out"),
        # run-time target: the batch read from the input, the regrouped sizes as constants
        mk("Shape", ["x"], ["xshape"], name="Shape"), mk("Cast", ["xshape"], ["xshape32"], name="Shape__cast", to=6),
        mk("Slice", ["xshape32", "axis0", "axis1", "axis0"], ["batch"], name="strided_slice"),
        mk("Concat", ["batch", "n_pos", "n_width"], ["rs_shape32"], name="Reshape/shape_Concat", axis=0),
        mk("Cast", ["rs_shape32"], ["rs_shape"], name="Reshape__cast", to=7),
        mk("Reshape", ["g", "rs_shape"], ["r"], name="Reshape"),
        # LayerNorm over the position axis, statistics by ReduceSum and 1/n
        mk("Concat", ["batch", "n_one", "n_width"], ["bc_shape32"], name="LayerNorm/shape_Concat", axis=0),
        mk("Cast", ["bc_shape32"], ["bc_shape"], name="LayerNorm/shape_cast", to=7),
        *_jax_layernorm("r", "reduce_axes", "inv_n", "bc_shape", "ln.gamma", "ln.beta", "ln"),
        # Conv over positions: NHWC -> NCHW as tf2onnx writes a Conv1D
        mk("Unsqueeze", ["ln", "unsq_axes"], ["u"], name="Unsqueeze"),
        mk("Slice", ["u", "sl.starts", "sl.ends", "sl.axes", "sl.steps"], ["us"], name="Conv_0/strided_slice"),
        mk("Transpose", ["us"], ["nchw"], name="Conv_0/Conv2D__t", perm=[0, 2, 1, 3]),
        mk("Conv", ["nchw", "conv.w"], ["c"], name="Conv_0/Conv2D", kernel_shape=[3, 1]),
        mk("Squeeze", ["c", "sq_axes"], ["c3"], name="Conv_0/squeeze"),
        mk("Add", ["c3", "conv.b"], ["cb"], name="Conv_0/AddV2"),
        mk("Relu", ["cb"], ["ca"], name="act"),
        mk("GlobalMaxPool", ["ca"], ["pooled"], name="Max"),
        mk("Squeeze", ["pooled", "sq2_axes"], ["feat"], name="Max_Squeeze"),
        mk("MatMul", ["feat", "head.w"], ["logits"], name="Dense_1/MatMul"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, 6])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])
    return _model(nodes, [x], [y], inits, opset=17)


def jax_channel_layernorm(seed: int = 0, features: int = 6, hidden: int = 16, classes: int = 3) -> onnx.ModelProto:
    """A LayerNorm over the channel axis as jax2tf + tf2onnx write it: ``ReduceSum(keepdims=0)``
    times a constant ``1/n`` for the mean and for ``E[x^2]``, the statistics ``Reshape``d to
    ``[B, 1]`` and ``Expand``ed by a run-time shape, between ``MatMul(features->hidden)`` and a
    ``MatMul(hidden->classes)`` head. ``1/n`` is one constant shared by both statistics."""
    rng = np.random.default_rng(seed)
    f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
    i32 = lambda n, v: numpy_helper.from_array(np.asarray(v, dtype=np.int32), n)  # noqa: E731
    inits = [
        numpy_helper.from_array((rng.standard_normal((features, hidden)) * 0.7).astype(np.float32), "fc1.w"),
        numpy_helper.from_array(_b(rng, hidden).reshape(1, hidden), "fc1.b"),
        _i64("axes", [1]), numpy_helper.from_array(f32(1.0 / hidden), "recip"),
        numpy_helper.from_array(f32(1e-6), "eps"), numpy_helper.from_array(f32(0.0), "zero"),
        i32("axis0", [0]), i32("axis1", [1]), i32("one", [1]),
        numpy_helper.from_array((1 + 0.2 * rng.standard_normal((1, hidden))).astype(np.float32), "gamma"),
        numpy_helper.from_array((0.1 * rng.standard_normal((1, hidden))).astype(np.float32), "beta"),
        numpy_helper.from_array(_w(rng, classes, hidden).T.copy(), "head.w"),
    ]
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["x", "fc1.w"], ["h0"], name="Dense_0/MatMul"), mk("Add", ["h0", "fc1.b"], ["h1"], name="Dense_0/AddV2"),
        mk("Relu", ["h1"], ["h"], name="act"),
        mk("Shape", ["x"], ["xs"], name="Shape"), mk("Cast", ["xs"], ["xs32"], name="Shape__cast", to=6),
        mk("Slice", ["xs32", "axis0", "axis1", "axis0"], ["batch"], name="strided_slice"),
        mk("Concat", ["batch", "one"], ["bshape32"], name="LayerNorm/shape_Concat", axis=0),
        mk("Cast", ["bshape32"], ["bshape"], name="LayerNorm/shape_cast", to=7),
        *_jax_layernorm("h", "axes", "recip", "bshape", "gamma", "beta", "ln"),
        mk("MatMul", ["ln", "head.w"], ["logits"], name="Dense_1/MatMul"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])
    return _model(nodes, [x], [y], inits, opset=17)
