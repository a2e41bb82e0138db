"""Peak memory of analyze + prune + save on a model over the 2 GB protobuf limit.

Generates, in a temporary folder, an MLP whose float32 weights (``--hidden`` x ``--hidden``
matrices, ``--layers`` of them) are written straight into an external data file, so the
generator itself never holds the model in memory. Then runs ``onnxprune analyze`` and
``onnxprune prune --ratio R`` on it, each in a fresh subprocess, and reports each one's peak
resident memory (``ru_maxrss`` of the child) next to the size of the weights. The generated
files are deleted afterwards (``--keep`` keeps them).

Usage::

    python tools/bench_large_model.py                      # 2.3 GB of weights
    python tools/bench_large_model.py --record             # also updates docs/reliability.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- large:begin -->", "<!-- large:end -->"


def write_model(folder: Path, hidden: int, layers: int, n_in: int, n_out: int) -> tuple[Path, int]:
    """Writes ``model.onnx`` + ``model.onnx.data``; returns the path and the bytes of weights."""
    data_path = folder / "model.onnx.data"
    inits, nodes = [], []
    dims = [n_in] + [hidden] * layers + [n_out]
    rng = np.random.default_rng(0)
    offset = 0
    x = "input"
    with open(data_path, "wb") as f:
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            for name, shape in ((f"fc{i}.weight", (a, b)), (f"fc{i}.bias", (b,))):
                t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
                nbytes = int(np.prod(shape)) * 4
                rows = max(1, (64 << 20) // (4 * shape[-1]))  # 64 MB at a time
                for r in range(0, shape[0], rows):
                    n = min(rows, shape[0] - r)
                    chunk = rng.standard_normal((n, *shape[1:]), dtype=np.float32) if len(shape) > 1 \
                        else rng.standard_normal(shape, dtype=np.float32)
                    chunk *= np.float32(1.0 / np.sqrt(a))
                    f.write(chunk.tobytes())
                    if len(shape) == 1:
                        break
                t.data_location = TensorProto.EXTERNAL
                for k, v in (("location", data_path.name), ("offset", str(offset)), ("length", str(nbytes))):
                    t.external_data.add(key=k, value=v)
                offset += nbytes
                inits.append(t)
            nodes.append(helper.make_node("MatMul", [x, f"fc{i}.weight"], [f"mm{i}"], name=f"fc{i}.matmul"))
            y = "output" if i == len(dims) - 2 else f"h{i}"
            nodes.append(helper.make_node("Add", [f"mm{i}", f"fc{i}.bias"], [y if i == len(dims) - 2 else f"a{i}"], name=f"fc{i}.add"))
            if i < len(dims) - 2:
                nodes.append(helper.make_node("Relu", [f"a{i}"], [y], name=f"fc{i}.relu"))
            x = y
    graph = helper.make_graph(
        nodes, "large_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", n_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path, offset


def measure(argv: list[str]) -> tuple[int, float, int, str]:
    """Runs ``onnxprune argv`` in a fresh process; returns (peak RSS bytes, seconds, rc, stderr)."""
    code = (
        "import resource, subprocess, sys;"
        "p = subprocess.run([sys.executable, '-m', 'onnxprune'] + sys.argv[1:], capture_output=True, text=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode);"
        "sys.stderr.write(p.stderr[-2000:])"
    )
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - t0
    kb, rc = p.stdout.split()[-2:]
    return int(kb) * 1024, seconds, int(rc), p.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=8192, help="hidden width (default 8192)")
    ap.add_argument("--layers", type=int, default=9, help="hidden x hidden layers (default 9: 2.3 GB)")
    ap.add_argument("--ratio", type=float, default=0.5, help="pruning ratio (default 0.5)")
    ap.add_argument("--dir", default=None, help="folder for the generated files (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--record", action="store_true", help=f"write the result into {DOC.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="onnxprune-large-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        path, nbytes = write_model(base, args.hidden, args.layers, 4096, 16)
        gen_s = time.perf_counter() - t0
        print(f"generated {path} with {nbytes / 1e9:.2f} GB of weights in {gen_s:.0f} s")
        out = base / "out" / "pruned.onnx"
        out.parent.mkdir()
        rows = []
        for label, cmd in (
            ("--version (imports only)", ["--version"]),
            ("analyze", ["analyze", str(path), "--json"]),
            (f"prune --ratio {args.ratio}", ["prune", str(path), "-o", str(out), "--ratio", str(args.ratio), "--json"]),
        ):
            rss, secs, rc, err = measure(cmd)
            if rc != 0:
                print(f"{label} failed ({rc}): {err}")
                return 1
            rows.append((label, rss, secs))
            print(f"{label}: peak RSS {rss / 1e9:.2f} GB = {rss / nbytes:.2f} x weights, {secs:.0f} s")
        out_bytes = sum(p.stat().st_size for p in out.parent.iterdir())
        print(f"pruned model: {out_bytes / 1e9:.2f} GB on disk")
        lines = [
            f"Command: `python tools/bench_large_model.py --hidden {args.hidden} --layers {args.layers} "
            f"--ratio {args.ratio}` (onnx {onnx.__version__}, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs).",
            "",
            f"Model: MLP, {args.layers} layers of {args.hidden}x{args.hidden} plus input/output layers, "
            f"float32 weights in external data: **{nbytes / 1e9:.2f} GB** (over the 2 GB protobuf limit). "
            f"Pruned output: {out_bytes / 1e9:.2f} GB.",
            "",
            "| command | peak RSS | peak RSS / weights | wall time |",
            "|---|---:|---:|---:|",
        ]
        for label, rss, secs in rows:
            lines.append(f"| `onnxprune {label}` | {rss / 1e9:.2f} GB | {rss / nbytes:.2f} | {secs:.0f} s |")
        text = "\n".join(lines)
        print(text)
        if args.record:
            from onnxprune.report import replace_section

            replace_section(DOC, BEGIN, END, f"{BEGIN}\n{text}\n{END}")
        _ = resource  # children's usage is read in the measuring subprocess
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
