"""The search space, output fidelity of a candidate, and per-group sensitivity (cached on disk).

**Search space.** Each prunable group *g* gets a level ``l_g`` in ``0 .. L-1``; level *l* removes
the share ``levels[l]`` of every stratum of the group, exactly as the uniform planner would at
that ratio (nearest whole channel, at least ``min_channels`` kept, kept count rounded up to a
multiple of ``round_to``, least important channels first). A configuration is the vector of
levels; its plan is the union of the groups' removals. Ignored nodes are frozen by the
dependency graph, so their groups are not in the space at all.

**Fidelity.** A candidate is pruned, run on the calibration inputs, and its outputs compared
with the original's, per sample *i* and floating-point output::

    cos_i  = <y_i, ŷ_i> / (|y_i| |ŷ_i|)          rel_l2 = |y - ŷ| / |y|
    loss   = 1 - mean_i cos_i                       (what the search minimizes)

plus, for classifier outputs ``[batch, classes]``, the share of samples whose top-1 class is
unchanged, and the accuracy when labels are given.

**Sensitivity.** For each group alone at a few ratios, the loss above: ``s_g(r)``. The search
uses ``Σ_g s_g(r_g)`` (linear between the measured ratios, 0 at 0) as a cheap surrogate and
real evaluations to decide. The table is cached under a key made of the model's bytes, the
calibration inputs and every option that changes it, so a second search on the same model
reuses it.

**Held-out ranking.** With activation statistics (an activation-aware criterion, or
reconstruction), a candidate's channels and refit weights are fitted to the calibration inputs;
its fidelity on those same inputs flatters the refit (on a few samples a least-squares layer
nearly reproduces them whatever was removed). :func:`split_calibration` therefore keeps every
k-th sample out of the fit, and the :class:`Evaluator` scores candidates only on those.

Calibration data: ``--calib DIR`` reads ``.npz`` (arrays named after graph inputs; ``labels``,
``y`` or ``targets`` as labels; a single-input model also takes one unnamed array) and ``.npy``
files (one array for a single-input model, or a file named after the input). Arrays are
concatenated along the batch axis. Without data, seeded standard-normal inputs are used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .apply import apply_plan
from .calibration import CalibrationStats, collect_stats, find_consumers
from .calibration import load_calibration as _batched
from .depgraph import DepGraph, build_depgraph
from .errors import UsageError
from .feeds import plan_feeds
from .graph import Model, load
from .importance import ACTIVATION_CRITERIA, GRAM_CRITERIA, channel_importance
from .io import save_text
from .plan import Plan, _summarize, group_removal
from .reconstruct import consumer_cuts
from .reconstruct import reconstruct as reconstruct_model
from .verify import as_array, session

__all__ = [
    "Calibration",
    "Fidelity",
    "SearchSpace",
    "Evaluator",
    "load_calibration",
    "random_calibration",
    "split_calibration",
    "calibration_stats",
    "sensitivity_key",
    "load_cached",
    "save_cached",
]

log = logging.getLogger(__name__)

_LABEL_KEYS = ("labels", "label", "y", "targets", "target")


@dataclass
class Calibration:
    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = "random"

    def digest(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self.feeds):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.feeds[k]).tobytes())
        return h.hexdigest()[:16]


def load_calibration(folder: str | os.PathLike[str], input_names: Sequence[str], max_samples: int = 32,
                     labels_path: str | os.PathLike[str] | None = None) -> Calibration:
    """Reads ``.npy``/``.npz`` feeds from a folder, or from one such file (see the module docstring)."""
    root = Path(folder)
    if root.is_file() and root.suffix in (".npy", ".npz"):
        files = [root]
    elif not root.is_dir():
        raise UsageError(f"--calib {folder}: not a folder or an .npy/.npz file")
    else:
        files = sorted(p for p in root.iterdir() if p.suffix in (".npy", ".npz"))
    if not files:
        raise UsageError(f"--calib {folder}: no .npy or .npz files in it")
    parts: dict[str, list[np.ndarray]] = {n: [] for n in input_names}
    labels: list[np.ndarray] = []
    for p in files:
        if p.suffix == ".npz":
            with np.load(p) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = {p.stem: np.load(p)}
        for k in list(arrays):
            if k in _LABEL_KEYS:
                labels.append(np.asarray(arrays.pop(k)).reshape(-1))
        for name in input_names:
            if name in arrays:
                parts[name].append(arrays.pop(name))
        if len(input_names) == 1 and arrays and not any(input_names[0] == k for k in arrays):
            floats = [k for k, v in arrays.items() if v.dtype.kind == "f"]
            if len(floats) == 1:
                parts[input_names[0]].append(arrays[floats[0]])
    missing = [n for n, v in parts.items() if not v]
    if missing:
        raise UsageError(f"--calib {folder}: no array for input '{missing[0]}' (name arrays after the graph inputs)")
    feeds = {n: np.concatenate(v, axis=0)[:max_samples] for n, v in parts.items()}
    lab = np.concatenate(labels)[:max_samples] if labels else None
    if labels_path is not None:
        lab = np.asarray(np.load(labels_path)).reshape(-1)[:max_samples]
    n = next(iter(feeds.values())).shape[0]
    if lab is not None and len(lab) != n:
        raise UsageError(f"--calib {folder}: {len(lab)} labels for {n} samples")
    return Calibration(feeds, lab, f"{folder} ({n} samples)")


def random_calibration(proto: onnx.ModelProto, input_shapes: dict[str, list[int]] | None, samples: int,
                       seed: int) -> Calibration:
    """Seeded standard-normal inputs (a warning says the fidelity is only on random inputs)."""
    plan = plan_feeds(proto, input_shapes).require()
    feeds = plan.make(seed=seed, batch=samples if plan.batch_free else None)
    n = samples if plan.batch_free else plan.batch_size
    return Calibration(feeds, None, f"random ({n} samples, seed {seed})")


def split_calibration(calib: Calibration, share: float) -> tuple[Calibration, Calibration]:
    """``(fit, held_out)``: ``round(share · n)`` samples spread evenly over the ``n`` (every k-th) held out.

    Evenly spread rather than the last ones, because calibration files are often ordered by
    source (crops of one photograph, sentences of one document). With ``share <= 0`` or fewer
    than two samples there is nothing to hold out, and both are ``calib`` itself.
    """
    n = _n_samples(calib)
    k = min(n - 1, round(share * n)) if share > 0 else 0
    if k < 1:
        return calib, calib
    hold = (np.arange(k) * n) // k + (n // k - 1)
    mask = np.zeros(n, dtype=bool)
    mask[hold] = True

    def part(m: np.ndarray, what: str) -> Calibration:
        feeds = {name: (v[m] if v.ndim and v.shape[0] == n else v) for name, v in calib.feeds.items()}
        labels = calib.labels[m] if calib.labels is not None else None
        return Calibration(feeds, labels, f"{calib.source}, {int(m.sum())} {what}")

    return part(~mask, "fitted"), part(mask, "held out")


def calibration_stats(model: Model, proto: onnx.ModelProto, calib: Calibration, criterion: str,
                      reconstruct: bool, refit: bool, seed: int) -> CalibrationStats | None:
    """The statistics ``onnxprune prune`` gathers on ``calib``: channel activations, and with a
    refit the Gram matrix of every weighted layer's input; None when neither is needed."""
    if criterion not in ACTIVATION_CRITERIA and not reconstruct:
        return None
    consumers = find_consumers(model)
    batches = _batched([calib.feeds], proto, n_samples=_n_samples(calib), batch_size=32, seed=seed)
    grams = [c.node for c in consumers] if (reconstruct and refit) or criterion in GRAM_CRITERIA else []
    return collect_stats(model, batches, consumers, channels=True, grams=grams, seed=seed, proto=proto)


