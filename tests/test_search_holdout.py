"""Search ranks on held-out calibration samples, writes what `prune` writes, and never loses to uniform."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.api import prune
from onnxprune.latency_model import LatencyModel
from onnxprune.search import LATENCY_SLACK, RELAX_BELOW, SearchOptions, _Search, search
from onnxprune.sensitivity import Calibration, Evaluator, _fidelity, split_calibration
from onnxprune.verify import session
from tests.test_search_refine import FAST, _calib, _mlp


def _rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a}


def test_split_calibration_holds_out_evenly_spread_disjoint_samples():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    cal = Calibration({"x": x, "scale": np.float32(2.0)}, np.arange(20), "t")
    fit, held = split_calibration(cal, 0.25)
    assert held.feeds["x"].shape == (5, 2) and fit.feeds["x"].shape == (15, 2)
    assert not _rows(fit.feeds["x"]) & _rows(held.feeds["x"])
    assert _rows(fit.feeds["x"]) | _rows(held.feeds["x"]) == _rows(x)
    assert list(held.labels) == [3, 7, 11, 15, 19]  # every fourth, not the last five
    assert list(held.feeds["x"][:, 0] // 2) == list(held.labels)  # labels follow their samples
    assert fit.feeds["scale"] == 2.0  # an input without the sample axis goes to both
    # nothing to hold out: one sample, or no share
    one = Calibration({"x": x[:1]}, None, "t")
    assert split_calibration(one, 0.25) == (one, one)
    assert split_calibration(cal, 0.0) == (cal, cal)


def test_evaluator_scores_candidates_on_samples_it_did_not_fit():
    # 16 inputs, 16 hidden units: on 12 samples a refit of the second layer fits any cut almost
    # exactly, so fidelity on the fitted samples says nothing; on the held-out ones it does
    cal = _calib(16, seed=3)
    ev = Evaluator(_mlp(hidden=16).SerializeToString(), None, None, False, (0.0, 0.5), 1, 1, "wanda", 0, cal, 1,
                   True, True, 0.25)
    assert ev.stats is not None and ev.stats.n_samples == 12
    assert ev.calib.feeds["x"].shape[0] == 4
    assert not _rows(ev.calib.feeds["x"]) & _rows(ev.fit_calib.feeds["x"])
    pruned = ev.pruned_proto((1,))
    ref = session(_mlp(hidden=16)).run(None, ev.fit_calib.feeds)
    on_fit = _fidelity(ref, session(pruned).run(None, ev.fit_calib.feeds), None)
    ref = session(_mlp(hidden=16)).run(None, ev.calib.feeds)
    on_held = _fidelity(ref, session(pruned).run(None, ev.calib.feeds), None)
    got = ev.evaluate((1,))
    assert got.loss == pytest.approx(on_held.loss, abs=1e-9)
    assert on_fit.loss < 0.5 * on_held.loss  # the fitted samples flatter the refit
    # without a held-out share the fitted samples are the scored ones
    same = Evaluator(_mlp(hidden=16).SerializeToString(), None, None, False, (0.0, 0.5), 1, 1, "wanda", 0, cal, 1,
                     True, True, 0.0)
    assert same.calib is same.fit_calib and same.stats.n_samples == 16


def _mlp2(seed: int = 0) -> onnx.ModelProto:
    """x[16] -> Gemm 32 -> Relu -> Gemm 32 -> Relu -> Gemm 4: two prunable hidden groups."""
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal(s) / np.sqrt(s[1])).astype(np.float32) for s in ((32, 16), (32, 32), (4, 32))]
    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(ws)]
    inits += [numpy_helper.from_array(rng.standard_normal(len(w)).astype(np.float32) * 0.1, f"b{i}")
              for i, w in enumerate(ws)]
    nodes = [helper.make_node("Gemm", ["x", "w0", "b0"], ["h0"], name="fc0", transB=1),
             helper.make_node("Relu", ["h0"], ["a0"], name="act0"),
             helper.make_node("Gemm", ["a0", "w1", "b1"], ["h1"], name="fc1", transB=1),
             helper.make_node("Relu", ["h1"], ["a1"], name="act1"),
             helper.make_node("Gemm", ["a1", "w2", "b2"], ["y"], name="fc2", transB=1)]
    g = helper.make_graph(nodes, "mlp2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _mlp_search(tmp_path, monkeypatch, greedy=None, **kw):
    """A search on the MLP whose end-to-end latency is its MACs share and whose layer tables are its
    layers' sizes (no timer noise, so a busy machine cannot change what is feasible)."""

    def fake_measure(self, configs, repeat):
        return [10.0] + [10.0 * (0.1 + 0.9 * self.lat.macs_params(self.space.removed(c))[0] / self.lat.full_macs)
                         for c in configs]

    def fake_layer_times(self, models, repeat, warmup):  # a layer's time is its weights' size
        return [0.01 + 1e-4 * sum(int(np.prod(t.dims)) for t in m.graph.initializer) for m, _ in models]

    monkeypatch.setattr(_Search, "_measure", fake_measure)
    monkeypatch.setattr(LatencyModel, "_time_models", fake_layer_times)
    if greedy is not None:
        monkeypatch.setattr(_Search, "greedy", greedy)
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp2(), path)
    cal = tmp_path / "calib.npz"
    np.savez(cal, x=_calib(64).feeds["x"])
    opts = SearchOptions(calib=str(cal), criterion="wanda", reconstruct=True, cache_dir=str(tmp_path / "c"),
                         levels=(0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75), **{**FAST, **kw})
    return path, cal, search(path, opts)


