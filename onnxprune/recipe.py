"""Recipes: a file that says which model to optimize, with which passes, and what to measure.

A recipe is JSON (always) or YAML (with the ``recipes`` extra, ``pip install 'onnxprune[recipes]'``)::

    {
      "model": "resnet.onnx",                 # relative paths are relative to the recipe file
      "output": "resnet-small.onnx",
      "input_shapes": {"input": [1, 3, 224, 224]},
      "passes": [
        "cleanup",
        {"name": "channel-pruning", "ratio": 0.4, "round_to": 8},
        "cleanup",
        {"name": "verify", "min_cosine": 0.9}
      ],
      "calibration": "calib.npz",             # optional: inputs, one array per graph input
      "benchmark": {"repeat": 30, "threads": 2, "batch": 1}   # optional: before/after latency
    }

The calibration file is checked when the recipe is read (it must be an ``.npz`` archive with an
array for every graph input) and handed to every pass whose constructor takes a
``calibration`` argument (``verify`` compares on those samples). The benchmark times the input
and the output in turns in one process (:func:`onnxprune.bench.interleaved_latency`) and reports
the ratio of medians.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .errors import UsageError

__all__ = ["Recipe", "Benchmark", "load_recipe", "run_recipe"]

_KEYS = {"model", "output", "passes", "input_shapes", "calibration", "benchmark", "max_rounds"}
_BENCH_KEYS = {"repeat", "warmup", "threads", "batch"}


@dataclass
class Benchmark:
    """What to time after optimizing: interleaved runs of input and output."""

    repeat: int = 30
    warmup: int = 5
    threads: int = 2
    batch: int = 1


@dataclass
class Recipe:
    """A parsed recipe; paths are absolute."""

    model: Path
    output: Path
    passes: list[Any]
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    calibration: Path | None = None
    benchmark: Benchmark | None = None
    max_rounds: int = 8
    source: Path | None = None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path}: no such recipe file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError(
                f"{path}: reading YAML recipes needs pyyaml: pip install 'onnxprune[recipes]' "
                "(or write the recipe as JSON)"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise UsageError(f"{path}: not valid YAML{where}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe is a mapping with at least 'model' and 'passes'")
    return data


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Reads and checks a recipe file.

    Raises:
        UsageError: the file is missing or malformed, names unknown keys or passes, or its
            calibration data does not fit the model.
    """
    from onnxprune.pipeline import resolve_passes

    p = Path(path).resolve()
    data = _read(p)
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UsageError(f"{p}: unknown recipe key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    for key in ("model", "passes"):
        if key not in data:
            raise UsageError(f"{p}: the recipe has no '{key}'")
    base = p.parent
    model = (base / str(data["model"])).resolve()
    if not model.is_file():
        raise UsageError(f"{p}: model '{data['model']}' not found (looked in {base})")
    output = data.get("output") or model.with_name(model.stem + "-optimized.onnx").name
    out = (base / str(output)).resolve()
    if out == model:
        raise UsageError(f"{p}: 'output' is the input model; choose another file")
    passes = data["passes"]
    if isinstance(passes, str):
        passes = [s for s in passes.split(",") if s.strip()]
    if not isinstance(passes, list) or not passes:
        raise UsageError(f"{p}: 'passes' must be a non-empty list")
    shapes = data.get("input_shapes") or {}
    if not isinstance(shapes, dict) or not all(
        isinstance(v, list) and all(isinstance(d, int) for d in v) for v in shapes.values()
    ):
        raise UsageError(f"{p}: 'input_shapes' must map input names to lists of integers")
    calib = None
    if data.get("calibration"):
        calib = (base / str(data["calibration"])).resolve()
        _check_calibration(p, calib, model)
    bench = None
    b = data.get("benchmark")
    if b:
        b = {} if b is True else b
        if not isinstance(b, dict) or set(b) - _BENCH_KEYS:
            raise UsageError(f"{p}: 'benchmark' is true or a mapping of {', '.join(sorted(_BENCH_KEYS))}")
        bench = Benchmark(**{k: int(v) for k, v in b.items()})
    recipe = Recipe(model, out, list(passes), shapes, calib, bench, int(data.get("max_rounds", 8)), p)
    resolve_passes(_with_calibration(recipe.passes, calib))  # unknown passes/options fail now
    return recipe


def _check_calibration(recipe: Path, calib: Path, model: Path) -> None:
    from onnxprune.passes.verify_outputs import load_calibration

    proto = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in inits]
    try:
        arrays = load_calibration(calib, names)
    except UsageError as exc:
        raise UsageError(f"{recipe}: calibration: {exc}") from None
    sizes = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(sizes) > 1:
        raise UsageError(f"{recipe}: calibration arrays disagree on the number of samples: {sorted(sizes)}")


