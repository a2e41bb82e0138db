"""Weights left in the model's file until they are used (:class:`onnxprune.graph.StoredValues`).

A model loaded from a path keeps its large float weights in the file: analysis reads shapes
only, scoring and cutting read one weight at a time, export writes them from the file. So the
result must be exactly what the in-memory route gives, the source path may be replaced while the
model is loaded (the open handle reads the loaded file), and a file changed in place is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from models.zoo import ZOO
from onnxprune import api
from onnxprune.cli import main
from onnxprune.depgraph import build_depgraph
from onnxprune.errors import ModelLoadError
from onnxprune.graph import StoredValues, const_value, load
from onnxprune.importance import channel_importance
from onnxprune.profile import profile

from .conftest import assert_valid, lossless


def _stored(model) -> list[gs.Constant]:
    return [t for t in model.graph.tensors().values()
            if isinstance(t, gs.Constant) and isinstance(t._values, StoredValues)]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save_model(ZOO["resnet_basic"](), str(path))
    return path


def test_analysis_and_scoring_leave_the_weights_in_the_file(saved: Path):
    m = load(str(saved))
    stored = _stored(m)
    assert len(stored) >= 5
    full = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(saved)).graph.initializer}
    for t in stored:
        np.testing.assert_array_equal(const_value(t), full[t.name])
        assert tuple(t.shape) == full[t.name].shape and t.dtype == full[t.name].dtype
    dg = build_depgraph(m)
    profile(m)
    channel_importance(dg, "l1", 0, None, None)
    assert {t.name for t in _stored(m)} == {t.name for t in stored}  # nothing kept a copy


def _assert_same_initializers(got: onnx.ModelProto, want: onnx.ModelProto) -> None:
    a = {t.name: onnx.numpy_helper.to_array(t) for t in want.graph.initializer}
    b = {t.name: onnx.numpy_helper.to_array(t) for t in got.graph.initializer}
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(b[k], a[k])


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_pruning_from_the_file_equals_pruning_in_memory(saved: Path, ratio: float):
    from_memory = api.prune(onnx.load(str(saved)), ratio=ratio)
    from_file = api.prune(str(saved), ratio=ratio)
    assert_valid(from_file.proto)
    _assert_same_initializers(from_file.proto, from_memory.proto)


def test_dead_channels_prune_losslessly_from_the_file(saved: Path):
    res = lossless(str(saved))
    assert res.after.params < res.before.params


def test_a_replaced_source_path_still_reads_the_loaded_file(saved: Path, tmp_path: Path):
    expected = api.prune(onnx.load(str(saved)), ratio=0.5)
    m = load(str(saved))
    assert _stored(m)
    other = tmp_path / "other.onnx"
    onnx.save_model(ZOO["vgg_like"](), str(other))
    os.replace(other, saved)  # an atomic save over the path the model came from
    res = api.prune(m, ratio=0.5)
    _assert_same_initializers(res.proto, expected.proto)


def test_a_file_changed_in_place_is_refused(saved: Path):
    m = load(str(saved))
    t = _stored(m)[0]
    size = saved.stat().st_size
    with open(saved, "r+b") as f:  # same size, new bytes, newer time
        f.seek(size // 2)
        f.write(b"\0" * 64)
    os.utime(saved, ns=(saved.stat().st_atime_ns, saved.stat().st_mtime_ns + 10**9))
    with pytest.raises(ModelLoadError, match="changed after the model was loaded"):
        const_value(t)


def test_cli_prune_from_the_file_writes_a_valid_smaller_model(saved: Path, tmp_path: Path):
    out = tmp_path / "out.onnx"
    before = saved.read_bytes()
    assert main(["prune", str(saved), "-o", str(out), "--ratio", "0.5"]) == 0
    assert saved.read_bytes() == before  # the input is never touched
    pruned = onnx.load(str(out))
    assert_valid(pruned)
    assert out.stat().st_size < 0.6 * len(before)
