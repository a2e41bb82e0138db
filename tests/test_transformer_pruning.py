"""Transformers as exporters write them: whole heads and FFN channels removed losslessly."""

from __future__ import annotations

import pytest

from models.transformers import TRANSFORMERS
from onnxprune import api

from .conftest import TRANSFORMER_EXPORTS, assert_valid, lossless

SEQ_MODELS = ["bert_like", "gpt_like", "llama_like", "keras_transformer_block"]


def _feeds(name: str, model) -> list[dict[str, list[int]]]:
    if name not in SEQ_MODELS:
        return [{}]
    shapes = []
    for seq in (5, 9):
        fs = {}
        for inp in model.graph.input:
            dims = inp.type.tensor_type.shape.dim
            fs[inp.name] = [2, seq] + [d.dim_value for d in dims[2:]]
        shapes.append(fs)
    return shapes


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_lossless_heads_and_ffn_at_two_sequence_lengths(name):
    model = TRANSFORMERS[name]()
    lossless(model, share=0.5, feed_shapes=_feeds(name, model))


@pytest.mark.parametrize("name", ["bert_like", "llama_like", "gpt_like"])
def test_every_attention_block_and_ffn_is_a_prunable_group(name):
    """Two layers, 4 heads each: two groups of 4 whole heads, and two FFN groups."""
    an = api.analyze(TRANSFORMERS[name](layers=2, heads=4))
    sizes = sorted(g.size for g in an.depgraph.groups if g.n_prunable == g.size)
    assert sizes.count(4) == 2, sizes
    assert len([n for n in sizes if n > 4]) >= 2, sizes


def test_prune_hidden_keeps_a_hidden_width_that_is_a_graph_output():
    an = api.analyze(TRANSFORMERS["bert_like"](), prune_hidden=True)
    hidden = max(an.depgraph.groups, key=lambda g: len(g.spaces))
    assert hidden.n_prunable == 0
    assert any("last_hidden_state" in r for r in hidden.reasons)


@pytest.mark.parametrize("name", ["gpt_like", "llama_like"])
def test_prune_hidden_narrows_the_residual_stream(name):
    base = api.prune(TRANSFORMERS[name](), ratio=0.5)
    wide = api.prune(TRANSFORMERS[name](), ratio=0.5, prune_hidden=True)
    assert_valid(wide.proto)
    assert wide.after.params < base.after.params


def test_llama_fused_gate_up_split_is_pruned_consistently():
    model = TRANSFORMERS["llama_like"](fused_gate_up=True)
    res = lossless(model, share=0.5, feed_shapes=_feeds("llama_like", model))
    assert_valid(res.proto)


def test_bert_const_shape_variant():
    model = TRANSFORMERS["bert_like"](const_shapes=True)
    lossless(model, share=0.5, feed_shapes=_feeds("bert_like", model))


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_ratio_half_is_valid(name):
    res = api.prune(TRANSFORMERS[name](), ratio=0.5)
    assert_valid(res.proto)
    assert res.after.macs < res.before.macs


def _export_feeds(path) -> list[dict[str, list[int]]]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    out = []
    for seq in (5, 11):
        fs = {}
        for inp in m.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
            fs[inp.name] = [2] + [d if d is not None else seq for d in dims[1:]]
        out.append(fs)
    return out


@pytest.mark.parametrize("path", TRANSFORMER_EXPORTS, ids=lambda p: p.stem)
def test_transformer_exports_lossless(path):
    """Exactly-dead heads and FFN channels removed from real exports, at two sequence lengths."""
    res = lossless(str(path), share=0.5, feed_shapes=_export_feeds(path))
    assert res.after.macs < res.before.macs


#: Attention blocks per export (4 heads each); the others have two.
_BLOCKS = {"keras_transformer": 1}


