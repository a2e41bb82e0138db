#!/usr/bin/env python
"""What onnxprune prunes in each committed transformer export (models/exports/).

Run from the repository root::

    PYTHONPATH=. python tools/summarize_transformer_exports.py [--out-md docs/benchmarks.md]

For every transformer export (torch TorchScript and torch.export, tf2onnx Keras, paddle2onnx
Paddle) the script runs ``python -m onnxprune analyze FILE --json`` (and again with
``--prune-hidden``) in a child process and counts, from that JSON:

* *head groups*: groups of 4 channels (every export has 4 heads per attention layer), all
  prunable: one channel is one whole head coupling Q, K, V, the attention tensors and the output
  projection;
* *FFN groups*: fully prunable groups as wide as the export's FFN/MLP intermediate width;
* *hidden width*: under ``--prune-hidden``, the group as wide as the residual stream that spans
  the most tensors, prunable or frozen with its first reason (a graph input/output freezes it).

Then ``onnxprune.api.prune(FILE, ratio=0.5)`` gives the MACs ratio (symbolic batch and sequence
taken as 1, attention matmuls included); the pruned model must pass ``check_model(full_check=True)``
and run in onnxruntime at two sequence lengths. The table replaces the section between
``<!-- transformer-exports:begin -->`` and ``<!-- transformer-exports:end -->`` of ``--out-md``
(appended when absent).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORTS = REPO_ROOT / "models" / "exports"
BEGIN = "<!-- transformer-exports:begin -->"
END = "<!-- transformer-exports:end -->"
HEADS = 4

#: file stem -> (exporter, hidden width, FFN/MLP intermediate width), as the tools/export_*.py
#: scripts write them
MODELS = {
    "bert_tiny_legacy": ("torch TorchScript (`dynamo=False`)", 64, 128),
    "bert_tiny_dynamo": ("torch.export (`dynamo=True`)", 64, 128),
    "vit_tiny_legacy": ("torch TorchScript (`dynamo=False`)", 64, 128),
    "vit_tiny_dynamo": ("torch.export (`dynamo=True`)", 64, 128),
    "keras_transformer": ("tf2onnx (Keras `MultiHeadAttention`)", 64, 128),
    "paddle_transformer": ("paddle2onnx (`nn.TransformerEncoder`)", 32, 64),
}


def analyze_json(path: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "onnxprune", "analyze", str(path), "--json", *extra]
    out = subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _feeds(proto: onnx.ModelProto, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seq)
    feeds = {}
    for inp in proto.graph.input:
        dims = [d.dim_value or (2 if i == 0 else seq) for i, d in enumerate(inp.type.tensor_type.shape.dim)]
        if inp.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            feeds[inp.name] = (rng.integers(1, 100, dims) if "ids" in inp.name else np.ones(dims)).astype(np.int64)
        else:
            feeds[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def summarize(stem: str) -> dict:
    import onnxruntime as ort

    from onnxprune import api

    path = EXPORTS / f"{stem}.onnx"
    exporter, width, ffn = MODELS[stem]
    plain = analyze_json(path)
    wide = analyze_json(path, "--prune-hidden")
    full = [g for g in plain["groups"] if g["prunable_channels"] == g["channels"]]
    hidden = max((g for g in wide["groups"] if g["channels"] == width), key=lambda g: len(g["spaces"]))
    res = api.prune(str(path), ratio=0.5)
    onnx.checker.check_model(res.proto, full_check=True)
    sess = ort.InferenceSession(res.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    seqs = (5, 11) if any(not d.dim_value for d in res.proto.graph.input[0].type.tensor_type.shape.dim[1:]) else (0,)
    for seq in seqs:
        sess.run(None, _feeds(res.proto, seq))
    opset = next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))
    return {
        "stem": stem,
        "exporter": exporter,
        "opset": opset,
        "heads": sum(g["channels"] == HEADS for g in full),
        "ffn": sum(g["channels"] == ffn for g in full),
        "ffn_width": ffn,
        "prunable": f"{plain['prunable_channels']} / {plain['channels']}",
        "macs_share": plain["prunable_macs_share"],
        "hidden": (
            f"{hidden['channels']} channels, prunable"
            if hidden["prunable_channels"]
            else f"{hidden['channels']} channels, frozen: {hidden['reasons'][0]}"
        ),
        "macs": res.after.macs / res.before.macs,
        "runs": "yes, seq " + " and ".join(map(str, seqs)) if seqs != (0,) else "yes",
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        BEGIN,
        "## Committed transformer exports: what is pruned",
        "",
        "Regenerate with `PYTHONPATH=. python tools/summarize_transformer_exports.py`. Counts come from",
        "`python -m onnxprune analyze FILE --json` (symbolic batch and sequence taken as 1); every",
        "export has 4 heads per attention layer, so a head group is a fully prunable group of 4",
        "channels (each a whole head). *Hidden width* is the residual-stream group under",
        "`--prune-hidden`. *MACs at ratio 0.5* is `prune(ratio=0.5)` after/before; the pruned model",
        "passes `check_model(full_check=True)` and runs in onnxruntime (at two sequence lengths where",
        "the sequence is dynamic). Lossless equivalence (exactly-dead heads and FFN channels removed,",
        "outputs equal at rtol 1e-4 at two sequence lengths) is checked by",
        "`tests/test_transformer_pruning.py`.",
        "",
        "| export | exporter | opset | head groups (4 heads each) | FFN groups | channels prunable | MACs in prunable groups | hidden width (`--prune-hidden`) | MACs at ratio 0.5 | pruned model runs |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['stem']}.onnx` | {r['exporter']} | {r['opset']} | {r['heads']} | {r['ffn']} (x{r['ffn_width']}) | "
            f"{r['prunable']} | {r['macs_share']:.1%} | {r['hidden']} | {r['macs']:.3f}x | {r['runs']} |"
        )
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(md_path: Path, section: str) -> None:
    from onnxprune.report import replace_section

    replace_section(md_path, BEGIN, END, section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-md", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    rows = [summarize(stem) for stem in MODELS]
    section = markdown(rows)
    write_section(args.out_md, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
