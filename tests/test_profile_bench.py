"""The profiler against hand-computed counts; bench and compare in the API and on the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.zoo import build
from onnxprune import api
from onnxprune.bench import batch_feeds, benchmark, interleaved_latency, resolve_eps
from onnxprune.cli import main
from onnxprune.comparison import compare_models
from onnxprune.errors import UsageError
from onnxprune.graph import load
from onnxprune.io import save_proto
from onnxprune.profile import profile
from onnxprune.report import write_comparison_report

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def _init(name: str, *shape: int) -> onnx.TensorProto:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _hand_model(batch: int | str = 1) -> onnx.ModelProto:
    """Every counted op once, with shapes small enough to count MACs by hand (see the test)."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("MaxPool", ["n"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ConvTranspose", ["p", "tw"], ["t"], name="deconv", strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["t"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["fl"], name="flatten"),
        helper.make_node("Gemm", ["fl", "gw", "gb"], ["logits"], name="fc", transB=1),
        helper.make_node("MatMul", ["q", "k"], ["qk"], name="qk"),
        helper.make_node("LayerNormalization", ["qk", "ls", "lb"], ["ln"], name="ln", axis=-1),
    ]
    inits = [_init("cw", 4, 3, 3, 3), _init("cb", 4), _init("s", 4), _init("b", 4), _init("m", 4),
             numpy_helper.from_array(np.ones(4, np.float32), "v"), _init("tw", 4, 2, 2, 2),
             _init("gw", 5, 2), _init("gb", 5), _init("ls", 4), _init("lb", 4)]
    graph = helper.make_graph(
        nodes, "hand",
        [helper.make_tensor_value_info("x", f, [batch, 3, 8, 8]),
         helper.make_tensor_value_info("q", f, [1, 2, 4, 8]),
         helper.make_tensor_value_info("k", f, [1, 2, 8, 4])],
        [helper.make_tensor_value_info("logits", f, [batch, 5]),
         helper.make_tensor_value_info("ln", f, [1, 2, 4, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# conv: |Y|=1·4·8·8=256 outputs × 3·3·3 = 6912; bn: |X| = 256; maxpool 2x2: |Y|=64 × 4 = 256;
# deconv: |X|=64 inputs × (C_out/g=2)·2·2 = 512; gap: |X| = 2·8·8 = 128; gemm: 5 outputs × K=2 = 10;
# matmul (activation × activation): |Y|=2·4·4=32 × K=8 = 256; layernorm: |X| = 32.
HAND_MACS = {"conv": 6912, "bn": 256, "pool": 256, "deconv": 512, "gap": 128, "fc": 10, "qk": 256, "ln": 32}
HAND_PARAMS = {"conv": 108 + 4, "bn": 16, "deconv": 32, "fc": 10 + 5, "ln": 8}


def test_profile_matches_hand_counts():
    prof = profile(load(_hand_model()))
    for name, macs in HAND_MACS.items():
        assert prof.node_macs[name] == macs, name
    for name, params in HAND_PARAMS.items():
        assert prof.node_params[name] == params, name
    assert prof.macs == sum(HAND_MACS.values())
    assert prof.params == sum(HAND_PARAMS.values())
    by_op = prof.by_op()
    assert by_op["Conv"] == {"count": 1, "macs": 6912, "params": 112}
    assert list(by_op)[0] == "Conv"  # largest first
    assert prof.unknown == []


def test_profile_scales_with_input_shape():
    """A symbolic batch fixed to 3 triples everything on the batch path (conv to fc)."""
    prof = profile(load(_hand_model("N"), {"x": [3, 3, 8, 8]}))
    for name in ("conv", "bn", "pool", "deconv", "gap", "fc"):
        assert prof.node_macs[name] == 3 * HAND_MACS[name], name
    assert prof.node_macs["qk"] == HAND_MACS["qk"]


def test_profile_counts_shared_weight_once():
    m = _hand_model()
    g = m.graph
    g.node.append(helper.make_node("Conv", ["x", "cw", "cb"], ["c2"], name="conv2", pads=[1, 1, 1, 1]))
    g.output.append(helper.make_tensor_value_info("c2", TensorProto.FLOAT, [1, 4, 8, 8]))
    prof = profile(load(m))
    assert prof.node_macs["conv2"] == HAND_MACS["conv"]
    assert prof.node_params["conv2"] == 0
    assert prof.params == sum(HAND_PARAMS.values())


def test_cli_profile_json_and_tables(tmp_path: Path, capsys):
    path = tmp_path / "hand.onnx"
    save_proto(_hand_model(), path)
    assert main(["profile", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["macs"] == sum(HAND_MACS.values())
    assert {n["name"]: n["macs"] for n in data["nodes"]}["deconv"] == 512
    assert data["by_op"]["MatMul"]["macs"] == 256
    assert data["groups"], "group totals are part of the JSON"
    for by, shown in (("op", "ConvTranspose"), ("node", "deconv"), ("group", "prunable")):
        assert main(["profile", str(path), "--by", by]) == 0
        assert shown in capsys.readouterr().out, by


def test_cli_profile_missing_file(tmp_path: Path, capsys):
    assert main(["profile", str(tmp_path / "nope.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.onnx" in err[0]


# ---------------------------------------------------------------------------- bench
@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pair")
    orig, pruned = d / "resnet.onnx", d / "resnet-pruned.onnx"
    save_proto(build("resnet_basic"), orig)
    api.prune(str(orig), ratio=0.5).save(pruned)
    return orig, pruned


def test_resolve_eps():
    assert resolve_eps("cpu") == ["CPUExecutionProvider"]
    assert resolve_eps(["CPU", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(UsageError, match="unknown execution provider 'warp'"):
        resolve_eps("warp")
    with pytest.raises(UsageError, match="no execution provider"):
        resolve_eps(" , ")


@pytest.mark.skipif(HAS_CUDA, reason="CUDA provider installed here")
def test_missing_ep_names_installed_ones_and_package(pair, capsys):
    with pytest.raises(UsageError) as exc:
        resolve_eps("cpu,cuda")
    msg = str(exc.value)
    assert "not installed" in msg and "cpu" in msg and "onnxruntime-gpu" in msg
    assert main(["bench", str(pair[0]), "--ep", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime-gpu" in err[0]


def test_benchmark_statistics(pair):
    res = benchmark(str(pair[0]), batch=2, threads=1, warmup=2, repeat=12)
    d = res.as_dict()
    assert d["runs"] == 12 and d["batch"] == 2 and d["ep"] == "cpu"
    assert d["min_ms"] <= d["p50_ms"] <= d["p90_ms"] <= d["p99_ms"]
    assert d["throughput_per_s"] == pytest.approx(2e3 / d["p50_ms"])
    assert d["session_s"] > 0
    assert d["peak_mem_bytes"] is None or d["peak_mem_bytes"] >= 0


def test_batch_feeds_respects_fixed_and_dynamic_batch(tmp_path: Path):
    fixed = tmp_path / "fixed.onnx"
    save_proto(_hand_model(1), fixed)
    with pytest.raises(UsageError, match="input 'x' has a fixed batch size of 1"):
        batch_feeds(str(fixed), 8)
    dyn = tmp_path / "dyn.onnx"
    save_proto(_hand_model("N"), dyn)
    feeds = batch_feeds(str(dyn), 4, {"q": [1, 2, 4, 8], "k": [1, 2, 8, 4]})
    assert feeds["x"].shape == (4, 3, 8, 8) and feeds["q"].shape == (1, 2, 4, 8)


def test_interleaved_latency_shapes(pair):
    feeds = batch_feeds(str(pair[0]), 1)
    res = interleaved_latency([str(pair[0]), str(pair[1])], feeds, threads=1, warmup=1, repeat=6)
    assert [s.size for s in res.samples_ms] == [6, 6]
    assert res.ratio() == pytest.approx(res.medians_ms[1] / res.medians_ms[0])
    assert res.pair_ratios().shape == (6,)


def test_compare_models_consistent_with_profiles(pair, tmp_path: Path):
    orig, pruned = pair
    cmp = compare_models(orig, pruned, ["CPUExecutionProvider"], batch=1, threads=1, warmup=1, repeat=6)
    p0, p1 = profile(load(str(orig))), profile(load(str(pruned)))
    assert (cmp.original.macs, cmp.pruned.macs) == (p0.macs, p1.macs)
    assert cmp.pruned.macs < 0.5 * cmp.original.macs
    assert cmp.pruned.size < cmp.original.size
    lat = cmp.latency[0]
    assert lat.speedup == pytest.approx(np.median(lat.original_ms) / np.median(lat.pruned_ms))
    assert cmp.efficiency(lat) == pytest.approx(lat.speedup * p1.macs / p0.macs)
    assert len(cmp.outputs) == 1 and 0 < cmp.outputs[0].rel_l2
    d = cmp.as_dict()
    assert d["macs_ratio"] == pytest.approx(p1.macs / p0.macs)
    barriers = [{"kind": "is a graph input; its shape must not change", "groups": 1, "macs": 1234, "macs_share": 0.5}]
    md, plotted = write_comparison_report(cmp, tmp_path / "report", barriers)
    text = md.read_text()
    assert "| MACs |" in text and "efficiency" in text
    assert "| is a graph input; its shape must not change | 1 | 1.23k | 50.0% |" in text
    if plotted:
        for png in ("layer_widths.png", "layer_macs.png", "latency_vs_macs.png"):
            assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({png})" in text
    pytest.importorskip("markdown")
    page = (tmp_path / "report" / "report.html").read_text()
    # one self-contained page: the tables as HTML, the plots embedded, nothing fetched from elsewhere
    assert "<table>" in page and re.search(r"<th[^>]*>pruned/original</th>", page)
    assert page.count("data:image/png;base64,") == (3 if plotted else 0)
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_layer_widths_are_the_output_channels_before_and_after(pair):
    from onnxprune.report import _layer_widths

    cmp = compare_models(pair[0], pair[1], [], agreement_batch=2)
    names, before, after = _layer_widths(cmp)
    assert names and len(names) == len(before) == len(after)
    convs = {n.name: n for n in cmp.original.profile.nodes if n.op == "Conv"}
    first = next(n for n in names if n in convs)
    assert before[names.index(first)] == convs[first].shape[1]
    assert all(a <= b for a, b in zip(after, before)) and sum(after) < sum(before)


def test_pareto_points_keep_only_undominated_models():
    from onnxprune.report import pareto_points

    # (latency ratio, accuracy): the second is beaten by the third (faster and better)
    pts = [(1.0, 99.0), (0.8, 90.0), (0.7, 95.0), (0.5, 60.0), (0.6, 95.0)]
    assert pareto_points(pts) == [3, 4, 0]


def test_compare_identical_models_agree_exactly(pair):
    cmp = compare_models(pair[0], pair[0], [], agreement_batch=4)
    out = cmp.outputs[0]
    assert out.max_abs == 0 and out.cosine == pytest.approx(1.0) and out.rel_l2 == 0 and out.top1 == 1.0
    assert cmp.latency == []


def test_cli_compare_json_and_report(pair, tmp_path: Path, capsys):
    rep = tmp_path / "rep"
    assert main(["compare", str(pair[0]), str(pair[1]), "--repeat", "4", "--warmup", "1", "--threads", "1",
                 "--json", "--report", str(rep)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["latency"][0]["ep"] == "cpu" and data["latency"][0]["runs"] == 4
    assert data["macs_ratio"] < 0.5
    assert Path(data["report"]).is_file()
    # the report says what keeps the original's channels frozen (its analysis, largest MACs first)
    assert "## What stays frozen" in Path(data["report"]).read_text()
    assert main(["compare", str(pair[0]), str(pair[1]), "--repeat", "3", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "efficiency" in out


def test_cli_bench_table_and_json(pair, capsys):
    assert main(["bench", str(pair[0]), "--batch", "1,2", "--repeat", "5", "--warmup", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in data["results"]] == [1, 2]
    assert main(["bench", str(pair[0]), "--repeat", "3"]) == 0
    assert "p99 ms" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch"),
    (["--batch", "x"], "--batch"),
    (["--repeat", "0"], "--repeat"),
    (["--ep", "warp"], "unknown execution provider"),
])
def test_cli_bench_bad_options(pair, capsys, args, message):
    assert main(["bench", str(pair[0]), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_interleaving_rotates_the_order(monkeypatch, pair):
    """Each model runs first in half of the turns, so a first-position penalty cancels."""
    import onnxprune.bench as bench

    order: list[str] = []
    real_run = bench.Runner.run

    def spy(self):
        order.append(self.tag)
        return real_run(self)

    monkeypatch.setattr(bench.Runner, "run", spy)
    real_init = bench.Runner.__init__

    def init(self, model, *a, **k):
        self.tag = "A" if str(model).endswith("resnet.onnx") else "B"
        real_init(self, model, *a, **k)

    monkeypatch.setattr(bench.Runner, "__init__", init)
    interleaved_latency([str(pair[0]), str(pair[1])], batch_feeds(str(pair[0]), 1), threads=1, warmup=0, repeat=4)
    assert "".join(order) == "ABBAABBA"
