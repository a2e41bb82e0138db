"""Healing: the torch interpreter reproduces onnxruntime, and distillation lowers the loss while
changing nothing but initializer values."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from models import transformers as tmodels  # noqa: E402
from models import zoo  # noqa: E402
from models.realworld_like import bert_like, lstm_fixed_batch  # noqa: E402
from onnxprune import api  # noqa: E402
from onnxprune.cli import main  # noqa: E402
from onnxprune.errors import UsageError  # noqa: E402
from onnxprune.feeds import plan_feeds  # noqa: E402
from onnxprune.heal import heal  # noqa: E402
from onnxprune.torchrun import TorchGraph, UnsupportedOp, check_against  # noqa: E402


def _ort(proto: onnx.ModelProto, feeds: dict) -> dict:
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_interpreter_reproduces_onnxruntime_on_the_zoo(name):
    proto = zoo.build(name)
    plan = plan_feeds(proto)
    feeds = plan.make(0, 2 if plan.batch_free else None)
    assert check_against(TorchGraph(proto), _ort(proto, feeds), feeds) < 1e-4


@pytest.mark.parametrize("build", [tmodels.bert_like, tmodels.vit_like, tmodels.gpt_like, bert_like],
                         ids=["bert", "vit", "gpt", "bert-realworld"])
def test_interpreter_reproduces_onnxruntime_on_transformers(build):
    proto = build()
    plan = plan_feeds(proto)
    feeds = plan.make(0, 2 if plan.batch_free else None)
    assert check_against(TorchGraph(proto), _ort(proto, feeds), feeds) < 1e-4


def test_an_op_the_interpreter_cannot_run_is_named():
    proto = lstm_fixed_batch()
    with pytest.raises(UnsupportedOp, match="LSTM"):
        TorchGraph(proto)


def _pruned_pair(tmp_path, ratio=0.5):
    src = tmp_path / "model.onnx"
    onnx.save(zoo.build("resnet_basic"), src)
    proto = onnx.load(src)
    plan = plan_feeds(proto)
    rng = np.random.default_rng(0)
    name = plan.specs[0].name
    shape = [2 if d is None or isinstance(d, str) else d for d in plan.specs[0].dims]
    shape[0] = 96
    calib = tmp_path / "calib.npz"
    np.savez(calib, **{name: rng.standard_normal(shape).astype(np.float32)})
    res = api.prune(str(src), ratio=ratio, round_to=1)
    pruned = tmp_path / "pruned.onnx"
    res.save(pruned)
    return src, pruned, calib


def test_healing_lowers_the_loss_and_changes_only_initializer_values(tmp_path):
    src, pruned, calib = _pruned_pair(tmp_path)
    out = tmp_path / "healed.onnx"
    before_bytes = pruned.read_bytes()
    healed, r = heal(str(src), str(pruned), str(calib), str(out), minutes=2, epochs=6, lr=1e-3, batch_size=16)
    assert pruned.read_bytes() == before_bytes  # the student file is never modified
    assert not r.kept_pruned_weights
    assert r.loss_after < 0.9 * r.loss_before
    assert all(r.cosine_after[k] > r.cosine_before[k] for k in r.cosine_after)
    a, b = onnx.load(pruned), onnx.load(out)
    assert [(n.op_type, list(n.input), list(n.output), n.name) for n in a.graph.node] == \
        [(n.op_type, list(n.input), list(n.output), n.name) for n in b.graph.node]
    assert [(i.name, list(i.dims), i.data_type) for i in a.graph.initializer] == \
        [(i.name, list(i.dims), i.data_type) for i in b.graph.initializer]
    assert a.opset_import == b.opset_import and a.metadata_props == b.metadata_props
    assert a.graph.input == b.graph.input and a.graph.output == b.graph.output
    changed = [i.name for i, j in zip(a.graph.initializer, b.graph.initializer)
               if not np.array_equal(onnx.numpy_helper.to_array(i), onnx.numpy_helper.to_array(j))]
    assert changed and r.tensors_trained >= len(changed)
    onnx.checker.check_model(b, full_check=True)
    plan = plan_feeds(b)
    _ort(b, plan.make(0, 2))


def test_cli_heal_writes_json_and_protects_its_inputs(tmp_path, capsys):
    src, pruned, calib = _pruned_pair(tmp_path)
    out = tmp_path / "h.onnx"
    rc = main(["heal", str(src), str(pruned), "-o", str(out), "--calib", str(calib), "--epochs", "2",
               "--budget-minutes", "1", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == str(out) and out.is_file() and data["steps"] > 0
    assert main(["heal", str(src), str(pruned), "-o", str(pruned), "--calib", str(calib)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_prune_with_heal_writes_only_the_healed_model(tmp_path, capsys):
    src, _, calib = _pruned_pair(tmp_path)
    out = tmp_path / "small.onnx"
    rc = main(["prune", str(src), "-o", str(out), "--ratio", "0.5", "--round-to", "1", "--calib", str(calib),
               "--heal", "--heal-minutes", "0.2", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["heal"]["steps"] > 0 and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "model.onnx", "pruned.onnx", "small.onnx"]


def test_without_torch_one_line_says_what_to_install(tmp_path, monkeypatch):
    src, pruned, calib = _pruned_pair(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UsageError, match=r"pip install 'onnxprune\[heal\]'"):
        heal(str(src), str(pruned), str(calib))


def test_models_that_are_not_an_original_and_its_pruned_copy_are_refused(tmp_path):
    src, _, calib = _pruned_pair(tmp_path)
    other = tmp_path / "other.onnx"
    onnx.save(bert_like(), other)
    with pytest.raises(UsageError, match="different inputs"):
        heal(str(src), str(other), str(calib))


def test_augmentations_keep_shapes_and_leave_ids_alone():
    from onnxprune.heal import _augment

    rng = np.random.default_rng(0)
    feed = {"image": rng.standard_normal((4, 3, 32, 32)).astype(np.float32),
            "line": rng.standard_normal((4, 3, 48, 320)).astype(np.float32),
            "ids": rng.integers(0, 100, (4, 7))}
    for seed in range(6):
        out = _augment(feed, {"image", "line", "ids"}, {"image": 0, "line": 0, "ids": 0}, np.random.default_rng(seed))
        assert {k: (v.shape, v.dtype) for k, v in out.items()} == {k: (v.shape, v.dtype) for k, v in feed.items()}
        assert np.array_equal(out["ids"], feed["ids"])
        assert not np.array_equal(out["image"], feed["image"]) and np.isfinite(out["line"]).all()


def _masked_attention(seed: int) -> onnx.ModelProto:
    """Scores plus a fixed additive mask of -inf (as torch's attention export writes one), a Softmax
    and the product with the values: attention over 6 positions of width 8."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    mask = np.where(np.tril(np.ones((6, 6), bool)), 0, -np.inf).astype(np.float32)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32) * 0.3, n) for n in ("wq", "wk")]
    inits.append(numpy_helper.from_array(mask, "mask"))
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]), helper.make_node("Add", ["scores", "mask"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "x"], ["y"])]
    g = helper.make_graph(nodes, "att", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_attention_heals_with_smaller_steps_and_never_matches_masked_scores(tmp_path):
    from onnxprune.heal import has_attention

    src, student = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_masked_attention(0), src)
    onnx.save(_masked_attention(1), student)
    assert has_attention(onnx.load(src)) and not has_attention(zoo.build("resnet_basic"))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(2).standard_normal((64, 6, 8)).astype(np.float32))
    # every shared tensor is a candidate feature, the masked scores (-inf above the diagonal) too
    _, r = heal(str(src), str(student), str(calib), minutes=1, epochs=3, features=1000)
    assert r.lr == 1e-4 and r.features and "masked" not in r.features
    assert np.isfinite(r.loss_before) and r.loss_after < r.loss_before