@dataclass
class Fidelity:
    loss: float
    cosine: float
    rel_l2: float
    top1: float | None = None
    accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fidelity(refs: list[np.ndarray], outs: list[np.ndarray], labels: np.ndarray | None) -> Fidelity:
    coss, rels, top1 = [], [], None
    acc = None
    for a, b in zip(refs, outs):
        if a.dtype.kind != "f" or a.shape != b.shape:
            continue
        a64 = a.astype(np.float64).reshape(a.shape[0], -1) if a.ndim else a.astype(np.float64).reshape(1, -1)
        b64 = b.astype(np.float64).reshape(a64.shape)
        na, nb = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
        dot = (a64 * b64).sum(axis=1)
        cos = np.where((na == 0) & (nb == 0), 1.0, dot / np.maximum(na * nb, 1e-30))
        coss.append(float(np.mean(cos)))
        den = np.linalg.norm(a64)
        rels.append(float(np.linalg.norm(a64 - b64) / den) if den else 0.0)
        if top1 is None and a.ndim == 2 and a.shape[1] > 1:
            top1 = float(np.mean(a.argmax(-1) == b.argmax(-1)))
            if labels is not None and len(labels) == a.shape[0]:
                acc = float(np.mean(b.argmax(-1) == labels))
    cos_m = float(np.mean(coss)) if coss else 1.0
    rel_m = float(np.mean(rels)) if rels else 0.0
    if not math.isfinite(cos_m):
        cos_m = -1.0
    return Fidelity(1.0 - cos_m, cos_m, rel_m, top1, acc)


