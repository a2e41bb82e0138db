"""Importance criteria and the uniform planner: determinism, ratios, rounding, minimums."""

from __future__ import annotations

import numpy as np
import pytest

from models.zoo import ZOO
from onnxprune.depgraph import build_depgraph
from onnxprune.errors import PlanError
from onnxprune.graph import load
from onnxprune.importance import channel_importance
from onnxprune.plan import plan_from_channels, uniform_plan


@pytest.fixture(scope="module")
def dg():
    return build_depgraph(load(ZOO["densenet_block"]()))


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "random"])
def test_plans_are_deterministic(dg, criterion):
    a = uniform_plan(dg, 0.5, criterion, seed=3)
    b = uniform_plan(dg, 0.5, criterion, seed=3)
    assert np.array_equal(a.removed, b.removed) and a.n_removed > 0


def test_criteria_choose_differently(dg):
    plans = {c: uniform_plan(dg, 0.5, c).removed for c in ("l1", "bn", "random")}
    assert not np.array_equal(plans["l1"], plans["random"])
    assert not np.array_equal(plans["bn"], plans["random"])


def test_l1_removes_the_smallest_channels(dg):
    score = channel_importance(dg, "l1")
    plan = uniform_plan(dg, 0.5, "l1")
    for g in dg.groups:
        for s in np.unique(g.strata):
            chans = g.channels[(g.strata == s) & g.prunable]
            gone, kept = chans[plan.removed[chans]], chans[~plan.removed[chans]]
            if len(gone) and len(kept):
                assert score[gone].max() <= score[kept].min()


def test_bn_scores_follow_gamma(dg):
    score = channel_importance(dg, "bn")
    assert np.all(np.isfinite(score)) and np.all(score >= 0)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.9])
def test_ratio_per_stratum_and_round_to(dg, ratio):
    plan = uniform_plan(dg, ratio, round_to=4, min_channels=2)
    for g in dg.groups:
        for s in np.unique(g.strata):
            chans = g.channels[g.strata == s]
            if not g.prunable[g.strata == s].all():
                continue
            kept = len(chans) - int(plan.removed[chans].sum())
            assert kept >= min(2, len(chans))
            assert kept % 4 == 0 or kept == len(chans)
            assert kept >= len(chans) * (1 - ratio) - 1e-9


def test_frozen_channels_are_never_removed(dg):
    plan = uniform_plan(dg, 0.9)
    assert not (plan.removed & dg.channel_frozen).any()


@pytest.mark.parametrize("kw", [{"ratio": 1.0}, {"ratio": -0.1}, {"ratio": 0.5, "round_to": 0},
                                {"ratio": 0.5, "min_channels": 0}, {"ratio": 0.5, "criterion": "nope"}])
def test_bad_options(dg, kw):
    with pytest.raises(PlanError):
        uniform_plan(dg, **kw)


def test_explicit_plan_refuses_frozen_and_emptying(dg):
    frozen = np.flatnonzero(dg.channel_frozen)
    with pytest.raises(PlanError, match="frozen"):
        plan_from_channels(dg, frozen[:1])
    g = next(g for g in dg.groups if g.n_prunable == g.size)
    s = g.strata[0]
    with pytest.raises(PlanError, match="every channel"):
        plan_from_channels(dg, g.channels[g.strata == s])


