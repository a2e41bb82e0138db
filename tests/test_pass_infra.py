"""Pass contracts, the fixed-point manager, the registry and plugins, optimize(), CLI, recipes."""

from __future__ import annotations

import json
import shutil
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnxprune.passes import (
    Cleanup,
    EliminateIdentity,
    FunctionalPass,
    InPlacePass,
    PassError,
    PassManager,
    PassResult,
    available,
    create,
    parse_spec,
)
from onnxprune.passes.registry import ENTRY_POINT_GROUP

import onnxprune
from models.zoo import ZOO
from onnxprune.cli import main
from onnxprune.errors import OnnxPruneError, UsageError
from onnxprune.graph import load

from .passes_helpers import assert_equivalent, make_model

ROOT = Path(__file__).resolve().parent.parent
HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'


def small() -> onnx.ModelProto:
    return make_model(
        HEAD + """g (float[N, 4] x) => (float[N, 4] y) {
            a = Identity (x)
            b = Relu (a)
            y = Identity (b)
        }""",
    )


# ------------------------------------------------------------------------- contracts
class RenameOutput(InPlacePass):
    """Breaks the interface on purpose."""

    name = "rename-output"

    def run(self, model):
        model.graph.outputs[0].name = "renamed"
        return PassResult(model, True)


class NeedsRelu(InPlacePass):
    """Declares a precondition and a postcondition."""

    name = "needs-relu"

    def __init__(self, promise: bool = True) -> None:
        self.promise = promise

    def requires(self, model):
        return None if any(n.op == "Relu" for n in model.graph.nodes) else "the graph has no Relu"

    def ensures(self, model):
        return None if self.promise else "promised nothing"

    def run(self, model):
        return PassResult(model, False)


class Crash(InPlacePass):
    """Raises like a buggy pass."""

    name = "crash"

    def run(self, model):
        raise KeyError("boom")


def test_precondition_and_postcondition_failures_name_the_pass_and_history():
    with pytest.raises(PassError, match=r"pass 'needs-relu' \(after eliminate-identity\): cannot run: the graph has no Relu"):
        onnxprune.optimize(make_model(HEAD + "g (float[N, 4] x) => (float[N, 4] y) { y = Sigmoid (x) }"),
                           [EliminateIdentity(), NeedsRelu()])
    with pytest.raises(PassError, match="broke its postcondition: promised nothing") as err:
        onnxprune.optimize(small(), [NeedsRelu(promise=False)])
    assert err.value.pass_name == "needs-relu" and err.value.history == []
    assert isinstance(err.value, OnnxPruneError)


def test_interface_changes_are_refused():
    with pytest.raises(PassError, match=r"pass 'rename-output' \(after cleanup\): broke the model interface: graph outputs changed"):
        onnxprune.optimize(small(), ["cleanup", RenameOutput()])


def test_exceptions_inside_a_pass_are_wrapped():
    with pytest.raises(PassError, match=r"pass 'crash' \(first pass\): KeyError"):
        onnxprune.optimize(small(), [Crash()])


class AddRelu(FunctionalPass):
    """Appends a Relu to the output (a functional pass: works on a copy)."""

    name = "add-relu"
    preserves_interface = False

    def transform(self, model):
        g = model.graph
        out = g.outputs[0]
        mid = gs.Variable("pre_relu", dtype=out.dtype, shape=out.shape)
        producer = out.inputs[0]
        producer.outputs[0] = mid
        g.nodes.append(gs.Node("Relu", "extra_relu", inputs=[mid], outputs=[out]))
        return True


class MutatingFunctional(FunctionalPass):
    """Claims to be functional but edits its input."""

    name = "mutating"

    def run(self, model):
        model.graph.nodes.pop()
        return PassResult(load(small(), prepare=False), True)


def test_functional_pass_leaves_its_input_alone():
    model = load(small(), prepare=False)
    n = len(model.graph.nodes)
    result = AddRelu()(model)
    assert result.modified and result.model is not model
    assert len(model.graph.nodes) == n and len(result.model.graph.nodes) == n + 1
    with pytest.raises(PassError, match="modified its input model"):
        MutatingFunctional()(load(small(), prepare=False))


class AlwaysChanges(InPlacePass):
    """Reports a change every time (a bug the round bound must stop)."""

    name = "always-changes"

    def __init__(self) -> None:
        self.calls = 0

    def run(self, model):
        self.calls += 1
        return PassResult(model, True)


class Once(AlwaysChanges):
    name = "once"
    repeatable = False


def test_manager_runs_to_a_fixed_point_within_the_bound(caplog):
    looping, once = AlwaysChanges(), Once()
    manager = PassManager([looping, once, EliminateIdentity()], max_rounds=3)
    result = manager(load(small(), prepare=False))
    assert looping.calls == 3 and once.calls == 1
    assert not manager.converged and result.modified
    assert "did not reach a fixed point in 3 rounds; still changing: always-changes" in caplog.text
    settled = PassManager([EliminateIdentity()], max_rounds=5)
    settled(load(small(), prepare=False))
    assert settled.converged and settled.rounds == 2  # one round changing, one confirming
    with pytest.raises(PassError):
        PassManager([EliminateIdentity()], max_rounds=0)


