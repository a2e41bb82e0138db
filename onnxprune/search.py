"""Pruning as architecture search: per-group ratios chosen against latency on the target provider.

The pipeline (each stage reports progress and respects the time budget):

1. **Latency model** (:mod:`onnxprune.latency_model`): per-layer lookup tables timed on the
   target execution provider at exactly the channel counts the search's levels give each layer,
   and a remainder fitted to whole models timed in turns (original, uniform prunings, seeded
   random configurations), optionally at a serving batch size (``batch``).
2. **Sensitivity** (:mod:`onnxprune.sensitivity`): the fidelity loss of pruning each group alone
   at a few ratios, evaluated in parallel and cached on disk.
3. **Search** over per-group levels, subject to ``latency <= target`` (predicted), and
   ``MACs``/``params`` targets (estimated from per-node shares):

   - ``greedy`` (NetAdapt-style): each step asks, for every group, for the smallest level
     increase that cuts a fixed share ``δ`` of the remaining latency gap (or the largest it
     has), ranks those moves by surrogate ``Δloss / Δms``, evaluates the best ``k`` for real
     (in parallel) and takes the one with the lowest measured ``Δloss / Δms``;
   - ``evolution``: a seeded genetic search (tournament selection, uniform crossover, ±1 level
     mutation, repair to feasibility by raising the levels with the best surrogate trade) on
     the surrogate loss, whose final elite is evaluated for real.

4. **Choice and check**: the three best really evaluated feasible candidates, a few Pareto
   candidates and the uniform configurations around the target are timed end to end, each in
   turns with the original; the latency model's prediction error on them is reported, and the
   most faithful candidate measured within 3 % above the target over every round (uniform ones
   included) is chosen, once a second timing confirms it. When none is, or when the choice runs
   more than 5 % under the target, the latency model is refit with every measurement so far,
   the predicted target is moved by the error left at the round's choice, and the search runs
   again (at most three times); the choice is pruned with :func:`onnxprune.api.prune` (checker +
   onnxruntime validation) and written atomically. (A model-based search drifts toward
   candidates whose latency its model gets wrong; the measurement catches them.)

Candidates are pruned as ``onnxprune prune`` would prune them: channels ranked by
``criterion`` (activation-aware ones from the calibration data) and, with ``reconstruct``, the
layers that lose inputs refit (or bias-compensated) from statistics gathered once, on the
calibration samples outside ``holdout``; candidates are ranked on the held-out ones, and the
choice is written from the statistics of every sample.

Fidelity evaluations run in a process pool (``concurrent.futures.ProcessPoolExecutor``) or on a
Ray cluster (``executor="ray"``, ``pip install 'onnxprune[search-ray]'``); timing always runs
serially in the calling process. With a seed the whole search is deterministic, apart from the
latency measurements themselves.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .api import prune
from .bench import interleaved_latency, resolve_eps
from .calibration import model_inputs
from .depgraph import build_depgraph
from .errors import PlanError, UsageError
from .feeds import plan_feeds
from .graph import load
from .importance import ACTIVATION_CRITERIA, CRITERIA
from .io import load_proto, save_figure, save_proto, save_text
from .latency_model import LatencyModel
from .plan import DEFAULT_ROUND_TO, parse_target
from .profile import profile
from .sensitivity import (
    Evaluator,
    Fidelity,
    SearchSpace,
    calibration_stats,
    default_cache_dir,
    load_cached,
    load_calibration,
    random_calibration,
    save_cached,
    sensitivity_key,
)

__all__ = ["SearchOptions", "Candidate", "SearchResult", "search", "parse_target", "pareto_front", "STRATEGIES"]

log = logging.getLogger(__name__)

STRATEGIES = ("greedy", "evolution")
DEFAULT_LEVELS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
#: a candidate whose measured latency share is within this above the target counts as meeting it
LATENCY_SLACK = 0.03
#: a choice measured this far below the latency target (as a share) is searched again with a relaxed model
RELAX_BELOW = 0.05
#: a whole model faster than this is run back to back within each timing turn
MIN_TURN_MS = 10.0
#: most re-measurements of would-be choices per check (each confirms or drops one)
MAX_CONFIRMATIONS = 8
#: rounds of "measure the choice, tighten the predicted target, search on" after the first
MAX_REFINEMENTS = 3
Progress = Callable[[str, int, int, str], None]

@dataclass
class SearchOptions:
    target_latency: str | None = None
    target_macs: str | None = None
    target_params: str | None = None
    provider: str = "cpu"
    strategy: str = "greedy"
    calib: str | None = None
    labels: str | None = None
    calib_samples: int = 16
    #: share of the calibration samples kept out of the statistics (ranking, refit) to rank candidates on
    holdout: float = 0.25
    budget_minutes: float | None = None
    seed: int = 0
    round_to: int = DEFAULT_ROUND_TO
    min_channels: int = 1
    ignore: list[str] | None = None
    input_shapes: dict[str, list[int]] | None = None
    prune_hidden: bool = False
    criterion: str = "l1"
    #: refit (or, with ``refit=False``, bias-compensate) the layers that lose inputs, in every candidate
    reconstruct: bool = False
    refit: bool = True
    #: batch size of the latency measurements (symbolic leading input dims); None: 1
    batch: int | None = None
    levels: tuple[float, ...] = DEFAULT_LEVELS
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    workers: int = 1
    executor: str = "local"
    address: str | None = None
    threads: int = 0
    cache_dir: str | None = None
    top_k: int = 4
    steps: int = 8
    population: int = 24
    generations: int = 40
    repeat: int = 50
    check_candidates: int = 5


@dataclass
class Candidate:
    config: tuple[int, ...]
    source: str
    predicted_ms: float
    macs: int
    params: int
    fidelity: Fidelity | None = None
    measured_ms: float | None = None
    #: latency relative to the original: measured in the same interleaved run, and predicted
    measured_ratio: float | None = None
    predicted_ratio: float | None = None
    #: every measured share; ``measured_ratio`` is the latest, a choice is confirmed by a second one
    measurements: list[float] = field(default_factory=list)

    @property
    def prediction_error(self) -> float | None:
        """|predicted - measured| / measured, on latency relative to the original (drift cancels)."""
        if self.measured_ratio is None or self.predicted_ratio is None:
            return None
        return abs(self.predicted_ratio - self.measured_ratio) / self.measured_ratio

    @property
    def loss(self) -> float:
        return self.fidelity.loss if self.fidelity is not None else float("inf")

    def as_dict(self, space: SearchSpace) -> dict[str, Any]:
        return {
            "source": self.source,
            "levels": list(self.config),
            "ratios": space.ratios(self.config),
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "measured_ratio": self.measured_ratio,
            "measurements": list(self.measurements),
            "predicted_ratio": self.predicted_ratio,
            "prediction_error": self.prediction_error,
            "macs": self.macs,
            "params": self.params,
            "fidelity": self.fidelity.as_dict() if self.fidelity else None,
        }


@dataclass
class SearchResult:
    best: Candidate
    proto: onnx.ModelProto
    space: SearchSpace
    candidates: list[Candidate]
    baseline_ms: float
    baseline_macs: int
    baseline_params: int
    targets: dict[str, float | None]
    latency_model: dict[str, Any]
    sensitivity: dict[str, Any]
    group_rows: list[dict[str, Any]]
    met: bool
    stopped_early: bool
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    calibration: str = ""

    def pareto(self, x: str = "predicted_ms") -> list[Candidate]:
        return pareto_front([c for c in self.candidates if c.fidelity is not None], x)

    def as_dict(self) -> dict[str, Any]:
        best = self.best.as_dict(self.space)
        errs = [c for c in self.candidates if c.measured_ms]
        return {
            "best": best,
            "targets": self.targets,
            "met": self.met,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "stages_s": self.stages,
            "calibration": self.calibration,
            "original": {"latency_ms": self.baseline_ms, "macs": self.baseline_macs, "params": self.baseline_params},
            "latency_model": self.latency_model,
            "prediction_error": {
                "checked": [{"source": c.source, "predicted_ms": c.predicted_ms, "measured_ms": c.measured_ms,
                             "predicted_ratio": c.predicted_ratio, "measured_ratio": c.measured_ratio,
                             "error": c.prediction_error} for c in errs],
                "max": max((c.prediction_error or 0.0 for c in errs), default=None),
                "chosen": self.best.prediction_error,
            },
            "pareto_latency": [c.as_dict(self.space) for c in self.pareto("predicted_ms")],
            "pareto_macs": [c.as_dict(self.space) for c in self.pareto("macs")],
            "candidates": [c.as_dict(self.space) for c in self.candidates],
            "groups": self.group_rows,
            "sensitivity": self.sensitivity,
        }


def pareto_front(cands: Sequence[Candidate], x: str = "predicted_ms") -> list[Candidate]:
    """Candidates no other beats on both ``x`` (lower) and fidelity loss (lower), by ``x``."""
    pts = sorted(cands, key=lambda c: (getattr(c, x), c.loss))
    front: list[Candidate] = []
    best = float("inf")
    for c in pts:
        if c.loss < best - 1e-12:
            front.append(c)
            best = c.loss
    return front


def _with_batch(proto: onnx.ModelProto, shapes: dict[str, list[int]] | None,
                batch: int | None) -> dict[str, list[int]] | None:
    """``shapes`` plus ``[batch, ...]`` for every graph input whose leading dimension is symbolic.

    Inputs named in ``shapes`` keep the sizes given there; other symbolic dimensions take the
    sizes the model is proven to run at (:func:`onnxprune.feeds.plan_feeds`).
    """
    if batch is None:
        return shapes
    out = dict(shapes or {})
    plan = plan_feeds(proto, shapes, batch=batch)
    for spec in plan.specs:
        if spec.name not in out and spec.batch_axis is not None:
            out[spec.name] = list(spec.shape)
    return out or None


# ---------------------------------------------------------------------------- executors
_WORKER: dict[str, Evaluator] = {}  # one evaluator per worker process, built by its initializer


def _init_worker(args: tuple[Any, ...]) -> None:
    _WORKER["e"] = Evaluator(*args)


def _evaluate_in_worker(config: tuple[int, ...]) -> Fidelity:
    return _WORKER["e"].evaluate(config)


class _Pool:
    """Maps configurations to fidelities: in process, on a local process pool, or on Ray."""

    def __init__(self, kind: str, workers: int, address: str | None, args: tuple[Any, ...],
                 local: Evaluator) -> None:
        self.kind, self.local = kind, local
        self._pool: cf.ProcessPoolExecutor | None = None
        self._ray: Any = None
        if kind == "ray":
            try:
                import ray  # type: ignore[import-not-found]
                from ray.util import ActorPool  # type: ignore[import-not-found]
            except ImportError:
                raise UsageError("--executor ray needs Ray: pip install 'onnxprune[search-ray]'") from None
            if not ray.is_initialized():
                # no address: a local instance on this machine, without the dashboard
                ray.init(address=address, log_to_driver=False, **({} if address else {"include_dashboard": False}))
            actor = ray.remote(num_cpus=1)(Evaluator)
            n = max(1, workers)
            self._ray = ActorPool([actor.remote(*args) for _ in range(n)])
        elif kind == "local" and workers > 1:
            import multiprocessing as mp

            # spawn: a fork of a process holding onnxruntime thread pools is not safe
            self._pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                initializer=_init_worker, initargs=(args,))
        elif kind not in ("local", "ray"):
            raise UsageError(f"--executor {kind}: choose local or ray")

    def map(self, configs: Sequence[tuple[int, ...]], on_done: Callable[[int], None] | None = None) -> list[Fidelity]:
        out: list[Fidelity] = []
        if self._ray is not None:
            for i, f in enumerate(self._ray.map(lambda a, c: a.evaluate.remote(c), list(configs))):
                out.append(f)
                if on_done:
                    on_done(i + 1)
            return out
        if self._pool is not None:
            for i, f in enumerate(self._pool.map(_evaluate_in_worker, configs)):
                out.append(f)
                if on_done:
                    on_done(i + 1)
            return out
        for i, c in enumerate(configs):
            out.append(self.local.evaluate(c))
            if on_done:
                on_done(i + 1)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._ray = None


# ---------------------------------------------------------------------------- the search
class _Search:
    def __init__(self, source: str | os.PathLike[str] | onnx.ModelProto, opts: SearchOptions,
                 progress: Progress | None) -> None:
        self.t0 = time.monotonic()
        self.opts = opts
        self.progress = progress or (lambda stage, done, total, info: None)
        self.deadline = (self.t0 + 60 * opts.budget_minutes) if opts.budget_minutes else None
        self.stopped_early = False
        self.stages: dict[str, float] = {}
        self._validate()
        self.proto = load_proto(source)
        self.source = None if isinstance(source, onnx.ModelProto) else os.fspath(source)
        self.input_shapes = _with_batch(self.proto, opts.input_shapes, opts.batch)
        if opts.batch is not None and self.input_shapes == opts.input_shapes:
            log.warning("--batch %d: no graph input has a symbolic first axis (or --input-shape fixed it); "
                        "latency is measured at the model's own input sizes", opts.batch)
        self.model_bytes = self.proto.SerializeToString()
        self.provider = resolve_eps(opts.provider)[0]

    def _validate(self) -> None:
        o = self.opts
        if o.strategy not in STRATEGIES:
            raise UsageError(f"--strategy {o.strategy}: choose from {', '.join(STRATEGIES)}")
        if not (o.target_latency or o.target_macs or o.target_params):
            raise UsageError("give a target: --target-latency (e.g. 0.5x or 12ms), --target-macs or --target-params")
        if o.round_to < 1 or o.min_channels < 1:
            raise PlanError("--round-to and --min-channels must be at least 1")
        if o.workers < 1:
            raise UsageError("--workers must be at least 1")
        if o.budget_minutes is not None and o.budget_minutes <= 0:
            raise UsageError("--budget-minutes must be positive")
        if o.calib_samples < 1:
            raise UsageError("--calib-samples must be at least 1")
        if not 0 <= o.holdout < 1:
            raise UsageError("--holdout must be in [0, 1)")
        if o.batch is not None and o.batch < 1:
            raise UsageError("--batch must be at least 1")
        if o.criterion not in CRITERIA:
            raise UsageError(f"--criterion {o.criterion}: choose from {', '.join(CRITERIA)}")
        if (o.criterion in ACTIVATION_CRITERIA or o.reconstruct) and not o.calib:
            what = "--reconstruct" if o.reconstruct else f"--criterion {o.criterion}"
            raise UsageError(f"{what} needs calibration data: --calib DIR|FILE (or --calib random, which says "
                             "little about real inputs)")
        if any(not 0 < r < 1 for r in o.sensitivity_ratios):
            raise UsageError("sensitivity ratios must be in (0, 1)")
        self.t_lat = parse_target(o.target_latency, "latency", "ms")
        self.t_macs = parse_target(o.target_macs, "macs")
        self.t_params = parse_target(o.target_params, "params")

    def out_of_time(self, share: float = 1.0) -> bool:
        """Whether ``share`` of the whole budget (from the start) is spent."""
        if self.deadline is None:
            return False
        budget = self.deadline - self.t0
        return time.monotonic() >= self.t0 + share * budget

    # ------------------------------------------------------------------ stages
    def prepare(self) -> None:
        o = self.opts
        names = [i.name for i in model_inputs(self.proto)]
        if o.calib and o.calib != "random":
            self.calib = load_calibration(o.calib, names, o.calib_samples, o.labels)
        else:
            if not o.calib:
                log.warning("no --calib data: fidelity is measured on seeded random inputs, which says little "
                            "about accuracy on real data")
            self.calib = random_calibration(self.proto, o.input_shapes, o.calib_samples, o.seed)
        args = (self.model_bytes, self.input_shapes, o.ignore, o.prune_hidden, o.levels, o.round_to,
                o.min_channels, o.criterion, o.seed, self.calib, 1,  # one thread: same numbers in any executor
                o.reconstruct, o.refit, o.holdout)
        self.evaluator = Evaluator(*args)
        fit, held = self.evaluator.fit_calib, self.evaluator.calib
        if fit is not held:
            log.info("statistics from %s; candidates ranked on %s", fit.source, held.source)
        elif o.criterion in ACTIVATION_CRITERIA or o.reconstruct:
            log.warning("candidates are ranked on the calibration samples their statistics were fitted on "
                        "(--holdout 0, or a single sample): fidelity is flattered, most where the refit fits best")
        # the evaluator's analysis is the search's: one ranking of channels, one space
        self.model, self.dg, self.space = self.evaluator.model, self.evaluator.dg, self.evaluator.space
        if self.space.n_groups == 0:
            raise PlanError("nothing to search: every group is a barrier (run `onnxprune analyze` to see why)")
        self.pool = _Pool(o.executor, o.workers, o.address, args, self.evaluator)
        self.lat = LatencyModel(self.model, self.dg, self.provider, o.threads, o.round_to)
        self._feeds = self._latency_feeds()
        self.cands: dict[tuple[int, ...], Candidate] = {}

    def _latency_feeds(self) -> dict[str, np.ndarray]:
        shapes = {t.name: [int(d) for d in self.model.shapes[t.name]] for t in self.model.graph.inputs
                  if self.model.shapes.get(t.name) and all(d is not None for d in self.model.shapes[t.name])}
        plan = self.model.feeds or plan_feeds(self.proto, shapes)
        return plan.with_shapes(shapes).make(seed=self.opts.seed + 1)

    def candidate(self, config: tuple[int, ...], source: str) -> Candidate:
        c = self.cands.get(config)
        if c is None:
            removed = self.space.removed(config)
            macs, params = self.lat.macs_params(removed)
            c = Candidate(config, source, self.lat.predict(removed), macs, params)
            self.cands[config] = c
        return c

    def evaluate(self, configs: Sequence[tuple[int, ...]], source: str, stage: str) -> list[Candidate]:
        todo = [c for c in dict.fromkeys(configs) if self.candidate(c, source).fidelity is None]
        if todo:
            fids = self.pool.map(todo, lambda i: self.progress(stage, i, len(todo), ""))
            for c, f in zip(todo, fids):
                self.cands[c].fidelity = f
        return [self.cands[c] for c in configs]

    def _measure(self, configs: Sequence[tuple[int, ...]], repeat: int) -> list[float]:
        """End-to-end latency of the original (first) and of each of ``configs``.

        Each candidate is timed in turns with the original (A B A B ..., as ``onnxprune compare``
        does) and its share of the original's median is taken from that pair; returned times are
        those shares times the original's median over all pairs. Pairs, not one loop over every
        model: on a small cache, which models share a loop changes how warm each one runs.
        """
        shares, base = [], []
        for c in configs:
            res = interleaved_latency([self.proto, self.evaluator.pruned_proto(c)], self._feeds,
                                      threads=self.opts.threads, warmup=5, repeat=repeat, provider=self.provider,
                                      min_turn_ms=MIN_TURN_MS)
            m = res.medians_ms
            base.append(m[0])
            shares.append(m[1] / m[0])
            del res
        t0 = float(np.median(base)) if base else 0.0
        return [t0] + [s * t0 for s in shares]

    def _refit_latency(self) -> None:
        """Fits the latency model again to every whole-model measurement and updates predictions."""
        self.lat.fit(*self._fit_data)
        for c in self.cands.values():
            c.predicted_ms = self.lat.predict(self.space.removed(c.config))

    def build_latency_model(self) -> None:
        t = time.monotonic()
        levels = [self.space.removed(self.space.uniform(lv)) for lv in range(self.space.n_levels)]
        n_entries = self.lat.build_tables(progress=lambda s, d, n: self.progress("timing layers", d, n, ""),
                                          deadline=lambda: self.out_of_time(0.25), configs=levels)
        rng = np.random.default_rng(self.opts.seed)
        L = self.space.n_levels
        fit = [self.space.uniform(lv) for lv in sorted(set(range(1, L, max(1, (L - 1) // 3))) | {L - 1})]
        fit += [tuple(int(x) for x in rng.integers(0, L, self.space.n_groups)) for _ in range(3)]
        self.progress("timing whole models", 0, 1, f"{len(fit) + 1} models in turns")
        ms = self._measure(fit, repeat=max(5, self.opts.repeat // 2))
        self.baseline_ms = ms[0]
        zero = tuple([0] * self.space.n_groups)
        labels = ["original"] + [f"uniform {self.space.levels[c[0]]:g}" if len(set(c)) == 1 else "random" for c in fit]
        self._fit_data = ([self.space.removed(zero)] + [self.space.removed(c) for c in fit], list(ms), labels)
        self._fit_rows: dict[tuple[int, ...], int] = {}  # checked candidate -> its row in _fit_data
        self.lat.fit(*self._fit_data)
        self.cands.clear()  # predictions made before the fit are stale
        self.progress("timing whole models", 1, 1, f"{n_entries} layer entries")
        self.stages["latency_model_s"] = time.monotonic() - t
        self.target_ms = None
        if self.t_lat:
            self.target_ms = self.t_lat[1] * self.baseline_ms if self.t_lat[0] == "ratio" else self.t_lat[1]
        self.target_macs = None
        if self.t_macs:
            self.target_macs = self.t_macs[1] * self.lat.full_macs if self.t_macs[0] == "ratio" else self.t_macs[1]
        self.target_params = None
        if self.t_params:
            self.target_params = (self.t_params[1] * self.lat.full_params if self.t_params[0] == "ratio"
                                  else self.t_params[1])

    def sensitivity(self) -> None:
        t = time.monotonic()
        o = self.opts
        levels = list(self.space.levels)
        sens_levels = sorted({int(np.argmin([abs(lv - r) for lv in levels])) for r in o.sensitivity_ratios} - {0})
        options = {"levels": levels, "sens_levels": sens_levels, "round_to": o.round_to, "min": o.min_channels,
                   "ignore": o.ignore, "criterion": o.criterion, "hidden": o.prune_hidden,
                   "reconstruct": [o.reconstruct, o.refit] if o.reconstruct else False,
                   "shapes": self.input_shapes, "calib": self.calib.digest(), "seed": o.seed,
                   "holdout": o.holdout}
        self.sens_key = sensitivity_key(self.model_bytes, options)
        cache_dir = Path(o.cache_dir) if o.cache_dir else default_cache_dir()
        cached = load_cached(cache_dir, self.sens_key)
        self.sens_from_cache = cached is not None
        n = self.space.n_groups
        table = np.full((n, len(levels)), np.nan)
        table[:, 0] = 0.0
        if cached is not None:
            table = np.array(cached["table"], dtype=np.float64)
            log.info("sensitivity reused from %s", cache_dir)
        else:
            configs = []
            for gi in range(n):
                for lv in sens_levels:
                    cfg = [0] * n
                    cfg[gi] = lv
                    configs.append((gi, lv, tuple(cfg)))
            done = 0
            # in slices, so the budget is checked while it runs
            step = max(1, 2 * o.workers)
            for s in range(0, len(configs), step):
                if self.out_of_time(0.5):
                    self.stopped_early = True
                    log.warning("time budget: sensitivity measured for %d of %d (group, ratio) pairs", done, len(configs))
                    break
                part = configs[s : s + step]
                fids = self.pool.map([c for _, _, c in part])
                for (gi, lv, _), f in zip(part, fids):
                    table[gi, lv] = f.loss
                done += len(part)
                self.progress("sensitivity", done, len(configs), "")
            complete = not np.isnan(table[:, sens_levels]).any()
            if complete:
                save_cached(cache_dir, self.sens_key, {"table": table.tolist(), "options": options})
        # fill: linear in ratio between measured levels; unmeasured groups take the worst measured
        measured = table[:, 1:]
        worst = np.array([np.max(col[np.isfinite(col)]) if np.isfinite(col).any() else np.nan for col in measured.T])
        for gi in range(n):
            row = table[gi]
            known = [i for i in range(len(levels)) if np.isfinite(row[i])]
            if len(known) <= 1:
                row[1:] = np.nan_to_num(worst, nan=1.0)
                known = list(range(len(levels)))
            xs = [levels[i] for i in known]
            ys = [row[i] for i in known]
            for i in range(len(levels)):
                if not np.isfinite(row[i]) or i not in known:
                    x = levels[i]
                    if x <= xs[-1]:
                        row[i] = float(np.interp(x, xs, ys))
                    else:  # beyond the last measured ratio: extend the last slope
                        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 else 0.0
                        row[i] = ys[-1] + max(slope, 0.0) * (x - xs[-1])
        self.sens = np.maximum.accumulate(table, axis=1)  # more pruning is never assumed better
        self.stages["sensitivity_s"] = time.monotonic() - t

    def surrogate(self, config: Sequence[int]) -> float:
        return float(sum(self.sens[i, lv] for i, lv in enumerate(config)))

    def feasible(self, c: Candidate) -> bool:
        return ((self.target_ms is None or c.predicted_ms <= self.target_ms)
                and (self.target_macs is None or c.macs <= self.target_macs)
                and (self.target_params is None or c.params <= self.target_params))

    def gap(self, c: Candidate) -> float:
        """How far a candidate is from the targets (0 when feasible), in shares of each target."""
        g = 0.0
        if self.target_ms is not None:
            g += max(0.0, c.predicted_ms / self.target_ms - 1)
        if self.target_macs is not None:
            g += max(0.0, c.macs / self.target_macs - 1)
        if self.target_params is not None:
            g += max(0.0, c.params / self.target_params - 1)
        return g

    def _cost(self, c: Candidate) -> float:
        """What a step trades fidelity against: predicted ms, or the MACs/params share if no latency target."""
        if self.target_ms is not None:
            return c.predicted_ms
        if self.target_macs is not None:
            return c.macs / self.lat.full_macs * self.baseline_ms
        return c.params / max(self.lat.full_params, 1) * self.baseline_ms

    # ------------------------------------------------------------------ strategies
    def greedy(self, start: tuple[int, ...] | None = None) -> None:
        o = self.opts
        n, L = self.space.n_groups, self.space.n_levels
        cur = self.candidate(start or tuple([0] * n), "greedy")
        self.evaluate([cur.config], "greedy", "search: greedy")
        delta = max((self._cost(cur) - (self._cost_target() or 0)) / max(o.steps, 1), 1e-6)
        step = 0
        while not self.feasible(cur):
            if self.out_of_time():
                self.stopped_early = True
                log.warning("time budget reached after %d greedy steps", step)
                break
            moves = []
            for i in range(n):
                lv = cur.config[i]
                best_move = None
                for nl in range(lv + 1, L):
                    cfg = cur.config[:i] + (nl,) + cur.config[i + 1 :]
                    cand = self.candidate(cfg, "greedy")
                    gain = self._cost(cur) - self._cost(cand)
                    if gain <= 1e-9:
                        continue
                    best_move = (cfg, gain)
                    if gain >= delta:
                        break
                if best_move is not None:
                    cfg, gain = best_move
                    d_loss = self.surrogate(cfg) - self.surrogate(cur.config)
                    moves.append((max(d_loss, 0.0) / gain, cfg))
            if not moves:
                log.warning("greedy: no move cuts latency further; targets not reachable at these levels")
                break
            moves.sort()
            picked = [cfg for _, cfg in moves[: max(1, o.top_k)]]
            evald = self.evaluate(picked, "greedy", f"search: greedy step {step + 1}")
            base = cur.loss
            cur = min(evald, key=lambda c: (max(c.loss - base, 0.0) / max(self._cost(cur) - self._cost(c), 1e-9),
                                            c.config))
            step += 1
            self.progress("search: greedy", step, max(step, o.steps), f"loss {cur.loss:.4f}, "
                          f"predicted {cur.predicted_ms:.2f} ms")

    def _cost_target(self) -> float | None:
        if self.target_ms is not None:
            return self.target_ms
        if self.target_macs is not None:
            return self.target_macs / self.lat.full_macs * self.baseline_ms
        if self.target_params is not None:
            return self.target_params / max(self.lat.full_params, 1) * self.baseline_ms
        return None

    def _step_gains(self) -> np.ndarray:
        """Cost saved by each single-level step of each group alone (from the unpruned model)."""
        n, L = self.space.n_groups, self.space.n_levels
        zero = [0] * n
        base = self._cost(self.candidate(tuple(zero), "evolution"))
        gains = np.zeros((n, L))
        for i in range(n):
            prev = base
            for lv in range(1, L):
                cost = self._cost(self.candidate(tuple(zero[:i] + [lv] + zero[i + 1 :]), "evolution"))
                gains[i, lv] = max(prev - cost, 1e-9)
                prev = cost
        return gains

    def _repair(self, cfg: list[int], rng: np.random.Generator) -> tuple[int, ...]:
        """Raises levels until the candidate is feasible: mostly the best surrogate trade, sometimes at random.

        The cost a raise saves is estimated from single-group steps, so the latency model is
        asked only once per round of raises, not once per group and level.
        """
        L = self.space.n_levels
        c = self.candidate(tuple(cfg), "evolution")
        for _ in range(self.space.n_groups * L):
            if self.feasible(c):
                break
            opts = [i for i in range(len(cfg)) if cfg[i] < L - 1]
            if not opts:
                break
            target = self._cost_target()
            est = self._cost(c)
            need = est - target if target is not None else 0.0
            saved = 0.0
            while opts and (saved < need or saved == 0.0):
                if rng.random() < 0.3:
                    i = int(rng.choice(opts))
                else:
                    i = min(opts, key=lambda j: ((self.sens[j, cfg[j] + 1] - self.sens[j, cfg[j]])
                                                 / self._gains[j, cfg[j] + 1], j))
                cfg[i] += 1
                saved += self._gains[i, cfg[i]]
                opts = [j for j in range(len(cfg)) if cfg[j] < L - 1]
            c = self.candidate(tuple(cfg), "evolution")
        return tuple(cfg)

    def evolution(self, start: tuple[int, ...] | None = None) -> None:
        o = self.opts
        rng = np.random.default_rng(o.seed)
        n, L = self.space.n_groups, self.space.n_levels
        self._gains = self._step_gains()
        pop: list[tuple[int, ...]] = []
        if start is not None:
            pop.append(self._repair(list(start), rng))
        for lv in range(L):
            pop.append(self._repair([lv] * n, rng))
        while len(pop) < o.population:
            pop.append(self._repair([int(x) for x in rng.integers(0, max(2, L // 2), n)], rng))

        def fitness(cfg: tuple[int, ...]) -> tuple[float, float]:
            c = self.candidate(cfg, "evolution")
            return (self.gap(c), self.surrogate(cfg))

        for gen in range(o.generations):
            if self.out_of_time(0.85):
                self.stopped_early = True
                log.warning("time budget reached after %d generations", gen)
                break
            scored = sorted(set(pop), key=lambda c: (fitness(c), c))
            elite = scored[: max(2, o.population // 4)]
            children = list(elite)
            while len(children) < o.population:
                a, b = (min(rng.choice(len(scored), 2)) for _ in range(2))  # tournaments of two
                pa, pb = scored[int(a)], scored[int(b)]
                mask = rng.random(n) < 0.5
                child = [pa[i] if mask[i] else pb[i] for i in range(n)]
                for i in range(n):
                    if rng.random() < 1.5 / n:
                        child[i] = int(np.clip(child[i] + rng.choice([-1, 1]), 0, L - 1))
                children.append(self._repair(child, rng))
            pop = children
            best = min(pop, key=lambda c: (fitness(c), c))
            self.progress("search: evolution", gen + 1, o.generations,
                          f"surrogate loss {self.surrogate(best):.4f}")
        final = sorted(set(pop), key=lambda c: (fitness(c), c))[: max(o.top_k * 2, 4)]
        self.evaluate(final, "evolution", "search: evaluating elite")

    # ------------------------------------------------------------------ finish
    def choose(self) -> tuple[Candidate, bool]:
        # uniform references compete too: where one of them is the best trade, it is the answer
        evald = [c for c in self.cands.values() if c.fidelity is not None]
        feas = [c for c in evald if self.feasible(c)]
        if feas:
            return min(feas, key=lambda c: (c.loss, c.predicted_ms, c.config)), True
        log.warning("no evaluated candidate meets the targets; returning the closest one")
        pool = evald or list(self.cands.values())
        return min(pool, key=lambda c: (self.gap(c), c.loss, c.config)), False

    def _shortlist(self, best: Candidate, n: int = 3) -> list[Candidate]:
        """The best feasible candidates by loss (``best`` first), to be confirmed end to end."""
        feas = sorted((c for c in self.cands.values() if c.fidelity is not None
                       and self.feasible(c) and c is not best), key=lambda c: (c.loss, c.config))
        return [best] + feas[: n - 1]

    def _time(self, cands: Sequence[Candidate], again: bool = False) -> None:
        """Times ``cands`` end to end, each in turns with the original; records measured shares.

        With ``again``, candidates already measured are timed once more (twice the runs), and the
        new share replaces the old one: the old one is what made them a would-be choice, so it is
        biased low; the new one was not selected on.
        """
        cands = list({c.config: c for c in cands if again or c.measured_ratio is None}.values())
        if not cands:
            return
        ms = self._measure([c.config for c in cands], repeat=self.opts.repeat * (2 if again else 1))
        base_pred = self.lat.predict(self.space.removed(tuple([0] * self.space.n_groups)))
        for c, m in zip(cands, ms[1:]):
            c.measurements.append(m / ms[0])
            c.measured_ratio = c.measurements[-1]
            c.measured_ms = c.measured_ratio * ms[0]
            c.predicted_ratio = c.predicted_ms / base_pred
            # every end-to-end measurement also refines the latency model for later rounds; a
            # candidate timed again replaces its earlier point, which was biased low by selection
            at = self._fit_rows.setdefault(c.config, len(self._fit_data[0]))
            row = (self.space.removed(c.config), c.measured_ratio * self.baseline_ms, f"checked ({c.source})")
            for col, v in zip(self._fit_data, row):
                col[at:at + 1] = [v]

    def _meets(self, c: Candidate) -> bool:
        """Measured within the latency target (``LATENCY_SLACK`` above it), and within the other targets."""
        if self.user_target_ms is None or c.measured_ratio is None or c.fidelity is None:
            return False
        share = self.user_target_ms / self.baseline_ms
        return (c.measured_ratio <= share * (1 + LATENCY_SLACK)
                and (self.target_macs is None or c.macs <= self.target_macs)
                and (self.target_params is None or c.params <= self.target_params))

    def _time_uniform(self) -> None:
        """Measures the uniform configurations around the target until the least pruned one that
        meets it is known, so it is always among the candidates the choice is made from."""
        uni = [self.cands[self.space.uniform(lv)] for lv in range(1, self.space.n_levels)]
        # start at the least pruned uniform predicted within the target, and the one just above it
        target = self.target_ms if self.target_ms is not None else 0.0
        first = next((i for i, c in enumerate(uni) if c.predicted_ms <= target), len(uni) - 1)
        self._time(uni[max(first - 1, 0): first + 1])
        for _ in range(len(uni)):
            measured = [i for i, c in enumerate(uni) if c.measured_ratio is not None]
            ok = [i for i in measured if self._meets(uni[i])]
            if not ok:
                nxt = max(measured) + 1  # every measured one is too slow: prune more
            elif min(ok) > 0 and uni[min(ok) - 1].measured_ratio is None:
                nxt = min(ok) - 1  # a milder one may meet the target too
            else:
                break
            if nxt >= len(uni):
                break
            self._time([uni[nxt]])
        log.info("uniform, measured: %s", ", ".join(f"{self.space.levels[i + 1]:g}: {c.measured_ratio:.3f}"
                                                    for i, c in enumerate(uni) if c.measured_ratio is not None))

    def _pick(self, confirm: bool = True) -> Candidate | None:
        """The most faithful candidate measured within the targets, over every round (uniform ones included).

        Of many candidates timed once on a shared machine, the most faithful one that met the
        target is often the one whose timing was luckiest; so with ``confirm`` a would-be choice
        timed only once is timed again, and the new time decides, until one holds (at most
        ``MAX_CONFIRMATIONS`` times).
        """
        for _ in range(MAX_CONFIRMATIONS if confirm else 0):
            ok = [c for c in self.cands.values() if self._meets(c)]
            if not ok:
                return None
            c = min(ok, key=lambda c: (c.loss, c.measured_ratio, c.config))
            if len(c.measurements) >= 2:
                return c
            self._time([c], again=True)
        ok = [c for c in self.cands.values() if self._meets(c)]
        return min(ok, key=lambda c: (len(c.measurements) < 2, c.loss, c.config)) if ok else None

    def _check(self, best: Candidate, met: bool) -> tuple[Candidate, bool]:
        """Times the shortlist, the uniform configurations around the target and a few Pareto
        candidates end to end; picks on measured latency.

        Returns the most faithful candidate measured within the targets so far (every round, the
        uniform ones included) and True, or, when none is, the fastest of the shortlist and False
        (True with no latency target).
        """
        o = self.opts
        # the best few feasible candidates (the choice is confirmed on measured latency, not only
        # predicted) and a few Pareto candidates, each in turns with the original
        shortlist = self._shortlist(best) if met else [best]
        front = [c for c in pareto_front([c for c in self.cands.values() if c.fidelity is not None])
                 if c not in shortlist and c.measured_ratio is None]
        n_front = max(o.check_candidates - len(shortlist), 1)
        step = max(1, len(front) // n_front)
        check = [c for c in shortlist if c.measured_ratio is None] + front[::step][:n_front]
        self.progress("checking", 0, 1, f"{len(check)} candidates end to end")
        self._time(check)
        if self.user_target_ms is not None:
            self._time_uniform()
        self.progress("checking", 1, 1, "")
        if self.user_target_ms is None:
            return best, True
        pick = self._pick()
        if pick is not None:
            return pick, True
        return min(shortlist, key=lambda c: (c.measured_ratio or float("inf"), c.loss, c.config)), False

    def run(self) -> SearchResult:
        o = self.opts
        self.progress("analyzing", 0, 1, "")
        self.prepare()
        self.progress("analyzing", 1, 1, f"{self.space.n_groups} groups")
        self.build_latency_model()
        self.sensitivity()
        # uniform references on the same scale (not chosen, shown on the Pareto plot)
        self.evaluate([self.space.uniform(lv) for lv in range(1, self.space.n_levels)], "uniform", "uniform references")
        for lv in range(1, self.space.n_levels):
            self.cands[self.space.uniform(lv)].source = "uniform"
        self.user_target_ms = self.target_ms
        start: tuple[int, ...] | None = None
        self.stages["search_s"] = self.stages["check_s"] = 0.0
        for attempt in range(1 + MAX_REFINEMENTS):
            t = time.monotonic()
            getattr(self, o.strategy)(start)
            self.stages["search_s"] += time.monotonic() - t
            chosen, met = self.choose()  # this round's choice, on predicted latency
            t = time.monotonic()
            best, measured_ok = self._check(chosen, met)
            self.stages["check_s"] += time.monotonic() - t
            if not met or self.out_of_time() or attempt == MAX_REFINEMENTS or self.user_target_ms is None:
                break
            share = self.user_target_ms / self.baseline_ms
            if measured_ok and (best.measured_ratio or 1.0) >= share * (1 - RELAX_BELOW):
                break  # the pick lands within the window below the target
            if len(chosen.measurements) < 2 and not self.out_of_time():
                # one timing off the window is as likely luck as the model's error: time it again
                # before it moves the target (the new timing replaces the old, as in _pick)
                self._time([chosen], again=True)
                if share * (1 - RELAX_BELOW) <= (chosen.measured_ratio or 1.0) <= share * (1 + LATENCY_SLACK):
                    break
            # refit the latency model with every measurement so far, then move the predicted
            # target by what remains of the error at this round's choice: tighter where the model
            # underestimated it (search on from the choice), looser where it overestimated it
            # (search again from the unpruned model, the choice being faster than it need be)
            self._refit_latency()
            measured = chosen.measured_ratio or 1.0
            above = measured > share * (1 + LATENCY_SLACK)
            if not above and measured >= share * (1 - RELAX_BELOW):
                break  # the round's choice landed; the pick is more faithful still, and faster
            self.target_ms = self.user_target_ms * chosen.predicted_ms / (measured * self.baseline_ms)
            start = chosen.config if above else None
            why = "latency measured above target" if above else "latency measured well below target"
            log.info("measured %.3f vs predicted %.3f of the original: searching again toward %.3f ms predicted",
                     measured, chosen.predicted_ratio or 1.0, self.target_ms)
            self.progress("refining", attempt + 1, MAX_REFINEMENTS, why)
        if self.user_target_ms is not None and met:
            pick = self._pick(confirm=not self.out_of_time())
            if pick is not None:
                best = pick
            else:
                met = False
                log.warning("no candidate measured within %.0f%% of the latency target; the fastest "
                            "measured one is returned", 100 * LATENCY_SLACK)
        t = time.monotonic()
        model = load(onnx.load_from_string(self.model_bytes), self.input_shapes)
        dg = build_depgraph(model, o.ignore, o.prune_hidden)
        stats = self.evaluator.stats
        if self.evaluator.fit_calib is not self.evaluator.calib:
            # ranked on held-out samples; written as `onnxprune prune` would write it, from all of them
            stats = calibration_stats(model, self.proto, self.calib, o.criterion, o.reconstruct, o.refit, o.seed)
        space = SearchSpace(dg, o.levels, o.round_to, o.min_channels, o.criterion, o.seed, stats)
        pr = prune(model, plan=space.plan(best.config), depgraph=dg, reconstruct=o.reconstruct, refit=o.refit,
                   stats=stats)
        real = profile(load(pr.proto, self.input_shapes))
        best.macs, best.params = real.macs, real.params
        if self.target_macs is not None and best.macs > self.target_macs:
            met = False
            log.warning("the chosen model has %d MACs, over the target %d", best.macs, int(self.target_macs))
        self.stages["check_s"] += time.monotonic() - t
        self.pool.close()
        rows = []
        ratios = self.space.ratios(best.config)
        for i, g in enumerate(self.space.groups):
            grp = self.dg.groups[g]
            removed = len(self.space.removal[i][best.config[i]])
            rows.append({"group": g, "members": grp.members[:3], "channels": grp.size, "kept": grp.size - removed,
                         "ratio": ratios[i], "sensitivity": [float(x) for x in self.sens[i]]})
        return SearchResult(
            best, pr.proto, self.space, list(self.cands.values()), self.baseline_ms, self.lat.full_macs,
            self.lat.full_params,
            {"latency_ms": self.user_target_ms, "latency_ms_predicted": self.target_ms, "macs": self.target_macs,
             "params": self.target_params},
            self.lat.describe(),
            {"key": self.sens_key, "from_cache": self.sens_from_cache, "levels": list(self.space.levels)},
            rows, met, self.stopped_early, time.monotonic() - self.t0, self.stages, self.calib.source,
        )


def search(source: str | os.PathLike[str] | onnx.ModelProto, options: SearchOptions | None = None,
           progress: Progress | None = None, **kw: Any) -> SearchResult:
    """Searches per-group pruning ratios for the best fidelity within the targets.

    Args:
        source: model path or ``ModelProto`` (never modified).
        options: :class:`SearchOptions`; keyword arguments override its fields.
        progress: ``progress(stage, done, total, info)`` called as the stages advance.
    """
    opts = options or SearchOptions()
    for k, v in kw.items():
        if not hasattr(opts, k):
            raise TypeError(f"unknown search option '{k}'")
        setattr(opts, k, v)
    s = _Search(source, opts, progress)
    try:
        return s.run()
    finally:
        pool = getattr(s, "pool", None)
        if pool is not None:
            pool.close()


# ---------------------------------------------------------------------------- outputs
def save_result(result: SearchResult, output: str | os.PathLike[str], report_dir: str | os.PathLike[str] | None,
                protect: tuple[str, ...] = (), barriers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Writes the model atomically, and into ``report_dir`` ``search.json``, ``pareto.png``,
    ``report.md`` and a self-contained ``report.html`` (plots need matplotlib, the page markdown);
    ``barriers`` (:func:`onnxprune.report.barrier_kinds` of the original) adds what stays frozen."""
    from .report import write_search_report

    out: dict[str, Any] = {"model": str(save_proto(result.proto, output, protect=protect))}
    if report_dir is None:
        return out
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    data = result.as_dict()
    save_text(d / "search.json", json.dumps(data, indent=2))
    out["json"] = str(d / "search.json")
    out["plot"] = str(d / "pareto.png") if plot_pareto(result, d / "pareto.png") else None
    md, html, _ = write_search_report(result, d, "pareto.png" if out["plot"] else None, barriers)
    out["report"] = str(md)
    out["html"] = str(html) if html else None
    return out