@pytest.mark.parametrize("path", TRANSFORMER_EXPORTS, ids=lambda p: p.stem)
def test_transformer_exports_heads_are_groups(path):
    an = api.analyze(str(path))
    sizes = sorted(g.size for g in an.depgraph.groups if g.n_prunable == g.size)
    assert sizes.count(4) == _BLOCKS.get(path.stem, 2), sizes


def test_keras_multi_head_attention_loses_whole_heads():
    """tf2onnx computes batch·heads with Shape/Gather/ReduceProd/Max and reads the head layout
    from constants' shapes; two of four heads go from every kernel and bias, lossless."""
    path = next(p for p in TRANSFORMER_EXPORTS if p.stem == "keras_transformer")
    res = lossless(str(path), share=0.5, feed_shapes=_export_feeds(path))
    dims = {i.name: tuple(i.dims) for i in res.proto.graph.initializer}
    kernels = sorted(d for d in dims.values() if d == (32, 64))
    assert len(kernels) == 3  # query, key and value kernels, transposed for Gemm
    assert sorted(d for n, d in dims.items() if n.endswith("_1/Add/ReadVariableOp:0")) == [(2, 16)] * 3
    assert (1, 1, 64, 2, 16) in dims.values()  # the output projection, per head


def test_keras_layernorm_with_prune_hidden_stays_lossless_for_heads_and_ffn():
    """The hidden width of the Keras block is its graph input and output (frozen), so pruning
    through its GlobalAveragePool LayerNorms must leave heads and FFN pruning exact."""
    path = next(p for p in TRANSFORMER_EXPORTS if p.stem == "keras_transformer")
    an = api.analyze(str(path), prune_hidden=True)
    hidden = max(an.depgraph.groups, key=lambda g: len(g.spaces))
    assert not any("GlobalAveragePool" in r for r in hidden.reasons), hidden.reasons
    lossless(str(path), share=0.5, feed_shapes=_export_feeds(path), prune_hidden=True)


@pytest.mark.parametrize("path", TRANSFORMER_EXPORTS, ids=lambda p: p.stem)
def test_transformer_exports_ratio_half_is_valid(path):
    res = api.prune(str(path), ratio=0.5)
    assert_valid(res.proto)
    assert res.after.macs < res.before.macs * 0.75


def test_paddle_transformer_prune_hidden_narrows_the_encoder():
    """paddle2onnx writes LayerNorm as ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add; with an input and an
    output projection the residual width is not graph interface and is cut everywhere."""
    path = next(p for p in TRANSFORMER_EXPORTS if p.stem == "paddle_transformer")
    res = api.prune(str(path), ratio=0.5, prune_hidden=True)
    assert_valid(res.proto)
    dims = {i.name: tuple(i.dims) for i in res.proto.graph.initializer}
    g = res.proto.graph
    embed = next(n for n in g.node if n.op_type == "MatMul" and n.input[0] == g.input[0].name)
    head = next(n for n in g.node if n.op_type == "MatMul" and n.input[1] in dims and dims[n.input[1]][1] == 10)
    assert dims[embed.input[1]] == (16, 16) and dims[head.input[1]] == (16, 10)
    gammas = [d for n, d in dims.items() if n.startswith("helper.reshape")]  # LayerNorm scale and bias
    assert len(gammas) == 8 and set(gammas) == {(16,)}


def test_paddle_transformer_with_constant_nodes_is_lossless():
    """paddle2onnx 1.x wrote every weight and shape vector as a ``Constant`` node rather than an
    initializer; the same graph written that way prunes the same, losslessly."""
    import onnx

    path = next(p for p in TRANSFORMER_EXPORTS if p.stem == "paddle_transformer")
    m = onnx.load(str(path))
    consts = [onnx.helper.make_node("Constant", [], [t.name], value=t) for t in m.graph.initializer]
    del m.graph.initializer[:]
    nodes = consts + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    assert sum(n.op_type == "Constant" for n in m.graph.node) > 50
    res = lossless(m, share=0.5, feed_shapes=_export_feeds(path))
    assert sorted(g.size for g in api.analyze(res.proto).depgraph.groups if g.n_prunable == g.size).count(2) == 2