# ------------------------------------------------------------------------ single ops vs onnxruntime
def _one_node(op: str, inputs: list[np.ndarray], attrs: dict | None = None, n_out: int = 1, opset: int = 17,
              const: tuple[int, ...] = ()) -> tuple[onnx.ModelProto, dict]:
    """A graph of one ``op``; inputs at the indices in ``const`` are initializers, the rest graph inputs."""
    from onnx import helper, numpy_helper

    names = [f"x{i}" for i in range(len(inputs))]
    graph_inputs, inits, feeds = [], [], {}
    for i, (name, arr) in enumerate(zip(names, inputs)):
        if i in const:
            inits.append(numpy_helper.from_array(arr, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)))
            feeds[name] = arr
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    g = helper.make_graph([node], "one", graph_inputs, [helper.make_value_info(o, onnx.TypeProto()) for o in outs],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), feeds


_R = np.random.default_rng(0)
_X = _R.standard_normal((2, 4, 7, 9)).astype(np.float32)
_I64 = lambda *v: np.array(v, np.int64)  # noqa: E731
_F32 = lambda *v: np.array(v, np.float32)  # noqa: E731

SINGLE_OPS = {
    "resize-linear-half-pixel": ("Resize", [_X, _F32(), _F32(1, 1, 2, 1.5)], {"mode": "linear"}, (1, 2)),
    "resize-linear-align-corners": ("Resize", [_X, _F32(), _F32(1, 1, 2, 2)],
                                    {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, (1, 2)),
    "resize-nearest-asymmetric-floor": ("Resize", [_X, _F32(), _F32(1, 1, 2, 3)],
                                        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                         "nearest_mode": "floor"}, (1, 2)),
    "resize-nearest-sizes": ("Resize", [_X, _F32(), _F32(), _I64(2, 4, 5, 4)], {"mode": "nearest"}, (1, 2, 3)),
    "pad-reflect": ("Pad", [_X, _I64(0, 0, 1, 2, 0, 0, 2, 1)], {"mode": "reflect"}, (1,)),
    "pad-edge": ("Pad", [_X, _I64(0, 0, 1, 0, 0, 0, 0, 3)], {"mode": "edge"}, (1,)),
    "pad-constant": ("Pad", [_X, _I64(0, 1, 1, 0, 0, 0, 2, 1), _F32(0.5)], {}, (1, 2)),
    "slice-negative-step": ("Slice", [_X, _I64(-1, 6), _I64(-100, 1), _I64(3, 2), _I64(-2, -3)], {}, (1, 2, 3, 4)),
    "slice-clamped": ("Slice", [_X, _I64(1), _I64(1000), _I64(-1)], {}, (1, 2, 3)),
    "gather-negative": ("Gather", [_X, _I64(-1, 0, 2)], {"axis": 1}, (1,)),
    "split-sizes": ("Split", [_X, _I64(3, 6)], {"axis": 3}, (1,), 2),
    "split-even": ("Split", [_X], {"axis": 1, "num_outputs": 2}, (), 2, 18),
    "softmax-opset11": ("Softmax", [_X], {"axis": 2}, (), 1, 11),
    "logsoftmax": ("LogSoftmax", [_X], {"axis": -1}, ()),
    "avgpool-asymmetric-exclude": ("AveragePool", [_X], {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1]}, ()),
    "avgpool-same-include": ("AveragePool", [_X], {"kernel_shape": [2, 3], "strides": [2, 2],
                                                   "auto_pad": "SAME_UPPER", "count_include_pad": 1}, ()),
    "maxpool-ceil": ("MaxPool", [_X], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, ()),
    "conv-same-lower-grouped": ("Conv", [_X, _R.standard_normal((6, 2, 3, 2)).astype(np.float32)],
                                {"group": 2, "auto_pad": "SAME_LOWER", "strides": [2, 1]}, (1,)),
    "conv-transpose": ("ConvTranspose", [_X, _R.standard_normal((4, 3, 2, 2)).astype(np.float32)],
                       {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, (1,)),
    "depth-to-space-crd": ("DepthToSpace", [_X], {"blocksize": 2, "mode": "CRD"}, ()),
    "depth-to-space-dcr": ("DepthToSpace", [_X], {"blocksize": 2}, ()),
    "space-to-depth": ("SpaceToDepth", [_X[:, :, :6, :8]], {"blocksize": 2}, ()),
    "cumsum-exclusive-reverse": ("CumSum", [_X, _I64(3)], {"exclusive": 1, "reverse": 1}, (1,)),
    "topk": ("TopK", [_X, _I64(3)], {"axis": 2}, (1,), 2),
    "onehot": ("OneHot", [_I64(0, 3, -1, 5), _I64(4), _F32(-1, 2)], {"axis": 0}, (1, 2)),
    "groupnorm-18": ("GroupNormalization", [_X, _F32(1.5, 0.5), _F32(0.1, -0.2)], {"num_groups": 2}, (1, 2), 1, 18),
    "groupnorm-21": ("GroupNormalization", [_X, _F32(1, 2, 3, 4), _F32(0, 1, 0, 1)], {"num_groups": 2}, (1, 2), 1, 21),
    "einsum": ("Einsum", [_X, _R.standard_normal((9, 5)).astype(np.float32)], {"equation": "bchw,wk->bhck"}, (1,)),
    "reduce-l2-axes-input": ("ReduceL2", [_X, _I64(1, -1)], {"keepdims": 0}, (1,), 1, 18),
    "reduce-sum-attr": ("ReduceSum", [_X], {"axes": [2]}, (), 1, 11),
    "argmax-last": ("ArgMax", [np.array([[1, 3, 3], [2, 2, 0]], np.float32)], {"axis": 1, "select_last_index": 1}, ()),
    "hard-sigmoid": ("HardSigmoid", [_X], {"alpha": 0.3, "beta": 0.4}, ()),
    "hard-swish": ("HardSwish", [_X], {}, ()),
    "gelu-tanh": ("Gelu", [_X], {"approximate": "tanh"}, (), 1, 20),
    "prelu": ("PRelu", [_X, _F32(0.1, 0.2, 0.3, 0.4).reshape(4, 1, 1)], {}, (1,)),
    "lrn": ("LRN", [_X], {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0}, ()),
    "instance-norm": ("InstanceNormalization", [_X, _F32(1, 2, 3, 4), _F32(0, 1, 0, 1)], {}, (1, 2)),
    "layer-norm-axis": ("LayerNormalization", [_X, _R.standard_normal((7, 9)).astype(np.float32)], {"axis": 2}, (1,)),
    "flatten-end": ("Flatten", [_X], {"axis": 4}, ()),
    "expand-broadcast": ("Expand", [_X[:, :1], _I64(3, 1, 1, 1, 1)], {}, (1,)),
    "tile": ("Tile", [_X, _I64(1, 2, 1, 2)], {}, (1,)),
    "where-mod": ("Mod", [_I64(-7, 7, 5), _I64(3, -3, 2)], {}, ()),
    "fmod": ("Mod", [_F32(-7.5, 7, 5), _F32(3, -3, 2)], {"fmod": 1}, ()),
    "div-int-truncates": ("Div", [_I64(-7, 7), _I64(2, 2)], {}, ()),
    "range": ("Range", [np.array(1, np.int64), np.array(10, np.int64), np.array(3, np.int64)], {}, ()),
}


