"""Original against pruned: size, params, MACs, interleaved latency per provider, agreement.

Efficiency relates the measured speedup to the compute removed::

    speedup    = median latency(original) / median latency(pruned)      (interleaved runs)
    MACs gain  = MACs(original) / MACs(pruned)
    efficiency = speedup / MACs gain

An efficiency of 1 means latency fell exactly as much as the arithmetic; below 1, fixed costs
(memory traffic, per-op overhead, kernels that do not scale with channel count) ate part of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bench import Runner, batch_feeds, interleaved_latency, short_ep
from .feeds import plan_feeds
from .graph import load
from .io import load_proto_deferred, model_files
from .profile import Profile, profile
from .verify import session

__all__ = ["ModelStats", "EpLatency", "OutputStats", "Comparison", "compare_models", "model_stats", "file_size"]


def file_size(path: str | os.PathLike[str]) -> int:
    """Bytes of a model file plus the external-data files it references beside it."""
    p = Path(path)
    return sum(f.stat().st_size for f in model_files(p) if f.is_file())


@dataclass
class ModelStats:
    path: str
    size: int
    params: int
    macs: int
    nodes: int
    profile: Profile = field(repr=False)


def model_stats(path: str | os.PathLike[str], input_shapes: dict[str, list[int]] | None = None) -> ModelStats:
    model = load(path, input_shapes)
    prof = profile(model)
    return ModelStats(os.fspath(path), file_size(path), prof.params, prof.macs, len(model.graph.nodes), prof)


@dataclass
class EpLatency:
    """Interleaved latency of original and pruned on one provider."""

    provider: str
    batch: int
    threads: int
    original_ms: np.ndarray
    pruned_ms: np.ndarray
    session_s: tuple[float, float]
    peak_mem_bytes: tuple[int | None, int | None]
    mem_kind: str

    @property
    def speedup(self) -> float:
        return float(np.median(self.original_ms) / np.median(self.pruned_ms))

    def pair_iqr(self) -> tuple[float, float]:
        """Interquartile range of the per-turn speedups: how much noise the ratio carries."""
        r = self.original_ms / self.pruned_ms
        return float(np.percentile(r, 25)), float(np.percentile(r, 75))


@dataclass
class OutputStats:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    cosine: float
    rel_l2: float
    top1: float | None


@dataclass
class Comparison:
    original: ModelStats
    pruned: ModelStats
    latency: list[EpLatency]
    outputs: list[OutputStats]

    @property
    def macs_gain(self) -> float:
        return self.original.macs / self.pruned.macs if self.pruned.macs else float("inf")

    def efficiency(self, lat: EpLatency) -> float:
        return lat.speedup / self.macs_gain if self.macs_gain else float("nan")

    def as_dict(self) -> dict[str, Any]:
        def stats(m: ModelStats) -> dict[str, Any]:
            return {"path": m.path, "size_bytes": m.size, "params": m.params, "macs": m.macs, "nodes": m.nodes}

        return {
            "original": stats(self.original),
            "pruned": stats(self.pruned),
            "macs_ratio": self.pruned.macs / self.original.macs if self.original.macs else None,
            "params_ratio": self.pruned.params / self.original.params if self.original.params else None,
            "size_ratio": self.pruned.size / self.original.size if self.original.size else None,
            "latency": [
                {
                    "ep": short_ep(lat.provider),
                    "provider": lat.provider,
                    "batch": lat.batch,
                    "threads": lat.threads,
                    "runs": int(lat.original_ms.size),
                    "original_p50_ms": float(np.median(lat.original_ms)),
                    "pruned_p50_ms": float(np.median(lat.pruned_ms)),
                    "speedup": lat.speedup,
                    "speedup_iqr": list(lat.pair_iqr()),
                    "efficiency": self.efficiency(lat),
                    "session_s": list(lat.session_s),
                    "peak_mem_bytes": list(lat.peak_mem_bytes),
                    "mem_kind": lat.mem_kind,
                }
                for lat in self.latency
            ],
            "outputs": [
                {"name": o.name, "shape": list(o.shape), "max_abs_diff": o.max_abs, "cosine": o.cosine,
                 "rel_l2": o.rel_l2, "top1_agreement": o.top1}
                for o in self.outputs
            ],
        }


def _output_stats(name: str, a: np.ndarray, b: np.ndarray) -> OutputStats:
    from .verify import as_array, numeric

    a, b = as_array(a), as_array(b)
    if not (numeric(a) and numeric(b)):  # strings: how many elements agree
        same = float(np.mean(a == b)) if a.size else 1.0
        return OutputStats(name, tuple(a.shape), float(np.count_nonzero(a != b)), same, 1.0 - same, None)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = float(np.max(np.abs(a64 - b64))) if a.size else 0.0
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    cos = 1.0 if na == 0 and nb == 0 else (0.0 if na == 0 or nb == 0 else float(np.vdot(a64, b64) / (na * nb)))
    rel = float(np.linalg.norm(a64 - b64) / na) if na else (0.0 if nb == 0 else float("inf"))
    top1 = None
    if a.ndim == 2 and a.shape[1] > 1:  # classifier-like: [batch, classes]
        top1 = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return OutputStats(name, tuple(a.shape), diff, cos, rel, top1)


def compare_models(
    original: str | os.PathLike[str],
    pruned: str | os.PathLike[str],
    providers: Sequence[str] = ("CPUExecutionProvider",),
    batch: int = 1,
    threads: int = 0,
    warmup: int = 5,
    repeat: int = 50,
    input_shapes: dict[str, list[int]] | None = None,
    agreement_batch: int = 8,
    progress: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """Profiles both models, times them in turns on each provider, and compares their outputs.

    Output agreement runs on the CPU provider with graph optimizations off, on seeded inputs with
    ``agreement_batch`` samples where the batch axis is symbolic.
    """
    a, b = model_stats(original, input_shapes), model_stats(pruned, input_shapes)
    sa, sb = session(original), session(pruned)
    plan = plan_feeds(load_proto_deferred(original)[0], input_shapes, runnable=os.fspath(original)).require()
    # agreement on agreement_batch samples where the batch is free, else on the batch the model takes
    feeds = plan.make(seed=1, batch=agreement_batch if plan.batch_free else None)
    names = [o.name for o in sa.get_outputs()]
    oa, ob = sa.run(None, feeds), sb.run(None, feeds)
    outputs = [_output_stats(n, np.asarray(x), np.asarray(y)) for n, x, y in zip(names, oa, ob)
               if np.asarray(x).shape == np.asarray(y).shape and np.asarray(x).dtype.kind in "fc"]
    lat_feeds = batch_feeds(original, batch, input_shapes, seed=2)
    del sa, sb
    lats: list[EpLatency] = []
    for provider in providers:
        cb = (lambda i, n, p=provider: progress(short_ep(p), i, n)) if progress else None
        res = interleaved_latency([os.fspath(original), os.fspath(pruned)], lat_feeds, threads=threads,
                                  warmup=warmup, repeat=repeat, progress=cb, provider=provider)
        r0: Runner = res.runners[0]
        r1: Runner = res.runners[1]
        lats.append(EpLatency(provider, batch, threads, res.samples_ms[0], res.samples_ms[1],
                              (r0.session_s, r1.session_s), (r0.peak_mem_bytes, r1.peak_mem_bytes), r0.mem_kind))
        del res
    return Comparison(a, b, lats, outputs)