# -------------------------------------------------------------------------- registry
def test_registry_names_and_specs():
    names = set(available())
    assert {"shape-inference", "fold-constants", "fuse-bn", "fuse-affine", "eliminate-identity",
            "eliminate-noops", "remove-dead", "dedup-initializers", "toposort", "cleanup", "cse",
            "channel-pruning", "verify"} <= names
    p = parse_spec("channel-pruning:ratio=0.4:round_to=8:ignore=[\"head*\"]")
    assert (p.ratio, p.round_to, p.ignore) == (0.4, 8, ["head*"])
    with pytest.raises(UsageError, match="unknown pass 'fuse-everything'"):
        create("fuse-everything")
    with pytest.raises(UsageError, match="pass 'cleanup': bad options"):
        parse_spec("cleanup:color=1")
    with pytest.raises(UsageError, match="expected key=value"):
        parse_spec("cleanup:oops")


PLUGIN = '''
from onnxprune.passes import InPlacePass, PassResult


class CountNodes(InPlacePass):
    """Counts nodes (a third-party pass)."""

    name = "count-nodes"

    def run(self, model):
        model.metadata.append(("nodes", str(len(model.graph.nodes))))
        return PassResult(model, False)
'''


def test_plugins_from_the_entry_point_group(tmp_path, monkeypatch, caplog):
    """A tiny installed distribution declares a pass; it is listed, usable and shown by the CLI."""
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ncount-nodes = myplugin:CountNodes\nbroken = myplugin:Missing\n"
        "fuse-bn = myplugin:CountNodes\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert "count-nodes" in eps.names
    passes = available()
    assert passes["count-nodes"].__name__ == "CountNodes"
    assert "broken" not in passes and "cannot be loaded" in caplog.text
    assert passes["fuse-bn"].__module__ == "onnxprune.passes.fuse_batchnorm"  # built-ins win
    out = onnxprune.optimize(small(), ["count-nodes"])
    assert {p.key: p.value for p in out.metadata_props} == {"nodes": "3"}
    assert main(["passes", "--json"]) == 0


# ---------------------------------------------------------------------------- optimize
def test_optimize_accepts_protos_paths_names_and_objects(tmp_path):
    proto = ZOO["resnet_basic"]()
    snapshot = proto.SerializeToString()
    out = onnxprune.optimize(proto, ["fuse-bn", EliminateIdentity, Cleanup(max_rounds=4)])
    assert proto.SerializeToString() == snapshot  # the caller's model is untouched
    assert_equivalent(proto, out)
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    written = onnxprune.optimize(path, "cleanup", output=tmp_path / "o.onnx")
    assert onnx.load(str(tmp_path / "o.onnx")).graph == written.graph
    assert len(onnxprune.optimize(str(path)).graph.node) == len(written.graph.node)  # default: cleanup
    with pytest.raises(OnnxPruneError, match="refusing to overwrite the input"):
        onnxprune.optimize(path, output=path)
    with pytest.raises(UsageError, match="is not a pass"):
        onnxprune.optimize(proto, [42])
    with pytest.raises(UsageError, match="cannot optimize a dict"):
        onnxprune.optimize({}, ["cleanup"])

    class Program:  # what torch.onnx.export(..., dynamo=True) returns holds the proto
        model_proto = proto

    assert len(onnxprune.optimize(Program()).graph.node) == len(written.graph.node)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_example_export_script(tmp_path, exporter, capsys):
    pytest.importorskip("torch")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_and_prune", ROOT / "tools" / "examples" / "export_and_prune.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "small.onnx"
    assert example.main(["-o", str(out)] + (["--dynamo"] if exporter == "dynamo" else [])) == 0
    assert f"written to {out}" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    convs = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert convs and all(i.dims[0] in (8, 16) for i in convs)  # 16/32 channels halved, multiples of 8
    assert not any(n.op_type in ("BatchNormalization", "Identity", "Dropout") for n in model.graph.node)


# -------------------------------------------------------------------------------- CLI
@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    p = tmp_path / "resnet.onnx"
    onnx.save_model(ZOO["resnet_basic"](), str(p))
    return p


