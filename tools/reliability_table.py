"""Runs the onnxprune CLI over every unusual and hostile input and tabulates what it did.

Unusual inputs come from :mod:`models.unusual` (quantized, control flow, recurrence, custom
domains, functions, every opset, FP16/BF16 weights, old-exporter layouts, inputs without
shapes); hostile ones from :mod:`models.hostile_files`. For each: ``onnxprune prune --ratio 0.5
--json`` in-process, its exit code, the share of channels removed or the one-line error, and
the barrier reason that names the unusual part.

Usage::

    python tools/reliability_table.py             # prints the markdown tables
    python tools/reliability_table.py --record    # also updates docs/reliability.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from models import unusual as U  # noqa: E402
from models.hostile_files import CASES, make_case  # noqa: E402
from onnxprune import api  # noqa: E402
from onnxprune.cli import main as cli  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- inputs:begin -->", "<!-- inputs:end -->"

UNUSUAL = {
    "QDQ, per-channel int8 weights + uint8 activations": (lambda: U.qdq_cnn(per_channel=True), "w1.dq"),
    "QDQ, per-tensor int8 weights": (lambda: U.qdq_cnn(per_channel=False), "w1.dq"),
    "QOperator (QLinearConv)": (U.qoperator_cnn, "QLinearConv"),
    "dynamic quantization (DynamicQuantizeLinear + MatMulInteger)": (U.dynamic_quant_mlp, "DynamicQuantizeLinear"),
    "If whose branches read outer tensors": (U.if_cnn, "inside a subgraph"),
    "Loop": (U.loop_cnn, "Loop"),
    "Scan": (U.scan_cnn, "Scan"),
    "LSTM": (lambda: U.recurrent("LSTM"), "LSTM"),
    "GRU": (lambda: U.recurrent("GRU"), "GRU"),
    "RNN": (lambda: U.recurrent("RNN"), "RNN"),
    "custom-domain op (no onnxruntime kernel)": (U.custom_domain_cnn, "Mystery"),
    "model-local function": (U.function_cnn, "Swishy"),
    "float16 weights behind Cast": (lambda: U.typed_weights_cnn("float16"), None),
    "bfloat16 weights behind Cast": (lambda: U.typed_weights_cnn("bfloat16"), None),
    "all-float16 model": (U.fp16_cnn, None),
    "initializers listed as graph inputs (IR 7)": (U.initializers_as_inputs_cnn, None),
    "input without any shape": (U.no_shape_input_cnn, None),
    "input without any shape, --input-shape input:1,3,8,8": (U.no_shape_input_cnn, None),
}
for _v in range(7, onnx.defs.onnx_opset_version() + 1):
    UNUSUAL[f"opset {_v}"] = (lambda v=_v: U.opset_cnn(v), None)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli(argv)
    return rc, out.getvalue(), err.getvalue().strip()


def unusual_rows(tmp: Path) -> list[str]:
    rows = ["| input | exit | channels removed | opset kept | what was frozen (barrier reason) |",
            "|---|---:|---:|---|---|"]
    for label, (build, marker) in UNUSUAL.items():
        model = build()
        src = tmp / "m.onnx"
        onnx.save_model(model, str(src))
        argv = ["prune", str(src), "-o", str(tmp / "out.onnx"), "--ratio", "0.5", "--json"]
        if "--input-shape" in label:
            argv += ["--input-shape", "input:1,3,8,8"]
        rc, out, err = _run(argv)
        if rc != 0:
            rows.append(f"| {label} | {rc} | - | - | {err.removeprefix('onnxprune: error: ')} |")
            continue
        data = json.loads(out)
        opset = onnx.load(str(tmp / "out.onnx")).opset_import[0].version == model.opset_import[0].version
        reason = "-"
        if marker:
            an = api.analyze(str(src))
            hits = [r for g in an.depgraph.groups for r in g.reasons if marker in r]
            reason = hits[0] if hits else "(none)"
        rows.append(f"| {label} | {rc} | {data['channels_removed']} | {'yes' if opset else 'NO'} | {reason} |")
    return rows


def hostile_rows(tmp: Path) -> list[str]:
    rows = ["| hostile file | exit | output written | input unchanged | message (one line) |",
            "|---|---:|---|---|---|"]
    for case in CASES:
        folder = Path(tempfile.mkdtemp(dir=tmp))
        bad, _word = make_case(case, folder)
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        out = folder / "pruned.onnx"
        rc, _out, err = _run(["prune", str(bad), "-o", str(out)])
        same = all(p.read_bytes() == b for p, b in before.items())
        msg = err.replace(str(folder), "…").removeprefix("onnxprune: error: ")
        lines = len(err.splitlines())
        rows.append(f"| {case.replace('_', ' ')} | {rc} | {'yes' if out.exists() else 'no'} | "
                    f"{'yes' if same else 'NO'} | {msg}{'' if lines == 1 else f' ({lines} lines)'} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", action="store_true", help=f"write the tables into {DOC.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        text = "\n".join(["Command: `python tools/reliability_table.py` (every row is "
                          "`onnxprune prune IN -o OUT --ratio 0.5 --json`).", "",
                          *unusual_rows(Path(tmp)), "", *hostile_rows(Path(tmp))])
    print(text)
    if args.record:
        from onnxprune.report import replace_section

        replace_section(DOC, BEGIN, END, f"{BEGIN}\n{text}\n{END}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
