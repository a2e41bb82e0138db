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


def _readme_commands() -> list[list[str]]:
    """Every ``onnxprune ...`` line of README's bash blocks, continuation lines joined, comments dropped."""
    import shlex

    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.+?)\n```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["onnxprune"]:
                cmds.append(argv[1:])
    return cmds


def test_every_readme_command_parses():
    """A flag renamed in the code (or mistyped in README) fails here, not on a reader's machine."""
    from onnxprune.cli import build_parser

    cmds = _readme_commands()
    assert len(cmds) >= 20
    parser = build_parser()
    for argv in cmds:
        try:
            parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"README command does not parse: onnxprune {' '.join(argv)}") from None


# what a command needs that the bundled 8x8 digits model cannot give, or what takes minutes
_NOT_RUN_VERBS = {"demo": "its own tests in test_io_and_cli.py", "heal": "PyTorch and minutes (test_heal.py)",
                  "search": "minutes (test_search.py)", "run": "a recipe over a committed export (test_pass_infra.py)"}
_NOT_RUN_ARGS = {"--input-shape": "sizes for a 224x224 RGB model", "--heal": "PyTorch and minutes",
                 "cpu,cuda": "a GPU", "exported/": "an optimum-cli folder (test_io_and_cli.py)",
                 "healed.onnx": "what heal writes"}


def test_readme_commands_run_on_the_bundled_model(tmp_path: Path, monkeypatch, capsys):
    """The "Use it" commands as a reader copies them, in README's order, with `model.onnx`,
    `calib/`, `test/` and `labels.npy` standing for the bundled digits CNN and its data."""
    import shutil

    import numpy as np

    from onnxprune.cli import main

    data = ROOT / "onnxprune" / "data"
    shutil.copy(data / "digits_cnn.onnx", tmp_path / "model.onnx")
    (tmp_path / "calib").mkdir()
    shutil.copy(data / "digits_calib.npz", tmp_path / "calib" / "digits.npz")
    (tmp_path / "test").mkdir()
    with np.load(data / "digits_test.npz") as z:
        np.save(tmp_path / "test" / "input.npy", z["input"])
        np.save(tmp_path / "labels.npy", z["labels"])
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in _readme_commands():
        if argv[0] in _NOT_RUN_VERBS or any(a in _NOT_RUN_ARGS for a in argv):
            continue
        if argv[0] in ("compare", "bench") or "--measure" in argv:
            argv = [*argv, "--repeat", "3"]  # timing is not what is tested here
        target = tmp_path / argv[argv.index("-o") + 1] if "-o" in argv else None
        before = target.read_bytes() if target is not None and target.is_file() else None
        rc = main(argv)
        out = capsys.readouterr()
        if rc == 4 and any("verify:min_cosine" in a for a in argv):  # the gate README says it is: nothing written
            assert "below min_cosine" in out.err
            assert (target.read_bytes() if target.is_file() else None) == before
        else:
            assert rc == 0, f"onnxprune {' '.join(argv)} -> {rc}: {out.err[-400:]}"
        ran.append(argv[0])
    assert {"analyze", "prune", "profile", "compare", "passes", "optimize", "eval"} <= set(ran)
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "clean.onnx").is_file()
