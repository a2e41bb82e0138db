"""Pruning as search: sensitivity cache, determinism, targets, round_to, strategies, executors, CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from models.zoo import build
from onnxprune import cli
from onnxprune.depgraph import build_depgraph
from onnxprune.errors import UsageError
from onnxprune.graph import load
from onnxprune.profile import profile
from onnxprune.search import SearchOptions, pareto_front, parse_target, search
from onnxprune.sensitivity import SearchSpace, load_calibration
from tests.conftest import assert_valid

FAST = dict(repeat=4, steps=3, top_k=2, population=8, generations=4, calib_samples=4, check_candidates=2,
            sensitivity_ratios=(0.5,), levels=(0.0, 0.25, 0.5, 0.75))


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "resnet_basic.onnx"
    onnx.save(build("resnet_basic"), path)
    return path


def _opts(tmp_path, **kw):
    o = SearchOptions(cache_dir=str(tmp_path / "cache"), **FAST)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_greedy_meets_macs_target_and_is_valid(resnet, tmp_path):
    res = search(resnet, _opts(tmp_path, target_macs="0.5x", round_to=8))
    assert res.met
    assert_valid(res.proto)
    real = profile(load(res.proto))
    assert real.macs <= 0.5 * res.baseline_macs
    assert res.best.fidelity is not None and 0 < res.best.fidelity.cosine <= 1
    # round_to: every kept channel count of a searched group is a multiple of 8 (or the whole group)
    for row in res.group_rows:
        assert row["kept"] == row["channels"] or row["kept"] % 8 == 0
    # the prediction was checked end to end
    assert res.best.measured_ratio is not None and res.best.prediction_error is not None


def test_sensitivity_is_cached_and_search_is_deterministic(resnet, tmp_path):
    stages = []
    a = search(resnet, _opts(tmp_path, target_macs="0.6x", seed=3),
               progress=lambda s, d, n, i: stages.append(s))
    assert not a.sensitivity["from_cache"] and "sensitivity" in stages
    stages.clear()
    b = search(resnet, _opts(tmp_path, target_macs="0.6x", seed=3), progress=lambda s, d, n, i: stages.append(s))
    assert b.sensitivity["from_cache"] and "sensitivity" not in stages
    assert a.best.config == b.best.config
    # another option is another table
    c = search(resnet, _opts(tmp_path, target_macs="0.6x", seed=3, round_to=4))
    assert not c.sensitivity["from_cache"]


def test_evolution_respects_latency_target_prediction(resnet, tmp_path):
    res = search(resnet, _opts(tmp_path, target_latency="0.7x", strategy="evolution", seed=1))
    assert_valid(res.proto)
    # met means measured end to end within the target (the predicted target moves with the measurements)
    assert not res.met or res.best.measured_ratio <= 0.7 * 1.03
    assert {c.source for c in res.candidates} >= {"evolution", "uniform"}
    data = res.as_dict()
    assert data["latency_model"]["table_entries"] > 0
    assert data["prediction_error"]["max"] is not None
    # a Pareto front is non-dominated: latency rises while loss falls
    front = res.pareto()
    assert all(x.predicted_ms <= y.predicted_ms and x.loss > y.loss for x, y in zip(front, front[1:]))


def test_ignore_and_min_channels_are_respected(resnet, tmp_path):
    res = search(resnet, _opts(tmp_path, target_macs="0.7x", ignore=["fc"], min_channels=12))
    dg = build_depgraph(load(resnet), ["fc"])
    searched = {r["group"] for r in res.group_rows}
    assert all(dg.groups[g].n_prunable for g in searched)
    fc_group = [g.id for g in dg.groups if "fc" in g.members]
    assert not set(fc_group) & {r["group"] for r in res.group_rows if r["kept"] < r["channels"]}
    assert all(r["kept"] >= min(12, r["channels"]) for r in res.group_rows)


def test_process_pool_matches_in_process(resnet, tmp_path):
    a = search(resnet, _opts(tmp_path, target_macs="0.6x"))
    b = search(resnet, _opts(tmp_path, target_macs="0.6x", workers=2, cache_dir=str(tmp_path / "other")))
    assert a.best.config == b.best.config
    assert a.best.fidelity.loss == pytest.approx(b.best.fidelity.loss, abs=1e-5)


def test_ray_executor_on_a_local_instance(resnet, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        a = search(resnet, _opts(tmp_path, target_macs="0.6x"))
        b = search(resnet, _opts(tmp_path, target_macs="0.6x", workers=2, executor="ray",
                                 cache_dir=str(tmp_path / "ray")))
        assert a.best.config == b.best.config
    finally:
        ray.shutdown()


def test_search_space_levels_follow_round_to():
    dg = build_depgraph(load(build("mobilenet_v2")))
    sp = SearchSpace(dg, (0.0, 0.3, 0.6), round_to=8, min_channels=8)
    for i, g in enumerate(sp.groups):
        grp = dg.groups[g]
        for per_level in sp.removal[i]:
            for s in np.unique(grp.strata):
                n = int((grp.strata == s).sum())
                kept = n - int(np.isin(grp.channels[grp.strata == s], per_level).sum())
                assert kept == n or (kept % 8 == 0 and kept >= 8)


def test_calibration_folder_and_labels(resnet, tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    rng = np.random.default_rng(0)
    sess_in = onnx.load(resnet).graph.input[0]
    shape = [d_.dim_value or 1 for d_ in sess_in.type.tensor_type.shape.dim]
    np.savez(d / "part0.npz", **{sess_in.name: rng.standard_normal([3, *shape[1:]]).astype(np.float32),
                                "labels": np.array([1, 2, 3])})
    np.save(d / f"{sess_in.name}.npy", rng.standard_normal([2, *shape[1:]]).astype(np.float32))
    with pytest.raises(UsageError, match="3 labels for 5 samples"):
        load_calibration(d, [sess_in.name], max_samples=10)
    np.save(tmp_path / "labels.npy", np.arange(5))
    (d / f"{sess_in.name}.npy").unlink()
    np.savez(d / "part1.npz", x=rng.standard_normal([2, *shape[1:]]).astype(np.float32), labels=np.array([4, 5]))
    cal = load_calibration(d, [sess_in.name], max_samples=10)
    assert cal.feeds[sess_in.name].shape[0] == 5 and list(cal.labels) == [1, 2, 3, 4, 5]
    cal = load_calibration(d, [sess_in.name], max_samples=4, labels_path=tmp_path / "labels.npy")
    assert cal.feeds[sess_in.name].shape[0] == 4 and list(cal.labels) == [0, 1, 2, 3]
    res = search(resnet, _opts(tmp_path, target_macs="0.7x", calib=str(d), labels=str(tmp_path / "labels.npy"),
                               calib_samples=4))
    assert res.best.fidelity.accuracy is not None and "4 samples" in res.calibration


def test_targets_parse():
    assert parse_target("0.5x", "latency", "ms") == ("ratio", 0.5)
    assert parse_target("12ms", "latency", "ms") == ("abs", 12.0)
    assert parse_target("1.5G", "macs") == ("abs", 1.5e9)
    for bad in ("fast", "1.5x", "0x", "-3ms"):
        with pytest.raises(UsageError):
            parse_target(bad, "latency", "ms")


def test_pareto_front_drops_dominated():
    from onnxprune.search import Candidate
    from onnxprune.sensitivity import Fidelity

    cs = [Candidate((i,), "greedy", ms, 0, 0, Fidelity(loss, 1 - loss, 0.0)) for i, (ms, loss) in
          enumerate([(1.0, 0.5), (2.0, 0.2), (1.5, 0.6), (3.0, 0.1), (2.5, 0.3)])]
    assert [c.config[0] for c in pareto_front(cs)] == [0, 1, 3]


@pytest.mark.parametrize("argv, fragment", [
    (["--target-latency", "fast"], "--target-latency fast"),
    ([], "give a target"),
    (["--target-macs", "0.5x", "--strategy", "annealing"], "invalid choice"),
    (["--target-macs", "0.5x", "--round-to", "0"], "--round-to"),
    (["--target-macs", "0.5x", "--ep", "nonesuch"], "unknown execution provider"),
    (["--target-macs", "0.5x", "--calib", "/nonexistent/dir"], "not a folder"),
    (["--target-macs", "0.5x", "--address", "ray://x:1"], "--address needs --executor ray"),
    (["--target-macs", "0.5x", "--max-ratio", "1.5"], "--max-ratio"),
])
def test_cli_errors_are_one_line_exit_2(resnet, tmp_path, capsys, argv, fragment):
    out = tmp_path / "o.onnx"
    with pytest.raises(SystemExit) if "invalid choice" in fragment else _nullctx():
        rc = cli.main(["search", str(resnet), "-o", str(out), "--cache-dir", str(tmp_path / "c"), *argv])
        assert rc == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and (len(err.splitlines()) == 1 or "invalid choice" in fragment)
    assert not out.exists()


def test_cli_refuses_to_overwrite_input(resnet, capsys):
    rc = cli.main(["search", str(resnet), "-o", str(resnet), "--target-macs", "0.5x"])
    assert rc == 2 and "refusing to overwrite" in capsys.readouterr().err


def test_cli_end_to_end_with_report(resnet, tmp_path, capsys):
    out, rep = tmp_path / "s.onnx", tmp_path / "rep"
    rc = cli.main(["search", str(resnet), "-o", str(out), "--target-macs", "0.6x", "--round-to", "8",
                   "--sensitivity-ratios", "0.5", "--calib-samples", "4", "--cache-dir", str(tmp_path / "c"),
                   "--report", str(rep), "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["met"] and data["best"]["macs"] <= data["targets"]["macs"]
    assert_valid(onnx.load(out))
    saved = json.loads((rep / "search.json").read_text())
    assert saved["pareto_latency"] and saved["pareto_macs"] and saved["groups"]
    assert (rep / "pareto.png").stat().st_size > 0
    md = (rep / "report.md").read_text()
    assert "| MACs |" in md and "## Per-group ratios chosen" in md and "## What stays frozen" in md
    for g in saved["groups"]:  # every searched group with its channels and what was kept
        assert f"| {g['group']} | {g['channels']} | {g['kept']} | {g['ratio']:.3f} |" in md
    assert data["written"]["report"] == str(rep / "report.md")
    pytest.importorskip("markdown")
    page = (rep / "report.html").read_text()
    assert "<table>" in page and page.count("data:image/png;base64,") >= 1 and 'src="pareto.png"' not in page


def test_budget_stops_and_returns_best_so_far(resnet, tmp_path):
    res = search(resnet, _opts(tmp_path, target_macs="0.3x", budget_minutes=0.001))
    assert res.stopped_early
    assert_valid(res.proto)


class _nullctx:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_module_entry_point_with_worker_processes(resnet, tmp_path):
    """`python -m onnxprune search --workers 2`: spawned workers must not run the CLI again."""
    import subprocess
    import sys

    out = tmp_path / "w.onnx"
    cp = subprocess.run([sys.executable, "-m", "onnxprune", "search", str(resnet), "-o", str(out), "--target-macs",
                         "0.6x", "--workers", "2", "--sensitivity-ratios", "0.5", "--calib-samples", "4",
                         "--cache-dir", str(tmp_path / "c"), "--json"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr[-500:]
    assert json.loads(cp.stdout)["met"] and out.exists()
