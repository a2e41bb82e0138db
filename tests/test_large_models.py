"""The route models over the 2 GB protobuf limit take, exercised on a small model.

Thresholds are lowered so a few-MB model is treated like a >2 GB one: big external weights are
read from their data file straight into numpy (never into the protobuf as well), and the pruned
result equals what the ordinary route produces. ``tools/bench_large_model.py`` measures memory
on a real 2.3 GB model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune.io as io_mod
from models.zoo import ZOO
from onnxprune import api, verify
from onnxprune.cli import main
from onnxprune.graph import load


@pytest.fixture
def external_model(tmp_path: Path) -> Path:
    src = tmp_path / "big.onnx"
    onnx.save_model(ZOO["resnet_basic"](), str(src), save_as_external_data=True,
                    location="big.onnx.data", size_threshold=0)
    return src


def test_big_weights_are_read_straight_from_the_data_file(external_model: Path, monkeypatch):
    reference = api.prune(str(external_model), ratio=0.5)
    monkeypatch.setattr(io_mod, "EXTERNAL_DATA_THRESHOLD", 10_000)
    monkeypatch.setattr(io_mod, "DEFER_MIN_BYTES", 4096)
    proto, deferred = io_mod.load_proto_deferred(external_model)
    assert len(deferred) >= 5
    for t in proto.graph.initializer:  # the protobuf holds no bytes of the deferred weights
        if t.name in deferred:
            assert not t.HasField("raw_data") and len(t.float_data) == 0
    full = onnx.load(str(external_model))
    m = load(str(external_model))
    consts = {t.name: t for t in m.graph.tensors().values() if hasattr(t, "values")}
    for t in full.graph.initializer:
        if t.name in deferred:
            np.testing.assert_array_equal(consts[t.name].values, onnx.numpy_helper.to_array(t))
    res = api.prune(str(external_model), ratio=0.5)
    a = {t.name: onnx.numpy_helper.to_array(t) for t in reference.proto.graph.initializer}
    b = {t.name: onnx.numpy_helper.to_array(t) for t in res.proto.graph.initializer}
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_truncated_data_file_of_a_big_model_is_refused(external_model: Path, monkeypatch, capsys):
    monkeypatch.setattr(io_mod, "EXTERNAL_DATA_THRESHOLD", 10_000)
    monkeypatch.setattr(io_mod, "DEFER_MIN_BYTES", 4096)
    data = external_model.with_name("big.onnx.data")
    data.write_bytes(data.read_bytes()[:-5000])
    out = external_model.with_name("out.onnx")
    assert main(["prune", str(external_model), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated" in err
    assert not out.exists()


def test_big_model_cli_end_to_end(external_model: Path, monkeypatch):
    monkeypatch.setattr(io_mod, "EXTERNAL_DATA_THRESHOLD", 10_000)
    monkeypatch.setattr(io_mod, "DEFER_MIN_BYTES", 4096)
    out = external_model.with_name("small.onnx")
    assert main(["prune", str(external_model), "-o", str(out), "--ratio", "0.5"]) == 0
    assert out.with_name("small.onnx.data").exists()
    sess_a, sess_b = verify.session(str(external_model)), verify.session(str(out))
    feeds = verify.make_feeds(sess_a, batch=2)
    assert verify.run(sess_b, feeds)[0].shape == verify.run(sess_a, feeds)[0].shape


def test_file_route_validation_accepts_good_and_names_bad_models(monkeypatch):
    from onnxprune import verify as verify_mod
    from onnxprune.errors import ApplyError

    monkeypatch.setattr(verify_mod, "FILE_VALIDATION_BYTES", 1000)
    res = api.prune(ZOO["resnet_basic"](), ratio=0.5)
    assert res.after.params < res.before.params
    bad = ZOO["vgg_like"]()
    w = bad.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(w)
    w.CopyFrom(onnx.numpy_helper.from_array(arr[:, :1].copy(), w.name))  # wrong input channels
    with pytest.raises(ApplyError, match="pruned model"):
        verify_mod.validate(bad)
