"""Every lossless pass on the zoo, the transformer builders and the committed exports.

Each model goes through the passes one by one; after every pass the result must pass the full
checker, keep the graph interface, match the previous model's outputs in onnxruntime (within
1e-5 of the output scale, at two batch sizes where the batch is symbolic) and satisfy the
pass's structural promise.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnxprune.passes import (
    ChannelPruning,
    Cleanup,
    DeduplicateInitializers,
    EliminateCommonSubexpressions,
    EliminateIdentity,
    EliminateNoOps,
    FoldConstants,
    FuseAffine,
    FuseBatchNorm,
    FusePad,
    InferShapes,
    RemoveDeadNodes,
    SimplifyReshape,
    SortTopologically,
    VerifyOutputs,
)

import onnxprune
from models.transformers import TRANSFORMERS
from models.zoo import ZOO
from onnxprune.pipeline import run_passes

from .conftest import EXPORTS, TRANSFORMER_EXPORTS, assert_valid
from .passes_helpers import assert_equivalent

MODELS = (
    [pytest.param(("zoo", n), id=n) for n in ZOO]
    + [pytest.param(("transformers", n), id=n) for n in TRANSFORMERS]
    + [pytest.param(("file", str(p)), id=p.stem) for p in EXPORTS + TRANSFORMER_EXPORTS]
)


def build(spec: tuple[str, str]) -> onnx.ModelProto:
    kind, name = spec
    if kind == "zoo":
        return ZOO[name]()
    if kind == "transformers":
        return TRANSFORMERS[name]()
    return onnx.load(name)


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _readers(model: onnx.ModelProto) -> collections.Counter[str]:
    c: collections.Counter[str] = collections.Counter()
    for n in model.graph.node:
        c.update(set(n.input))
    c.update(o.name for o in model.graph.output)
    return c


def _check_fuse_bn(m: onnx.ModelProto) -> None:
    prod, readers = _producers(m), _readers(m)
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            p = prod.get(n.input[0])
            consts = {i.name for i in m.graph.initializer}
            if p is not None and p.op_type in ("Conv", "ConvTranspose") and readers[n.input[0]] == 1:
                assert p.input[1] not in consts, f"BatchNorm '{n.name}' after Conv '{p.name}' left unfused"


def _check_identity(m: onnx.ModelProto) -> None:
    outs = {o.name for o in m.graph.output}
    ins = {i.name for i in m.graph.input}
    for n in m.graph.node:
        if n.op_type in ("Identity", "Dropout"):
            assert n.output[0] in outs and (n.input[0] in ins or n.input[0] in outs), n.name


def _check_dead(m: onnx.ModelProto) -> None:
    readers = _readers(m)
    for init in m.graph.initializer:
        assert readers[init.name], f"unused initializer '{init.name}'"
    for n in m.graph.node:
        assert any(readers[o] for o in n.output if o), f"dead node '{n.name}'"


def _check_dedup(m: onnx.ModelProto) -> None:
    seen: dict[tuple, str] = {}
    for init in m.graph.initializer:
        v = onnx.numpy_helper.to_array(init)
        key = (v.dtype.str, v.shape, v.tobytes())
        assert key not in seen, f"initializers '{seen.get(key)}' and '{init.name}' are equal"
        seen[key] = init.name


def _check_cse(m: onnx.ModelProto) -> None:
    seen = set()
    for n in m.graph.node:
        if n.op_type.startswith("Random"):
            continue
        key = (n.domain, n.op_type, tuple(n.input), tuple(a.SerializeToString() for a in n.attribute))
        assert key not in seen, f"node '{n.name}' duplicates an earlier one"
        seen.add(key)


def _check_sorted(m: onnx.ModelProto) -> None:
    onnx.checker.check_model(m)


def _check_fewer(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    assert len(after.graph.node) <= len(before.graph.node)


STRUCTURE = {
    "fuse-bn": _check_fuse_bn,
    "eliminate-identity": _check_identity,
    "remove-dead": _check_dead,
    "dedup-initializers": _check_dedup,
    "cse": _check_cse,
    "toposort": _check_sorted,
}


@pytest.mark.parametrize("spec", MODELS)
def test_each_pass_is_lossless(spec):
    model = build(spec)
    passes = [
        InferShapes(), FoldConstants(), EliminateIdentity(), EliminateNoOps(), SimplifyReshape(),
        FuseBatchNorm(), FuseAffine(), FusePad(), DeduplicateInitializers(),
        EliminateCommonSubexpressions(), RemoveDeadNodes(), SortTopologically(),
    ]
    state = {"prev": model}
    checked: list[str] = []

    def on_pass(p, result):
        if not result.modified and p.name not in STRUCTURE:
            return
        proto = result.model.to_proto()
        assert_equivalent(state["prev"], proto, input_shapes=None)
        _check_fewer(state["prev"], proto)
        if p.name in STRUCTURE:
            STRUCTURE[p.name](proto)
        checked.append(p.name)
        state["prev"] = proto

    res = run_passes(model, passes, max_rounds=1, on_pass=on_pass)
    final = res.proto
    # After a full round of everything, the structural promises hold together.
    _check_dead(final)
    _check_identity(final)
    assert len(final.graph.node) <= len(model.graph.node)
    assert_equivalent(model, final)


@pytest.mark.parametrize("spec", MODELS)
def test_cleanup_reaches_fixed_point(spec):
    model = build(spec)
    res = run_passes(model, [Cleanup()])
    assert res.converged
    for check in STRUCTURE.values():
        check(res.proto)
    assert_equivalent(model, res.proto)
    again = onnxprune.optimize(res.proto, ["cleanup"])
    assert len(again.graph.node) == len(res.proto.graph.node)


def test_cleanup_removes_what_exporters_leave():
    """The legacy exporter's Constant/Identity nodes and shape arithmetic go away."""
    before = onnx.load(str(next(p for p in TRANSFORMER_EXPORTS if p.stem == "vit_tiny_legacy")))
    after = onnxprune.optimize(before, ["cleanup"])
    ops_before = collections.Counter(n.op_type for n in before.graph.node)
    ops_after = collections.Counter(n.op_type for n in after.graph.node)
    assert ops_before["Constant"] > 0 and ops_after["Constant"] == 0
    assert ops_after["Shape"] < ops_before["Shape"]
    assert len(after.graph.node) < 0.6 * len(before.graph.node)