def _with_calibration(passes: list[Any], calib: Path | None) -> list[Any]:
    """Hands the calibration file to every pass whose constructor takes ``calibration``."""
    if calib is None:
        return passes
    from onnxprune.passes import available

    registry = available()
    out: list[Any] = []
    for spec in passes:
        entry = {"name": spec} if isinstance(spec, str) and ":" not in spec else spec
        if isinstance(entry, dict):
            cls = registry.get(str(entry.get("name")))
            if cls is not None and "calibration" in inspect.signature(cls).parameters and "calibration" not in entry:
                entry = {**entry, "calibration": str(calib)}
        out.append(entry)
    return out


def run_recipe(
    recipe: Recipe,
    on_pass: Callable[..., None] | None = None,
    on_bench: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Runs a recipe: optimize, write the output atomically, benchmark. Returns a summary."""
    from onnxprune.io import check_destination, save_proto
    from onnxprune.passes import VerifyOutputs
    from onnxprune.pipeline import resolve_passes, run_passes

    check_destination(recipe.output, (str(recipe.model),))
    passes = resolve_passes(_with_calibration(recipe.passes, recipe.calibration))
    res = run_passes(
        str(recipe.model),
        passes,
        input_shapes=recipe.input_shapes,
        max_rounds=recipe.max_rounds,
        on_pass=on_pass,
    )
    save_proto(res.proto, recipe.output, protect=(str(recipe.model),))
    original = onnx.load(str(recipe.model))
    summary: dict[str, Any] = {
        "model": str(recipe.model),
        "output": str(recipe.output),
        "passes": res.trace,
        "converged": res.converged,
        "nodes_before": len(original.graph.node),
        "nodes_after": len(res.proto.graph.node),
        "op_counts_before": op_counts(original),
        "op_counts_after": op_counts(res.proto),
    }
    checks = [p for p in passes if isinstance(p, VerifyOutputs) and p.max_abs]
    if checks:
        summary["check"] = dict(checks[-1].max_abs)
    if recipe.calibration is not None:
        summary["calibration"] = str(recipe.calibration)
    if recipe.benchmark is not None:
        summary["benchmark"] = _bench(recipe, on_bench)
    return summary


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Nodes per op type, most frequent first."""
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _bench(recipe: Recipe, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    from onnxprune.bench import interleaved_latency
    from onnxprune.feeds import plan_feeds
    from onnxprune.io import load_proto
    from onnxprune.passes.verify_outputs import load_calibration
    from onnxprune.verify import session

    b = recipe.benchmark
    assert b is not None
    sess = session(str(recipe.model))
    if recipe.calibration is not None:
        arrays = load_calibration(recipe.calibration, [i.name for i in sess.get_inputs()])
        feeds = {k: np.asarray(v[: b.batch]) for k, v in arrays.items()}
    else:
        plan = plan_feeds(load_proto(str(recipe.model)), recipe.input_shapes or None,
                          runnable=str(recipe.model)).require()
        feeds = plan.make(seed=0, batch=b.batch if plan.batch_free else None)
    lat = interleaved_latency(
        [str(recipe.model), str(recipe.output)], feeds, threads=b.threads, warmup=b.warmup,
        repeat=b.repeat, progress=progress,
    )
    m = lat.medians_ms
    return {
        "median_ms_before": m[0],
        "median_ms_after": m[1],
        "ratio": lat.ratio(1, 0),
        "repeat": b.repeat,
        "threads": b.threads,
        "batch": b.batch,
    }