# ------------------------------------------------------------------ speed-aware default widths
def test_default_widths_are_multiples_of_sixteen_and_heads_count_as_their_width():
    """The default keeps channel counts a multiple of 16; an attention head of width 16 is already
    a block of 16 weight columns, so heads are removed one at a time, not held back."""
    from models.transformers import bert_like
    from onnxprune import api
    from onnxprune.plan import DEFAULT_ROUND_TO, channel_step
    from tests.conftest import assert_valid

    assert DEFAULT_ROUND_TO == 16
    model = load(bert_like(hidden=64, heads=4, ffn=120))
    dg = build_depgraph(model)
    heads = [g for g in dg.groups if not g.is_barrier and g.size == 4]
    ffn = [g for g in dg.groups if not g.is_barrier and g.size == 120]
    assert heads and ffn
    assert all(g.unit == 16 and channel_step(g, 16) == 1 for g in heads)
    assert all(g.unit == 1 and channel_step(g, 16) == 16 for g in ffn)
    res = api.prune(bert_like(hidden=64, heads=4, ffn=120), ratio=0.3)  # the default round_to
    assert_valid(res.proto)
    after = {gp.group: gp.after for gp in res.plan.groups}
    assert all(after[g.id] == 3 for g in heads)  # 4 heads at 0.3: one goes (1.2 rounds to 1)
    assert all(after[g.id] == 96 for g in ffn)  # 120 at 0.3 keeps 84, rounded up to 96
    exact = api.prune(bert_like(hidden=64, heads=4, ffn=120), ratio=0.3, round_to=1)
    assert all(gp.after == 84 for gp in exact.plan.groups if gp.before == 120)


def test_a_flatten_into_a_gemm_does_not_loosen_the_conv_widths():
    """Conv channels spread over many Gemm inputs by a Flatten still round to 8 (their kernel
    width is the Conv's output channels, not the Gemm's input columns)."""
    dg_ = build_depgraph(load(ZOO["flatten_gemm_head"]()))
    spread = [g for g in dg_.groups if not g.is_barrier
              and any(dg_.spaces[k].size > len(np.unique(dg_.space_channels(k))) for k in g.spaces)]
    assert spread and all(g.unit == 1 for g in spread)


# ------------------------------------------------------------------------------ sizing by cost
@pytest.mark.parametrize("name, global_ranking", [("resnet_bottleneck", False), ("mobilenet_v2", False),
                                                  ("densenet_block", True)])
def test_target_macs_lands_at_or_just_under_the_target(name, global_ranking):
    from onnxprune import api

    res = api.prune(ZOO[name](), target_macs="0.6x", global_ranking=global_ranking, round_to=1)
    share = res.after.macs / res.before.macs
    assert res.targets_met and share <= 0.6 + 1e-9
    # the smallest ratio that meets it: a little less pruning misses the target
    less = api.prune(ZOO[name](), ratio=max(0.0, res.ratio - 0.02), global_ranking=global_ranking, round_to=1)
    assert less.after.macs / less.before.macs > share
    assert share > 0.45  # not far below: the bisection stops at the first ratio that fits


def test_cost_model_matches_the_profile_of_the_pruned_model():
    from onnxprune import api
    from onnxprune.profile import CostModel

    model = load(ZOO["resnet_basic"]())
    dg_ = build_depgraph(model)
    plan = uniform_plan(dg_, 0.4)
    macs, params = CostModel(model, dg_).macs_params(plan.removed)
    res = api.prune(model, plan=plan, depgraph=dg_)
    assert macs == pytest.approx(res.after.macs, rel=1e-6) and params == pytest.approx(res.after.params, rel=1e-3)


def test_target_options_on_the_command_line(tmp_path, capsys):
    import json

    import onnx

    from onnxprune.cli import main

    src = tmp_path / "m.onnx"
    onnx.save(ZOO["resnet_bottleneck"](), src)
    out = tmp_path / "o.onnx"
    assert main(["prune", str(src), "-o", str(out), "--ratio", "0.3", "--target-macs", "0.5x"]) == 2
    assert main(["prune", str(src), "-o", str(out), "--target-macs", "1.5x"]) == 2  # a ratio above 1
    assert not out.exists()
    capsys.readouterr()
    assert main(["prune", str(src), "-o", str(out), "--target-params", "0.5x", "--round-to", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["targets_met"] and data["params_after"] <= data["targets"]["params"]
    assert data["targets"]["params"] == int(0.5 * data["params_before"]) and 0 < data["ratio"] < 0.95


def test_an_unreachable_target_is_reported_not_met(caplog):
    from onnxprune import api

    res = api.prune(ZOO["resnet_basic"](), target_macs=1, round_to=1)  # one MAC: the frozen stem and head stay
    assert not res.targets_met and res.ratio == pytest.approx(0.95)
    assert "cannot be reached" in caplog.text