def test_keras_heads_pruned_when_analysed_at_a_fixed_batch():
    """With the batch fixed above 1 for analysis, the merged batch·heads axis has two factors;
    the batch, a graph input's axis, never carries channels, so heads are still what is cut
    and the pruned model keeps dynamic batch and sequence."""
    import numpy as np

    from onnxprune import verify

    path = next(p for p in TRANSFORMER_EXPORTS if p.stem == "keras_transformer")
    res = lossless(str(path), share=0.5, input_shapes={"tokens": [2, 16, 64]}, batches=(2,))
    assert sorted(d for i in res.proto.graph.initializer if (d := tuple(i.dims)) == (32, 64)) == [(32, 64)] * 3
    out = verify.session(res.proto).run(None, {"tokens": np.ones((3, 7, 64), np.float32)})[0]
    assert out.shape == (3, 7, 64)


# nn.MultiheadAttention's export computes the head width as hidden // heads at run time, so its
# hidden width stays whole (its heads and MLP are pruned; see test_torch_multihead_attention_*)
@pytest.mark.parametrize("path", [p for p in TRANSFORMER_EXPORTS if "keras" not in p.name and "mha" not in p.name],
                         ids=lambda p: p.stem)
def test_transformer_exports_prune_hidden_narrows_every_export(path):
    """The residual width of every export whose interface is not that width (token ids in,
    logits out) is one prunable group under --prune-hidden: embeddings or patch projection,
    class token and position table, LayerNorms, every projection."""
    an = api.analyze(str(path), prune_hidden=True)
    width = {"paddle_transformer": 32}.get(path.stem, 64)
    hidden = max((g for g in an.depgraph.groups if g.size == width), key=lambda g: len(g.spaces))
    assert hidden.n_prunable == width, hidden.reasons
    res = api.prune(str(path), ratio=0.5, prune_hidden=True)
    assert_valid(res.proto)
    assert res.after.params < api.prune(str(path), ratio=0.5).after.params


def test_torch_multihead_attention_heads_are_pruned_with_a_dynamic_batch():
    """torchvision's ViT block (``nn.MultiheadAttention``, TorchScript exporter, dynamic batch):
    q/k/v unbound by ``Gather`` on the stacked axis of the packed projection, heads merged with
    the batch as ``B * heads``, head width ``hidden // heads`` computed at run time. Whole heads
    go, from the packed in-projection (q, k and v alike) and the output projection, and the
    pruned model still takes any batch."""
    import numpy as np
    import onnx

    from onnxprune import verify

    path = next(p for p in TRANSFORMER_EXPORTS if p.stem == "vit_mha_tiny_legacy")
    an = api.analyze(str(path))
    heads = [g for g in an.depgraph.groups if g.size == 4 and not g.is_barrier]
    assert len(heads) == 2 and all(g.unit == 48 for g in heads)  # a head spans 3 x 16 packed columns
    res = lossless(str(path), share=0.5, batches=(1, 3))
    dims = [tuple(i.dims) for i in res.proto.graph.initializer]
    assert dims.count((64, 96)) + dims.count((96, 64)) == 2  # in-projections of 2 of 4 heads
    out = verify.session(res.proto).run(None, {"pixel_values": np.ones((5, 3, 32, 32), np.float32)})[0]
    assert out.shape == (5, 10)
    half = api.prune(str(path), ratio=0.5)
    assert_valid(half.proto)
    # heads and MLP halve; the patch projection (14 % of MACs, the hidden width) stays
    assert {gp.before: gp.after for gp in half.plan.groups} == {4: 2, 128: 64}
    assert half.after.macs < 0.6 * half.before.macs
    onnx.checker.check_model(half.proto, full_check=True)