class SearchSpace:
    """Levels per prunable group and the channels each level removes (see the module docstring)."""

    def __init__(self, dg: DepGraph, levels: Sequence[float], round_to: int = 1, min_channels: int = 1,
                 criterion: str = "l1", seed: int = 0, stats: CalibrationStats | None = None) -> None:
        self.dg = dg
        self.levels = tuple(float(x) for x in levels)
        self.round_to, self.min_channels = round_to, min_channels
        score = channel_importance(dg, criterion, seed, stats)
        self.groups: list[int] = []
        self.removal: list[list[np.ndarray]] = []
        # group ids follow set iteration order, which differs between processes: order the
        # searched groups by their spaces' names so a configuration means the same everywhere
        for g in sorted(dg.groups, key=lambda g: min(g.spaces, default=("", 0))):
            if g.is_barrier:
                continue
            per_level = [group_removal(g, r, score, round_to, min_channels) for r in self.levels]
            if not any(len(x) for x in per_level):
                continue  # rounding keeps every channel at every level
            self.groups.append(g.id)
            self.removal.append(per_level)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def removed(self, config: Sequence[int]) -> np.ndarray:
        mask = np.zeros(self.dg.n_channels, dtype=bool)
        for i, level in enumerate(config):
            if level:
                mask[self.removal[i][level]] = True
        return mask

    def plan(self, config: Sequence[int]) -> Plan:
        mask = self.removed(config)
        return Plan(mask, _summarize(self.dg, mask))

    def ratios(self, config: Sequence[int]) -> list[float]:
        return [self.levels[level] for level in config]

    def uniform(self, level: int) -> tuple[int, ...]:
        return tuple([level] * self.n_groups)