@pytest.mark.parametrize("name", ["resnet_bottleneck", "mobilenet_v2", "efficientnet_se"])
def test_channel_pruning_in_a_pipeline(name):
    model = ZOO[name]()
    pruning = ChannelPruning(ratio=0.5, round_to=4)
    verify = VerifyOutputs(min_cosine=0.0)
    res = run_passes(model, [Cleanup(), pruning, Cleanup(), verify])
    assert res.trace.count("channel-pruning") == 1  # runs once, however many rounds
    assert_valid(res.proto)

    def params(m):
        return sum(int(np.prod(i.dims)) for i in m.graph.initializer)

    assert params(res.proto) < 0.5 * params(model)
    assert set(verify.max_abs) == {o.name for o in model.graph.output}


def test_verify_pass_fails_on_changed_outputs_and_names_the_pipeline():
    from onnxprune.passes import PassError

    model = ZOO["resnet_basic"]()
    with pytest.raises(PassError) as err:
        run_passes(model, ["cleanup", ChannelPruning(ratio=0.5), VerifyOutputs(rtol=1e-6)])
    msg = str(err.value)
    assert "pass 'verify' (after cleanup, channel-pruning)" in msg
    assert "output 'output' differs" in msg


@pytest.mark.parametrize(
    "spec",
    [("file", n) for n in ("keras_transformer", "bert_tiny_legacy", "vit_tiny_dynamo", "paddle_cnn", "densenet_legacy")]
    + [("transformers", n) for n in ("gpt_like", "llama_like")],
    ids=lambda s: s[1],
)
def test_cleanup_keeps_models_prunable(spec):
    """Cleanup never hides channels from analysis, and pruning the cleaned model is lossless
    (transformers at two sequence lengths)."""
    from onnxprune import api

    from .conftest import ROOT, lossless
    from .test_transformer_pruning import _export_feeds, _feeds

    kind, name = spec
    if kind == "file":
        source = ROOT / "models" / "exports" / f"{name}.onnx"
        feeds = _export_feeds(source) if "cnn" not in name and "net" not in name else None
        original = onnx.load(str(source))
    else:
        original = source = TRANSFORMERS[name]()
        feeds = _feeds(name, original)
    cleaned = onnxprune.optimize(source, ["cleanup"])
    assert len(cleaned.graph.node) <= len(original.graph.node)
    assert api.analyze(cleaned).prunable_macs_share >= api.analyze(source).prunable_macs_share
    lossless(cleaned, share=0.5, feed_shapes=feeds)
