"""One small graph per rule variant, written as onnx text so each reads like a spec.

Each is pruned losslessly (exactly-dead channels removed, outputs equal at rtol 1e-4) and must
stay valid; barrier cases assert the reason is recorded and the rest is still pruned.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

from onnxprune import api
from onnxprune.depgraph import build_depgraph
from onnxprune.graph import load

from .conftest import assert_valid, lossless

I64 = np.int64


def make(text: str, weights: dict[str, object], opset: int = 17, seed: int = 0) -> onnx.ModelProto:
    """Parses a graph and attaches initializers: a shape gives seeded normal floats."""
    ir = {7: 3, 9: 4, 11: 6, 13: 7, 17: 8, 18: 8, 21: 10}.get(opset, 8)
    model = onnx.parser.parse_model(f'<ir_version: {ir}, opset_import: ["" : {opset}]>\n' + text)
    rng = np.random.default_rng(seed)
    for name, w in weights.items():
        if isinstance(w, tuple):
            arr = (rng.standard_normal(w) * 0.5).astype(np.float32)
            if name.endswith("var"):
                arr = np.abs(arr) + 0.5
        else:
            arr = np.asarray(w)
        model.graph.initializer.append(numpy_helper.from_array(arr, name))
        if ir < 4:  # old IR: initializers must also be listed as graph inputs
            model.graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
    onnx.checker.check_model(model, full_check=True)
    return model


CONV = {"w1": (8, 3, 3, 3), "b1": (8,), "w2": (6, 8, 1, 1), "b2": (6,)}

CASES = {
    "split_opset11_attr": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            a, b = Split <axis=1, split=[5,3]> (c)
            ra = Relu(a)
            s = Concat <axis=1> (b, ra)
            y = Conv (s, w2, b2)
        }""", CONV, opset=11),
    "split_opset13_input": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            a, b = Split <axis=1> (c, sp)
            s = Concat <axis=1> (b, a)
            y = Conv (s, w2, b2)
        }""", {**CONV, "sp": np.array([2, 6], I64)}, opset=13),
    "split_opset18_num_outputs": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            a, b = Split <axis=1, num_outputs=2> (c)
            m = Mul(a, b)
            s = Concat <axis=1> (m, a)
            y = Conv (s, w2, b2)
        }""", CONV, opset=18),
    "slice_channels_negative_and_open_end": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            lo = Slice(c, st1, en1, ax)
            hi = Slice(c, st2, en2, ax)
            s = Concat <axis=1> (hi, lo)
            y = Conv (s, w2, b2)
        }""", {**CONV, "st1": np.array([0], I64), "en1": np.array([-3], I64),
               "st2": np.array([-3], I64), "en2": np.array([2**63 - 1], I64),
               "ax": np.array([1], I64)}),
    "slice_opset9_attrs": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            lo = Slice <starts=[0], ends=[4], axes=[1]> (c)
            hi = Slice <starts=[4], ends=[8], axes=[1]> (c)
            s = Add(lo, hi)
            w = Concat <axis=1> (s, s)
            y = Conv (w, w2, b2)
        }""", CONV, opset=9),
    "dynamic_flatten_reshape_to_gemm": make(
        """g (float[N,3,8,8] x) => (float[N,5] y) {
            c = Conv <pads=[1,1,1,1], strides=[2,2]> (x, w1, b1)
            r = Relu(c)
            shp = Shape(r)
            n = Gather <axis=0> (shp, zero)
            nn = Unsqueeze(n, zero1)
            tgt = Concat <axis=0> (nn, minus1)
            f = Reshape(r, tgt)
            y = Gemm <transB=1> (f, wf, bf)
        }""", {"w1": (8, 3, 3, 3), "b1": (8,), "zero": np.array(0, I64), "zero1": np.array([0], I64),
               "minus1": np.array([-1], I64), "wf": (5, 128), "bf": (5,)}),
    "shared_bias_couples_two_convs": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c1 = Conv <pads=[1,1,1,1]> (x, w1, bs)
            c2 = Conv <pads=[1,1,1,1]> (x, w1b, bs)
            r1 = Relu(c1)
            r2 = Sigmoid(c2)
            s = Concat <axis=1> (r1, r2)
            y = Conv (s, w2, b2)
        }""", {"w1": (8, 3, 3, 3), "w1b": (8, 3, 3, 3), "bs": (8,), "w2": (6, 16, 1, 1), "b2": (6,)}),
    "conv_transpose_grouped_with_bias": make(
        """g (float[N,3,8,8] x) => (float[N,6,16,16] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            r = Relu(c)
            u = ConvTranspose <strides=[2,2], group=2> (r, wt, bt)
            v = Relu(u)
            y = Conv (v, w2, b2)
        }""", {"w1": (8, 3, 3, 3), "b1": (8,), "wt": (8, 4, 2, 2), "bt": (8,), "w2": (6, 8, 1, 1), "b2": (6,)}),
    "gemm_transA_and_bias_vector": make(
        """g (float[4,N] x) => (float[N,3] y) {
            h = Gemm <transA=1, transB=1> (x, wa, ba)
            r = Relu(h)
            y = Gemm (r, wb, bb)
        }""", {"wa": (16, 4), "ba": (16,), "wb": (16, 3), "bb": (3,)}),
    "matmul_weight_on_left": make(
        """g (float[6,N] x) => (float[2,N] y) {
            h = MatMul(wa, x)
            r = Tanh(h)
            y = MatMul(wb, r)
        }""", {"wa": (12, 6), "wb": (2, 12)}),
    "resize_with_sizes": make(
        """g (float[1,3,8,8] x) => (float[1,6,16,16] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            u = Resize <mode="nearest"> (c, roi, sc, sz)
            y = Conv (u, w2, b2)
        }""", {**CONV, "roi": np.zeros(0, np.float32), "sc": np.zeros(0, np.float32),
               "sz": np.array([1, 8, 16, 16], I64)}),
    "upsample_opset9": make(
        """g (float[N,3,8,8] x) => (float[N,6,16,16] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            u = Upsample <mode="nearest"> (c, sc)
            y = Conv (u, w2, b2)
        }""", {**CONV, "sc": np.array([1, 1, 2, 2], np.float32)}, opset=9),
    "batchnorm_opset7": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            b = BatchNormalization (c, s, bb, mean, var)
            r = Relu(b)
            y = Conv (r, w2, b2)
        }""", {**CONV, "s": (8,), "bb": (8,), "mean": (8,), "var": (8,)}, opset=7),
    "concat_with_constant_channels": make(
        """g (float[1,3,8,8] x) => (float[1,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            n = Relu(c)
            e = Expand(coords, shp)
            s = Concat <axis=1> (n, e)
            y = Conv (s, w2, b2)
        }""", {"w1": (8, 3, 3, 3), "b1": (8,), "coords": (1, 2, 8, 8), "shp": np.array([1, 1, 1, 1], I64),
               "w2": (6, 10, 1, 1), "b2": (6,)}),
    "prelu_and_per_channel_div": make(
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            p = PRelu(c, slope)
            d = Div(p, scale)
            y = Conv (d, w2, b2)
        }""", {**CONV, "slope": (8, 1, 1), "scale": np.full((1, 8, 1, 1), 2.0, np.float32)}),
    "nhwc_transposed_conv_and_bias_add": make(
        """g (float[N,8,8,3] x) => (float[N,6,8,8] y) {
            t = Transpose <perm=[0,3,1,2]> (x)
            c = Conv <pads=[1,1,1,1]> (t, w1, b1)
            h = Transpose <perm=[0,2,3,1]> (c)
            a = Add(h, bias)
            r = Relu(a)
            t2 = Transpose <perm=[0,3,1,2]> (r)
            y = Conv (t2, w2, b2)
        }""", {**CONV, "bias": (8,)}),
    "squeeze_unsqueeze_around_gap": make(
        """g (float[N,3,8,8] x) => (float[N,6] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            p = GlobalAveragePool(c)
            s = Squeeze(p, axes)
            u = Unsqueeze(s, axes)
            f = Flatten(u)
            y = Gemm <transB=1> (f, wf, bf)
        }""", {"w1": (8, 3, 3, 3), "b1": (8,), "axes": np.array([2, 3], I64), "wf": (6, 8), "bf": (6,)}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule_lossless(name):
    m = CASES[name]
    fixed = name in ("resize_with_sizes", "concat_with_constant_channels")
    lossless(m, share=0.4, batches=(1,) if fixed else (1, 2))


def test_shared_bias_puts_both_convs_in_one_group():
    dg = build_depgraph(load(CASES["shared_bias_couples_two_convs"]))
    g = next(g for g in dg.groups if ("bs", 0) in g.spaces)
    assert ("c1", 1) in g.spaces and ("c2", 1) in g.spaces
    assert g.size == 8  # channel i of both convs is one channel: the bias is cut once


def test_grouped_conv_transpose_keeps_groups_consistent():
    res = lossless(CASES["conv_transpose_grouped_with_bias"], share=0.5)
    node = next(n for n in res.proto.graph.node if n.op_type == "ConvTranspose")
    group = next(a.i for a in node.attribute if a.name == "group")
    w = next(i for i in res.proto.graph.initializer if i.name == node.input[1])
    assert w.dims[0] % group == 0 and group >= 1


BARRIERS = {
    "shape_reads_channels": (
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            shp = Shape(c)
            k = Gather <axis=0> (shp, one)
            kf = Cast <to=1> (k)
            d = Div(c, kf)
            y = Conv (d, w2, b2)
        }""", {**CONV, "one": np.array(1, I64)}, "reads the size"),
    "pad_on_channel_axis": (
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            p = Pad(c, pads)
            y = Conv (p, w2b, b2)
        }""", {**CONV, "pads": np.array([0, 1, 0, 0, 0, 1, 0, 0], I64), "w2b": (6, 10, 1, 1)}, "pads axis 1"),
    "softmax_over_channels": (
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            s = Softmax <axis=1> (c)
            y = Conv (s, w2, b2)
        }""", CONV, "normalizes over axis 1"),
    "custom_domain_op": (
        """g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            r = Relu(c)
            y = Conv (r, w2, b2)
        }""", CONV, "no channel rule"),
}


