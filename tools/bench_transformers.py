#!/usr/bin/env python
"""Transformer benchmark of onnxprune: a BERT-base-sized encoder and torchvision ViT-B/16.

Run from the repository root::

    PYTHONPATH=. python tools/bench_transformers.py [--repeat N] [--vit-repeat N] [--analyze-runs N]

Two workloads, random weights, nothing downloaded; models are written to ``--workdir`` (a
temporary folder by default):

* **BERT-base-sized encoder** built in code with ``models.transformers.build("bert_like", ...)``
  (12 layers, hidden 768, 12 heads, FFN 3072, vocabulary 30522, 512 positions). Measured: the wall
  time of ``analyze`` in fresh child processes (after their imports); whether every layer's
  attention (one group of 12 whole heads) and FFN (one group of 3072 channels) is reported as a
  prunable group; ``prune(ratio=0.5)`` with the symbolic dims fixed to batch 1, sequence 128:
  MACs and parameter ratios, ``check_model(full_check=True)`` and onnxruntime runs at sequence
  128 and ``--other-seq``; the CPU latency ratio pruned/original at batch 1, sequence 128 from
  interleaved runs (``onnxprune.bench.interleaved_latency``).
* **torchvision ``vit_b_16(weights=None)``** exported in a child process (the parent never
  imports torch) with the TorchScript exporter (``dynamo=False``, opset 17) and the
  ``torch.export`` exporter (``dynamo=True``, ``external_data=False``, opset 18), input
  1x3x224x224 with the batch fixed at 1. Per export: ``analyze`` time, head and MLP groups found,
  MACs ratio at ratio 0.5, checker and onnxruntime run, interleaved CPU latency ratio.

The results replace the section between ``<!-- transformers:begin -->`` and
``<!-- transformers:end -->`` of ``--out-md`` (appended when absent).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench_resnet50 only defines functions and constants at import time.
from bench_resnet50 import _first_line, _proc_status_bytes, _row, machine_info  # noqa: E402

BEGIN = "<!-- transformers:begin -->"
END = "<!-- transformers:end -->"

# Acceptance targets.
TARGET_ANALYZE_S = 5.0  # BERT-base analyze, fresh process, after imports
TARGET_BERT_LATENCY = 0.60  # pruned/original median latency, batch 1, seq 128, 2 threads
TARGET_VIT_MACS = 0.55  # pruned/original MACs at ratio 0.5

RATIO = 0.5

# BERT-base sizes.
BERT = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072, "vocab": 30522, "max_len": 512}
# torchvision vit_b_16 sizes.
VIT = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072}

VIT_EXPORTERS = {
    "legacy": "TorchScript exporter (`dynamo=False`, opset 17)",
    "dynamo": "torch.export exporter (`dynamo=True`, `external_data=False`, opset 18)",
}

VIT_LABEL = "image 1x3x224x224"

# Encoder layer index in node / tensor names: "encoder.layer.3.", "encoder_layer_3".
_LAYER_RE = re.compile(r"(?:encoder_layer_|\blayers?\.)(\d+)")


def _run_self(args: list[str]) -> subprocess.CompletedProcess:
    """Runs this script in a fresh interpreter with the repository on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.run(cmd, env=env, cwd=str(REPO_ROOT), capture_output=True, text=True)


# ---------------------------------------------------------------- child: analyze (+ prune)


def _layer_of(group) -> int | None:
    """The encoder layer most of a group's nodes and tensors name, else None.

    A majority, not unanimity: an exporter may merge equal constants of several layers into
    one tensor named after the first (the TorchScript exporter does so with the all-zero
    ``in_proj_bias`` of ``nn.MultiheadAttention``).
    """
    counts: dict[int, int] = {}
    for name in list(group.members) + [t for t, _ in group.spaces]:
        for m in _LAYER_RE.findall(name):
            counts[int(m)] = counts.get(int(m), 0) + 1
    if not counts:
        return None
    best = max(counts, key=counts.__getitem__)
    return best if 2 * counts[best] > sum(counts.values()) else None