class Evaluator:
    """Holds one loaded model and the reference outputs; evaluates configurations' fidelity.

    Each evaluation prunes a copy of the graph (the analysis is done once), so it costs an
    ``apply_plan``, a serialization, an onnxruntime session and one run on the calibration batch.

    With an activation-aware ``criterion`` (``wanda``, ``fluct``, ``apoz``, ``obs``) or ``reconstruct``,
    the calibration inputs are run through the original model once, here, for channel statistics
    and (``reconstruct`` with ``refit``) the Gram matrix of every weighted layer's input; every
    candidate is then reconstructed from those statistics exactly as ``onnxprune prune
    --reconstruct`` would (:mod:`onnxprune.reconstruct`), without running the model again. Gram
    matrices take ``8·K²`` bytes per layer (``K`` = input features, ``C_in·k_h·k_w`` for a Conv),
    in every worker.

    With ``holdout > 0`` and statistics to gather, the statistics are gathered on the calibration
    samples outside the held-out share (:func:`split_calibration`) and fidelity is measured on the
    held-out ones only (``fit_calib`` and ``calib``); without statistics nothing is fitted, and
    every sample scores.
    """

    def __init__(self, model_bytes: bytes, input_shapes: dict[str, list[int]] | None, ignore: list[str] | None,
                 prune_hidden: bool, levels: Sequence[float], round_to: int, min_channels: int, criterion: str,
                 seed: int, calib: Calibration, threads: int = 1, reconstruct: bool = False,
                 refit: bool = True, holdout: float = 0.0) -> None:
        self.proto = onnx.load_from_string(model_bytes)
        self.model = load(self.proto, input_shapes)
        self.dg = build_depgraph(self.model, ignore, prune_hidden)
        self.reconstruct, self.refit = reconstruct, refit
        fits = criterion in ACTIVATION_CRITERIA or reconstruct
        self.fit_calib, held = split_calibration(calib, holdout) if fits else (calib, calib)
        self.stats = calibration_stats(self.model, self.proto, self.fit_calib, criterion, reconstruct, refit, seed)
        self.space = SearchSpace(self.dg, levels, round_to, min_channels, criterion, seed, self.stats)
        self.calib, self.threads = held, threads
        self.refs = self._run(self.model.to_proto())

    def _run(self, proto: onnx.ModelProto) -> list[np.ndarray]:
        sess = session(proto, optimize=True, threads=self.threads)
        return [as_array(o) for o in sess.run(None, self.calib.feeds)]

    def pruned_proto(self, config: Sequence[int]) -> onnx.ModelProto:
        """The pruned model of ``config`` (not checked: the final choice is validated by ``prune``)."""
        m = self.model
        copy = Model(m.graph.copy(), dict(m.shapes), m.opset, m.ir_version, None, dict(m.input_shapes),
                     list(m.metadata), m.doc_string, m.model_version)
        dg = DepGraph.__new__(DepGraph)
        dg.__dict__.update(self.dg.__dict__)
        dg.model = copy
        plan = self.space.plan(config)
        cuts = consumer_cuts(dg, plan) if self.reconstruct and self.stats is not None else []
        apply_plan(dg, plan)
        if cuts:
            reconstruct_model(copy, cuts, self.stats, refit=self.refit)  # type: ignore[arg-type]
        return copy.to_proto()

    def evaluate(self, config: Sequence[int]) -> Fidelity:
        if not any(config):
            return Fidelity(0.0, 1.0, 0.0, 1.0 if any(r.ndim == 2 for r in self.refs) else None,
                            _fidelity(self.refs, self.refs, self.calib.labels).accuracy)
        try:
            outs = self._run(self.pruned_proto(config))
        except Exception as exc:  # a candidate that fails is the worst, not a crash of the search
            log.warning("candidate failed to run (%s); scored as lost", str(exc).splitlines()[0][:200])
            return Fidelity(2.0, -1.0, float("inf"))
        return _fidelity(self.refs, outs, self.calib.labels)


def _n_samples(calib: Calibration) -> int:
    return int(next(iter(calib.feeds.values())).shape[0]) if calib.feeds else 1


def sensitivity_key(model_bytes: bytes, options: dict[str, Any]) -> str:
    h = hashlib.sha256(model_bytes)
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    env = os.environ.get("ONNXPRUNE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnxprune"


def load_cached(cache_dir: Path, key: str) -> dict[str, Any] | None:
    path = cache_dir / f"sensitivity-{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_cached(cache_dir: Path, key: str, data: dict[str, Any]) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return save_text(cache_dir / f"sensitivity-{key}.json", json.dumps(data))