def test_a_worse_candidate_never_beats_the_uniform_one_at_equal_latency(tmp_path, monkeypatch):
    def bad_greedy(self, start=None):
        # a "search" that proposes only a lopsided cut: fast enough, but it ruins one layer
        assert self.space.n_groups == 2
        self.evaluate([(self.space.n_levels - 1, 0)], "greedy", "search: greedy")

    path, cal, res = _mlp_search(tmp_path, monkeypatch, bad_greedy, target_latency="0.6x")
    assert res.met
    uni = [c for c in res.candidates if c.source == "uniform" and c.measured_ratio is not None
           and c.measured_ratio <= 0.6 * (1 + LATENCY_SLACK)]
    assert uni, "the uniform configurations around the target are measured"
    lopsided = next(c for c in res.candidates if c.source == "greedy")
    assert lopsided.predicted_ms <= res.targets["latency_ms_predicted"]  # it was a feasible proposal
    assert lopsided.loss > min(c.loss for c in uni)
    assert res.best.loss <= min(c.loss for c in uni) + 1e-12
    assert len(set(res.best.config)) == 1  # the uniform configuration won, not the lopsided one
    # and it is written exactly as `onnxprune prune --ratio` writes it, from every calibration sample
    ratio = res.space.levels[res.best.config[0]]
    ref = prune(str(path), ratio=ratio, round_to=1, criterion="wanda", reconstruct=True, calibration=str(cal),
                calib_samples=64).proto
    x = _calib(64, seed=9).feeds["x"]
    a, b = session(ref).run(None, {"x": x})[0], session(res.proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_search_lands_within_the_window_and_keeps_uniforms_fidelity(tmp_path, monkeypatch):
    path, cal, res = _mlp_search(tmp_path, monkeypatch, target_latency="0.6x", steps=6)
    assert res.met and res.best.measured_ratio <= 0.6 * (1 + LATENCY_SLACK)
    window = [c for c in res.candidates if c.measured_ratio is not None
              and 0.6 * (1 - RELAX_BELOW) <= c.measured_ratio <= 0.6 * (1 + LATENCY_SLACK)]
    # the choice lands in the window, or is faster and more faithful than everything measured there
    assert res.best in window or res.best.loss < min((c.loss for c in window), default=float("inf"))
    assert all(res.best.loss <= c.loss for c in res.candidates if c.measured_ratio is not None
               and c.measured_ratio <= 0.6 * (1 + LATENCY_SLACK))
    uni = [c for c in res.candidates if c.source == "uniform" and c.measured_ratio is not None
           and c.measured_ratio <= res.best.measured_ratio]
    assert uni and res.best.loss <= min(c.loss for c in uni) + 1e-12


def test_a_lucky_timing_is_confirmed_before_it_is_chosen(tmp_path, monkeypatch):
    seen: set = set()

    def lucky_once(self, configs, repeat):
        out = [10.0]
        for c in configs:
            honest = 10.0 * (0.1 + 0.9 * self.lat.macs_params(self.space.removed(c))[0] / self.lat.full_macs)
            # the first end-to-end timing of a searched candidate comes out far too fast
            lucky = hasattr(self, "_fit_data") and len(set(c)) > 1 and c not in seen
            seen.add(c)
            out.append(0.3 * honest if lucky else honest)
        return out

    path, cal, res = _mlp_search(tmp_path, monkeypatch, target_latency="0.6x", steps=6)
    monkeypatch.setattr(_Search, "_measure", lucky_once)
    refit = _Search._refit_latency
    fitted: list[tuple[float, float]] = []

    def recording_refit(self):
        # what the latency model is refitted to: a timing undone by its second one must not steer
        # the next round, so a candidate timed twice has one row, its second (honest) time
        twice = {c.config for c in self.cands.values() if len(c.measurements) >= 2}
        assert len(self._fit_data[0]) == len(self._fit_data[1]) == len(self._fit_data[2])
        for c, row in self._fit_rows.items():
            if c not in twice:
                continue
            honest = 10.0 * (0.1 + 0.9 * self.lat.macs_params(self.space.removed(c))[0] / self.lat.full_macs)
            fitted.append((self._fit_data[1][row] / self.baseline_ms * 10.0, honest))
        refit(self)

    monkeypatch.setattr(_Search, "_refit_latency", recording_refit)
    opts = SearchOptions(calib=str(cal), criterion="wanda", reconstruct=True, cache_dir=str(tmp_path / "c2"),
                         target_latency="0.6x", levels=res.space.levels, **{**FAST, "steps": 6})
    got = search(path, opts)
    assert got.met and len(got.best.measurements) >= 2
    assert all(t == pytest.approx(h) for t, h in fitted)
    first, last = got.best.measurements[0], got.best.measurements[-1]
    assert got.best.measured_ratio == last <= 0.6 * (1 + LATENCY_SLACK)
    assert last == pytest.approx(first) or last > 3 * first  # decided by the honest timing
    # some lucky timing was caught: a candidate whose second timing undid its first
    assert any(len(c.measurements) >= 2 and c.measurements[0] < 0.5 * c.measurements[-1] for c in got.candidates)
