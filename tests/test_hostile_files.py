"""Hostile and broken files: each ends with exit code 2 and one line, no output file, and the
input left byte for byte as it was (the table in docs/reliability.md lists these cases)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.hostile_files import CASES, make_case
from onnxprune.cli import main


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["prune", "analyze"])
def test_hostile_file_exit_2_one_line_nothing_written(tmp_path: Path, capsys, case, command):
    bad, word = make_case(case, tmp_path)
    before = _snapshot(tmp_path)
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    argv = [command, str(bad)] + (["-o", str(out)] if command == "prune" else [])
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and word in err and "Traceback" not in err, err
    assert list(out.parent.iterdir()) == []  # no output, no temporary left behind
    after = _snapshot(tmp_path)
    after.pop("out", None)
    assert after == before  # the input (and everything beside it) is unchanged
    if os.name == "posix":
        assert not any(p.name.startswith(".onnxprune-") for p in tmp_path.rglob("*"))
