"""The write path refuses, before any work, outputs that are or alias a file the input reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
import pytest

from models.realworld_like import dynamic_hw_detector
from onnxprune.cli import main


@pytest.fixture
def external_model(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save_model(dynamic_hw_detector(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("command", ["prune", "optimize"])
@pytest.mark.parametrize("target", ["model.onnx.data", "link.onnx", "model.onnx", "sub", "missing/x.onnx"])
def test_destination_that_cannot_or_must_not_be_written_is_refused_first(
        external_model: Path, command: str, target: str, capsys):
    folder = external_model.parent
    os.symlink(external_model, folder / "link.onnx")
    (folder / "sub").mkdir()
    before = _digests(folder)
    rc = main([command, str(external_model), "-o", str(folder / target)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert any(w in err for w in ("refusing to overwrite", "is a folder", "does not exist"))
    assert _digests(folder) == before  # nothing touched, nothing left behind
    assert sorted(p.name for p in folder.iterdir()) == sorted({*before, "sub"})


@pytest.mark.parametrize("report", ["model.onnx", "missing/dir"])
def test_a_report_folder_that_is_a_file_or_has_no_parent_is_refused_first(external_model: Path, report: str,
                                                                         capsys):
    folder = external_model.parent
    before = _digests(folder)
    rc = main(["compare", str(external_model), str(external_model), "--report", str(folder / report)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--report" in err, err
    assert _digests(folder) == before
