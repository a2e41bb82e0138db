"""Loading, saving and the console tool as a user runs it: good paths and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxprune.passes import ChannelPruning

from models.zoo import ZOO
from onnxprune import verify
from onnxprune.cli import main
from onnxprune.errors import ModelLoadError, ModelSaveError, UnsupportedModelError
from onnxprune.io import load_proto, save_proto

from .conftest import assert_valid


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    p = tmp_path / "resnet.onnx"
    onnx.save_model(ZOO["resnet_basic"](), str(p))
    return p


def _digest(p: Path) -> bytes:
    return p.read_bytes()


# ----------------------------------------------------------------------------- io
def test_external_data_round_trip(tmp_path: Path):
    model = ZOO["vgg_like"]()
    src = tmp_path / "ext.onnx"
    onnx.save_model(model, str(src), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    loaded = load_proto(src)
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    save_proto(loaded, out, external=True)
    assert (out.parent / "model.onnx.data").exists()
    sess_a, sess_b = verify.session(str(src)), verify.session(str(out))
    feeds = verify.make_feeds(sess_a)
    np.testing.assert_array_equal(verify.run(sess_a, feeds)[0], verify.run(sess_b, feeds)[0])


def test_external_data_outside_folder_is_refused(tmp_path: Path):
    model = ZOO["vgg_like"]()
    inner = tmp_path / "inner"
    inner.mkdir()
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="w.data", size_threshold=0)
    # a copy one folder down whose data reference climbs out of its folder
    m = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../w.data"
    onnx.save_model(m, str(inner / "m.onnx"))
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load_proto(inner / "m.onnx")


def test_missing_external_data_names_the_file(tmp_path: Path):
    onnx.save_model(ZOO["vgg_like"](), str(tmp_path / "m.onnx"), save_as_external_data=True,
                    location="w.data", size_threshold=0)
    (tmp_path / "w.data").unlink()
    with pytest.raises(ModelLoadError, match="w.data"):
        load_proto(tmp_path / "m.onnx")


def test_unsupported_opset(tmp_path: Path):
    m = ZOO["vgg_like"]()
    m.opset_import[0].version = 6
    with pytest.raises(UnsupportedModelError, match="opset 6"):
        load_proto(m)


def test_save_refuses_to_overwrite_input(model_path: Path):
    with pytest.raises(ModelSaveError, match="overwrite"):
        save_proto(onnx.load(str(model_path)), model_path, protect=(model_path,))


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch):
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous")

    def boom(model, f, *a, **k):  # the disk fills up half way through the file
        f.write(b"\x08\x08" * 100)
        raise OSError(28, "No space left on device")

    import onnxprune.wire

    monkeypatch.setattr(onnx, "save_model", boom)
    monkeypatch.setattr(onnxprune.wire, "write_model", boom)
    with pytest.raises(ModelSaveError, match="No space left"):
        save_proto(ZOO["vgg_like"](), target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]  # no temp folder left behind


# ---------------------------------------------------------------------------- cli
def test_cli_prune_writes_valid_smaller_model_and_keeps_input(model_path: Path, capsys):
    before = _digest(model_path)
    out = model_path.with_name("small.onnx")
    rc = main(["prune", str(model_path), "-o", str(out), "--ratio", "0.5", "--round-to", "4", "--check"])
    assert rc == 0
    assert _digest(model_path) == before
    pruned = onnx.load(str(out))
    assert_valid(pruned)
    assert out.stat().st_size < model_path.stat().st_size * 0.6
    text = capsys.readouterr().out
    assert "params" in text and "MACs" in text and "cosine similarity" in text
    convs = [i for i in pruned.graph.initializer if len(i.dims) == 4]
    assert all(i.dims[0] % 4 == 0 or i.dims[0] == 10 for i in convs)


def test_cli_prune_json(model_path: Path, capsys):
    out = model_path.with_name("small.onnx")
    assert main(["prune", str(model_path), "-o", str(out), "--ratio", "0.3", "--json", "--check"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["macs_after"] < data["macs_before"]
    assert data["check"][0]["cosine"] > 0


def test_cli_analyze_json_lists_groups_and_barriers(model_path: Path, capsys):
    assert main(["analyze", str(model_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prunable_macs_share"] >= 0.95
    assert any(g["status"] == "barrier" for g in data["groups"])
    assert any("graph output" in b["reason"] for b in data["barriers"])


def test_cli_analyze_table(model_path: Path, capsys):
    assert main(["analyze", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "prunable:" in out and "barriers" in out


def test_cli_ignore_keeps_layer(model_path: Path):
    out = model_path.with_name("small.onnx")
    assert main(["prune", str(model_path), "-o", str(out), "--ignore", "conv1"]) == 0
    orig = {i.name: tuple(i.dims) for i in onnx.load(str(model_path)).graph.initializer}
    new = {i.name: tuple(i.dims) for i in onnx.load(str(out)).graph.initializer}
    stem = [n for n in orig if n.startswith(("conv1.", "bn1.")) and n in new]
    assert stem and all(orig[n] == new[n] for n in stem)


@pytest.mark.parametrize(
    "setup,message",
    [
        ("missing", "no such file"),
        ("text", "not"),
        ("truncated", "not"),
        ("folder", "folder"),
    ],
)
def test_cli_bad_input_exit_2_one_line_no_output(tmp_path: Path, model_path: Path, capsys, setup, message):
    bad = tmp_path / "bad.onnx"
    if setup == "text":
        bad.write_text("this is not a model\n" * 10)
    elif setup == "truncated":
        data = model_path.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    elif setup == "folder":
        bad.mkdir()
    out = tmp_path / "out.onnx"
    rc = main(["prune", str(bad), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_cli_refuses_same_output_as_input(model_path: Path, capsys):
    before = _digest(model_path)
    assert main(["prune", str(model_path), "-o", str(model_path)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert _digest(model_path) == before


def test_cli_bad_ratio(model_path: Path, capsys):
    assert main(["prune", str(model_path), "-o", str(model_path.with_name("x.onnx")), "--ratio", "1.5"]) == 2
    assert "--ratio" in capsys.readouterr().err


def test_cli_bad_input_shape(model_path: Path, capsys):
    rc = main(["analyze", str(model_path), "--input-shape", "nosuch:1,3"])
    assert rc == 2 and "not a graph input" in capsys.readouterr().err


def test_cli_input_shape_fixes_batch(model_path: Path, capsys):
    assert main(["analyze", str(model_path), "--input-shape", "input:4,3,32,32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] > 0


def test_cli_demo_runs_from_any_folder(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--repeat", "3", "--batch", "16", "--no-heal"]) == 0
    out = capsys.readouterr().out
    for word in ("params", "MACs", "file size", "latency", "agreement", "test accuracy", "the same on your model"):
        assert word in out
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    # the trained model keeps its accuracy: the row shows the change in points
    row = next(line for line in out.splitlines() if "test accuracy" in line)
    change = float(row.split("(")[-1].split(")")[0])
    assert -1.5 <= change <= 0.5


def test_cli_demo_on_your_own_model(tmp_path: Path, capsys):
    trained = Path(__file__).resolve().parent.parent / "models" / "trained"
    out = tmp_path / "mine-pruned.onnx"
    assert main(["demo", "--model", str(trained / "digits_vit.onnx"), "--calib", str(trained / "digits_calib.npz"),
                 "--data", str(trained / "digits_test.npz"), "--no-heal", "--repeat", "3", "--batch", "16",
                 "-o", str(out), "--target-macs", "0.7x"]) == 0
    text = capsys.readouterr().out
    assert "your model" in text and "test accuracy" in text and out.is_file()
    assert main(["demo", "--model", str(trained / "digits_vit.onnx")]) == 2
    assert "needs --calib" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "onnxprune" in capsys.readouterr().out


def test_channel_pruning_pass():
    from onnxprune.graph import load

    model = load(ZOO["resnet_bottleneck"]())
    before = sum(np.prod(t.shape) for t in model.graph.tensors().values() if t.__class__.__name__ == "Constant")
    # the zoo's layers are a few blocks wide: in the default blocks of 16 many could not shrink by half
    result = ChannelPruning(ratio=0.5, round_to=8)(model)
    assert result.modified
    after = sum(np.prod(t.shape) for t in result.model.graph.tensors().values() if t.__class__.__name__ == "Constant")
    assert after < before * 0.5
    assert_valid(result.model.to_proto())


def test_console_script_is_declared():
    text = Path(__file__).resolve().parent.parent.joinpath("pyproject.toml").read_text()
    assert 'onnxprune = "onnxprune.console:main"' in text
    assert shutil.which("onnxprune") is None or os.access(shutil.which("onnxprune"), os.X_OK)


def test_large_model_path_uses_external_data(tmp_path: Path, monkeypatch, capsys):
    """Models over the protobuf limit take the external-data route end to end.

    The threshold is lowered so a small model exercises the same code as a >2 GB one: validation
    through a file on disk, and the output written as model + data file beside it.
    """
    import onnxprune.io as io_mod

    monkeypatch.setattr(io_mod, "EXTERNAL_DATA_THRESHOLD", 10_000)
    src = tmp_path / "big.onnx"
    onnx.save_model(ZOO["resnet_basic"](), str(src), save_as_external_data=True,
                    location="big.onnx.data", size_threshold=0)
    out = tmp_path / "big-pruned.onnx"
    assert main(["prune", str(src), "-o", str(out), "--ratio", "0.5", "--check"]) == 0
    assert (tmp_path / "big-pruned.onnx.data").exists()
    assert out.stat().st_size < 50_000  # weights live in the data file
    onnx.checker.check_model(str(out), full_check=True)
    assert "cosine similarity" in capsys.readouterr().out


# ------------------------------------------------------------------------------ --measure
def test_prune_measure_reports_the_latency_ratio_beside_the_macs_ratio(model_path: Path, tmp_path: Path, capsys):
    out = tmp_path / "small.onnx"
    assert main(["prune", str(model_path), "-o", str(out), "--ratio", "0.5", "--round-to", "1", "--measure",
                 "--repeat", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    lat = data["latency"]
    assert lat["provider"] == "CPUExecutionProvider" and lat["repeat"] == 3 and lat["batch"] == 1
    assert lat["original_ms"] > 0 and lat["pruned_ms"] > 0
    assert lat["ratio"] == pytest.approx(lat["pruned_ms"] / lat["original_ms"])
    assert lat["macs_ratio"] == pytest.approx(data["macs_after"] / data["macs_before"])


@pytest.mark.parametrize("pruned_ms, expect", [(12.0, "slower than the original"), (9.5, "eat the saving"),
                                               (3.0, None)])
def test_prune_measure_warns_when_the_model_does_not_get_faster_with_its_macs(
        model_path: Path, tmp_path: Path, capsys, monkeypatch, pruned_ms, expect):
    from onnxprune import cli
    from onnxprune.bench import LatencyResult

    def timed(models, feeds, **kw):  # noqa: ANN001, ANN003 - a stand-in for the timing loop
        assert len(models) == 2 and kw["repeat"] == 5
        return LatencyResult([np.full(5, 10.0), np.full(5, pruned_ms)])

    monkeypatch.setattr(cli, "interleaved_latency", timed)
    out = tmp_path / "small.onnx"
    assert main(["prune", str(model_path), "-o", str(out), "--ratio", "0.5", "--measure", "--repeat", "5"]) == 0
    text = capsys.readouterr().out
    assert "ratio" in text and f"{pruned_ms / 10:.3f}" in text
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    if expect is None:
        assert not warnings
    else:
        assert len(warnings) == 1 and expect in " ".join(text.split())


def test_prune_measure_refuses_bad_options_before_any_work(model_path: Path, tmp_path: Path, capsys):
    out = tmp_path / "small.onnx"
    assert main(["prune", str(model_path), "-o", str(out), "--measure", "--repeat", "1"]) == 2
    assert "--repeat" in capsys.readouterr().err and not out.exists()


def test_data_file_scan_sees_a_marker_across_a_chunk_boundary(tmp_path: Path):
    from onnxprune.io import _may_name_external_data, model_files

    p = tmp_path / "m.bin"
    p.write_bytes(b"x" * 5 + b"location" + b"y" * 7)
    for chunk in (1, 3, 6, 9, 64):
        assert _may_name_external_data(p, chunk=chunk)
    p.write_bytes(b"locatio" + b"n" * 0 + b"-" + b"ocation")
    assert not _may_name_external_data(p, chunk=4)
    # a model with external data still lists its data file; one with inline weights is not parsed
    ext = tmp_path / "ext.onnx"
    onnx.save_model(ZOO["vgg_like"](), str(ext), save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert model_files(ext) == [ext, tmp_path / "ext.bin"]
    inline = tmp_path / "inline.onnx"
    onnx.save_model(ZOO["vgg_like"](), str(inline))
    assert model_files(inline) == [inline]


def test_shape_probe_measures_what_the_model_computes_without_its_weights():
    """Run-time shapes come from a probe whose large float weights are zeros made at run time:
    every tensor has the shape the real model gives it, and the probe is a fraction of the size."""
    from onnxprune.feeds import plan_feeds
    from onnxprune.io import infer_static_shapes, shape_probe

    path = Path(__file__).resolve().parent.parent / "models" / "exports" / "vit_mha_tiny_legacy.onnx"
    m = onnx.load(str(path))
    plan = plan_feeds(m, {}, runnable=str(path))
    shapes = infer_static_shapes(m, plan.shapes(), feeds=plan)
    typed = onnx.shape_inference.infer_shapes(m)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in typed.graph.value_info}
    outs = [(o, types[o]) for n in m.graph.node for o in n.output if types.get(o)]
    full = onnx.ModelProto()
    full.CopyFrom(m)
    full.graph.output.extend(onnx.helper.make_tensor_value_info(o, t, None) for o, t in outs)
    sess = verify.session(full)
    real = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, plan.make(seed=0))))
    assert len(real) > 300
    assert all(tuple(shapes[k]) == v.shape for k, v in real.items())
    probe = shape_probe(m, outs)
    assert len(probe.SerializeToString()) < 0.25 * path.stat().st_size
    got = verify.session(probe).run(None, plan.make(seed=0))
    assert [g.shape for g in got[1:]] == [real[o].shape for o, _ in outs]


def test_output_as_a_second_argument_like_onnxsim(tmp_path: Path, capsys):
    src = Path(__file__).resolve().parent.parent / "models" / "trained" / "digits_cnn.onnx"
    out = tmp_path / "small.onnx"
    assert main(["prune", str(src), str(out), "--ratio", "0.3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == str(out) and out.is_file()
    assert main(["optimize", str(src), str(tmp_path / "clean.onnx")]) == 0
    assert (tmp_path / "clean.onnx").is_file()
    capsys.readouterr()
    assert main(["prune", str(src), str(out), "-o", str(tmp_path / "other.onnx")]) == 2
    assert "two outputs given" in capsys.readouterr().err and not (tmp_path / "other.onnx").exists()


def test_a_model_folder_is_pruned_into_a_copy(tmp_path: Path, capsys):
    import shutil

    src = tmp_path / "exported"
    src.mkdir()
    shutil.copyfile(Path(__file__).resolve().parent.parent / "models" / "trained" / "digits_cnn.onnx", src / "model.onnx")
    (src / "config.json").write_text('{"model_type": "cnn"}')
    (src / "tokenizer.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert main(["prune", str(src), "--ratio", "0.5", "--round-to", "1", "-q"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: nothing on stdout
    out = tmp_path / "exported-pruned"
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert (out / "config.json").read_bytes() == before["config.json"]
    assert (out / "model.onnx").stat().st_size < 0.5 * len(before["model.onnx"])
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # the source folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "exported-pruned"]
    assert main(["prune", str(src), "-o", str(out)]) == 2  # never into a folder that holds files
    assert "exists" in capsys.readouterr().err


def test_demo_without_torch_says_how_to_get_healing(tmp_path: Path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    from importlib import util

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert main(["demo", "--repeat", "3", "--batch", "16"]) == 0
    assert "pip install 'onnxprune[heal]'" in capsys.readouterr().out.replace("\n", " ")


def test_prune_names_each_step_as_it_starts(tmp_path: Path):
    """The CLI's progress line follows these: every long step is named before it runs, in order."""
    from onnxprune import api

    data = Path(__file__).resolve().parent.parent / "onnxprune" / "data"
    seen: list[str] = []
    api.prune(str(data / "digits_cnn.onnx"), target_macs="0.5x", criterion="wanda", reconstruct=True,
              calibration=str(data / "digits_calib.npz"), on_stage=seen.append)
    order = ["loading", "analysing channel dependencies", "reading calibration data", "running the calibration inputs",
             "choosing channels for the target", "removing channels", "reconstructing the next layers",
             "validating (checker, shape inference, onnxruntime)"]
    assert [s for s in seen if s in order] == order
