"""Latency, throughput and memory in onnxruntime, on the execution provider users deploy to.

Two measurements:

- :func:`benchmark` times one model alone: p50/p90/p99 latency, throughput, session-creation
  time and the peak memory the session added (resident set on the CPU provider, device memory on
  CUDA/TensorRT when NVML is available).
- :func:`interleaved_latency` times several models in turns (A B, B A, A B, ... in one process),
  so drift in machine speed and any advantage of running first or second hit all of them alike;
  what it reports is each model's median and the ratio of medians. On a shared machine this is the only latency comparison worth making.

On CUDA and TensorRT the inputs are copied to the device once and bound with IO binding, and
outputs stay on the device, so the timings are of the model, not of host-device transfers.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from .errors import OnnxPruneError, UsageError
from .feeds import plan_feeds
from .io import load_proto_deferred
from .verify import ModelLike, make_feeds, session

__all__ = [
    "EP_NAMES",
    "BenchResult",
    "LatencyResult",
    "Runner",
    "benchmark",
    "interleaved_latency",
    "interleave",
    "resolve_eps",
    "batch_feeds",
    "short_ep",
]

#: short names accepted on the command line -> onnxruntime provider names
EP_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
}
_PACKAGE_HINT = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (and TensorRT)",
    "DmlExecutionProvider": "onnxruntime-directml",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "ROCMExecutionProvider": "onnxruntime-rocm",
    "MIGraphXExecutionProvider": "onnxruntime-migraphx",
}
_DEVICE_EPS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def short_ep(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``."""
    for k, v in EP_NAMES.items():
        if v == provider:
            return k
    return provider


def resolve_eps(names: Sequence[str] | str) -> list[str]:
    """Maps ``cpu,cuda,tensorrt`` (or full provider names) to installed provider names.

    Raises :class:`UsageError` naming the installed providers and the package that brings a
    missing one.
    """
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    available = ort.get_available_providers()
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        provider = EP_NAMES.get(name.lower(), name)
        if provider not in ort.get_all_providers():
            raise UsageError(f"unknown execution provider '{name}'; choose from {', '.join(sorted(set(EP_NAMES)))}")
        if provider not in available:
            installed = ", ".join(short_ep(p) for p in available if p != "AzureExecutionProvider")
            hint = _PACKAGE_HINT.get(provider)
            raise UsageError(
                f"execution provider '{name}' ({provider}) is not installed; this onnxruntime "
                f"{ort.__version__} has: {installed}" + (f"; install {hint} for it" if hint else "")
            )
        if provider not in out:
            out.append(provider)
    if not out:
        raise UsageError("no execution provider given (e.g. --ep cpu,cuda)")
    return out


def _provider_list(provider: str) -> list[str | tuple[str, dict[str, Any]]]:
    if provider == "TensorrtExecutionProvider":
        return [(provider, {"device_id": 0}), ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    if provider == "CUDAExecutionProvider":
        return [(provider, {"device_id": 0}), "CPUExecutionProvider"]
    return [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]


_PRELOADED: list[bool] = []


def _preload_device_libraries() -> None:
    """Lets onnxruntime-gpu find CUDA/cuDNN installed as Python packages (once per process)."""
    if _PRELOADED:
        return
    _PRELOADED.append(True)
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception:  # libraries on the system path serve as well; failure shows at session start
            pass


def _rss_bytes(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Resets the kernel's resident-set high-water mark of this process (Linux only)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _gpu_used_bytes(device_id: int = 0) -> int | None:
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device_id)).used)
    except Exception:  # NVML absent or not usable: memory is simply not reported
        return None


