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
