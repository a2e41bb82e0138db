"""Every built-in pass on small models written as onnx.parser text: structure and equivalence."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxprune.passes import (
    DeduplicateInitializers,
    EliminateCommonSubexpressions,
    EliminateIdentity,
    EliminateNoOps,
    FixInputShapes,
    FoldConstants,
    FuseAffine,
    FuseBatchNorm,
    FusePad,
    InferShapes,
    RemoveDeadNodes,
    SimplifyReshape,
    SortTopologically,
)

import onnxprune

from .passes_helpers import assert_equivalent, make_model, op_counts

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'
RNG = np.random.default_rng(0)


def bn_params(c: int, prefix: str = "bn") -> dict[str, np.ndarray]:
    return {
        f"{prefix}_s": RNG.uniform(0.5, 1.5, c).astype(np.float32),
        f"{prefix}_b": RNG.standard_normal(c).astype(np.float32),
        f"{prefix}_m": RNG.standard_normal(c).astype(np.float32),
        f"{prefix}_v": RNG.uniform(0.5, 2.0, c).astype(np.float32),
    }


def run(model: onnx.ModelProto, *passes) -> onnx.ModelProto:
    return onnxprune.optimize(model, list(passes))


# ------------------------------------------------------------------------------ fuse-bn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_fuse_bn_into_conv(bias, group):
    conv_in = "x, w, b" if bias else "x, w"
    m = make_model(
        HEAD + f"""g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y) {{
            c = Conv <pads = [1, 1, 1, 1], group = {group}> ({conv_in})
            y = BatchNormalization <epsilon = 0.001> (c, bn_s, bn_b, bn_m, bn_v)
        }}""",
        w=(6, 4 // group, 3, 3), **({"b": (6,)} if bias else {}), **bn_params(6),
    )
    out = run(m, FuseBatchNorm())
    assert op_counts(out) == {"Conv": 1}
    conv = out.graph.node[0]
    assert conv.output[0] == "y" and len(conv.input) == 3
    assert_equivalent(m, out)


@pytest.mark.parametrize("group", [1, 2])
def test_fuse_bn_into_conv_transpose(group):
    m = make_model(
        HEAD + f"""g (float[N, 4, 5, 5] x) => (float[N, 6, 10, 10] y) {{
            c = ConvTranspose <strides = [2, 2], pads = [1, 1, 0, 0], group = {group}> (x, w, b)
            y = BatchNormalization (c, bn_s, bn_b, bn_m, bn_v)
        }}""",
        w=(4, 6 // group, 3, 3), b=(6,), **bn_params(6),
    )
    out = run(m, FuseBatchNorm())
    assert op_counts(out) == {"ConvTranspose": 1}
    assert_equivalent(m, out)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_fuse_bn_into_gemm(trans_b):
    w_shape = (5, 7) if trans_b else (7, 5)
    m = make_model(
        HEAD + f"""g (float[N, 7] x) => (float[N, 5] y) {{
            c = Gemm <transB = {trans_b}, beta = 0.5> (x, w, b)
            y = BatchNormalization (c, bn_s, bn_b, bn_m, bn_v)
        }}""",
        w=w_shape, b=(5,), **bn_params(5),
    )
    out = run(m, FuseBatchNorm())
    assert op_counts(out) == {"Gemm": 1}
    assert_equivalent(m, out)


def test_fuse_bn_leaves_shared_producer_output():
    m = make_model(
        HEAD + """g (float[N, 4, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 4, 8, 8] c) {
            c = Conv (x, w)
            y = BatchNormalization (c, bn_s, bn_b, bn_m, bn_v)
        }""",
        w=(4, 4, 1, 1), **bn_params(4),
    )
    out = run(m, FuseBatchNorm())
    assert op_counts(out)["BatchNormalization"] == 1  # the Conv output is also a graph output
    assert_equivalent(m, out)


# -------------------------------------------------------------------------- fuse-affine
@pytest.mark.parametrize(
    "op,const,first",
    [
        ("Mul", (4, 1, 1), False),
        ("Mul", (1, 4, 1, 1), True),
        ("Add", (4, 1, 1), True),
        ("Sub", (1, 4, 1, 1), False),
        ("Div", (1,), False),
        ("Add", (), False),
    ],
)
def test_fuse_affine_into_conv(op, const, first):
    c = RNG.uniform(0.5, 2.0, const).astype(np.float32)
    args = "k, c" if first else "c, k"
    m = make_model(
        HEAD + f"""g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {{
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            y = {op} ({args})
        }}""",
        w=(4, 3, 3, 3), b=(4,), k=c,
    )
    out = run(m, FuseAffine())
    assert op_counts(out) == {"Conv": 1}
    assert_equivalent(m, out)


def test_fuse_affine_rejects_spatially_varying_constant():
    m = make_model(
        HEAD + """g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Mul (c, k)
        }""",
        w=(4, 3, 3, 3), k=(4, 8, 8),
    )
    out = run(m, FuseAffine())
    assert op_counts(out) == {"Conv": 1, "Mul": 1}
    assert_equivalent(m, out)


def test_fuse_affine_into_gemm():
    m = make_model(
        HEAD + """g (float[N, 6] x) => (float[N, 3] y) {
            c = Gemm <transB = 1> (x, w, b)
            d = Mul (c, s)
            y = Add (d, t)
        }""",
        w=(3, 6), b=(3,), s=(1, 3), t=(3,),
    )
    out = run(m, FuseAffine())
    assert op_counts(out) == {"Gemm": 1}
    assert_equivalent(m, out)


# ----------------------------------------------------------------------------- fuse-pad
def test_fuse_pad_into_conv():
    pads = np.array([0, 0, 1, 2, 0, 0, 1, 0], dtype=np.int64)
    m = make_model(
        HEAD + """g (float[N, 3, 8, 8] x) => (float[N, 4, 9, 10] y) {
            p = Pad (x, pads)
            y = Conv <pads = [0, 0, 0, 1]> (p, w)
        }""",
        w=(4, 3, 2, 2), pads=pads,
    )
    out = run(m, FusePad())
    assert op_counts(out) == {"Conv": 1}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in out.graph.node[0].attribute}
    assert attrs["pads"] == [1, 2, 1, 1]
    assert_equivalent(m, out)


def test_fuse_pad_keeps_reflect_and_channel_padding():
    reflect = make_model(
        HEAD + """g (float[N, 3, 8, 8] x) => (float[N, 4, 9, 9] y) {
            p = Pad <mode = "reflect"> (x, pads)
            y = Conv (p, w)
        }""",
        w=(4, 3, 2, 2), pads=np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64),
    )
    assert op_counts(run(reflect, FusePad()))["Pad"] == 1
    channels = make_model(
        HEAD + """g (float[N, 3, 8, 8] x) => (float[N, 4, 7, 7] y) {
            p = Pad (x, pads)
            y = Conv (p, w)
        }""",
        w=(4, 4, 2, 2), pads=np.array([0, 1, 0, 0, 0, 0, 0, 0], dtype=np.int64),
    )
    assert op_counts(run(channels, FusePad()))["Pad"] == 1


# ---------------------------------------------------------------- eliminate-identity
def test_eliminate_identity_and_dropout_keeps_output_names():
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y, float[N, 4] z) {
            a = Relu (x)
            b = Identity (a)
            c = Dropout (b)
            y = Identity (c)
            z = Sigmoid (b)
        }""",
    )
    out = run(m, EliminateIdentity())
    assert op_counts(out) == {"Relu": 1, "Sigmoid": 1}
    assert [o.name for o in out.graph.output] == ["y", "z"]
    assert_equivalent(m, out)