def _classify(dg, heads: int, ffn: int) -> dict:
    """Head groups (``heads`` atoms) and FFN/MLP groups (``ffn`` channels), with their layers."""
    out: dict = {"heads": [], "ffn": [], "other_prunable": [], "sizes": {}}
    for g in dg.groups:
        key = f"{g.size}/{g.n_prunable}"
        out["sizes"][key] = out["sizes"].get(key, 0) + 1
        kind = "heads" if g.size == heads else "ffn" if g.size == ffn else None
        info = {"id": g.id, "size": g.size, "n_prunable": g.n_prunable, "layer": _layer_of(g),
                "reasons": list(g.reasons)[:2], "members": list(g.members)[:3]}
        if kind is not None and g.members:
            out[kind].append(info)
        elif g.n_prunable:
            out["other_prunable"].append(info)
    return out


def run_child(args: argparse.Namespace) -> int:
    """Times ``analyze`` after the imports; optionally prunes and saves the model."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    from onnxprune.api import analyze, prune

    shapes = json.loads(args.child_shapes) if args.child_shapes else None
    baseline_rss = _proc_status_bytes("VmRSS")
    t0 = time.perf_counter()
    an = analyze(args.child_model, input_shapes=shapes)
    t1 = time.perf_counter()
    out: dict = {
        "analyze_s": t1 - t0, "baseline_rss": baseline_rss,
        "groups": len(an.depgraph.groups), "prunable_macs_share": an.prunable_macs_share,
        "classes": _classify(an.depgraph, args.child_heads, args.child_ffn),
    }
    if args.child_out:
        t2 = time.perf_counter()
        res = prune(args.child_model, ratio=RATIO, depgraph=an.depgraph, input_shapes=shapes)
        t3 = time.perf_counter()
        res.save(args.child_out)
        after = {gp.group: gp.after for gp in res.plan.groups}
        for kind in ("heads", "ffn"):
            for info in out["classes"][kind]:
                info["after"] = after.get(info["id"], info["size"])
        out.update(
            prune_s=t3 - t2, save_s=time.perf_counter() - t3,
            before_macs=res.before.macs, after_macs=res.after.macs,
            before_params=res.before.params, after_params=res.after.params,
        )
    out["peak_rss"] = _proc_status_bytes("VmHWM")
    Path(args.child_json).write_text(json.dumps(out))
    return 0


def spawn_child(model: Path, js: Path, sizes: dict, shapes: dict | None, out: Path | None) -> dict:
    js.unlink(missing_ok=True)
    cmd = ["--child", "--child-model", str(model), "--child-json", str(js),
           "--child-heads", str(sizes["heads"]), "--child-ffn", str(sizes["ffn"])]
    if shapes:
        cmd += ["--child-shapes", json.dumps(shapes)]
    if out is not None:
        out.unlink(missing_ok=True)
        cmd += ["--child-out", str(out)]
    proc = _run_self(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}) on {model.name}:\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(js.read_text())


def analyze_and_prune(model: Path, pruned: Path, sizes: dict, shapes: dict | None, tag: str,
                      runs: int) -> dict:
    """``runs`` fresh children time ``analyze``; the first also prunes and saves."""
    children = []
    for i in range(runs):
        c = spawn_child(model, pruned.with_suffix(f".{i}.json"), sizes, shapes,
                        pruned if i == 0 else None)
        extra = (f", prune {c['prune_s']:.2f} s, save {c['save_s']:.2f} s" if i == 0 else "")
        print(f"{tag} child {i + 1}: analyze {c['analyze_s']:.2f} s{extra}", flush=True)
        children.append(c)
    return {"child": children[0], "analyze_s": [c["analyze_s"] for c in children]}


# ---------------------------------------------------------------- child: ViT export


def vit_paths(workdir: Path) -> dict[str, Path]:
    return {name: workdir / f"vit_b_16_{name}.onnx" for name in VIT_EXPORTERS}


def run_export(workdir: Path) -> int:
    """Exports vit_b_16 with both exporters (in a child process: the parent never holds torch)."""
    import torch
    from torchvision_compat import import_torchvision

    # In eval mode without autograd, nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which the TorchScript exporter cannot export.
    torch.backends.mha.set_fastpath_enabled(False)
    torch.manual_seed(0)
    m = import_torchvision().models.vit_b_16(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    kwargs = {
        "legacy": dict(args=(x,), dynamo=False, opset_version=17, **names),
        "dynamo": dict(args=(x,), dynamo=True, external_data=False, opset_version=18, **names),
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, path in vit_paths(workdir).items():
            if not path.exists():
                t0 = time.perf_counter()
                torch.onnx.export(m, f=str(path), **kwargs[name])
                print(f"exported {path.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


# ---------------------------------------------------------------- checks and latency (parent)


def _latency(models: list[str], feeds: dict, args: argparse.Namespace, repeat: int) -> dict:
    import numpy as np

    from onnxprune.bench import interleaved_latency

    lat = interleaved_latency(models, feeds, args.threads, warmup=args.warmup, repeat=repeat)
    pair = np.asarray(lat.samples_ms[1]) / np.asarray(lat.samples_ms[0])
    return {
        "ms": lat.medians_ms,  # [original, pruned]
        "ratio": lat.ratio(1, 0),
        "pair_q": [float(np.percentile(pair, q)) for q in (25, 50, 75)],
        "repeat": repeat,
    }


def _optimized_ops(path: str, threads: int) -> dict[str, int]:
    """Op counts of the graph onnxruntime runs (``ORT_ENABLE_ALL``, CPU provider)."""
    import collections

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        opts.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                      "opt.onnx.data")
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        m = onnx.load(opts.optimized_model_filepath, load_external_data=False)
    return dict(collections.Counter(n.op_type for n in m.graph.node))


def _ops_summary(ops: dict[str, int]) -> str:
    keys = ("Attention", "MultiHeadAttention", "FusedMatMul", "MatMul", "Gemm", "Softmax",
            "Gelu", "FastGelu", "BiasGelu", "LayerNormalization", "SkipLayerNormalization")
    return ", ".join(f"{k} {ops[k]}" for k in keys if ops.get(k))


def check_model(original: Path, pruned: Path, feed_sets: dict[str, dict]) -> dict:
    """Full checker on the pruned file and onnxruntime runs of both models on each feed set."""
    import numpy as np
    import onnx

    from onnxprune.verify import compare, run, session

    out: dict = {"checker_error": "", "runs": {}}
    try:
        onnx.checker.check_model(str(pruned), full_check=True)
        out["checker"] = True
    except Exception as exc:  # noqa: BLE001
        out.update(checker=False, checker_error=_first_line(exc))
    s_orig = session(str(original))
    try:
        s_pruned, load_error = session(str(pruned)), ""
    except Exception as exc:  # noqa: BLE001
        s_pruned, load_error = None, _first_line(exc)
    for label, feeds in feed_sets.items():
        if s_pruned is None:
            out["runs"][label] = {"ok": False, "error": load_error}
            continue
        try:
            agree = compare(s_orig, s_pruned, feeds=feeds)
            ref = run(s_orig, feeds)
            out["runs"][label] = {"ok": True, "outputs": [
                {"name": a.name, "shape": list(a.shape), "cosine": a.cosine, "max_abs": a.max_abs,
                 "ref_all_zero": not np.any(r)}
                for a, r in zip(agree, ref)]}
        except Exception as exc:  # noqa: BLE001
            out["runs"][label] = {"ok": False, "error": _first_line(exc)}
    return out


def bert_feeds(seq: int, vocab: int, seed: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, vocab, size=(1, seq), dtype=np.int64),
            "attention_mask": np.ones((1, seq), dtype=np.int64)}


def bert_pruned_shapes(pruned: Path) -> dict:
    """Per-layer weight shapes of the pruned BERT file (by the builder's tensor names)."""
    import onnx

    m = onnx.load(str(pruned), load_external_data=False)
    dims = {t.name: list(t.dims) for t in m.graph.initializer}
    out: dict = {}
    for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "intermediate.dense", "output.dense"):
        shapes = {json.dumps(dims.get(f"encoder.layer.{i}.{part}.weight"))
                  for i in range(BERT["layers"])}
        out[part] = sorted(shapes)
    return out


