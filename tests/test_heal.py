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
