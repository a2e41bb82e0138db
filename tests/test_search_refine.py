"""Search with activation-aware ranking and reconstruction, batch timing, candidate-count tables, refinement."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.zoo import build
from onnxprune import cli
from onnxprune.bench import Runner, interleaved_latency
from onnxprune.depgraph import build_depgraph
from onnxprune.graph import load
from onnxprune.latency_model import LatencyModel
from onnxprune.search import SearchOptions, _Search, _with_batch, search
from onnxprune.sensitivity import Calibration, Evaluator, SearchSpace
from onnxprune.verify import session
from tests.conftest import assert_valid

FAST = dict(repeat=4, steps=3, top_k=2, calib_samples=64, check_candidates=2, sensitivity_ratios=(0.5,), round_to=1)


def _mlp(hidden: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x[16] -> Gemm -> Relu -> Gemm -> y[4], with hidden unit 0 = 0.3 x hidden unit 1.

    ReLU(0.3 z) = 0.3 ReLU(z), so unit 0 is a linear function of unit 1 after the activation:
    removing it loses information that a refit of the second layer restores exactly. Its
    incoming and outgoing weights are the smallest, so magnitude ranking removes it first.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((hidden, 16)).astype(np.float32)
    w1[0] = 0.3 * w1[1]
    b1 = rng.standard_normal(hidden).astype(np.float32) * 0.1
    b1[0] = 0.3 * b1[1]
    w2 = 2 * rng.standard_normal((4, hidden)).astype(np.float32)
    w2[:, 0] *= 0.25
    b2 = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _calib(n: int = 64, seed: int = 1) -> Calibration:
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return Calibration({"x": x}, None, "test")


def _evaluator(reconstruct: bool, refit: bool = True, criterion: str = "l1") -> Evaluator:
    return Evaluator(_mlp().SerializeToString(), None, None, False, (0.0, 0.125), 1, 1, criterion, 0, _calib(), 1,
                     reconstruct, refit)


def test_reconstructing_evaluator_restores_a_dependent_unit():
    plain, rec = _evaluator(False), _evaluator(True)
    kept = plain.dg.kept_indices(plain.space.removed((1,)))
    assert list(kept[("w1", 0)]) == list(range(1, 8))  # the dependent unit goes first
    lost = plain.evaluate((1,))
    kept = rec.evaluate((1,))
    assert lost.loss > 1e-5 and lost.rel_l2 > 1e-3
    assert kept.loss < 1e-9 and kept.rel_l2 < 1e-4
    # the evaluator's base model is untouched by a candidate's refit: the same answer twice
    assert rec.evaluate((1,)).loss == kept.loss
    assert plain.evaluate((1,)).loss == lost.loss
    # bias-only compensation sits in between
    bias = _evaluator(True, refit=False).evaluate((1,))
    assert kept.rel_l2 < bias.rel_l2 < lost.rel_l2  # the mean restored: a smaller error (cosine need not agree)


def test_activation_criterion_uses_calibration_statistics():
    # wanda ranks by |W| x ||x|| on the calibration inputs: the evaluator gathers those statistics
    ev = _evaluator(False, criterion="wanda")
    assert ev.stats is not None and ev.stats.channels
    assert ev.space.n_groups == 1


def test_search_with_reconstruction_writes_what_it_evaluated(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(hidden=16), path)
    cal = tmp_path / "calib.npz"
    np.savez(cal, x=_calib(64).feeds["x"])
    # holdout 0: ranked on the samples it fits, so the written model is the evaluated one
    opts = SearchOptions(target_macs="0.85x", calib=str(cal), criterion="wanda", reconstruct=True,
                         cache_dir=str(tmp_path / "c"), levels=(0.0, 0.125, 0.25), holdout=0.0, **FAST)
    res = search(path, opts)
    assert res.met
    assert_valid(res.proto)
    # the written model reproduces the fidelity the search measured for its choice
    x = _calib(64).feeds["x"]
    ref = session(str(path)).run(None, {"x": x})[0].astype(np.float64)
    got = session(res.proto).run(None, {"x": x})[0].astype(np.float64)
    cos = np.mean(np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)))
    assert cos == pytest.approx(res.best.fidelity.cosine, abs=1e-6)
    # and reconstruction made it better than the same plan without it
    plain = Evaluator(_mlp(hidden=16).SerializeToString(), None, None, False, opts.levels, 1, 1, "wanda", 0,
                      Calibration({"x": x}, None, "t"), 1, False)
    assert res.best.fidelity.loss <= plain.evaluate(res.best.config).loss + 1e-12


def test_with_batch_fixes_only_symbolic_leading_dims():
    m = _mlp()
    assert _with_batch(m, None, None) is None
    assert _with_batch(m, None, 32) == {"x": [32, 16]}
    assert _with_batch(m, {"x": [2, 16]}, 32) == {"x": [2, 16]}  # what the user said wins
    fixed = _mlp()
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # a static batch stays
    assert _with_batch(fixed, None, 8) is None


def test_blocks_of_runs_for_fast_models():
    r = Runner(_mlp(), {"x": np.zeros((1, 16), np.float32)}, threads=1, warmup=1)
    assert r.block_size(0) == 1
    n = r.block_size(5.0)
    assert 1 < n <= 1000
    assert r.block_size(1e6, cap=50) == 50
    assert r.run_block(n) > 0
    res = interleaved_latency([_mlp(), _mlp(hidden=4)], {"x": np.zeros((1, 16), np.float32)}, threads=1,
                              warmup=1, repeat=3, min_turn_ms=2.0)
    assert all(m > 0 for m in res.medians_ms)


def test_latency_tables_hold_the_candidate_counts():
    model = load(build("vgg_like"))
    dg = build_depgraph(model)
    levels = (0.0, 0.125, 0.25, 0.5)
    space = SearchSpace(dg, levels, round_to=1)
    lat = LatencyModel(model, dg, threads=1)
    configs = [space.removed(space.uniform(lv)) for lv in range(len(levels))]
    lat.build_tables(repeat=1, warmup=0, configs=configs)
    checked = 0
    for spec in lat.layers:
        if not spec.exact or not spec.w_axes:
            continue
        keys = set(lat.tables[spec.signature])
        want = {spec.counts(r) for r in configs}
        assert want <= keys  # every count a uniform level gives is timed, not interpolated
        for r in configs:  # so a prediction at those counts is the table entry itself
            assert lat._layer_ms(spec, spec.counts(r)) == lat.tables[spec.signature][spec.counts(r)]
        checked += 1
    assert checked >= 3


def test_refinement_relaxes_when_the_choice_runs_faster_than_predicted(tmp_path, monkeypatch):
    """A model that overestimates latency near the choice: the search relaxes and finds a better one."""
    calls: dict = {"n": 0}

    def fake_measure(self, configs, repeat):
        calls["n"] += 1
        if calls["n"] == 2:
            calls["first_choice"] = configs[0]
        out = [10.0]
        for c in configs:
            share = 0.1 + 0.9 * self.lat.macs_params(self.space.removed(c))[0] / self.lat.full_macs
            # the fit sees honest numbers; end-to-end checks of pruned models run twice as fast
            out.append(10.0 * share * (0.5 if calls["n"] > 1 and any(c) else 1.0))
        return out

    monkeypatch.setattr(_Search, "_measure", fake_measure)
    stages: list[tuple[str, str]] = []
    path = tmp_path / "r.onnx"
    onnx.save(build("resnet_basic"), path)
    res = search(path, SearchOptions(target_latency="0.6x", cache_dir=str(tmp_path / "c"), **{**FAST,
                                     "calib_samples": 4}), progress=lambda s, d, n, i: stages.append((s, i)))
    assert ("refining", "latency measured well below target") in stages
    first = next(c for c in res.candidates if c.config == calls["first_choice"])
    assert first.measured_ratio < 0.6 * 0.9  # why it relaxed
    assert res.met and res.best.measured_ratio <= 0.6 * 1.03
    assert res.best.loss < first.loss  # the relaxed search kept more
    assert_valid(res.proto)


@pytest.mark.parametrize("argv, fragment", [
    (["--criterion", "wanda"], "needs calibration data"),
    (["--reconstruct"], "needs calibration data"),
    (["--bias-only"], "--bias-only needs --reconstruct"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--holdout", "1"], "--holdout must be in [0, 1)"),
])
def test_cli_option_errors(tmp_path, capsys, argv, fragment):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), path)
    out = tmp_path / "o.onnx"
    rc = cli.main(["search", str(path), "-o", str(out), "--target-macs", "0.8x", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and fragment in err and len(err.splitlines()) == 1
    assert not out.exists()
