"""Attention heads, FFN channels and norms written the way exporters write them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune import api
from onnxprune.depgraph import build_depgraph
from onnxprune.graph import load

from .conftest import assert_valid, lossless
from .test_rules import make

H, D, E, F = 4, 8, 32, 48
I64 = np.int64

ATTN = f"""g (float[B,S,{E}] x) => (float[B,S,{E}] y) {{
    q0 = MatMul(x, wq)
    q = Add(q0, bq)
    k0 = MatMul(x, wk)
    k = Add(k0, bk)
    v0 = MatMul(x, wv)
    v = Add(v0, bv)
    shp = Shape(x)
    b = Gather <axis=0> (shp, i0)
    s = Gather <axis=0> (shp, i1)
    bu = Unsqueeze(b, ax0)
    su = Unsqueeze(s, ax0)
    split_shape = Concat <axis=0> (bu, su, heads, hdim)
    q4 = Reshape(q, split_shape)
    k4 = Reshape(k, split_shape)
    v4 = Reshape(v, split_shape)
    qt = Transpose <perm=[0,2,1,3]> (q4)
    kt = Transpose <perm=[0,2,3,1]> (k4)
    vt = Transpose <perm=[0,2,1,3]> (v4)
    sc = MatMul(qt, kt)
    scs = Div(sc, scale)
    p = Softmax <axis=-1> (scs)
    c = MatMul(p, vt)
    ct = Transpose <perm=[0,2,1,3]> (c)
    merge_shape = Concat <axis=0> (bu, su, hidden)
    cm = Reshape(ct, merge_shape)
    o0 = MatMul(cm, wo)
    o = Add(o0, bo)
    r = Add(o, x)
    n = LayerNormalization <axis=-1> (r, g1, be1)
    f0 = MatMul(n, w1)
    f1 = Add(f0, b1)
    f2 = Div(f1, sqrt2)
    f3 = Erf(f2)
    f4 = Add(f3, one)
    f5 = Mul(f1, f4)
    f6 = Mul(f5, half)
    f7 = MatMul(f6, w2)
    f8 = Add(f7, b2)
    r2 = Add(f8, n)
    y = LayerNormalization <axis=-1> (r2, g2, be2)
}}"""

WEIGHTS = {
    "wq": (E, E), "bq": (E,), "wk": (E, E), "bk": (E,), "wv": (E, E), "bv": (E,),
    "wo": (E, E), "bo": (E,), "w1": (E, F), "b1": (F,), "w2": (F, E), "b2": (E,),
    "g1": (E,), "be1": (E,), "g2": (E,), "be2": (E,),
    "i0": np.array(0, I64), "i1": np.array(1, I64), "ax0": np.array([0], I64),
    "heads": np.array([H], I64), "hdim": np.array([D], I64), "hidden": np.array([E], I64),
    "scale": np.array(np.sqrt(D), np.float32), "sqrt2": np.array(np.sqrt(2), np.float32),
    "one": np.array(1, np.float32), "half": np.array(0.5, np.float32),
}


def _model():
    return make(ATTN, WEIGHTS)


def test_heads_form_one_group_of_whole_heads():
    dg = build_depgraph(load(_model()))
    g = next(g for g in dg.groups if ("q", 2) in g.spaces)
    assert g.size == H and g.n_prunable == H  # a channel is a head (D features each)
    assert ("k", 2) in g.spaces and ("v", 2) in g.spaces and ("cm", 2) in g.spaces
    ffn = next(g for g in dg.groups if ("f1", 2) in g.spaces)
    assert ffn.size == F and ffn.n_prunable == F
    hidden = next(g for g in dg.groups if ("x", 2) in g.spaces)
    assert hidden.n_prunable == 0 and any("--prune-hidden" in r for r in hidden.reasons)


@pytest.mark.parametrize("seq", [3, 7])
def test_heads_and_ffn_lossless_at_two_sequence_lengths(seq):
    res = lossless(_model(), share=0.5, input_shapes={"x": [2, seq, E]}, batches=(2,))
    inits = {i.name: tuple(i.dims) for i in res.proto.graph.initializer}
    assert inits["wq"] == (E, E // 2) and inits["wo"] == (E // 2, E) and inits["w1"] == (E, F // 2)
    # the computed head-split shape now carries the new head count, batch/sequence stay dynamic
    concat = next(n for n in res.proto.graph.node if n.output[0] == "split_shape")
    heads = next(i for i in res.proto.graph.initializer if i.name == concat.input[2])
    assert onnx.numpy_helper.to_array(heads).tolist() == [H // 2]
    assert_valid(res.proto)


def test_pruned_attention_runs_at_other_sequence_lengths():
    res = api.prune(_model(), ratio=0.5)
    from onnxprune import verify

    sess = verify.session(res.proto)
    for seq in (1, 5, 11):
        out = sess.run(None, {"x": np.random.default_rng(seq).standard_normal((3, seq, E)).astype(np.float32)})[0]
        assert out.shape == (3, seq, E)


def test_prune_hidden_cuts_the_residual_width():
    res = api.prune(_model(), ratio=0.5, prune_hidden=True)
    assert_valid(res.proto)
    inits = {i.name: tuple(i.dims) for i in res.proto.graph.initializer}
    assert inits["g1"] == (E,)  # graph input/output width is frozen: x and y are interface


def test_fused_runtime_op_is_a_barrier_with_its_domain():
    """A com.microsoft FastGelu inside the FFN freezes that FFN and says why; heads still prune."""
    m = _model()
    node = next(n for n in m.graph.node if n.op_type == "Erf")
    node.op_type, node.domain = "FastGelu", "com.microsoft"
    m.opset_import.add(domain="com.microsoft", version=1)
    an = api.analyze(m)
    ffn = next(g for g in an.depgraph.groups if ("f1", 2) in g.spaces)
    assert ffn.n_prunable == 0
    assert any("FastGelu (domain com.microsoft)" in r and "no channel rule" in r for r in ffn.reasons)
    heads = next(g for g in an.depgraph.groups if ("q", 2) in g.spaces)
    assert heads.n_prunable == H


# tf2onnx writes Keras MultiHeadAttention with batch and heads merged ([B*H, S, D]) and every
# size computed at run time: ReduceProd/Mul of gathered sizes, Max of the sizes of two operands,
# and the head layout read from the shape of a constant.
MERGED = f"""g (float[B,S,{E}] x) => (float[B,S,{E}] y) {{
    q = MatMul(x, wq)
    k = MatMul(x, wk)
    v = MatMul(x, wv)
    xs = Shape(x)
    bs = Gather <axis=0> (xs, i01)
    layout = Shape(heads_like)
    hd = Gather <axis=0> (layout, i01)
    split_shape = Concat <axis=0> (bs, hd)
    q4 = Reshape(q, split_shape)
    k4 = Reshape(k, split_shape)
    v4 = Reshape(v, split_shape)
    qt = Transpose <perm=[0,2,1,3]> (q4)
    kt = Transpose <perm=[0,2,3,1]> (k4)
    vt = Transpose <perm=[0,2,1,3]> (v4)
    qs = Shape(qt)
    qbh = Gather <axis=0> (qs, i01)
    qprod = ReduceProd <keepdims=1> (qbh)
    qd = Gather <axis=0> (qs, i3)
    q3_shape = Concat <axis=0> (qprod, minus1, qd)
    q3 = Reshape(qt, q3_shape)
    ks = Shape(kt)
    kb = Gather <axis=0> (ks, i0)
    kh = Gather <axis=0> (ks, i1)
    kprod = Mul(kb, kh)
    k3_shape = Concat <axis=0> (kprod, qd, minus1)
    k3 = Reshape(kt, k3_shape)
    sc = MatMul(q3, k3)
    scs = Div(sc, scale)
    qsq = Gather <axis=0> (qs, i2)
    kbh = Gather <axis=0> (ks, i01)
    bh = Max(qbh, kbh)
    sc4_shape = Concat <axis=0> (bh, qsq, minus1)
    sc4 = Reshape(scs, sc4_shape)
    p = Softmax <axis=-1> (sc4)
    ps = Shape(p)
    pbh = Gather <axis=0> (ps, i01)
    pprod = ReduceProd <keepdims=1> (pbh)
    p3_shape = Concat <axis=0> (pprod, minus1, qsq)
    p3 = Reshape(p, p3_shape)
    vs = Shape(vt)
    vbh = Gather <axis=0> (vs, i01)
    vprod = ReduceProd <keepdims=1> (vbh)
    v3_shape = Concat <axis=0> (vprod, minus1, qd)
    v3 = Reshape(vt, v3_shape)
    c3 = MatMul(p3, v3)
    pbhm = Max(pbh, one_i)
    c4_shape = Concat <axis=0> (pbhm, qsq, qd)
    c4 = Reshape(c3, c4_shape)
    ct = Transpose <perm=[0,2,1,3]> (c4)
    cts = Shape(ct)
    chd = Gather <axis=0> (cts, i23)
    width = ReduceProd <keepdims=1> (chd)
    cm_shape = Concat <axis=0> (bs, width)
    cm = Reshape(ct, cm_shape)
    o = MatMul(cm, wo)
    y = Add(o, x)
}}"""

MERGED_WEIGHTS = {
    "wq": (E, E), "wk": (E, E), "wv": (E, E), "wo": (E, E),
    "heads_like": np.zeros((H, D), np.float32),
    "i0": np.array([0], I64), "i1": np.array([1], I64), "i2": np.array([2], I64),
    "i3": np.array([3], I64), "i01": np.array([0, 1], I64), "i23": np.array([2, 3], I64),
    "minus1": np.array([-1], I64), "one_i": np.array([1], I64),
    "scale": np.array(np.sqrt(D), np.float32),
}  # fmt: skip


def _merged():
    return make(MERGED, MERGED_WEIGHTS)


def test_merged_batch_heads_arithmetic_is_one_group_of_heads():
    dg = build_depgraph(load(_merged()))
    g = next(g for g in dg.groups if ("q", 2) in g.spaces)
    assert g.size == H and g.n_prunable == H, g.reasons
    for key in [("q3", 0), ("k3", 0), ("sc4", 1), ("p3", 0), ("c4", 1), ("cm", 2)]:
        assert key in g.spaces, key


def test_merged_batch_heads_through_unknown_arithmetic_stays_a_barrier():
    """B·heads computed by an op the tracer does not evaluate (Div) is not followed."""
    text = MERGED.replace("(qprod, minus1, qd)", "(qdiv, minus1, qd)").replace(
        "    q3_shape = Concat", "    qdiv = Div(qprod, one_i)\n    q3_shape = Concat"
    )
    dg = build_depgraph(load(make(text, MERGED_WEIGHTS)))
    g = next(g for g in dg.groups if ("k3", 0) in g.spaces)
    assert g.n_prunable == 0
    assert any("reads the size of 'qt' axis 1" in r for r in g.reasons), g.reasons


def test_merged_batch_heads_lossless_at_two_sequence_lengths():
    """Analysed with batch and sequence symbolic (taken as 1), compared at two run-time shapes."""
    res = lossless(_merged(), share=0.5, feed_shapes=[{"x": [2, 3, E]}, {"x": [3, 7, E]}])
    inits = {i.name: tuple(i.dims) for i in res.proto.graph.initializer}
    assert inits["wq"] == (E, E // 2) and inits["wo"] == (E // 2, E)
    inferred = onnx.shape_inference.infer_shapes(res.proto, data_prop=True)
    dims = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    assert dims["q4"][2:] == [H // 2, D]  # the head count read from a constant's shape follows
    assert_valid(res.proto)
    from onnxprune import verify

    sess = verify.session(res.proto)
    for b, s in ((1, 1), (3, 11)):  # batch and sequence stay dynamic
        out = sess.run(None, {"x": np.ones((b, s, E), np.float32)})[0]
        assert out.shape == (b, s, E)


# A Keras LayerNormalization as tf2onnx writes it: mean and variance of [B, S, C] by
# GlobalAveragePool (which pools the last axis of a 3-D tensor), rsqrt as Sqrt + Reciprocal.
KERAS_LN = """g (float[B,S,16] x) => (float[B,S,8] y) {
    h0 = MatMul(x, w0)
    h = Add(h0, b0)
    mean = MEAN(h)
    neg = Neg(mean)
    d = Sub(h, mean)
    sq = Mul(d, d)
    var = MEAN(sq)
    ve = Add(var, eps)
    sd = Sqrt(ve)
    rs = Reciprocal(sd)
    m = Mul(rs, gamma)
    m2 = Mul(h, m)
    m1 = Mul(neg, m)
    a1 = Add(m1, beta)
    n = Add(m2, a1)
    y = MatMul(n, w1)
}"""
KERAS_LN_WEIGHTS = {
    "w0": (16, 32), "b0": (32,), "gamma": (1, 1, 32), "beta": (1, 1, 32), "w1": (32, 8),
    "eps": np.array(1e-6, np.float32),
}  # fmt: skip


def _keras_ln(mean_op: str):
    return make(KERAS_LN.replace("MEAN", mean_op), KERAS_LN_WEIGHTS)


def test_global_average_pool_layernorm_is_a_barrier_unless_prune_hidden():
    g = next(g for g in build_depgraph(load(_keras_ln("GlobalAveragePool"))).groups if ("h", 2) in g.spaces)
    assert g.n_prunable == 0 and any("--prune-hidden prunes through it" in r for r in g.reasons)
    g = next(
        g for g in build_depgraph(load(_keras_ln("GlobalAveragePool")), prune_hidden=True).groups if ("h", 2) in g.spaces
    )
    assert g.n_prunable == 32 and ("gamma", 2) in g.spaces and ("beta", 2) in g.spaces and ("w1", 0) in g.spaces


def test_global_average_pool_layernorm_prunes_like_reduce_mean():
    """--prune-hidden through the GlobalAveragePool form cuts the same channels as through the
    ReduceMean form, and both pruned models compute the same (LayerNorm statistics over the
    kept channels), at two sequence lengths."""
    from onnxprune import verify

    gap = api.prune(_keras_ln("GlobalAveragePool"), ratio=0.5, prune_hidden=True)
    ref = api.prune(_keras_ln("ReduceMean <axes=[-1]>"), ratio=0.5, prune_hidden=True)
    assert_valid(gap.proto)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in gap.proto.graph.initializer}
    ref_inits = {i.name: onnx.numpy_helper.to_array(i) for i in ref.proto.graph.initializer}
    assert inits["gamma"].shape == (1, 1, 16) and inits["w0"].shape == (16, 16) and inits["w1"].shape == (16, 8)
    np.testing.assert_array_equal(inits["gamma"], ref_inits["gamma"])
    s1, s2 = verify.session(gap.proto), verify.session(ref.proto)
    for seq in (3, 9):
        x = np.random.default_rng(seq).standard_normal((2, seq, 16)).astype(np.float32)
        np.testing.assert_allclose(s1.run(None, {"x": x})[0], s2.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


# ``reshape(B, S, C)`` merging heads with C read from another tensor (the block input, as timm
# and torch's legacy exporter write it): that tensor's width may be pruned on its own, since the
# rewriter writes the merged width as a constant.
LONE_SIZE = """g (float[B,S,16] x) => (float[B,S,16] y) {
    h = MatMul(x, w0)
    q = MatMul(h, wq)
    hs = Shape(h)
    b = Gather <axis=0> (hs, i0)
    s = Gather <axis=0> (hs, i1)
    c = Gather <axis=0> (hs, i2)
    split_shape = Concat <axis=0> (b, s, heads, hdim)
    q4 = Reshape(q, split_shape)
    r = Relu(q4)
    merge_shape = Concat <axis=0> (b, s, c)
    m = Reshape(r, merge_shape)
    y = MatMul(m, wo)
}"""
LONE_SIZE_WEIGHTS = {
    "w0": (16, E), "wq": (E, E), "wo": (E, 16),
    "i0": np.array([0], I64), "i1": np.array([1], I64), "i2": np.array([2], I64),
    "heads": np.array([H], I64), "hdim": np.array([D], I64),
}  # fmt: skip


def test_lone_size_of_a_pruned_tensor_becomes_a_constant():
    model = make(LONE_SIZE, LONE_SIZE_WEIGHTS)
    dg = build_depgraph(load(model))
    width = next(g for g in dg.groups if ("h", 2) in g.spaces)
    heads = next(g for g in dg.groups if ("q4", 2) in g.spaces)
    assert width.n_prunable == E and heads.n_prunable == H, (width.reasons, heads.reasons)
    res = lossless(model, share=0.5, feed_shapes=[{"x": [2, 3, 16]}, {"x": [1, 7, 16]}])
    inits = {i.name: i for i in res.proto.graph.initializer}
    assert tuple(inits["w0"].dims) == (16, E // 2) and tuple(inits["wo"].dims) == (E // 2, 16)
    merge = next(n for n in res.proto.graph.node if n.output[0] == "merge_shape")
    assert onnx.numpy_helper.to_array(inits[merge.input[2]]).tolist() == [E // 2]  # heads' width


@pytest.mark.parametrize(
    "target",
    [
        # torch.export: Concat(Shape(x)[0:1], [1], [1])
        "t = Concat <axis=0> (bsz, one_i, one_i)",
        # TorchScript ``expand(B, -1, -1)``: Where(t0 == -1, 1, t0)
        "t0r = Concat <axis=0> (bsz, minus1, minus1)\n    t0 = Reshape(t0r, minus1)\n    t0s = Shape(t0)\n"
        "    ones = ConstantOfShape <value=int64[1] {1}> (t0s)\n    neg = Mul(ones, minus1)\n"
        "    isneg = Equal(t0, neg)\n    t = Where(isneg, ones, t0)",
    ],
    ids=["dynamo", "legacy"],
)
def test_class_token_expand_with_a_run_time_target_keeps_the_width(target):
    """``cls_token.expand(B, -1, -1)`` then Concat with the patches: the width passes through, so
    --prune-hidden narrows the class token with everything else."""
    text = f"""g (float[B,4,16] x) => (float[B,5,8] y) {{
    h = MatMul(x, w0)
    xs = Shape(x)
    bsz = Slice(xs, i0, i1)
    {target}
    cls = Expand(cls_token, t)
    seq = Concat <axis=1> (cls, h)
    y = MatMul(seq, w1)
}}"""
    weights = {
        "w0": (16, E), "w1": (E, 8), "cls_token": (1, 1, E),
        "i0": np.array([0], I64), "i1": np.array([1], I64), "one_i": np.array([1], I64),
        "minus1": np.array([-1], I64),
    }  # fmt: skip
    model = make(text, weights)
    g = next(g for g in build_depgraph(load(model)).groups if ("h", 2) in g.spaces)
    assert g.n_prunable == E and ("cls_token", 2) in g.spaces, g.reasons
    res = lossless(model, share=0.5, feed_shapes=[{"x": [1, 4, 16]}, {"x": [3, 4, 16]}])
    assert {i.name: tuple(i.dims) for i in res.proto.graph.initializer}["cls_token"] == (1, 1, E // 2)