def test_identity_from_graph_input_to_output_stays():
    m = make_model(HEAD + """g (float[N, 4] x) => (float[N, 4] y) { y = Identity (x) }""")
    out = run(m, EliminateIdentity())
    assert op_counts(out) == {"Identity": 1}
    assert_equivalent(m, out)


def test_dropout_whose_mask_is_read_stays():
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y, bool[N, 4] mask) {
            y, mask = Dropout (x)
        }""",
    )
    assert op_counts(run(m, EliminateIdentity())) == {"Dropout": 1}


# ------------------------------------------------------------------- eliminate-noops
def test_eliminate_noops():
    m = make_model(
        HEAD + """g (float[N, 4, 6] x) => (float[N, 4, 6] y) {
            a = Transpose <perm = [0, 1, 2]> (x)
            b = Cast <to = 1> (a)
            c = Reshape (b, same)
            d = Transpose <perm = [0, 2, 1]> (c)
            e = Transpose <perm = [0, 2, 1]> (d)
            f = Concat <axis = 1> (e)
            g1 = Reshape (f, flat)
            y = Reshape (g1, back)
        }""",
        same=np.array([0, 4, -1], dtype=np.int64),
        flat=np.array([-1, 24], dtype=np.int64),
        back=np.array([-1, 4, 6], dtype=np.int64),
    )
    out = run(m, InferShapes(), EliminateNoOps(), RemoveDeadNodes())
    # Reshape(Reshape(x)) -> one Reshape, which is a no-op on a [N, 4, 6] input but also the
    # graph output's producer from a graph input: it stays as the single node.
    assert sum(op_counts(out).values()) == 1
    assert op_counts(out)["Reshape"] == 1
    assert_equivalent(m, out, batches=(1, 3))


def test_reshape_that_changes_shape_stays():
    m = make_model(
        HEAD + """g (float[N, 4, 6] x) => (float[N, 6, 4] y) {
            a = Relu (x)
            y = Reshape (a, s)
        }""",
        s=np.array([0, 6, 4], dtype=np.int64),
    )
    out = run(m, InferShapes(), EliminateNoOps())
    assert op_counts(out) == {"Relu": 1, "Reshape": 1}


# -------------------------------------------------------------------- fold-constants
def test_fold_constants_folds_static_shape_subgraph():
    m = make_model(
        HEAD + """g (float[2, 3, 4, 4] x) => (float[2, 48] y) {
            s = Shape (x)
            n = Gather <axis = 0> (s, zero)
            n1 = Unsqueeze (n, axes)
            t = Concat <axis = 0> (n1, minus1)
            k = Mul (w, two)
            xk = Mul (x, k)
            y = Reshape (xk, t)
        }""",
        zero=np.array(0, dtype=np.int64), axes=np.array([0], dtype=np.int64),
        minus1=np.array([-1], dtype=np.int64), w=(1, 3, 1, 1), two=np.array(2.0, dtype=np.float32),
    )
    out = run(m, FoldConstants(), RemoveDeadNodes())
    assert op_counts(out) == {"Mul": 1, "Reshape": 1}
    assert_equivalent(m, out, batches=(2,))


def test_fold_constants_keeps_graph_output_names():
    m = make_model(
        HEAD + """g (float[N, 3] x) => (float[N, 3] y, float[3] k) {
            k = Add (a, b)
            y = Mul (x, k)
        }""",
        a=(3,), b=(3,),
    )
    out = run(m, FoldConstants())
    assert [o.name for o in out.graph.output] == ["y", "k"]
    assert_equivalent(m, out)


# ------------------------------------------------------------------ simplify-reshape
def test_simplify_reshape_flatten_pattern_becomes_flatten():
    m = make_model(
        HEAD + """g (float[N, 3, 4, 4] x) => (float[N, 48] y) {
            a = Relu (x)
            s = Shape (a)
            n = Slice (s, zero, one)
            t = Concat <axis = 0> (n, minus1)
            y = Reshape (a, t)
        }""",
        zero=np.array([0], dtype=np.int64), one=np.array([1], dtype=np.int64),
        minus1=np.array([-1], dtype=np.int64),
    )
    out = run(m, InferShapes(), SimplifyReshape(), RemoveDeadNodes())
    assert op_counts(out) == {"Relu": 1, "Flatten": 1}
    assert out.graph.node[1].attribute[0].i == 1
    assert_equivalent(m, out, batches=(1, 3))


def test_simplify_reshape_with_symbolic_batch_and_sequence():
    m = make_model(
        HEAD + """g (float[N, S, 12] x) => (float[N, S, 3, 4] y) {
            a = Relu (x)
            s = Shape (a)
            n = Gather <axis = 0> (s, zero)
            n1 = Unsqueeze (n, axis0)
            q = Shape (x)
            l = Slice (q, one, two)
            t = Concat <axis = 0> (n1, l, three, minus1)
            y = Reshape (a, t)
        }""",
        zero=np.array(0, dtype=np.int64), axis0=np.array([0], dtype=np.int64),
        one=np.array([1], dtype=np.int64), two=np.array([2], dtype=np.int64),
        three=np.array([3], dtype=np.int64), minus1=np.array([-1], dtype=np.int64),
    )
    out = run(m, InferShapes(), SimplifyReshape(), RemoveDeadNodes())
    assert op_counts(out) == {"Relu": 1, "Reshape": 1}
    target = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}[out.graph.node[1].input[1]]
    assert target.tolist() == [0, 0, 3, -1]
    assert_equivalent(m, out, batches=(1, 3))


def test_simplify_reshape_does_not_trust_generic_dimension_names():
    text = HEAD + """g (float[D0, D1, 12] x, float[D0, D1] z) => (float[D0, D1, 3, 4] y) {
            s = Shape (z)
            b = Slice (s, zero, two)
            t = Concat <axis = 0> (b, three, minus1)
            y = Reshape (x, t)
        }"""
    consts = dict(zero=np.array([0], dtype=np.int64), two=np.array([2], dtype=np.int64),
                  three=np.array([3], dtype=np.int64), minus1=np.array([-1], dtype=np.int64))
    named = make_model(text.replace("D0", "batch").replace("D1", "seq"), **consts)
    out = run(named, InferShapes(), SimplifyReshape(), RemoveDeadNodes())
    assert op_counts(out) == {"Reshape": 1}  # z's batch and seq are x's: a constant target
    assert_equivalent(named, out, batches=(1, 3))
    generic = make_model(text.replace("D0", '"?"').replace("D1", '"?"'), **consts)
    out = run(generic, InferShapes(), SimplifyReshape(), RemoveDeadNodes())
    assert op_counts(out)["Shape"] == 1  # '?' names no single value


def test_simplify_reshape_leaves_unknown_dimensions():
    m = make_model(
        HEAD + """g (float[N, 3, 4, 4] x, float[M, K] z) => (float[P, Q] y) {
            s = Shape (z)
            t = Slice (s, zero, two)
            y = Reshape (x, t)
        }""",
        zero=np.array([0], dtype=np.int64), two=np.array([2], dtype=np.int64),
    )
    out = run(m, InferShapes(), SimplifyReshape())
    assert op_counts(out)["Shape"] == 1  # two unknown sizes: nothing can be proven


# ------------------------------------------------------------------------------- cse
def test_cse_merges_duplicate_nodes():
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            a = Relu (x)
            b = Relu (x)
            c = Sigmoid (a)
            d = Sigmoid (b)
            y = Add (c, d)
        }""",
    )
    out = run(m, EliminateCommonSubexpressions(), RemoveDeadNodes())
    assert op_counts(out) == {"Relu": 1, "Sigmoid": 1, "Add": 1}
    assert_equivalent(m, out)