def plot_pareto(result: SearchResult, path: Path) -> bool:
    """Latency vs fidelity and MACs vs fidelity; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cands = [c for c in result.candidates if c.fidelity is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, x, label, scale in ((axes[0], "predicted_ms", "predicted latency (ms)", 1.0),
                                (axes[1], "macs", "MACs (millions)", 1e-6)):
        for src, style in (("uniform", dict(marker="s", color="tab:gray")),
                           ("greedy", dict(marker="o", color="tab:blue")),
                           ("evolution", dict(marker="^", color="tab:orange"))):
            pts = [c for c in cands if c.source == src]
            if pts:
                ax.scatter([getattr(c, x) * scale for c in pts], [c.fidelity.cosine for c in pts],  # type: ignore[union-attr]
                           s=18, alpha=0.6, label=src, **style)
        front = pareto_front(cands, x)
        ax.plot([getattr(c, x) * scale for c in front], [c.fidelity.cosine for c in front], "k--", lw=1,  # type: ignore[union-attr]
                label="Pareto front")
        b = result.best
        ax.scatter([getattr(b, x) * scale], [b.fidelity.cosine if b.fidelity else 0], s=120, facecolors="none",
                   edgecolors="red", label="chosen")
        if x == "predicted_ms" and result.targets.get("latency_ms"):
            ax.axvline(result.targets["latency_ms"], color="red", lw=0.8, ls=":", label="target")
        meas = [c for c in cands if c.measured_ratio]
        if x == "predicted_ms" and meas:  # measured relative to the original, on the original's scale
            xs = [c.measured_ratio * result.baseline_ms for c in meas]  # type: ignore[operator]
            ax.scatter(xs, [c.fidelity.cosine for c in meas], marker="x",  # type: ignore[union-attr]
                       color="green", label="measured end to end")
        ax.set_xlabel(label)
        ax.set_ylabel("output cosine similarity")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True