class Runner:
    """One model loaded on one execution provider with its inputs bound, ready to time.

    Creating it measures the session-creation time and, through the first runs, the peak memory
    the session adds.
    """

    def __init__(
        self,
        model: ModelLike,
        feeds: dict[str, np.ndarray],
        provider: str = "CPUExecutionProvider",
        threads: int = 0,
        warmup: int = 5,
        optimize: bool = True,
    ) -> None:
        self.provider = provider
        on_device = provider in _DEVICE_EPS
        if on_device:
            _preload_device_libraries()
        gpu0 = _gpu_used_bytes() if on_device else None
        rss0 = _rss_bytes("VmRSS")
        can_peak = _reset_peak_rss()
        t0 = time.perf_counter()
        # onnxruntime prints a banner when a provider fails to start and it falls back: keep it
        # off stdout (it would corrupt --json) and quote its cause in the error instead
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            # idle workers must not busy-wait: sessions take turns on few cores
            self.session = session(model, optimize=optimize, threads=threads,
                                   provider=_provider_list(provider), spin=False)
        self.session_s = time.perf_counter() - t0
        got = self.session.get_providers()[0]
        if got != provider:
            cause = next((ln.strip() for ln in captured.getvalue().splitlines()
                          if "install" in ln.lower() or "cannot open" in ln.lower()), "")
            raise OnnxPruneError(
                f"onnxruntime could not start {provider} and fell back to {got}"
                + (f" ({cause[:200]})" if cause else "")
                + "; check that the CUDA/cuDNN (or TensorRT) libraries it needs are installed and on "
                "the library path"
            )
        self._binding = None
        self._keep: list[Any] = []
        if on_device:
            b = self.session.io_binding()
            for name, arr in feeds.items():
                v = ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0)
                self._keep.append(v)
                b.bind_ortvalue_input(name, v)
            for o in self.session.get_outputs():
                b.bind_output(o.name, "cuda", 0)
            self._binding = b
        self.feeds = feeds
        for _ in range(warmup):
            self.run()
        self.peak_mem_bytes: int | None = None
        self.mem_kind = "device" if on_device else "host"
        if on_device:
            gpu1 = _gpu_used_bytes()
            if gpu0 is not None and gpu1 is not None:
                self.peak_mem_bytes = max(gpu1 - gpu0, 0)
        elif can_peak and rss0 is not None:
            hwm = _rss_bytes("VmHWM")
            if hwm is not None:
                self.peak_mem_bytes = max(hwm - rss0, 0)

    def block_size(self, min_ms: float, cap: int = 1000) -> int:
        """How many back-to-back runs take at least ``min_ms`` (from the median of a few runs)."""
        if min_ms <= 0:
            return 1
        t = float(np.median([self.run() for _ in range(5)]))
        return int(min(cap, max(1, math.ceil(min_ms / max(t, 1e-4)))))

    def _infer(self, n: int) -> float:
        """``n`` inferences back to back (outputs synchronized at the end); total milliseconds."""
        t0 = time.perf_counter()
        for _ in range(n):
            if self._binding is not None:
                self.session.run_with_iobinding(self._binding)
            else:
                self.session.run(None, self.feeds)
        if self._binding is not None:
            self._binding.synchronize_outputs()
        return (time.perf_counter() - t0) * 1e3

    def run_block(self, n: int) -> float:
        """``n`` inferences back to back; returns the mean wall time of one in milliseconds."""
        return self.run() if n <= 1 else self._infer(n) / n

    def run(self) -> float:
        """One inference; returns its wall time in milliseconds."""
        return self._infer(1)


@dataclass
class BenchResult:
    """Latency statistics of one model on one provider at one batch size."""

    provider: str
    batch: int
    threads: int
    samples_ms: np.ndarray
    session_s: float
    peak_mem_bytes: int | None
    mem_kind: str

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch * 1e3 / self.p50 if self.p50 > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ep": short_ep(self.provider),
            "provider": self.provider,
            "batch": self.batch,
            "threads": self.threads,
            "runs": int(self.samples_ms.size),
            "p50_ms": self.p50,
            "p90_ms": self.percentile(90),
            "p99_ms": self.percentile(99),
            "mean_ms": float(self.samples_ms.mean()),
            "min_ms": float(self.samples_ms.min()),
            "throughput_per_s": self.throughput,
            "session_s": self.session_s,
            "peak_mem_bytes": self.peak_mem_bytes,
            "mem_kind": self.mem_kind,
        }