def test_cse_respects_attributes():
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            a = LeakyRelu <alpha = 0.1> (x)
            b = LeakyRelu <alpha = 0.2> (x)
            y = Add (a, b)
        }""",
    )
    assert op_counts(run(m, EliminateCommonSubexpressions()))["LeakyRelu"] == 2


# --------------------------------------------------------------- dedup-initializers
def test_dedup_initializers_merges_equal_values_only():
    w = RNG.standard_normal((4, 4)).astype(np.float32)
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            a = MatMul (x, w1)
            b = MatMul (a, w2)
            c = MatMul (b, w3)
            i = Gather (c, scalar0)
            j = Gather (c, vec0)
            k = Unsqueeze (i, vec0)
            y = Add (k, j)
        }""",
        w1=w, w2=w.copy(), w3=w * 2, scalar0=np.array(0, dtype=np.int64), vec0=np.array([0], dtype=np.int64),
    )
    out = run(m, DeduplicateInitializers(), RemoveDeadNodes())
    names = {i.name for i in out.graph.initializer}
    assert len(names) == 4  # w1 == w2 merged; w3, the scalar 0 and the vector [0] stay apart
    assert_equivalent(m, out)


# ------------------------------------------------------------- remove-dead, toposort
def test_remove_dead_nodes_keeps_unused_inputs():
    m = make_model(
        HEAD + """g (float[N, 4] x, float[N, 4] unused) => (float[N, 4] y) {
            y = Relu (x)
            dead = Sigmoid (x)
            dead2 = MatMul (dead, w)
        }""",
        w=(4, 4),
    )
    out = run(m, RemoveDeadNodes())
    assert op_counts(out) == {"Relu": 1}
    assert [i.name for i in out.graph.input] == ["x", "unused"]
    assert not out.graph.initializer
    assert_equivalent(m, out)


