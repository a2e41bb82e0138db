"""README's two set-up commands stay true: CI runs the test command exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Start here")
    return re.findall(r"```bash\n(.+?)\n```", text[start:], flags=re.S)[:2]


def test_readme_starts_with_two_setup_commands():
    main_job, tests = _commands()
    assert main_job == "pip install . && onnxprune demo"
    assert tests == "pip install -e '.[test]' && pytest"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _commands()[1] in ci


def test_demo_model_ships_with_the_package():
    toml = (ROOT / "pyproject.toml").read_text()
    assert '"onnxprune.data" = ["*.onnx", "*.npz"]' in toml
    data = ROOT / "onnxprune" / "data"
    assert sum((data / n).stat().st_size for n in ("digits_cnn.onnx", "digits_calib.npz", "digits_test.npz")) < 2_000_000
    for name in ("digits_cnn.onnx", "digits_calib.npz", "digits_test.npz"):  # the demo runs on the trained model
        assert (data / name).read_bytes() == (ROOT / "models" / "trained" / name).read_bytes()