def batch_feeds(
    model: ModelLike | ort.InferenceSession,
    batch: int,
    input_shapes: dict[str, list[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded inputs that fit the model, with ``batch`` on every free batch axis.

    A path or proto gets a proven :class:`~onnxprune.feeds.FeedPlan` (token ids inside their
    table, masks of ones, sizes the model runs at); a bare session gets generic inputs.

    Raises :class:`UsageError` when the model has no free batch axis and ``batch`` differs
    from its fixed one, or when no generated input runs the model.
    """
    if not isinstance(model, ort.InferenceSession):
        if isinstance(model, bytes):
            model = onnx.load_from_string(model)
        plan = plan_feeds(model if isinstance(model, onnx.ModelProto) else load_proto_deferred(model)[0],
                          input_shapes, runnable=model).require()
        if not plan.batch_free and batch != plan.batch_size:
            first = plan.specs[0] if plan.specs else None
            raise UsageError(
                f"input '{first.name if first else '?'}' has a fixed batch size of {plan.batch_size}; batch "
                f"{batch} needs a model exported with a dynamic first axis"
            )
        return plan.make(seed, batch if plan.batch_free else None)
    sess = model
    inputs = sess.get_inputs()
    shapes: dict[str, list[int]] = {}
    dynamic = 0
    for inp in inputs:
        dims = list(inp.shape)
        fixed0 = bool(dims) and isinstance(dims[0], int) and dims[0] > 0
        dynamic += bool(dims) and not fixed0
        if input_shapes and inp.name in input_shapes:
            shape = list(input_shapes[inp.name])
            if dims and not fixed0 and shape:
                shape[0] = batch
        else:
            shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(dims)]
        shapes[inp.name] = shape
    # inputs with a fixed first axis keep it when another input carries the batch
    if not dynamic and inputs and inputs[0].shape and batch != inputs[0].shape[0]:
        raise UsageError(
            f"input '{inputs[0].name}' has a fixed batch size of {inputs[0].shape[0]}; batch {batch} "
            "needs a model exported with a dynamic first axis"
        )
    return make_feeds(sess, shapes, seed=seed)


def benchmark(
    model: ModelLike,
    provider: str = "CPUExecutionProvider",
    batch: int = 1,
    threads: int = 0,
    warmup: int = 10,
    repeat: int = 100,
    input_shapes: dict[str, list[int]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """Times ``model`` alone: ``warmup`` untimed runs, then ``repeat`` timed ones."""
    feeds = batch_feeds(model, batch, input_shapes)
    r = Runner(model, feeds, provider, threads, warmup)
    samples = np.zeros(repeat)
    for i in range(repeat):
        samples[i] = r.run()
        if progress is not None:
            progress(i + 1, repeat)
    return BenchResult(provider, batch, threads, samples, r.session_s, r.peak_mem_bytes, r.mem_kind)


@dataclass
class LatencyResult:
    samples_ms: list[np.ndarray]
    runners: list[Runner] = field(default_factory=list, repr=False)

    @property
    def medians_ms(self) -> list[float]:
        return [float(np.median(s)) for s in self.samples_ms]

    def ratio(self, i: int = 1, base: int = 0) -> float:
        m = self.medians_ms
        return m[i] / m[base]

    def pair_ratios(self, i: int = 1, base: int = 0) -> np.ndarray:
        """Per-turn ratios (run i of model ``i`` over run i of ``base``): their spread shows noise."""
        return self.samples_ms[i] / self.samples_ms[base]


def interleaved_latency(
    models: Sequence[ModelLike],
    feeds: dict[str, np.ndarray],
    threads: int = 2,
    warmup: int = 5,
    repeat: int = 30,
    progress: Callable[[int, int], None] | None = None,
    provider: str = "CPUExecutionProvider",
    min_turn_ms: float = 0.0,
) -> LatencyResult:
    """Times each model ``repeat`` times in alternation after ``warmup`` runs each.

    Turn ``r`` runs the models starting from model ``r mod n`` (A B, B A, A B, ... for two), so
    a bias for one position in the turn falls on every model alike.

    With ``min_turn_ms``, a model that runs faster than that is run back to back in each turn
    until about ``min_turn_ms`` has passed, and the turn's sample is the mean of those runs: a
    model of microseconds timed one run at a time measures mostly timer and scheduler noise.

    Sessions use full graph optimization and ``threads`` intra-op threads. Each session has its
    own thread pool, so idle workers must not busy-wait: the workers of the session that just ran
    would otherwise compete for the cores with the one being timed.
    """
    runners = [Runner(m, feeds, provider, threads, warmup) for m in models]
    return LatencyResult(interleave(runners, repeat, min_turn_ms, progress), runners)


def interleave(runners: Sequence[Runner], repeat: int, min_turn_ms: float = 0.0,
               progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """``repeat`` turns over ``runners`` in rotating order; one array of samples (ms) per runner.

    See :func:`interleaved_latency` for the rotation and ``min_turn_ms``.
    """
    blocks = [r.block_size(min_turn_ms) for r in runners]
    samples = [np.zeros(repeat) for _ in runners]
    n = len(runners)
    for r in range(repeat):
        # the order rotates every turn: whichever model runs first in a turn is measurably slower
        # (up to 20% on a busy 2-core machine), so each model takes every position equally often
        for k in range(n):
            i = (r + k) % n
            samples[i][r] = runners[i].run_block(blocks[i])
        if progress is not None:
            progress(r + 1, repeat)
    return samples