@pytest.mark.parametrize("case", sorted(SINGLE_OPS))
def test_single_ops_match_onnxruntime(case):
    op, inputs, attrs, const, *rest = SINGLE_OPS[case]
    n_out = rest[0] if rest else 1
    opset = rest[1] if len(rest) > 1 else 17
    proto, feeds = _one_node(op, inputs, attrs, n_out, opset, const)
    ref = _ort(proto, feeds)
    got = TorchGraph(proto).run(feeds)
    for k, v in ref.items():
        mine = got[k].detach().numpy()
        assert mine.shape == v.shape, (case, k)
        np.testing.assert_allclose(mine.astype(np.float64), v.astype(np.float64), rtol=1e-4, atol=1e-5, err_msg=case)


def test_pruned_tensors_are_matched_to_the_teacher_channels_they_kept(tmp_path):
    from onnxprune.heal import _shared_features

    src, pruned, calib = _pruned_pair(tmp_path)
    teacher, student = onnx.load(src), onnx.load(pruned)
    feed = {k: v[:8] for k, v in np.load(calib).items()}
    feats = _shared_features(teacher, student, TorchGraph(student), feed, limit=100)
    narrowed = [f for f in feats if f.channels is not None]
    assert narrowed
    # the first convolution reads the unchanged input: its kept channels are the teacher's exactly
    first = next(n.output[0] for n in student.graph.node if n.op_type == "Conv")
    f = next(f for f in narrowed if f.name == first)
    s = _ort(_with(student, first), feed)[first]
    t = _ort(_with(teacher, first), feed)[first]
    np.testing.assert_allclose(s, f.target(t), rtol=1e-4, atol=1e-5)
    assert list(f.channels) == sorted(set(f.channels)) and len(f.channels) < t.shape[1]


def _with(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    m.graph.output.append(onnx.ValueInfoProto(name=name))
    return m


def test_tensors_with_infinities_are_not_matched():
    """An additive attention mask holds -inf: correlation is undefined there, so no match (not a NaN one)."""
    from onnxprune.heal import _channel_match

    rng = np.random.default_rng(0)
    t = rng.standard_normal((2, 8, 5)).astype(np.float32)
    s = t[:, [1, 3, 6]]
    assert _channel_match(s, t) == (1, (1, 3, 6))
    t[0, :, 0] = -np.inf
    s = t[:, [1, 3, 6]]
    assert _channel_match(s, t) is None