@pytest.mark.parametrize("name", list(BARRIERS))
def test_barrier_freezes_with_reason_and_rest_still_prunes(name):
    text, weights, reason = BARRIERS[name]
    m = make(text, {k: v for k, v in weights.items() if k != "w2" or name != "pad_on_channel_axis"})
    if name == "custom_domain_op":
        relu = next(n for n in m.graph.node if n.op_type == "Relu")
        relu.domain = "com.example"
        relu.op_type = "MyRelu"
        m.opset_import.add(domain="com.example", version=1)
        an = api.analyze(m)
        assert any(reason in r for g in an.depgraph.groups for r in g.reasons)
        return  # onnxruntime cannot run the custom op, so stop at analysis
    an = api.analyze(m)
    frozen = [g for g in an.depgraph.groups if g.reasons and g.size == 8]
    assert frozen and any(reason in r for g in frozen for r in g.reasons), [g.reasons for g in an.depgraph.groups]
    assert all(g.n_prunable == 0 for g in frozen)
    res = api.prune(m, ratio=0.5)
    assert_valid(res.proto)


def test_maxpool_indices_output_freezes_channels():
    m = make(
        """g (float[N,3,8,8] x) => (float[N,8,4,4] y, int64[N,8,4,4] i) {
            c = Conv <pads=[1,1,1,1]> (x, w1, b1)
            y, i = MaxPool <kernel_shape=[2,2], strides=[2,2]> (c)
        }""", {"w1": (8, 3, 3, 3), "b1": (8,)})
    an = api.analyze(m)
    assert all(g.n_prunable == 0 for g in an.depgraph.groups)