def test_toposort_orders_nodes():
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            a = Relu (x)
            y = Sigmoid (a)
        }""",
    )
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    out = run(m, SortTopologically())
    assert [n.op_type for n in out.graph.node] == ["Relu", "Sigmoid"]
    onnx.checker.check_model(out, full_check=True)


# ------------------------------------------------------------------- shape-inference
def test_shape_inference_annotates_intermediates_but_not_interface():
    m = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            a = Relu (x)
            y = Sigmoid (a)
        }""",
    )
    out = run(m, InferShapes())
    vi = {v.name: v for v in out.graph.value_info}
    dims = vi["a"].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 4]
    assert out.graph.output[0] == m.graph.output[0]


# ------------------------------------------------------------------ fix-input-shapes
def test_fix_input_shapes_lets_all_shape_code_fold():
    from models.transformers import TRANSFORMERS

    from .passes_helpers import interface

    m = TRANSFORMERS["bert_like"]()
    dynamic = onnxprune.optimize(m, ["cleanup"])
    fixed = onnxprune.optimize(m, [FixInputShapes({"input_ids": [2, 7], "attention_mask": [2, 7]}), "cleanup"])
    assert op_counts(fixed)["Shape"] == 0 < op_counts(dynamic)["Shape"] + op_counts(m)["Shape"]
    assert len(fixed.graph.node) <= len(dynamic.graph.node)
    assert interface(fixed) != interface(m)  # on purpose: only [2, 7] is accepted now
    shapes = {"input_ids": [2, 7], "attention_mask": [2, 7]}
    from onnxprune import verify

    s1, s2 = verify.session(m), verify.session(fixed)
    feeds = verify.make_feeds(s1, shapes, seed=1)
    for a, b in zip(verify.run(s1, feeds), verify.run(s2, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(a).max())))


