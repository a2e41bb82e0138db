"""Shared checks: lossless pruning of exactly-dead channels, and validity at a ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune import api, verify
from onnxprune.depgraph import build_depgraph
from onnxprune.graph import load
from onnxprune.plan import plan_from_channels
from onnxprune.testing import choose_channels, kill_channels

ROOT = Path(__file__).resolve().parent.parent
_CNN_PREFIXES = ("resnet", "mobilenet", "efficientnet", "densenet", "keras_cnn", "paddle_cnn")
#: Committed CNN exports (the transformer exports have tests of their own).
EXPORTS = sorted(p for p in (ROOT / "models" / "exports").glob("*.onnx") if p.name.startswith(_CNN_PREFIXES))
TRANSFORMER_EXPORTS = sorted(
    p for p in (ROOT / "models" / "exports").glob("*.onnx") if not p.name.startswith(_CNN_PREFIXES)
)


def assert_valid(proto: onnx.ModelProto) -> None:
    """Checker (full), strict shape inference and an onnxruntime run."""
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    sess = verify.session(proto)
    outs = sess.run(None, verify.make_feeds(sess, batch=2))
    assert all(np.all(np.isfinite(o)) for o in outs if o.dtype.kind == "f")


def lossless(source, share: float = 0.4, seed: int = 1, batches=(1, 2), input_shapes=None,
             feed_shapes=None, prune_hidden: bool = False):
    """Kills ``share`` of every stratum's channels, prunes exactly those, compares outputs.

    ``feed_shapes`` (a list of ``{input: shape}``) runs the comparison at several input sizes
    (e.g. two sequence lengths) instead of ``batches``. Returns the prune result so callers can
    assert on structure too.
    """
    model = load(source, input_shapes)
    dg = build_depgraph(model, prune_hidden=prune_hidden)
    chans = choose_channels(dg, share, seed=seed)
    assert len(chans) > 0, "nothing prunable in this model"
    kill_channels(dg, chans)
    ref_proto = model.to_proto()
    ref_sess = verify.session(ref_proto)
    if feed_shapes:
        feeds = [verify.make_feeds(ref_sess, fs, seed=7 + i) for i, fs in enumerate(feed_shapes)]
    else:
        feeds = [verify.make_feeds(ref_sess, input_shapes, seed=7 + b, batch=b) for b in batches]
    refs = [verify.run(ref_sess, f) for f in feeds]
    res = api.prune(model, plan=plan_from_channels(dg, chans), depgraph=dg)
    assert_valid(res.proto)
    sess = verify.session(res.proto)
    for f, ref in zip(feeds, refs):
        out = verify.run(sess, f)
        for a, b in zip(ref, out):
            assert a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert res.after.params < res.before.params
    return res


@pytest.fixture(params=[0.3, 0.5], ids=lambda r: f"ratio{r}")
def ratio(request):
    return request.param