def test_uniform_shared_bias_is_copied_not_coupling():
    """An all-zero bias merged by an exporter must not tie unrelated layers together."""
    m = make("""g (float[N,3,8,8] x) => (float[N,6,8,8] y) {
            c1 = Conv <pads=[1,1,1,1]> (x, w1, bs)
            c2 = Conv <pads=[1,1,1,1]> (x, w1b, bs)
            r1 = Relu(c1)
            r2 = Sigmoid(c2)
            s = Concat <axis=1> (r1, r2)
            y = Conv (s, w2, b2)
        }""", {"w1": (8, 3, 3, 3), "w1b": (8, 3, 3, 3), "bs": np.zeros(8, np.float32),
               "w2": (6, 16, 1, 1), "b2": (6,)})
    dg = build_depgraph(load(m))
    g1 = next(g for g in dg.groups if ("c1", 1) in g.spaces)
    # joined by the Concat, but channel i of c1 and channel i of c2 are no longer one channel
    assert g1.size == 16 and int(g1.strata.max()) + 1 == 2
    lossless(m)


def test_einsum_projection_with_head_shaped_kernel():
    """A Keras-style dense einsum: kernel [hidden, heads, head_dim] gives heads their own axis."""
    m = make(
        """g (float[N,5,16] x) => (float[N,5,16] y) {
            q = Einsum <equation="bsh,hnd->bsnd"> (x, wq)
            r = Relu(q)
            y = Einsum <equation="bsnd,ndh->bsh"> (r, wo)
        }""", {"wq": (16, 4, 8), "wo": (4, 8, 16)}, opset=17)
    res = lossless(m, share=0.5)
    shapes = {i.name: tuple(i.dims) for i in res.proto.graph.initializer}
    assert shapes["wq"][1] < 4 or shapes["wq"][2] < 8
