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
