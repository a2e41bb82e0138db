"""Regression tests for what broke on real third-party models (docs/realworld.md).

Each failure class seen on the real-world corpus has a small model in
``models/realworld_like.py``; these tests run it the way a user does (the console tool, in
process) and check the output like every other test: the full checker, an onnxruntime run on a
feed the original runs on, the same output names and shapes, and the input file untouched.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from models import realworld_like as R
from onnxprune import api, verify
from onnxprune.cli import main
from onnxprune.depgraph import build_depgraph
from onnxprune.feeds import plan_feeds
from onnxprune.graph import load
from onnxprune.plan import plan_from_channels
from onnxprune.testing import choose_channels, kill_channels

#: Builders with something to prune, each with a trait that broke a real model.
PRUNABLE = ["dynamic_hw_detector", "bert_like", "audio_frontend", "vad_like", "lstm_fixed_batch",
            "negative_batch_classifier", "broadcast_gate", "jax_regrouped_layernorm"]


def _save(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.onnx"
    onnx.save(getattr(R, name)(), path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_output_fits(original: Path, out: Path) -> None:
    """Checker, an ORT run on a feed the original runs on, same output names and shapes."""
    onnx.checker.check_model(str(out), full_check=True)
    feeds = plan_feeds(onnx.load(original)).require().make(seed=3)
    a, b = verify.session(str(original)), verify.session(str(out))
    assert [o.name for o in a.get_outputs()] == [o.name for o in b.get_outputs()]
    for x, y in zip(a.run(None, feeds), b.run(None, feeds)):
        assert x.shape == y.shape


# ------------------------------------------------------------------------------ feeds
def test_detector_sides_are_a_multiple_of_the_stride():
    plan = plan_feeds(R.dynamic_hw_detector())
    assert plan.verified
    h, w = plan.shapes()["images"][2:]
    assert h % 8 == 0 and w % 8 == 0 and h >= 32
    # the old default (sides of 1) does not run this model: the plan is what makes it work
    sess = verify.session(R.dynamic_hw_detector())
    with pytest.raises(Exception, match="(?i)concat"):
        sess.run(None, verify.make_feeds(sess))


def test_token_type_ids_stay_inside_their_two_row_table_and_masks_are_ones():
    plan = plan_feeds(R.bert_like())
    roles = {s.name: (s.role, s.high) for s in plan.specs}
    assert roles["token_type_ids"] == ("index", 2) and roles["input_ids"] == ("index", 50)
    assert roles["attention_mask"][0] == "mask"
    feed = plan.make(seed=5, batch=3)
    assert feed["token_type_ids"].max() < 2 and feed["input_ids"].max() < 50
    assert np.all(feed["attention_mask"] == 1)
    assert feed["input_ids"].shape[0] == 3


def test_audio_length_is_long_enough_for_reflect_padding():
    plan = plan_feeds(R.audio_frontend())
    assert plan.verified and plan.shapes()["waveform"][1] > 64


def test_vad_rate_comes_from_the_graph_and_state_stacks_on_its_batch_axis():
    plan = plan_feeds(R.vad_like())
    specs = {s.name: s for s in plan.specs}
    assert specs["sr"].role == "scalar" and specs["sr"].value == 16000
    assert specs["state"].role == "state" and specs["state"].batch_axis == 1
    feed = plan.make(seed=0, batch=4)
    assert feed["state"].shape == (2, 4, 16) and feed["input"].shape[0] == 4 and feed["sr"].shape == ()
    verify.session(R.vad_like()).run(None, feed)


def test_fixed_batch_states_are_never_stacked():
    plan = plan_feeds(R.lstm_fixed_batch())
    assert plan.verified and not plan.batch_free
    feeds = list(plan.samples(5, batch_size=4))
    assert len(feeds) == 5 and all(f["h0"].shape == (1, 1, 16) and f["x"].shape[0] == 1 for f in feeds)


def test_no_feed_runs_refuses_with_one_line_naming_the_input(tmp_path: Path, capsys):
    path = _save(tmp_path, "exact_length_model")
    out = tmp_path / "out.onnx"
    assert main(["prune", str(path), "-o", str(out), "--ratio", "0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'signal'" in err and "--input-shape signal:" in err
    assert "pruned model" not in err and not out.exists()
    # the hint works: the size the model needs, given by the user
    assert main(["prune", str(path), "-o", str(out), "--ratio", "0.3", "--input-shape", "signal:1,37"]) == 0
    _assert_output_fits_at(path, out, {"signal": [2, 37]})


def _assert_output_fits_at(original: Path, out: Path, shapes: dict[str, list[int]]) -> None:
    onnx.checker.check_model(str(out), full_check=True)
    a, b = verify.session(str(original)), verify.session(str(out))
    feeds = verify.make_feeds(a, shapes)
    assert [x.shape for x in a.run(None, feeds)] == [y.shape for y in b.run(None, feeds)]


# ------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("name", PRUNABLE)
def test_prune_check_runs_where_the_original_runs(tmp_path: Path, name: str, capsys):
    path = _save(tmp_path, name)
    before = _sha(path)
    out = tmp_path / "out.onnx"
    rc = main(["prune", str(path), "-o", str(out), "--ratio", "0.3", "--round-to", "1", "--check"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert _sha(path) == before
    _assert_output_fits(path, out)
    assert onnx.load(out).graph.initializer != onnx.load(path).graph.initializer  # something was pruned


@pytest.mark.parametrize("name", PRUNABLE)
def test_calibration_path_runs_where_the_plain_path_runs(tmp_path: Path, name: str, capsys):
    path = _save(tmp_path, name)
    out = tmp_path / "out.onnx"
    rc = main(["prune", str(path), "-o", str(out), "--ratio", "0.3", "--criterion", "wanda", "--calib", "random",
               "--reconstruct", "--calib-samples", "10", "--batch-size", "4"])
    assert rc == 0, capsys.readouterr().err
    _assert_output_fits(path, out)


@pytest.mark.parametrize("name", PRUNABLE)
def test_lossless_pruning_on_fitting_feeds(name: str):
    """Exactly dead channels removed: outputs equal on feeds the original runs on."""
    model = load(getattr(R, name)())
    plan = model.feeds
    assert plan is not None and plan.verified
    dg = build_depgraph(model)
    chans = choose_channels(dg, 0.4, seed=1)
    assert len(chans) > 0
    kill_channels(dg, chans)
    ref = verify.session(model.to_proto())
    feeds = [plan.make(seed=7 + b, batch=b if plan.batch_free else None) for b in (1, 2)]
    refs = [verify.run(ref, f) for f in feeds]
    res = api.prune(model, plan=plan_from_channels(dg, chans), depgraph=dg)
    onnx.checker.check_model(res.proto, full_check=True)
    sess = verify.session(res.proto)
    for f, want in zip(feeds, refs):
        for a, b in zip(want, verify.run(sess, f)):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_negative_batch_is_a_dynamic_axis_not_corruption(tmp_path: Path, capsys):
    path = _save(tmp_path, "negative_batch_classifier")
    assert main(["analyze", str(path), "--json"]) == 0
    assert main(["analyze", str(path), "--input-shape", "x:2,3,48,192"]) == 0
    assert "absurd" not in capsys.readouterr().err


def test_activation_criterion_with_nothing_to_prune_is_a_no_op(tmp_path: Path, capsys):
    path = _save(tmp_path, "single_conv")
    out = tmp_path / "out.onnx"
    rc = main(["prune", str(path), "-o", str(out), "--criterion", "wanda", "--calib", "random", "--reconstruct"])
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes() == path.read_bytes()  # nothing changed: the model as given


def test_a_check_the_original_fails_is_not_a_pruning_failure(tmp_path: Path, capsys, caplog):
    path = _save(tmp_path, "shapeless_output_cnn")
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(str(path), full_check=True)
    out = tmp_path / "out.onnx"
    rc = main(["prune", str(path), "-o", str(out), "--ratio", "0.5", "--round-to", "1"])
    assert rc == 0, capsys.readouterr().err
    assert "already fails" in caplog.text
    sess = verify.session(str(out))
    assert sess.run(None, verify.make_feeds(sess))[0].shape == (1, 4, 16, 16)
    w = {t.name: t for t in onnx.load(out).graph.initializer}["c1.w"]
    assert w.dims[0] == 6  # half of the 12 hidden channels removed


def test_pruned_model_is_not_blamed_for_a_feed_the_original_cannot_run():
    from onnxprune.errors import UsageError

    original = R.dynamic_hw_detector()
    sess = verify.session(original)
    bad = verify.make_feeds(sess)  # sides of 1: the original cannot run it
    with pytest.raises(UsageError, match="original model does not run"):
        verify.validate(original, feeds=bad, reference=original)


def test_no_native_onnxruntime_lines_reach_the_terminal(tmp_path: Path):
    """Feeds that fail while sizes are tried, and a refusal, print only onnxprune's own line."""
    det, bad = _save(tmp_path, "dynamic_hw_detector"), _save(tmp_path, "exact_length_model")
    for path, code in ((det, 0), (bad, 2)):
        proc = subprocess.run([sys.executable, "-m", "onnxprune", "prune", str(path), "-o",
                               str(tmp_path / f"{path.stem}-out.onnx"), "--ratio", "0.3"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == code, proc.stderr
        assert not re.search(r"\[[EWIV]:onnxruntime|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+", proc.stderr), proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 1


# ------------------------------------------------------------------------------ optimize


def test_flattening_a_constant_if_keeps_every_output_produced(tmp_path: Path, capsys):
    """A constant If with several outputs (a VAD decoder's nested If) stays valid after optimize."""
    src = _save(tmp_path, "constant_if_passthrough")
    out = tmp_path / "opt.onnx"
    before = _sha(src)
    assert main(["optimize", str(src), "-o", str(out)]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    feeds = plan_feeds(onnx.load(src)).require().make(seed=1)
    want = verify.session(str(src)).run(None, feeds)
    got = verify.session(str(out)).run(None, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert _sha(src) == before


def test_flatten_constant_ifs_binds_every_output_of_the_spliced_branch():
    import onnx_graphsurgeon as gs
    from onnxprune.passes.fold_constants import flatten_constant_ifs

    graph = gs.import_onnx(R.constant_if_passthrough())
    assert flatten_constant_ifs(graph) == 2  # the outer If and the one inside its branch
    assert "If" not in [n.op for n in graph.nodes]
    assert all(len(t.inputs) == 1 for n in graph.nodes for t in n.inputs if isinstance(t, gs.Variable)
               and t.name != "x")
    graph.toposort()
    model = gs.export_onnx(graph)
    onnx.checker.check_model(model, full_check=True)


def _produced_nowhere(graph) -> None:  # noqa: ANN001
    import onnx_graphsurgeon as gs

    graph.nodes[-1].inputs[0] = gs.Variable("produced_nowhere", dtype=np.float32)


def _head_scaled(graph) -> None:  # noqa: ANN001
    import onnx_graphsurgeon as gs

    w = next(t for t in graph.tensors().values() if isinstance(t, gs.Constant) and t.name == "head.w")
    w.values = w.values * 1.5


@pytest.mark.parametrize("damage, words", [(_produced_nowhere, "optimized model"), (_head_scaled, "changes output")])
def test_optimize_never_writes_a_model_a_pass_damaged(tmp_path: Path, capsys, monkeypatch, damage, words: str):
    """A pass that breaks the graph, or only moves its values, is caught before anything is written."""
    from onnxprune.passes import fold_constants as F

    def broken(graph, size_threshold=None, fold_shapes=True):  # noqa: ANN001, ARG001
        damage(graph)
        return True

    monkeypatch.setattr(F, "fold_constants", broken)
    src = _save(tmp_path, "dynamic_hw_detector")
    out = tmp_path / "opt.onnx"
    rc = main(["optimize", str(src), "-o", str(out), "--passes", "fold-constants"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4 and not out.exists()
    assert len(err) == 1 and words in err[0]

@pytest.mark.parametrize("verb", [["optimize"], ["prune", "--ratio", "0.5"]])
def test_an_output_repeated_in_value_info_keeps_its_declared_shape(tmp_path: Path, verb: list[str], capsys):
    src = _save(tmp_path, "output_in_value_info")
    onnx.checker.check_model(str(src), full_check=True)  # the original is valid
    out = tmp_path / "out.onnx"
    assert main([verb[0], str(src), "-o", str(out), *verb[1:]]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    dims = onnx.load(out).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 4, 16, 16]
    _assert_output_fits(src, out)


@pytest.mark.parametrize("argv", [["prune", "{src}", "-o", "{out}", "--ratio", "0.5", "--check"],
                                  ["bench", "{src}"], ["compare", "{src}", "{src}"]])
def test_a_model_onnxruntime_cannot_load_is_refused_in_one_line(tmp_path: Path, argv: list[str], capsys):
    src = tmp_path / "m.onnx"
    onnx.save(R.ort_unloadable(), src)
    onnx.checker.check_model(str(src), full_check=True)
    out = tmp_path / "out.onnx"
    rc = main([a.format(src=src, out=out) for a in argv])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("onnxprune")]
    assert rc == 2
    assert len(err) == 1 and "onnxruntime cannot load" in err[0] and "internal error" not in err[0]


@pytest.mark.parametrize("argv", [["prune", "--ratio", "0.5", "--round-to", "8", "--check"],
                                  ["prune", "--ratio", "0.5", "--round-to", "8", "--criterion", "wanda", "--calib",
                                   "random", "--reconstruct"],
                                  ["optimize", "--check"]])
def test_a_sequence_of_maps_output_keeps_its_type(tmp_path: Path, argv: list[str], capsys):
    """A ZipMap output (list of dicts in onnxruntime) is compared by value and written with its type."""
    src = _save(tmp_path, "zipmap_classifier")
    out = tmp_path / "out.onnx"
    assert main([argv[0], str(src), "-o", str(out), *argv[1:]]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    written = onnx.load(out).graph.output[1].type
    assert written == onnx.load(src).graph.output[1].type
    feeds = plan_feeds(onnx.load(src)).require().make(seed=2)
    a, b = verify.run(str(src), feeds), verify.run(str(out), feeds)
    assert a[1].shape == b[1].shape == (feeds["x"].shape[0], 3)
    if argv[0] == "optimize":
        np.testing.assert_allclose(b[1], a[1], rtol=1e-5)
    else:  # channels were removed: the hidden layer is narrower
        dims = {t.name: list(t.dims) for t in onnx.load(out).graph.initializer}
        assert dims["w1"][1] < 16


def test_optimize_does_not_store_what_constant_of_shape_makes(tmp_path: Path, capsys):
    src = _save(tmp_path, "weights_from_constant_of_shape")
    out = tmp_path / "opt.onnx"
    assert main(["optimize", str(src), "-o", str(out), "--check"]) == 0
    assert out.stat().st_size <= 1.05 * src.stat().st_size + 1024  # not 600 kB of repeated values
    feeds = plan_feeds(onnx.load(src)).require().make(seed=0)
    np.testing.assert_allclose(verify.run(str(out), feeds)[0], verify.run(str(src), feeds)[0], rtol=1e-5)


def test_folding_still_stores_results_no_bigger_than_their_inputs():
    import onnx_graphsurgeon as gs
    from onnxprune.passes.fold_constants import fold_constants

    m = R.dynamic_hw_detector()
    w = next(t for t in m.graph.initializer if t.name == "c2.w")
    # the weight reaches its Conv through a Transpose pair: folding stores it once, same size
    w.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(w).transpose(1, 0, 2, 3).copy(), "c2.wt"))
    m.graph.node.insert(0, onnx.helper.make_node("Transpose", ["c2.wt"], ["c2.w"], perm=[1, 0, 2, 3]))
    graph = gs.import_onnx(m)
    fold_constants(graph)
    assert "Transpose" not in [n.op for n in graph.nodes]


@pytest.mark.parametrize("verb", [["prune", "--ratio", "0.5", "--check"], ["optimize"]])
def test_a_weight_both_branches_read_is_stored_once(tmp_path: Path, verb: list[str], capsys):
    src = _save(tmp_path, "branches_share_a_weight")
    out = tmp_path / "out.onnx"
    assert main([verb[0], str(src), "-o", str(out), *verb[1:]]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    m = onnx.load(out)
    stored = [t.name for t in m.graph.initializer if t.name == "shared.w"]
    for n in m.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                stored += [t.name for t in a.g.initializer if t.name == "shared.w"]
    assert stored == ["shared.w"]
    assert out.stat().st_size <= src.stat().st_size * 1.01
    _assert_output_fits(src, out)


def test_analyze_ranks_the_mac_frozen_by_each_kind_of_barrier(tmp_path: Path, capsys):
    import json

    src = _save(tmp_path, "single_conv")  # its one group touches the graph input and output
    assert main(["analyze", str(src), "--json"]) == 0
    kinds = json.loads(capsys.readouterr().out)["barrier_kinds"]
    assert kinds and kinds[0]["macs_share"] == pytest.approx(1.0)
    assert "'" not in kinds[0]["kind"]  # names of this model are gone: kinds compare across models
    assert main(["analyze", str(src)]) == 0
    assert "by kind of barrier" in capsys.readouterr().out


def test_an_expanded_broadcast_axis_does_not_freeze_the_channels_it_meets():
    from onnxprune.report import analysis_dict

    data = analysis_dict(api.analyze(R.broadcast_gate()))
    assert data["prunable_macs_share"] > 0.9, data["barriers"]
    res = api.prune(R.broadcast_gate(), ratio=0.5, round_to=1)
    target = {t.name: onnx.numpy_helper.to_array(t) for t in res.proto.graph.initializer}
    expand = next(n for n in res.proto.graph.node if n.op_type == "Expand")
    assert list(target[expand.input[1]]) == [1, 6, 16, 16]



def test_regrouped_features_and_jax_layernorm_broadcasts_are_pruned_losslessly():
    """jax2tf/tf2onnx: features regrouped by a run-time Reshape ([B,32,8] -> [B,8,32]), a LayerNorm
    whose statistics are broadcast back by ``Expand`` to a shape naming the width, int32 Slice
    parameters: the dense features and the Conv channels are both cut, outputs unchanged."""
    model = load(R.jax_regrouped_layernorm())
    dg = build_depgraph(model)
    sizes = sorted(g.size for g in dg.groups if not g.is_barrier)
    assert 8 in sizes and 12 in sizes  # the dense features and the Conv channels
    dense = next(g for g in dg.groups if not g.is_barrier and g.size == 8)
    conv = next(g for g in dg.groups if not g.is_barrier and g.size == 12)
    chans = np.concatenate([dense.channels[[1, 6]], conv.channels[[0, 5, 9]]])
    kill_channels(dg, chans)
    ref = verify.session(model.to_proto())
    feeds = [{"x": np.random.default_rng(b).standard_normal((b, 32, 6)).astype(np.float32)} for b in (1, 3)]
    refs = [verify.run(ref, f) for f in feeds]
    res = api.prune(model, plan=plan_from_channels(dg, chans), depgraph=dg)
    onnx.checker.check_model(res.proto, full_check=True)
    inits = {t.name: t for t in res.proto.graph.initializer}
    assert list(inits["dense.w"].dims) == [6, 6] and list(inits["conv.w"].dims) == [9, 24, 3, 1]
    sess = verify.session(res.proto)
    for f, want in zip(feeds, refs):
        np.testing.assert_allclose(verify.run(sess, f)[0], want[0], rtol=1e-4, atol=1e-5)
    starts = next(n for n in res.proto.graph.node if n.op_type == "Slice" and n.name == "Conv_0/strided_slice")
    assert inits[starts.input[1]].data_type == onnx.TensorProto.INT32  # the Slice keeps one integer type


def test_a_mean_written_as_sum_times_one_over_n_follows_the_kept_width():
    """--prune-hidden through a jax2tf LayerNorm (``ReduceSum * 1/n``): the pruned model is the
    LayerNorm of the kept channels, its 1/n rescaled to 1/n' for both statistics."""
    proto = R.jax_channel_layernorm()
    model = load(proto)
    assert all(g.is_barrier for g in build_depgraph(model).groups)  # not without --prune-hidden
    dg = build_depgraph(model, prune_hidden=True)
    (g,) = [g for g in dg.groups if not g.is_barrier]
    assert g.size == 16
    chans = g.channels[[0, 3, 4, 9, 15]]
    res = api.prune(model, plan=plan_from_channels(dg, chans), depgraph=dg)
    onnx.checker.check_model(res.proto, full_check=True)
    w = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    kept = np.setdiff1d(np.arange(16), [0, 3, 4, 9, 15])
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    h = np.maximum(x @ w["fc1.w"][:, kept] + w["fc1.b"][:, kept], 0)
    mean, var = h.mean(1, keepdims=True), np.maximum((h * h).mean(1, keepdims=True) - h.mean(1, keepdims=True) ** 2, 0)
    want = ((h - mean) / np.sqrt(var + 1e-6) * w["gamma"][:, kept] + w["beta"][:, kept]) @ w["head.w"][kept]
    got = verify.run(verify.session(res.proto), {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # each mean got its own 1/11 (a copy: another mean sharing the 1/16 would keep it)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in res.proto.graph.initializer}
    scales = [float(inits[n.input[1]]) for n in res.proto.graph.node if n.name.startswith("LayerNorm/truediv")]
    assert scales == pytest.approx([1 / 11, 1 / 11])


def test_weights_made_by_constant_of_shape_are_pruned_by_rewriting_their_shape():
    """A weight that is one value repeated (the onnx wheel's weight-free zoo graphs) loses
    channels by its shape vector: the model pruned from 128 to 64 channels is exactly the model
    built with 64, and the file still stores no weights."""
    res = api.prune(R.weights_from_constant_of_shape(channels=128), ratio=0.5, round_to=1)
    onnx.checker.check_model(res.proto, full_check=True)
    assert {gp.before: gp.after for gp in res.plan.groups} == {128: 64}
    assert not [t for t in res.proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    x = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    want = verify.run(verify.session(R.weights_from_constant_of_shape(channels=64)), x)[0]
    np.testing.assert_allclose(verify.run(verify.session(res.proto), x)[0], want, rtol=1e-5, atol=1e-6)


def test_a_resize_whose_scales_are_cast_from_float16_is_pruned_through():
    """The float16 converter keeps Resize in float32 and casts its scales: ``Cast(fp16 const)``
    is read as the constant it is, so the channels around the Resize stay prunable."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "c1.w"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "c2.w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float16), "scales16"),
             numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    nodes = [helper.make_node("Conv", ["x", "c1.w"], ["h"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Cast", ["scales16"], ["scales"], name="scales_cast", to=TensorProto.FLOAT),
             helper.make_node("Resize", ["a", "roi", "scales"], ["u"], name="up", mode="nearest"),
             helper.make_node("Conv", ["u", "c2.w"], ["y"], name="c2", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = load(proto)
    dg = build_depgraph(model)
    (grp,) = [g for g in dg.groups if not g.is_barrier]
    chans = grp.channels[[1, 4, 6]]
    kill_channels(dg, chans)
    x = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    want = verify.run(verify.session(model.to_proto()), x)[0]
    res = api.prune(model, plan=plan_from_channels(dg, chans), depgraph=dg)
    onnx.checker.check_model(res.proto, full_check=True)
    np.testing.assert_allclose(verify.run(verify.session(res.proto), x)[0], want, rtol=1e-4, atol=1e-5)


def test_weight_free_zoo_graph_prunes_without_growing_its_file(tmp_path: Path, capsys):
    """Gemm weights and small biases made by ``ConstantOfShape`` seed channels too, nothing they
    make is stored as floats, and node names given for reports are not written back."""
    from onnx import TensorProto, helper

    c = 64

    def filled(name: str, value: float) -> onnx.NodeProto:
        return helper.make_node("ConstantOfShape", [f"{name}.shape"], [name], value=numpy_helper_array(value))

    def numpy_helper_array(value: float) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(np.array([value], np.float32))

    inits = [R._i64("w1.shape", [c, 3, 3, 3]), R._i64("b1.shape", [c]), R._i64("fc.shape", [10, c * 16]),
             R._i64("fcb.shape", [10]), R._i64("flat", [1, -1])]
    nodes = [filled("w1", 0.05), filled("b1", 0.01), filled("fc", 0.002), filled("fcb", 0.0),
             helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Reshape", ["a", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    src = tmp_path / "light.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=7), src)
    out = tmp_path / "out.onnx"
    assert main(["prune", str(src), "-o", str(out), "--ratio", "0.5", "--check"]) == 0, capsys.readouterr().err
    pruned = onnx.load(out)
    assert out.stat().st_size <= src.stat().st_size + 64
    assert not [t for t in pruned.graph.initializer if t.data_type == TensorProto.FLOAT]
    assert all(not n.name for n in pruned.graph.node)  # nameless as written
    shapes = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in pruned.graph.initializer}
    assert shapes["w1.shape"] == [32, 3, 3, 3] and shapes["fc.shape"] == [10, 32 * 16]
