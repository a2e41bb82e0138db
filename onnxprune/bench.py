"""Latency measured the only way a shared machine allows: interleaved.

Models are timed in turns (A B A B ...) in one process, so drift in machine speed hits all of
them alike; what is reported is each model's median and the ratio of medians.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from .verify import ModelLike, session

__all__ = ["LatencyResult", "interleaved_latency"]


@dataclass
class LatencyResult:
    samples_ms: list[np.ndarray]

    @property
    def medians_ms(self) -> list[float]:
        return [float(np.median(s)) for s in self.samples_ms]

    def ratio(self, i: int = 1, base: int = 0) -> float:
        m = self.medians_ms
        return m[i] / m[base]


def interleaved_latency(
    models: Sequence[ModelLike],
    feeds: dict[str, np.ndarray],
    threads: int = 2,
    warmup: int = 5,
    repeat: int = 30,
    progress: Callable[[int, int], None] | None = None,
) -> LatencyResult:
    """Times each model ``repeat`` times in alternation after ``warmup`` runs each.

    Sessions use full graph optimization and ``threads`` intra-op threads on the CPU provider.
    Each session has its own thread pool, so idle workers must not busy-wait: the workers of the
    session that just ran would otherwise compete for the cores with the one being timed.
    """
    sessions: list[ort.InferenceSession] = [
        session(m, optimize=True, threads=threads, spin=False) for m in models
    ]
    for s in sessions:
        for _ in range(warmup):
            s.run(None, feeds)
    samples = [np.zeros(repeat) for _ in sessions]
    for r in range(repeat):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            s.run(None, feeds)
            samples[i][r] = (time.perf_counter() - t0) * 1e3
        if progress is not None:
            progress(r + 1, repeat)
    return LatencyResult(samples)
