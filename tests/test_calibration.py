"""Calibration sources and the statistics gathered from them, against numpy references."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxprune import verify
from onnxprune.calibration import (
    ChannelStats,
    GramStats,
    ImageSpec,
    collect_stats,
    find_consumers,
    im2col_rows,
    load_calibration,
)
from onnxprune.errors import UsageError
from onnxprune.graph import load


def _conv_model(c_in=3, c_out=4, k=3, strides=(1, 1), pads=(1, 1, 1, 1), dil=(1, 1), auto_pad=None,
                hw=(7, 6), seed=0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((c_out, c_in, k, k)).astype(np.float32)
    attrs = dict(strides=list(strides), dilations=list(dil))
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = list(pads)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c_in, *hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [onnx.numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_channel_stats_match_numpy_over_batches():
    rng = np.random.default_rng(0)
    parts = [np.maximum(rng.standard_normal((n, 5, 3, 2)) * 3 + 7, 0 if i else 8) for i, n in enumerate((4, 1, 9))]
    parts[1][:, 2] = 0.0  # some exact zeros
    st = ChannelStats()
    for p in parts:
        st.update(p.astype(np.float32), axis=1)
    ref = np.moveaxis(np.concatenate(parts).astype(np.float32), 1, -1).reshape(-1, 5).astype(np.float64)
    assert st.n == ref.shape[0]
    np.testing.assert_allclose(st.mean, ref.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st.var, ref.var(0), rtol=1e-6)
    np.testing.assert_allclose(st.apoz, (ref == 0).mean(0))
    np.testing.assert_allclose(st.mean_square, (ref**2).mean(0), rtol=1e-6)


def test_gram_stats_match_numpy():
    rng = np.random.default_rng(1)
    rows = [rng.standard_normal((n, 6)) + 2 for n in (3, 10, 5)]
    g = GramStats()
    for r in rows:
        g.update(r)
    x = np.concatenate(rows)
    np.testing.assert_allclose(g.second_moment_sum(), x.T @ x, rtol=1e-12)
    np.testing.assert_allclose(g.covariance(), np.cov(x.T, bias=True), atol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(strides=(2, 2)), dict(pads=(0, 2, 1, 0), dil=(2, 1)), dict(auto_pad="SAME_UPPER", strides=(2, 1)),
     dict(auto_pad="VALID", k=2)],
    ids=["plain", "stride", "asym-pad-dilation", "same-upper", "valid"],
)
def test_im2col_patches_reproduce_the_conv(kw):
    proto = _conv_model(**kw)
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6)).astype(np.float32)
    y = verify.run(verify.session(proto), {"x": x})[0]
    model = load(proto)
    node = model.graph.nodes[0]
    w = onnx.numpy_helper.to_array(proto.graph.initializer[0])
    rows = im2col_rows(x, node, w.shape, None, np.random.default_rng(0))
    got = rows @ w.reshape(w.shape[0], -1).T  # [b*ho*wo, c_out]
    ref = y.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # sampled rows are a subset of the full set
    some = im2col_rows(x, node, w.shape, 5, np.random.default_rng(3))
    assert some.shape == (5, rows.shape[1])
    assert all(np.any(np.all(np.isclose(rows, r), axis=1)) for r in some)


def test_collect_stats_through_onnxruntime_matches_numpy():
    """Gram and channel statistics of an intermediate tensor, exposed as an extra output."""
    rng = np.random.default_rng(4)
    w1 = rng.standard_normal((5, 8)).astype(np.float32)
    w2 = rng.standard_normal((8, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
             helper.make_node("Relu", ["h0"], ["h"], name="relu"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                          [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model = load(proto)
    x = rng.standard_normal((50, 5)).astype(np.float32)
    calib = load_calibration([{"x": x[:20]}, {"x": x[20:]}], proto, n_samples=50, batch_size=16)
    assert [len(b["x"]) for b in calib.batches] == [16, 16, 16, 2]
    cons = find_consumers(model)
    assert [c.node for c in cons] == ["mm1", "mm2"]
    stats = collect_stats(model, calib, cons, grams=["mm2"], max_rows=10_000)
    h = np.maximum(x @ w1, 0).astype(np.float64)
    np.testing.assert_allclose(stats.grams["mm2"].second_moment_sum(), h.T @ h, rtol=1e-5)
    np.testing.assert_allclose(stats.grams["mm2"].covariance(), np.cov(h.T, bias=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.channels["h#1"].mean, h.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.channels["h#1"].apoz, (h == 0).mean(0))
    np.testing.assert_allclose(stats.channels["x#1"].var, x.astype(np.float64).var(0), rtol=1e-5)


def test_npy_folder_single_samples_and_stacks(tmp_path):
    proto = _conv_model()
    rng = np.random.default_rng(5)
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", rng.standard_normal((3, 7, 6)).astype(np.float32))  # one sample
    np.save(tmp_path / "stack.npy", rng.standard_normal((6, 3, 7, 6)).astype(np.float32))  # a stack
    calib = load_calibration(tmp_path, proto, n_samples=8, batch_size=4)
    assert calib.n_samples == 8
    assert [b["x"].shape[0] for b in calib.batches] == [4, 4]
    first = np.load(tmp_path / "s0.npy")
    np.testing.assert_array_equal(calib.batches[0]["x"][0], first)


def test_npy_wrong_shape_is_one_clear_error(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 7, 6), np.float32))
    with pytest.raises(UsageError, match="axis 1 is 5 but input 'x' needs 3"):
        load_calibration(tmp_path, _conv_model())
    with pytest.raises(UsageError, match="does not exist"):
        load_calibration(tmp_path / "missing", _conv_model())


def test_random_calibration_warns(caplog):
    calib = load_calibration("random", _conv_model(), n_samples=5, batch_size=2)
    assert calib.is_random and calib.n_samples == 5
    assert "say nothing about accuracy" in caplog.text


def test_image_folder_preprocessing(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(6)
    pixels = [rng.integers(0, 256, size=(7, 6, 3), dtype=np.uint8) for _ in range(2)]
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"im{i}.png")
    spec = ImageSpec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), bgr=True)
    calib = load_calibration(tmp_path, _conv_model(), image_spec=spec)
    x = calib.batches[0]["x"]
    assert x.shape == (2, 3, 7, 6)
    ref = ((pixels[0][..., ::-1] / 255.0 - np.array(spec.mean)) / np.array(spec.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0], ref, rtol=1e-5, atol=1e-5)


def test_image_folder_without_pillow_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(UsageError, match=r"needs Pillow: pip install 'onnxprune\[images\]'"):
        load_calibration(tmp_path, _conv_model())