def test_cli_optimize_table_and_json(model_path, capsys):
    out = model_path.with_name("clean.onnx")
    assert main(["optimize", str(model_path), "-o", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert "BatchNormalization" in text and "total" in text
    assert "check 'output': largest |difference| from the input model" in text
    assert main(["optimize", str(model_path), "-o", str(out), "--passes", "fuse-bn,remove-dead", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["op_counts_after"].get("BatchNormalization", 0) == 0 < data["op_counts_before"]["BatchNormalization"]
    assert data["nodes_after"] < data["nodes_before"]
    assert data["passes"] == ["fuse-bn", "remove-dead"] * 2  # a second round confirms the fixed point
    assert_equivalent(onnx.load(str(model_path)), onnx.load(str(out)))


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--passes", "no-such-pass"], "unknown pass 'no-such-pass'"),
        (["--passes", "channel-pruning:ratio=2"], "ratio must be in [0, 1)"),
        (["-o", "SAME"], "refusing to overwrite the input model"),
    ],
)
def test_cli_optimize_errors_are_one_line(model_path, capsys, argv, needle):
    argv = [str(model_path) if a == "SAME" else a for a in argv]
    before = model_path.read_bytes()
    code = main(["optimize", str(model_path), *(["-o", str(model_path.with_name("x.onnx"))] if "-o" not in argv else []), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err
    assert model_path.read_bytes() == before


def test_cli_optimize_missing_model(tmp_path, capsys):
    assert main(["optimize", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_passes_lists_descriptions(capsys):
    assert main(["passes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fuse-bn"]["description"].startswith("Fold BatchNormalization")
    assert rows["channel-pruning"]["options"]["ratio"] == 0.5
    assert main(["passes"]) == 0
    assert "dedup-initializers" in capsys.readouterr().out


# ---------------------------------------------------------------------------- recipes
def _example_tree(tmp_path: Path, recipe: str) -> Path:
    """The example recipe with the model it names, at the same relative place."""
    (tmp_path / "tools" / "examples").mkdir(parents=True)
    (tmp_path / "models" / "exports").mkdir(parents=True)
    shutil.copy(ROOT / "models" / "exports" / "resnet_legacy.onnx", tmp_path / "models" / "exports")
    dst = tmp_path / "tools" / "examples" / recipe
    shutil.copy(ROOT / "tools" / "examples" / recipe, dst)
    return dst


@pytest.mark.parametrize("recipe", ["recipe.json", "recipe.yaml"])
def test_example_recipes_run(tmp_path, capsys, recipe):
    if recipe.endswith(".yaml"):
        pytest.importorskip("yaml")
    path = _example_tree(tmp_path, recipe)
    model = tmp_path / "models" / "exports" / "resnet_legacy.onnx"
    before = model.read_bytes()
    assert main(["run", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    out = path.parent / "resnet-small.onnx"
    assert Path(summary["output"]) == out and out.is_file()
    assert summary["passes"].count("channel-pruning") == 1 and "verify" in summary["passes"]
    assert summary["benchmark"]["ratio"] > 0 and summary["benchmark"]["repeat"] == 10
    assert set(summary["check"]) == {"logits"}
    assert model.read_bytes() == before
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_recipe_with_calibration_feeds_verify(tmp_path, model_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({
        "model": model_path.name, "output": "out.onnx", "calibration": "calib.npz",
        "passes": ["cleanup", {"name": "verify", "rtol": 1e-5}],
    }))
    assert main(["run", str(recipe)]) == 0
    assert "written to" in capsys.readouterr().out
    np.savez(tmp_path / "calib.npz", image=np.zeros((1, 3, 32, 32), np.float32))
    assert main(["run", str(recipe)]) == 2
    assert "calibration data has no array for input(s) input" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{not json", "not valid JSON at line 1"),
        ('{"model": "resnet.onnx"}', "the recipe has no 'passes'"),
        ('{"model": "resnet.onnx", "passes": ["cleanup"], "colour": 1}', "unknown recipe key(s) colour"),
        ('{"model": "missing.onnx", "passes": ["cleanup"]}', "model 'missing.onnx' not found"),
        ('{"model": "resnet.onnx", "passes": ["fuse-all"]}', "unknown pass 'fuse-all'"),
        ('{"model": "resnet.onnx", "output": "resnet.onnx", "passes": ["cleanup"]}', "'output' is the input model"),
    ],
)
def test_bad_recipes_give_one_line(model_path, capsys, content, needle):
    recipe = model_path.with_name("r.json")
    recipe.write_text(content)
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_yaml_recipe_without_pyyaml(model_path, capsys, monkeypatch):
    recipe = model_path.with_name("r.yaml")
    recipe.write_text("model: resnet.onnx\npasses: [cleanup]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'onnxprune[recipes]'" in err


def test_docs_name_only_registered_passes():
    """Pass lists in README and docs/passes.md resolve, and the docs table lists every built-in."""
    import re

    from onnxprune.passes import builtin

    from onnxprune.pipeline import resolve_passes

    texts = [(ROOT / "README.md").read_text(), (ROOT / "docs" / "passes.md").read_text()]
    specs = [m for t in texts for m in re.findall(r"--passes ([^\s`]+)", t)]
    assert len(specs) >= 3
    for spec in specs:
        resolve_passes(spec)
    table = {m for m in re.findall(r"^\| `([a-z-]+)` \|", texts[1], flags=re.M)}
    assert table == set(builtin())