# ---------------------------------------------------------------- benchmarks


def _bert_label(seq: int) -> str:
    return f"input_ids/attention_mask 1x{seq}"


def bench_bert(workdir: Path, args: argparse.Namespace) -> dict:
    import onnx

    from models.transformers import build

    model = workdir / "bert_base.onnx"
    pruned = workdir / "bert_base_pruned.onnx"
    if not model.exists():
        t0 = time.perf_counter()
        onnx.save(build("bert_like", seed=0, **BERT), str(model))
        print(f"built {model.name} ({model.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    shapes = {"input_ids": [1, args.seq], "attention_mask": [1, args.seq]}
    r = analyze_and_prune(model, pruned, BERT, shapes, "[bert]", args.analyze_runs)
    feed_sets = {_bert_label(s): bert_feeds(s, BERT["vocab"], seed=i)
                 for i, s in enumerate((args.seq, args.other_seq))}
    r["check"] = check_model(model, pruned, feed_sets)
    r["pruned_shapes"] = bert_pruned_shapes(pruned)
    r["ops"] = [_optimized_ops(str(p), args.threads) for p in (model, pruned)]
    if r["check"]["runs"][_bert_label(args.seq)]["ok"]:
        feeds = feed_sets[_bert_label(args.seq)]
        r["lat"] = _latency([str(model), str(pruned)], feeds, args, args.repeat)
        q = r["lat"]["pair_q"]
        print(f"[bert] latency ratio {r['lat']['ratio']:.3f} (per-pair {q[1]:.3f}, IQR "
              f"{q[0]:.3f}-{q[2]:.3f})", flush=True)
    r["file_size"], r["pruned_size"] = model.stat().st_size, pruned.stat().st_size
    return r


def bench_vit(exporter: str, model: Path, workdir: Path, args: argparse.Namespace) -> dict:
    from onnxprune.verify import make_feeds, session

    pruned = workdir / f"{model.stem}_pruned.onnx"
    r = analyze_and_prune(model, pruned, VIT, None, f"[vit {exporter}]", args.analyze_runs)
    r["exporter"] = exporter
    feeds = make_feeds(session(str(model)), batch=1, seed=0)
    r["check"] = check_model(model, pruned, {VIT_LABEL: feeds})
    r["ops"] = [_optimized_ops(str(p), args.threads) for p in (model, pruned)]
    if r["check"]["runs"][VIT_LABEL]["ok"]:
        r["lat"] = _latency([str(model), str(pruned)], feeds, args, args.vit_repeat)
        print(f"[vit {exporter}] latency ratio {r['lat']['ratio']:.3f}", flush=True)
    r["file_size"], r["pruned_size"] = model.stat().st_size, pruned.stat().st_size
    return r


# ---------------------------------------------------------------- rendering


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def _lat_value(lat: dict) -> str:
    q = lat["pair_q"]
    return (f"{lat['ratio']:.3f}x ({lat['ms'][1]:.1f} / {lat['ms'][0]:.1f} ms; per-pair median "
            f"{q[1]:.3f}x, IQR {q[0]:.3f}–{q[2]:.3f}; {lat['repeat']} pairs)")


def _time_value(times: list[float]) -> str:
    if len(times) == 1:
        return f"{times[0]:.2f} s"
    return f"{statistics.median(times):.2f} s [{min(times):.2f}–{max(times):.2f}]"


def _group_rows(c: dict, sizes: dict, label: str, unit: str, kind: str) -> tuple[str, bool, str]:
    """Value, pass flag and per-layer detail of the head or FFN groups."""
    n_layers, n = sizes["layers"], sizes[kind]
    groups = c["classes"][kind]
    full = [g for g in groups if g["n_prunable"] == g["size"]]
    layers = sorted(g["layer"] for g in full if g["layer"] is not None)
    unresolved = sum(1 for g in full if g["layer"] is None)
    ok = len(full) == n_layers and (layers == list(range(n_layers)) or unresolved == len(full))
    kept = sorted({g.get("after", g["size"]) for g in full})
    value = f"{len(full)} groups of {n} {unit}, all prunable"
    if unresolved < len(full):
        value += f"; layers {_ranges(layers)}"
        if unresolved:
            value += f" (+{unresolved} unattributed)"
    partial = [g for g in groups if g["n_prunable"] != g["size"]]
    if partial:
        value += (f"; {len(partial)} more of size {n} not fully prunable (e.g. "
                  f"{partial[0]['n_prunable']}/{partial[0]['size']}: "
                  f"{(partial[0]['reasons'] or ['?'])[0][:120]})")
    if kept:
        value += f"; pruned to {'/'.join(map(str, kept))} {unit}"
    return value, ok, f"{label}: {len(full)} of {n_layers} layers"


def _ranges(xs: list[int]) -> str:
    if not xs:
        return "none"
    if xs == list(range(xs[0], xs[-1] + 1)):
        return f"{xs[0]}–{xs[-1]}"
    return ",".join(map(str, xs))


def _common_rows(r: dict, sizes: dict, time_target: float | None, mlp: str) -> list[str]:
    c, chk = r["child"], r["check"]
    med = statistics.median(r["analyze_s"])
    t_ok = None if time_target is None else med < time_target
    rows = [
        _row("`analyze` wall time, fresh process, after imports", _time_value(r["analyze_s"]),
             f"< {time_target:.0f} s" if time_target else "—", t_ok),
    ]
    for kind, label, unit in (("heads", "Attention head groups", "heads"),
                              ("ffn", f"{mlp} groups", "channels")):
        value, ok, _ = _group_rows(c, sizes, label, unit, kind)
        rows.append(_row(f"{label} (one per layer expected)", value,
                         f"{sizes['layers']} (one per layer)", ok))
    rows.append(_row("Groups in all / MatMul+Gemm+Conv MACs reported prunable",
                     f"{c['groups']} / {100 * c['prunable_macs_share']:.1f}%"))
    rows.append(_row("Pruned model passes `check_model(full_check=True)`",
                     "yes" if chk["checker"] else "no: " + chk["checker_error"], "yes",
                     chk["checker"]))
    return rows


def _run_rows(chk: dict) -> list[str]:
    rows = []
    for label, res in chk["runs"].items():
        if res["ok"]:
            shapes = ", ".join(f"{o['name']} {'x'.join(map(str, o['shape']))}"
                               for o in res["outputs"])
            value = f"yes ({shapes}; same shapes as the original)"
        else:
            value = "no: " + res["error"]
        rows.append(_row(f"Pruned model runs in onnxruntime, {label}", value, "yes",
                         res["ok"]))
    return rows


def _cos_row(chk: dict, label: str) -> list[str]:
    res = chk["runs"].get(label, {})
    if not res.get("ok"):
        return []
    cos = "; ".join(
        f"{o['name']}: all zeros in both (the original's output is zero for any input)"
        if o["ref_all_zero"] and o["max_abs"] == 0 else
        f"{o['name']} {o['cosine']:.4f} (max abs diff {o['max_abs']:.3g})"
        for o in res["outputs"])
    return [_row("Output cosine similarity pruned vs original (informational)", cos)]


def _macs_rows(c: dict, target: float | None) -> list[str]:
    macs_r = c["after_macs"] / c["before_macs"]
    params_r = c["after_params"] / c["before_params"]
    return [
        _row("MACs after/before", f"{macs_r:.3f}x ({c['after_macs'] / 1e9:.2f} / "
             f"{c['before_macs'] / 1e9:.2f} GMACs)", f"<= {target:.2f}x" if target else "—",
             macs_r <= target if target else None),
        _row("Params after/before", f"{params_r:.3f}x ({c['after_params'] / 1e6:.1f}M / "
             f"{c['before_params'] / 1e6:.1f}M)"),
    ]


def _ops_row(r: dict) -> list[str]:
    label = "Ops onnxruntime runs after its optimizations, original → pruned (informational)"
    return [_row(label, f"{_ops_summary(r['ops'][0])} → {_ops_summary(r['ops'][1])}")]


def _bert_table(r: dict, args: argparse.Namespace) -> list[str]:
    c = r["child"]
    shp = r["pruned_shapes"]
    shapes = "; ".join(f"{k} {'/'.join(v)}" for k, v in shp.items())
    lines = [
        "### BERT-base-sized encoder (built in code)",
        "",
        f"Model file: {_mb(r['file_size'])}; pruned file: {_mb(r['pruned_size'])}. "
        f"`analyze` and `prune` run with `input_shapes` batch 1, sequence {args.seq}; "
        f"`prune` took {c['prune_s']:.2f} s (its own validation included) and `save` "
        f"{c['save_s']:.2f} s. Pruned weight shapes of the 12 layers: {shapes}.",
        "",
        "| Metric | Value | Target | Result |",
        "|---|---|---|---|",
        *_common_rows(r, BERT, TARGET_ANALYZE_S, "FFN"),
        *_run_rows(r["check"]),
        *_macs_rows(c, None),
    ]
    lat_label = f"Latency pruned/original, batch 1, seq {args.seq}, {args.threads} threads"
    if "lat" in r:
        lines.append(_row(lat_label, _lat_value(r["lat"]), f"<= {TARGET_BERT_LATENCY:.2f}x",
                          r["lat"]["ratio"] <= TARGET_BERT_LATENCY))
    else:
        lines.append(_row(lat_label, "not measured: the pruned model does not run",
                          f"<= {TARGET_BERT_LATENCY:.2f}x", False))
    lines += _ops_row(r) + _cos_row(r["check"], _bert_label(args.seq))
    return lines + [""]


def _vit_table(r: dict, args: argparse.Namespace) -> list[str]:
    c = r["child"]
    lines = [
        f"### ViT-B/16, {VIT_EXPORTERS[r['exporter']]}",
        "",
        f"Model file: {_mb(r['file_size'])}; pruned file: {_mb(r['pruned_size'])}; `prune` "
        f"took {c['prune_s']:.2f} s (its own validation included), `save` {c['save_s']:.2f} s.",
        "",
        "| Metric | Value | Target | Result |",
        "|---|---|---|---|",
        *_common_rows(r, VIT, None, "MLP"),
        *_run_rows(r["check"]),
        *_macs_rows(c, TARGET_VIT_MACS),
    ]
    label = f"Latency pruned/original, batch 1, {args.threads} threads (informational)"
    lines.append(_row(label, _lat_value(r["lat"]) if "lat" in r else "not measured"))
    lines += _ops_row(r) + _cos_row(r["check"], VIT_LABEL)
    return lines + [""]


def render_section(info: dict, bert: dict | None, vits: list[dict], command: str,
                   args: argparse.Namespace) -> str:
    n = args.analyze_runs
    lines = [
        BEGIN,
        "## Transformers: BERT-base-sized encoder and ViT-B/16 (random weights)",
        "",
        "Head and FFN/MLP pruning with `prune(ratio=0.5)` (uniform ratio per prunable group, "
        "L1 criterion): every layer keeps half of its attention heads (whole heads) and half of "
        "its FFN/MLP channels; the hidden width stays (it is normalized by LayerNorm and is a "
        "graph output).",
        "",
        "Regenerate with (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), onnxruntime {info['onnxruntime']}, "
        f"onnx {info['onnx']}, torch {info['torch']}, Python {info['python']}; run {info['date']}. "
        "The machine is shared, so latency is only reported as ratios from runs of the two "
        "models interleaved in one process.",
        "",
        "Models:",
        "",
        "- *BERT-base-sized encoder*: `models.transformers.build(\"bert_like\", seed=0, "
        + ", ".join(f"{k}={v}" for k, v in BERT.items())
        + ")`, written like the TorchScript export of a Hugging Face "
        "`BertForSequenceClassification` (inputs `input_ids`, `attention_mask` int64 "
        "`[batch, seq]`; outputs `last_hidden_state`, "
        "`logits`), saved to a temporary folder.",
        "- *ViT-B/16*: torchvision `vit_b_16(weights=None)` after `torch.manual_seed(0)`, eval "
        "mode, exported in a child process with the TorchScript exporter (`dynamo=False`, opset "
        "17) and the torch.export exporter (`dynamo=True`, `external_data=False`, opset 18) on a "
        "1x3x224x224 input; the batch dimension is fixed at 1 (no dynamic axes). "
        "`nn.MultiheadAttention`'s fused fast path is switched off for the export "
        "(`torch.backends.mha.set_fastpath_enabled(False)`): in eval mode without autograd it "
        "calls `aten::_native_multi_head_attention`, which the TorchScript exporter cannot "
        "export.",
        "",
        "How each number is measured:",
        "",
        f"- *`analyze` wall time*: `analyze(path, input_shapes=...)` (file loading included) in "
        f"a fresh child process, timed after its imports (onnx, onnxruntime, onnxprune); median "
        f"of {n} child{'ren' if n != 1 else ''}, min and max in brackets. The first child then "
        "runs `prune(path, ratio=0.5, depgraph=analysis.depgraph, input_shapes=...)` and saves "
        "the result.",
        "- *Head / FFN (MLP) groups*: counted from `analysis.depgraph.groups`. A head group is a "
        "group with as many channels as the model has heads (each channel one whole head, "
        "coupling Q, K, V, the head axis of the attention tensors and the output projection); "
        "an FFN/MLP group has the intermediate width's channels (3072). A group counts when all "
        "its channels are prunable; its layer is read from the node and tensor names "
        "(`encoder.layer.<i>`, `encoder_layer_<i>`). The target is one of each per encoder layer. "
        "*pruned to* is the channel count the plan keeps in those groups.",
        f"- *MACs / params*: onnxprune's profiler (Conv, Gemm and MatMul MACs, including the "
        f"attention score and context MatMuls between two activations), before and after "
        f"`prune`; for BERT at batch 1, sequence {args.seq} (the `input_shapes` given to "
        "`analyze`), for ViT at 1x3x224x224.",
        "- *Validity*: `onnx.checker.check_model(path, full_check=True)` on the saved pruned "
        "file; onnxruntime runs of original and pruned on the same inputs (CPU provider, graph "
        "optimizations off, `onnxprune.verify.compare`), which must succeed with the original's "
        f"output shapes. BERT is run at sequence {args.seq} and {args.other_seq} (the pruned "
        "file keeps the symbolic `batch`/`seq` dims): `input_ids` uniform random in "
        f"[0, {BERT['vocab']}), `attention_mask` all ones. ViT gets a seeded standard-normal "
        "image (`onnxprune.verify.make_feeds`).",
        f"- *Latency*: `onnxprune.bench.interleaved_latency`, CPU provider, `ORT_ENABLE_ALL`, "
        f"{args.threads} intra-op threads, intra-op spinning off, batch 1, {args.warmup} warm-up "
        "runs each, then the two models in the order A B A B ... (BERT on the sequence-"
        f"{args.seq} inputs above, {args.repeat} pairs; ViT {args.vit_repeat} pairs); ratio of "
        "the medians, with the median and interquartile range of the per-pair ratios as a noise "
        "check. Only BERT's latency has a target.",
        "- *Ops onnxruntime runs*: op counts of the graph onnxruntime writes with "
        "`optimized_model_filepath` at `ORT_ENABLE_ALL` (shows which fusions apply before and "
        "after pruning).",
        "- *Output cosine*: of each output, pruned vs original; informational, since the weights "
        "are random and nothing is fine-tuned. torchvision zero-initializes ViT's classifier "
        "(`heads.head` weight and bias), so with `weights=None` the ViT logits are exactly zero "
        "for every input, before and after pruning: for ViT the run only shows that the pruned "
        "model executes with the right output shape.",
        "",
    ]
    if bert is not None:
        lines += _bert_table(bert, args)
    for r in vits:
        lines += _vit_table(r, args)
    return "\n".join(lines + [END]) + "\n"


def write_doc(path: Path, section: str) -> None:
    from onnxprune.report import replace_section

    replace_section(path, BEGIN, END, section, title="# Benchmarks\n")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Time is measured in fresh child processes; latency only as ratios of "
        "interleaved runs, since the machine may be shared.",
    )
    p.add_argument("--out-md", default="docs/benchmarks.md",
                   help="markdown file whose transformers section is replaced (default: "
                   "%(default)s)")
    p.add_argument("--workdir", help="folder for the built, exported and pruned models; models "
                   "already in it are reused (default: a temporary folder, deleted at the end)")
    p.add_argument("--repeat", type=int, default=100,
                   help="timed runs per model for the BERT latency (default: %(default)s)")
    p.add_argument("--vit-repeat", type=int, default=40,
                   help="timed runs per model for each ViT latency (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5,
                   help="warm-up runs per model before timing (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2,
                   help="onnxruntime intra-op threads (default: %(default)s)")
    p.add_argument("--seq", type=int, default=128,
                   help="BERT sequence length for MACs and latency (default: %(default)s)")
    p.add_argument("--other-seq", type=int, default=64,
                   help="second BERT sequence length the pruned model must run at "
                   "(default: %(default)s)")
    p.add_argument("--analyze-runs", type=int, default=3,
                   help="fresh processes timing `analyze` per model; medians are reported "
                   "(default: %(default)s)")
    p.add_argument("--models", nargs="+", choices=["bert", *(f"vit-{e}" for e in VIT_EXPORTERS)],
                   default=["bert", *(f"vit-{e}" for e in VIT_EXPORTERS)],
                   help="workloads to run (default: all)")
    # internal: the export and the measured child processes
    for name in ("--export-to", "--child-model", "--child-out", "--child-json", "--child-shapes"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-heads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-ffn", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if args.export_to:
        return run_export(Path(args.export_to))

    command = "PYTHONPATH=. python tools/bench_transformers.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    t_start = time.perf_counter()
    info = machine_info()
    bert, vits = None, []
    with tempfile.TemporaryDirectory(prefix="bench_transformers_") as tmp:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if "bert" in args.models:
            bert = bench_bert(workdir, args)
        exporters = [e for e in VIT_EXPORTERS if f"vit-{e}" in args.models]
        if exporters:
            proc = _run_self(["--export-to", str(workdir)])
            print("".join(ln + "\n" for ln in proc.stdout.splitlines()
                          if ln.startswith("exported")), end="", flush=True)
            if proc.returncode != 0:
                raise RuntimeError(f"export failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            paths = vit_paths(workdir)
            vits = [bench_vit(e, paths[e], workdir, args) for e in exporters]
    section = render_section(info, bert, vits, command, args)
    out_md = Path(args.out_md)
    write_doc(out_md if out_md.is_absolute() else REPO_ROOT / out_md, section)
    print(section)
    print(f"wrote {args.out_md} in {time.perf_counter() - t_start:.0f} s total", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
