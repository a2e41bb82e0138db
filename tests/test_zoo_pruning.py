"""Every zoo model and every committed export: lossless pruning, and valid results at 0.3/0.5."""

from __future__ import annotations

import pytest

from models.zoo import ZOO
from onnxprune import api

from .conftest import EXPORTS, assert_valid, lossless

ALL = [pytest.param(name, id=name) for name in ZOO] + [
    pytest.param(str(p), id=p.stem) for p in EXPORTS
]


def _source(name: str):
    return ZOO[name]() if name in ZOO else name


@pytest.mark.parametrize("name", ALL)
def test_lossless(name):
    lossless(_source(name))


@pytest.mark.parametrize("name", ALL)
def test_ratio_gives_valid_smaller_model(name, ratio):
    res = api.prune(_source(name), ratio=ratio, round_to=1)
    assert_valid(res.proto)
    # every layer loses about `ratio` of its channels, so MACs fall by at least that much
    # wherever the stem and head are not dominant
    assert res.after.macs < res.before.macs * (1 - ratio * 0.5)
    assert res.after.params < res.before.params * (1 - ratio * 0.5)


@pytest.mark.parametrize("name", ALL)
def test_analyze_finds_conv_macs_prunable(name):
    an = api.analyze(_source(name))
    assert an.prunable_macs_share >= 0.95, [g.reasons for g in an.depgraph.groups if g.reasons]