def test_fix_input_shapes_refuses_contradictions():
    from onnxprune.passes import PassError

    m = make_model(HEAD + "g (float[N, 4] x) => (float[N, 4] y) { y = Relu (x) }")
    with pytest.raises(PassError, match="static size"):
        onnxprune.optimize(m, [FixInputShapes({"x": [2, 5]})])
    with pytest.raises(PassError, match="no sizes given"):
        onnxprune.optimize(m, ["fix-input-shapes"])
    out = onnxprune.optimize(m, ["fix-input-shapes"], input_shapes={"x": [3, 4]})
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [3, 4]


# ------------------------------------------------------------------------ subgraphs
def test_rewrites_follow_tensors_into_if_branches():
    from onnx import TensorProto, helper

    def v(n):
        return helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4])

    then = helper.make_graph([helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Identity", ["b"], ["t2"])],
                             "then", [], [v("t"), v("t2")])
    other = helper.make_graph([helper.make_node("Sigmoid", ["a"], ["e"]), helper.make_node("Neg", ["b"], ["e2"])],
                              "else", [], [v("e"), v("e2")])
    nodes = [
        helper.make_node("Identity", ["x"], ["a0"]),
        helper.make_node("Relu", ["a0"], ["a"]),
        helper.make_node("Relu", ["a0"], ["b"]),  # duplicate of a, read only inside the branches
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["y", "y2"], then_branch=then, else_branch=other),
    ]
    g = helper.make_graph(nodes, "g", [v("x")], [v("y"), v("y2")],
                          [onnx.numpy_helper.from_array(np.array(0, np.float32), "zero")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    out = run(m, "cleanup")
    assert op_counts(out) == {"ReduceSum": 1, "Relu": 1, "Greater": 1, "If": 1}
    branch_inputs = {i for n in out.graph.node if n.op_type == "If" for a in n.attribute for x in a.g.node for i in x.input}
    assert branch_inputs == {"a"}
    assert_equivalent(m, out)


def test_simplify_reshape_channel_shuffle_arithmetic():
    """``view(b, groups, c // groups, h, w)`` with every size read from ``x.size()``."""
    m = make_model(
        HEAD + """g (float[N, 8, 4, 4] x) => (float[N, 2, 4, 4, 4] y) {
            s = Shape (x)
            b = Gather <axis = 0> (s, i0)
            c = Gather <axis = 0> (s, i1)
            cg = Div (c, two)
            hw = Slice (s, i2v, i4v)
            b1 = Unsqueeze (b, axes)
            cg1 = Unsqueeze (cg, axes)
            t = Concat <axis = 0> (b1, twov, cg1, hw)
            y = Reshape (x, t)
        }""",
        i0=np.array(0, dtype=np.int64), i1=np.array(1, dtype=np.int64), two=np.array(2, dtype=np.int64),
        i2v=np.array([2], dtype=np.int64), i4v=np.array([4], dtype=np.int64), axes=np.array([0], dtype=np.int64),
        twov=np.array([2], dtype=np.int64),
    )
    out = run(m, InferShapes(), SimplifyReshape(), RemoveDeadNodes())
    assert op_counts(out) == {"Reshape": 1}
    target = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}[out.graph.node[0].input[1]]
    assert target.tolist() == [0, 2, 4, 4, 4]
    assert_equivalent(m, out, batches=(1, 3))


# -------------------------------------------- neutral constants, chains through Transposes
def test_neutral_constants_are_removed_unless_they_broadcast():
    m = make_model(
        HEAD + """g (float[N, 4, 3] x) => (float[N, 4, 3] y) {
            r = Relu (x)
            a = Add (r, zeros)
            b = Mul (ones, a)
            c = Sub (b, zero)
            y = Div (c, one)
        }""",
        zeros=np.zeros((4, 1), np.float32), ones=np.ones((1, 3), np.float32),
        zero=np.zeros((), np.float32), one=np.ones((1,), np.float32),
    )
    out = run(m, InferShapes(), EliminateNoOps(), RemoveDeadNodes())
    assert op_counts(out) == {"Relu": 1}
    assert_equivalent(m, out)
    widening = make_model(
        HEAD + """g (float[N, 4, 3] x) => (float[2, N, 4, 3] y) {
            r = Relu (x)
            y = Add (r, zeros)
        }""",
        zeros=np.zeros((2, 1, 4, 3), np.float32),
    )
    assert op_counts(run(widening, InferShapes(), EliminateNoOps())) == {"Relu": 1, "Add": 1}
    subtracted_from = make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            r = Relu (x)
            y = Sub (zero, r)
        }""",
        zero=np.zeros((1,), np.float32),
    )
    assert op_counts(run(subtracted_from, InferShapes(), EliminateNoOps())) == {"Relu": 1, "Sub": 1}


def test_reshape_chains_through_data_preserving_transpose():
    m = make_model(
        HEAD + """g (float[N, 49, 8] x) => (float[N, 7, 7, 8] y) {
            a = Reshape (x, t1)
            b = Transpose <perm = [0, 1, 3, 2, 4, 5]> (a)
            y = Reshape (b, t2)
        }""",
        t1=np.array([-1, 1, 1, 7, 7, 8], dtype=np.int64), t2=np.array([0, 7, 7, 8], dtype=np.int64),
    )
    out = run(m, InferShapes(), EliminateNoOps(), RemoveDeadNodes())
    assert op_counts(out) == {"Reshape": 1}
    assert_equivalent(m, out, batches=(1, 3))


def test_transpose_that_moves_data_blocks_the_chain():
    m = make_model(
        HEAD + """g (float[N, 6, 8] x) => (float[N, 48] y) {
            b = Transpose <perm = [0, 2, 1]> (x)
            y = Reshape (b, t)
        }""",
        t=np.array([0, -1], dtype=np.int64),
    )
    assert op_counts(run(m, InferShapes(), EliminateNoOps())) == {"Transpose": 1, "Reshape": 1}


def test_consecutive_slices_on_disjoint_axes_merge():
    m = make_model(
        HEAD + """g (float[N, 8, 8, 4] x) => (float[N, 4, 4, 4] y, float[N, 4, 4, 4] z) {
            a = Slice (x, s0, big, ax1, two)
            y = Slice (a, s0, big, ax2, two)
            z = Slice (a, s1, big, ax2, two)
        }""",
        s0=np.array([0], dtype=np.int64), s1=np.array([1], dtype=np.int64),
        big=np.array([2**62], dtype=np.int64), ax1=np.array([1], dtype=np.int64),
        ax2=np.array([-2], dtype=np.int64), two=np.array([2], dtype=np.int64),
    )
    out = run(m, InferShapes(), EliminateNoOps(), RemoveDeadNodes())
    assert op_counts(out) == {"Slice": 2}
    assert_equivalent(m, out, batches=(1, 3))


# ---------------------------------------------------------------- random op chains
_STEPS = {
    "relu": ("Relu", "", []),
    "identity": ("Identity", "", []),
    "dropout": ("Dropout", "", []),
    "cast": ("Cast", "<to = 1>", []),
    "transpose_id": ("Transpose", "<perm = [0, 1, 2]>", []),
    "transpose_swap": ("Transpose", "<perm = [0, 2, 1]>", []),
    "concat1": ("Concat", "<axis = 1>", []),
    "reshape_same": ("Reshape", "", ["same"]),
    "add_zero": ("Add", "", ["zero"]),
    "mul_one": ("Mul", "", ["one"]),
    "add_bias": ("Add", "", ["bias"]),
    "sigmoid": ("Sigmoid", "", []),
}


@pytest.mark.parametrize("seed", range(12))
def test_cleanup_on_random_op_chains(seed):
    """Random chains of real and no-op ops: cleanup keeps outputs and drops every no-op."""
    rng = np.random.default_rng(seed)
    names = rng.choice(sorted(_STEPS), size=8).tolist()
    lines, cur, shape = [], "x", [4, 4]
    for i, key in enumerate(names):
        op, attrs, extra = _STEPS[key]
        if key == "transpose_swap":
            shape = shape[::-1]
        if key == "reshape_same":
            extra = [f"same{shape[0]}{shape[1]}"]
        lines.append(f"v{i} = {op} {attrs} ({', '.join([cur, *extra])})")
        cur = f"v{i}"
    lines.append(f"y = Relu ({cur})")
    text = HEAD + f"g (float[N, 4, 4] x) => (float[N, {shape[0]}, {shape[1]}] y) {{\n" + "\n".join(lines) + "\n}"
    m = make_model(
        text, zero=np.zeros((1,), np.float32), one=np.ones((4,), np.float32),
        bias=RNG.standard_normal((4,)).astype(np.float32), same44=np.array([0, 4, 4], dtype=np.int64),
    )
    out = run(m, "cleanup")
    ops = op_counts(out)
    for gone in ("Identity", "Dropout", "Cast", "Concat", "Reshape"):
        assert ops[gone] == 0, (names, ops)
    swaps = names.count("transpose_swap")
    # adjacent swaps cancel in pairs; swaps separated by real ops stay
    assert ops["Transpose"] <= swaps and ops["Transpose"] % 2 == swaps % 2, (names, ops)
    kept = sum(names.count(k) for k in ("relu", "sigmoid", "add_bias")) + 1
    assert sum(ops.values()) <= kept + ops["Transpose"], (names, ops)
    assert_equivalent(m, out)
