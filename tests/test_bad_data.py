"""Bad calibration data and impossible input sizes: exit 2 and one line naming the cause, nothing written.

Calibration refuses non-finite values rather than skipping them: one NaN in an input spreads to
every statistic and, through the least-squares refit, into the written weights, so a sample with
NaN or Inf is an error the user has to see (the message names the file, the key and the count).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from models import realworld_like as R
from onnxprune.cli import main

CALIBRATED = ["--ratio", "0.5", "--criterion", "wanda", "--reconstruct", "--calib-samples", "8"]


def _refused(capsys, argv: list[str], out: Path, *words: str) -> None:
    rc = main(argv)
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("onnxprune")]
    assert rc == 2, err
    assert len(err) == 1 and "internal error" not in err[0], err
    for w in words:
        assert w in err[0], err[0]
    assert not out.exists()
    assert not list(out.parent.glob(".onnxprune-*"))


@pytest.fixture
def detector(tmp_path: Path) -> Path:
    path = tmp_path / "det.onnx"
    onnx.save(R.dynamic_hw_detector(), path)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_calibration_values_are_refused(tmp_path: Path, detector: Path, capsys, bad: float):
    data = tmp_path / "calib"
    data.mkdir()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.save(data / "a.npy", x)
    x[1, 2, 3, 4] = bad
    np.save(data / "b.npy", x)
    out = tmp_path / "out.onnx"
    _refused(capsys, ["prune", str(detector), "-o", str(out), "--calib", str(data), *CALIBRATED], out,
             "b.npy", "1 of", "NaN or infinite")


def test_pickled_object_arrays_are_never_loaded(tmp_path: Path, detector: Path, capsys):
    f = tmp_path / "calib.npz"
    np.savez(f, images=np.array([{"not": "an image"}], dtype=object))
    out = tmp_path / "out.onnx"
    _refused(capsys, ["prune", str(detector), "-o", str(out), "--calib", str(f), *CALIBRATED], out,
             "calib.npz", "pickled")


def test_inputs_with_different_sample_counts_are_refused(tmp_path: Path, capsys):
    model = tmp_path / "bert.onnx"
    onnx.save(R.bert_like(), model)
    f = tmp_path / "calib.npz"
    np.savez(f, input_ids=np.ones((4, 12), np.int64), attention_mask=np.ones((2, 12), np.int64),
             token_type_ids=np.zeros((4, 12), np.int64))
    out = tmp_path / "out.onnx"
    _refused(capsys, ["prune", str(model), "-o", str(out), "--calib", str(f), *CALIBRATED], out,
             "different numbers of samples", "'attention_mask' 2")


@pytest.mark.parametrize("shape, words", [
    ("images:1,3,0,32", ("at least 1",)),
    ("images:1,3,-32,32", ("at least 1",)),
    ("images:1,3,900000,900000", ("elements",)),
    ("images:1,4,32,32", ("axis 1", "fixes at 3")),
    ("images:1,3,32", ("3 dimensions",)),
    ("pictures:1,3,32,32", ("not a graph input",)),
])
def test_impossible_input_shapes_are_refused_before_any_work(tmp_path: Path, detector: Path, capsys,
                                                            shape: str, words: tuple[str, ...]):
    out = tmp_path / "out.onnx"
    _refused(capsys, ["prune", str(detector), "-o", str(out), "--ratio", "0.3", "--input-shape", shape], out, *words)


def test_a_clean_folder_still_calibrates(tmp_path: Path, detector: Path, capsys):
    data = tmp_path / "calib"
    data.mkdir()
    np.save(data / "a.npy", np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    out = tmp_path / "out.onnx"
    assert main(["prune", str(detector), "-o", str(out), "--calib", str(data), *CALIBRATED]) == 0
    w = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    assert all(np.isfinite(v).all() for v in w.values() if v.dtype.kind == "f")


# ------------------------------------------------------------------------------ interruption


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("delay", [0.3, 0.6, 1.2, 2.4])  # after the interpreter itself started
def test_a_signal_at_any_moment_leaves_nothing_behind(tmp_path: Path, detector: Path, sig: str, delay: float):
    import os
    import signal
    import subprocess
    import sys
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "small.onnx"
    env = dict(os.environ, TMPDIR=str(tmp))
    argv = [sys.executable, "-m", "onnxprune", "prune", str(detector), "-o", str(out), "--ratio", "0.5",
            "--criterion", "wanda", "--calib", "random", "--reconstruct", "--check"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(delay)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 130, 143, -2, -15) or proc.returncode == 2, (proc.returncode, err)
    assert not list(out_dir.glob(".onnxprune-*")), "temporary folder left beside the output"
    # onnxruntime keeps a session-id file (.ses) in the temp folder on import; the rest is ours
    assert not [p for p in tmp.iterdir() if p.name != ".ses"], "files left in the temporary folder"
    if out.exists():  # written means complete and valid, and the message says so
        onnx.checker.check_model(str(out), full_check=True)
        assert proc.returncode == 0 or "already written" in err, err
    else:
        assert proc.returncode != 0 and "nothing was written" in err or proc.returncode < 0, err
