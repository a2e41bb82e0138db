"""Node counts after onnxprune's cleanup pipeline, onnxslim and onnx-simplifier, side by side.

    pip install onnxslim onnxsim==0.8.1        # for this script only; not dependencies
    python tools/compare_cleanup.py --write docs/passes.md
    python tools/compare_cleanup.py --write docs/passes.md \
        --torchvision resnet50,mobilenet_v3_small,shufflenet_v2_x0_5,convnext_tiny,swin_t

Runs the three tools on every model of the zoo (models/zoo.py, models/transformers.py) and on the
committed exports (models/exports), checks in onnxruntime that each result's outputs equal the
original's (seeded inputs, batch 1 and 2 with sequence-like symbolic sizes 4 and 5, within 1e-5 of the output scale; CPU provider with
graph optimizations off), and prints a table of node counts. With ``--write FILE`` the table
replaces the block between the markers in FILE. A result whose outputs differ, or a tool that
fails, is shown as such, not counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxprune  # noqa: E402
from models.transformers import TRANSFORMERS  # noqa: E402
from models.zoo import ZOO  # noqa: E402
from onnxprune import verify  # noqa: E402

BEGIN, END = "<!-- compare_cleanup:begin -->", "<!-- compare_cleanup:end -->"
TV_BEGIN, TV_END = "<!-- compare_cleanup_torchvision:begin -->", "<!-- compare_cleanup_torchvision:end -->"


def torchvision_models(names: list[str]) -> dict[str, onnx.ModelProto]:
    """Full-size torchvision networks (random weights), exported with both torch exporters and a
    dynamic batch; needs torch and torchvision."""
    import io

    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from torchvision_compat import import_torchvision

    tv = import_torchvision()
    out: dict[str, onnx.ModelProto] = {}
    for name in names:
        torch.manual_seed(0)
        net = getattr(tv.models, name)().eval()
        x = torch.randn(2, 3, 224, 224)
        buf = io.BytesIO()
        torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}})
        out[f"torchvision/{name} (legacy)"] = onnx.load_from_string(buf.getvalue())
        program = torch.onnx.export(net, (x,), dynamo=True, external_data=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
        out[f"torchvision/{name} (dynamo)"] = program.model_proto
    return out


def models() -> dict[str, onnx.ModelProto]:
    out: dict[str, onnx.ModelProto] = {}
    for name, build in ZOO.items():
        out[f"zoo/{name}"] = build()
    for name, build in TRANSFORMERS.items():
        out[f"transformers/{name}"] = build()
    for p in sorted((ROOT / "models" / "exports").glob("*.onnx")):
        out[f"exports/{p.stem}"] = onnx.load(str(p))
    return out


def _shapes(sess, batch: int) -> dict[str, list[int]]:
    """Symbolic dimensions: batch on axis 0, 3 + batch elsewhere (a sequence longer than 1);
    one symbol, one value across inputs."""
    values: dict[str, int] = {}
    out = {}
    for inp in sess.get_inputs():
        dims = []
        for i, d in enumerate(inp.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
            else:
                dims.append(values.setdefault(str(d), batch if i == 0 else 3 + batch))
        out[inp.name] = dims
    return out


def equal_outputs(a: onnx.ModelProto, b: onnx.ModelProto, tol: float = 1e-5) -> tuple[bool, float]:
    s1, s2 = verify.session(a), verify.session(b)
    worst = 0.0
    symbolic = any(not isinstance(d, int) for i in s1.get_inputs() for d in i.shape)
    for batch in (1, 2) if symbolic else (1,):
        feeds = verify.make_feeds(s1, _shapes(s1, batch), seed=batch, batch=batch)
        for x, y in zip(verify.run(s1, feeds), verify.run(s2, feeds)):
            if x.shape != y.shape:
                return False, float("inf")
            if x.dtype.kind != "f":
                if not np.array_equal(x, y):
                    return False, float("inf")
                continue
            scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
            d = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
            worst = max(worst, d / scale)
    return worst <= tol, worst


def run_ours(m: onnx.ModelProto) -> onnx.ModelProto:
    return onnxprune.optimize(m, ["cleanup"])


def run_onnxslim(m: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(onnx.ModelProto.FromString(m.SerializeToString()))


def run_onnxsim(m: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    out, ok = onnxsim.simplify(onnx.ModelProto.FromString(m.SerializeToString()))
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    return out


TOOLS = {"onnxprune cleanup": run_ours, "onnxslim": run_onnxslim, "onnxsim": run_onnxsim}


def measure(only: list[str] | None = None, source: dict[str, onnx.ModelProto] | None = None) -> list[dict[str, object]]:
    rows = []
    for name, model in (source if source is not None else models()).items():
        if only and not any(o in name for o in only):
            continue
        row: dict[str, object] = {"model": name, "original": len(model.graph.node)}
        for tool, fn in TOOLS.items():
            t0 = time.perf_counter()
            try:
                out = fn(model)
                ok, worst = equal_outputs(model, out)
                row[tool] = len(out.graph.node) if ok else f"{len(out.graph.node)} (outputs differ: {worst:.1g})"
            except ImportError:
                row[tool] = "not installed"
            except Exception as exc:  # another tool's failure is a result, not a crash
                row[tool] = f"failed ({type(exc).__name__})"
            row[f"{tool} s"] = time.perf_counter() - t0
        print(" ".join(f"{row[k]}" for k in ("model", "original", *TOOLS)), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict[str, object]]) -> str:
    head = "| model | original | " + " | ".join(TOOLS) + " | ours ≤ both |\n"
    head += "| --- | ---: | " + " | ".join("---:" for _ in TOOLS) + " | :---: |\n"
    lines = []
    wins = 0
    for r in rows:
        counts = [r[t] for t in TOOLS]
        ours, others = counts[0], [c for c in counts[1:] if isinstance(c, int)]
        ok = isinstance(ours, int) and all(ours <= c for c in others)
        wins += ok
        lines.append(f"| {r['model']} | {r['original']} | " + " | ".join(str(c) for c in counts) + f" | {'yes' if ok else '**no**'} |")
    totals = ["| **total** | " + str(sum(int(r["original"]) for r in rows))]  # type: ignore[arg-type]
    for t in TOOLS:
        vals = [r[t] for r in rows]
        totals.append(str(sum(v for v in vals if isinstance(v, int))) if all(isinstance(v, int) for v in vals) else "-")
    return head + "\n".join(lines) + "\n" + " | ".join(totals) + f" | {wins}/{len(rows)} |\n"


def versions() -> str:
    parts = [f"onnx {onnx.__version__}"]
    for mod in ("onnxruntime", "onnxslim", "onnxsim"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            parts.append(f"{mod} not installed")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="replace the table between the markers in FILE")
    parser.add_argument("--only", action="append", help="models whose name contains this (repeatable)")
    parser.add_argument(
        "--torchvision",
        metavar="NAME,NAME",
        help="instead of the zoo and committed exports, export these full-size torchvision "
        "models with both torch exporters (needs torch); written between the torchvision markers",
    )
    args = parser.parse_args(argv)
    source = torchvision_models(args.torchvision.split(",")) if args.torchvision else None
    rows = measure(args.only, source)
    text = table(rows) + f"\nNode counts (fewer is better); outputs equal to the original within 1e-5 of scale. {versions()}.\n"
    print(text)
    if args.write:
        begin, end = (TV_BEGIN, TV_END) if args.torchvision else (BEGIN, END)
        from onnxprune.report import replace_section

        try:
            replace_section(args.write, begin, end, begin + "\n" + text + end, required=True)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
