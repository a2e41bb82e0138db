"""Healing: distils a pruned model towards its original on unlabeled inputs, in the same graph.

Pruning without gradients (importance, reconstruction) keeps compact pretrained networks close to
the original only up to a point; past it, only training recovers them. ``heal`` trains the pruned
graph's own weights against the original (the teacher) without the training code and without
labels:

* the **student** is the pruned ONNX graph run by :class:`~onnxprune.torchrun.TorchGraph` (torch,
  an optional extra); only initializer values change, so nodes, names, opset and metadata stay
  exactly as the exporter and pruning wrote them;
* the **teacher** is the original model in onnxruntime, run on the same (augmented) batch;
* the **loss** is the normalized squared error of every float output plus that of intermediate
  features at tensors both graphs compute (names survive pruning): equal shapes as they are
  (residual streams, hidden states whose width was kept), pruned ones through the teacher
  channels they kept, read off the data by correlation;
* a **held-out slice** of the calibration data (never trained on) decides when to stop and which
  weights to keep; if healing does not lower the held-out loss, the pruned weights stay as they
  were.

Augmentations (``augment="auto"``) only touch float data inputs: mixup between samples of a batch
and a little noise, so a few hundred unlabeled samples go further. Token ids and masks are left as
they are: replacing 15 % of MiniLM's tokens by calibration tokens (special ones kept) healed it no
better on unseen sentences (0.953 cosine either way after eight minutes), so it is not done.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .calibration import Calibration, ImageSpec, load_calibration, tapped_session
from .errors import UsageError
from .feeds import plan_feeds
from .io import load_proto, save_proto
from .torchrun import TorchGraph, check_against, require_torch, trainable_names

log = logging.getLogger(__name__)

#: ``progress(fraction_done, text)``: the share of the budget used and a one-line state
Progress = Callable[[float, str], None]


@dataclass
class HealResult:
    """What healing did, measured on the held-out samples (onnxruntime on the written model)."""

    tensors_trained: int
    values_trained: int
    features: list[str]
    train_samples: int
    heldout_samples: int
    steps: int
    epochs: float
    seconds: float
    stopped: str
    loss_before: float
    loss_after: float
    cosine_before: dict[str, float] = field(default_factory=dict)
    cosine_after: dict[str, float] = field(default_factory=dict)
    kept_pruned_weights: bool = False
    lr: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------- data
class _Samples:
    """Calibration samples that can be indexed one by one (stacked along each input's batch axis)
    or, for a model with a fixed batch, taken batch by batch."""

    def __init__(self, calib: Calibration, axes: dict[str, int]) -> None:
        first = calib.batches[0]
        self.axes = {k: a for k, a in axes.items() if k in first}
        self.pool: dict[str, np.ndarray] | None = None
        self.batches = calib.batches
        if self.axes:
            try:
                self.pool = {k: np.concatenate([b[k] for b in calib.batches], axis=self.axes[k])
                             if k in self.axes else first[k] for k in first}
            except ValueError:  # samples of different sizes: keep the batches as they are
                self.pool = None
        if self.pool is not None:
            k0 = next(iter(self.axes))
            self.n = int(self.pool[k0].shape[self.axes[k0]])
        else:
            self.n = len(calib.batches)

    @property
    def per_sample(self) -> bool:
        return self.pool is not None

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        if self.pool is None:
            return self.batches[int(idx[0])]
        return {k: np.take(v, idx, axis=self.axes[k]) if k in self.axes else v for k, v in self.pool.items()}


def _augment(feed: dict[str, np.ndarray], data: set[str], axes: dict[str, int], rng: np.random.Generator
             ) -> dict[str, np.ndarray]:
    """Mixup between samples (half of the batches) and noise at 1 % of the input's spread."""
    out = dict(feed)
    mix = rng.random() < 0.5
    for k in data:
        x = np.asarray(feed[k])
        if x.dtype.kind != "f" or k not in axes:
            continue
        ax = axes[k]
        n = x.shape[ax]
        y = x.astype(np.float32)
        if mix and n > 1:
            lam = rng.uniform(0.6, 1.0, size=n).astype(np.float32)
            shape = [1] * x.ndim
            shape[ax] = n
            lam = lam.reshape(shape)
            y = lam * y + (1 - lam) * np.take(y, rng.permutation(n), axis=ax)
        y = y + rng.standard_normal(y.shape).astype(np.float32) * (0.01 * float(y.std()) + 1e-12)
        out[k] = y.astype(x.dtype)
    return out


# ------------------------------------------------------------------------------------ teacher
def _session(proto: onnx.ModelProto, extra: list[str], threads: int | None = None) -> Any:
    # no spinning: onnxruntime's idle workers would take the cores from torch between steps
    return tapped_session(proto, extra, threads or 0, spin=False)


def _produced(proto: onnx.ModelProto) -> dict[str, str]:
    return {o: n.op_type for n in proto.graph.node for o in n.output if o and n.op_type != "Constant"}


@dataclass(frozen=True)
class Feature:
    """An intermediate tensor matched between the graphs: ``teacher[..., channels, ...]`` along
    ``axis`` is what the student computes (``channels`` None: the whole tensor, equal shapes)."""

    name: str
    axis: int | None = None
    channels: tuple[int, ...] | None = None

    def target(self, t: np.ndarray) -> np.ndarray:
        return t if self.channels is None else np.take(t, self.channels, axis=self.axis)


def _channel_match(s: np.ndarray, t: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
    """Which teacher channels a pruned tensor kept, read off the data: shapes differ on one axis,
    and each student channel correlates (> 0.8) with one teacher channel, in increasing order
    (pruning keeps the order of what it keeps)."""
    if s.ndim != t.ndim or s.ndim < 2:
        return None
    diff = [d for d in range(s.ndim) if s.shape[d] != t.shape[d]]
    if len(diff) != 1 or diff[0] == 0 or s.shape[diff[0]] >= t.shape[diff[0]]:
        return None
    ax = diff[0]
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        return None  # e.g. an additive attention mask of -inf: nothing to correlate
    sm = np.moveaxis(s, ax, 0).reshape(s.shape[ax], -1).astype(np.float64)
    tm = np.moveaxis(t, ax, 0).reshape(t.shape[ax], -1).astype(np.float64)
    sm -= sm.mean(1, keepdims=True)
    tm -= tm.mean(1, keepdims=True)
    sm /= np.linalg.norm(sm, axis=1, keepdims=True) + 1e-12
    tm /= np.linalg.norm(tm, axis=1, keepdims=True) + 1e-12
    corr = sm @ tm.T
    idx = corr.argmax(1)
    if np.any(np.diff(idx) <= 0) or corr[np.arange(len(idx)), idx].min() < 0.8:
        return None
    return ax, tuple(int(i) for i in idx)


def _feature_like(x: np.ndarray) -> bool:
    """Finite values of a size whose squares float32 holds: a mask or sentinel value (-inf, the float
    minimum, -1e9) is not a feature to match, and would turn the loss into inf or nan."""
    return bool(np.isfinite(x).all()) and float(np.abs(x).max(initial=0.0)) <= 1e5


def _shared_features(teacher: onnx.ModelProto, student: onnx.ModelProto, g: TorchGraph,
                     feed: dict[str, np.ndarray], limit: int) -> list[Feature]:
    """Up to ``limit`` intermediate tensors both graphs compute with the same op, spread evenly
    through the student's node order: equal shapes as they are, pruned ones through the teacher
    channels they kept (found by correlation on ``feed``)."""
    if limit <= 0:
        return []
    torch = g.torch
    t_ops, s_ops = _produced(teacher), _produced(student)
    outputs = {o.name for o in student.graph.output}
    names = [n for n in s_ops if n in t_ops and t_ops[n] == s_ops[n] and n not in outputs
             and s_ops[n] not in ("Shape", "Cast", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape",
                                  "Constant", "ConstantOfShape", "Range", "Equal", "Where", "Slice")]
    if not names:
        return []
    with torch.no_grad():
        mine = g.run({k: torch.from_numpy(np.asarray(v)) for k, v in feed.items()}, names)
    names = [n for n in names if mine[n].is_floating_point() and mine[n].numel() > 1]
    if not names:
        return []
    sess = _session(teacher, names)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    found: list[Feature] = []
    for n in names:
        if n not in got:
            continue
        s_val = mine[n].numpy()
        if not _feature_like(s_val) or not _feature_like(got[n]):
            continue  # e.g. attention scores plus an additive mask of -inf or the float minimum
        if tuple(got[n].shape) == s_val.shape:
            found.append(Feature(n))
        elif (m := _channel_match(s_val, got[n])) is not None:
            found.append(Feature(n, m[0], m[1]))
    if len(found) <= limit:
        return found
    pick = np.linspace(0, len(found) - 1, limit).round().astype(int)
    return [found[i] for i in sorted(set(pick.tolist()))]


# --------------------------------------------------------------------------------------- loss
def _nmse(torch: Any, s: Any, t: Any) -> Any:
    return ((s - t) ** 2).mean() / ((t ** 2).mean() + 1e-8)


def _cosines(student: dict[str, np.ndarray], teacher: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for k, t in teacher.items():
        t = np.asarray(t, np.float64)
        s = np.asarray(student[k], np.float64)
        if t.dtype.kind != "f" or t.ndim == 0:
            continue
        t2, s2 = t.reshape(t.shape[0], -1), s.reshape(s.shape[0], -1)
        num = (t2 * s2).sum(1)
        den = np.linalg.norm(t2, axis=1) * np.linalg.norm(s2, axis=1)
        out[k] = float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)))
    return out


# ------------------------------------------------------------------------------------- heal
def heal(
    original: str | os.PathLike[str] | onnx.ModelProto,
    pruned: str | os.PathLike[str] | onnx.ModelProto,
    calibration: str | os.PathLike[str] | Calibration | Any,
    output: str | os.PathLike[str] | None = None,
    *,
    minutes: float = 10.0,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 16,
    n_samples: int = 1024,
    holdout: float = 0.15,
    features: int = 8,
    augment: str = "auto",
    seed: int = 0,
    image_spec: ImageSpec | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> tuple[onnx.ModelProto, HealResult]:
    """Trains ``pruned``'s weights to reproduce ``original`` on unlabeled ``calibration`` inputs.

    Args:
        original: the teacher (the model before pruning).
        pruned: the student; its graph is kept, only initializer values change.
        calibration: inputs as for :func:`~onnxprune.calibration.load_calibration` (a folder of
            images, ``.npy``/``.npz``, feed dicts); ``holdout`` of them are never trained on.
        output: where to write the healed model (atomically; never over an input).
        minutes: wall-clock budget for training (the held-out evaluations included).
        epochs: at most this many passes over the training samples (``None``: the budget decides).
        lr: Adam's learning rate, halved when the held-out loss stops improving. ``None``: 1e-4 for a
            graph with attention (a Softmax feeding a MatMul), 3e-4 otherwise. Pretrained
            transformers take smaller steps: on all-MiniLM-L6-v2 pruned by 30 %, three minutes at
            1e-3 never improved the held-out loss, 3e-4 reached 0.946 cosine on unseen sentences
            and 1e-4 0.949.
        batch_size: samples per step.
        n_samples: at most this many calibration samples are read.
        holdout: share of the samples kept for early stopping and for the reported agreement.
        features: how many shared intermediate tensors to match besides the outputs (0: outputs only).
        augment: ``"auto"`` (mixup and noise on float data inputs) or ``"none"``.
        seed: for the split, the order and the augmentations.
        image_spec: preprocessing when ``calibration`` is a folder of images.
        threads: torch and onnxruntime threads (default: what they choose).
        progress: ``progress(fraction_of_budget, text)`` after each step.

    Returns:
        The healed model and a :class:`HealResult` (agreement measured in onnxruntime).

    Raises:
        UsageError: torch missing, no trainable weights, graphs with different inputs or outputs,
            too few samples, or a graph the interpreter does not reproduce.
    """
    torch = require_torch()
    if augment not in ("auto", "none"):
        raise UsageError(f"augment must be 'auto' or 'none', got {augment!r}")
    if minutes <= 0 or batch_size < 1 or not 0 <= holdout < 1:
        raise UsageError("heal needs minutes > 0, batch_size >= 1 and 0 <= holdout < 1")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    teacher = load_proto(original)
    student = load_proto(pruned)
    _same_interface(teacher, student)
    if lr is None:
        lr = 1e-4 if has_attention(student) else 3e-4
    if lr <= 0:
        raise UsageError(f"heal needs a learning rate > 0, got {lr:g}")
    plan = plan_feeds(student)
    axes = {s.name: s.batch_axis for s in plan.specs if s.batch_axis is not None} if plan.batch_free else {}
    data_inputs = {s.name for s in plan.specs if s.role == "data"}
    calib = load_calibration(calibration, student, n_samples=n_samples, batch_size=batch_size, seed=seed,
                             image_spec=image_spec, plan=plan)
    samples = _Samples(calib, axes)
    if samples.n < 2:
        raise UsageError(f"healing needs at least 2 calibration samples, got {samples.n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(samples.n)
    n_hold = min(samples.n - 1, max(1, round(holdout * samples.n))) if holdout > 0 else 0
    hold_idx, train_idx = np.sort(order[:n_hold]), order[n_hold:]
    if n_hold == 0:
        hold_idx = train_idx[: max(1, len(train_idx) // 8)]
        log.warning("heal: no held-out samples; stopping and the reported agreement use training samples")
    step_size = batch_size if samples.per_sample else 1

    g = TorchGraph(student, trainable_names(student))
    if not g.keys:
        raise UsageError("the pruned model has no float weights to train (all weights are computed or quantized)")
    hold_batches = [samples.take(hold_idx[i:i + step_size]) for i in range(0, len(hold_idx), step_size)]
    pruned_sess = _session(student, [], threads)
    ref = dict(zip([o.name for o in pruned_sess.get_outputs()], pruned_sess.run(None, hold_batches[0])))
    float_out = [k for k, v in ref.items() if np.asarray(v).dtype.kind == "f"]
    if not float_out:
        raise UsageError("the model has no float outputs to match")
    dev = check_against(g, {k: ref[k] for k in float_out}, hold_batches[0])
    if dev > 2e-3:
        raise UsageError(f"the torch interpreter does not reproduce this graph (relative difference {dev:.2g} "
                         "to onnxruntime on its outputs); healing would train a different function")
    feats = _shared_features(teacher, student, g, hold_batches[0], features)
    teacher_sess = _session(teacher, [f.name for f in feats], threads)
    t_names = [o.name for o in teacher_sess.get_outputs()]

    def teach(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(t_names, teacher_sess.run(None, feed)))

    hold_targets = [teach(b) for b in hold_batches]

    def heldout_loss() -> float:
        total = 0.0
        with torch.no_grad():
            for b, t in zip(hold_batches, hold_targets):
                total += float(_loss(torch, g, b, t, float_out, feats))
        return total / len(hold_batches)

    def weights() -> dict[str, Any]:
        return {name: g.params[key].detach().clone() for name, key in g.keys.items()}

    start = time.perf_counter()
    budget = minutes * 60.0
    loss0 = heldout_loss()
    best, best_state = loss0, weights()
    opt = torch.optim.Adam(g.parameters(), lr=lr)
    steps, evals_bad, halvings, stopped = 0, 0, 0, ""
    per_epoch = max(1, math.ceil(len(train_idx) / step_size))
    eval_every = max(5, min(per_epoch, 200))
    last_eval = time.perf_counter()
    epoch = 0.0
    while not stopped:
        perm = rng.permutation(train_idx)
        for i in range(0, len(perm), step_size):
            feed = samples.take(perm[i:i + step_size])
            if augment == "auto":
                feed = _augment(feed, data_inputs, axes, rng)
            t = teach(feed)
            opt.zero_grad(set_to_none=True)
            loss = _loss(torch, g, feed, t, float_out, feats)
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
            else:  # a step too far: back to the best weights, smaller steps
                g.load_state(best_state)
                opt = torch.optim.Adam(g.parameters(), lr=opt.param_groups[0]["lr"] * 0.5)
                halvings += 1
            steps += 1
            epoch = steps / per_epoch
            if steps % eval_every == 0 or time.perf_counter() - last_eval > 60:
                last_eval = time.perf_counter()
                h = heldout_loss()
                if h < best * (1 - 1e-3):
                    best, best_state, evals_bad = h, weights(), 0
                elif (evals_bad := evals_bad + 1) >= 2:  # plateau: back to the best, smaller steps
                    halvings, evals_bad = halvings + 1, 0
                    for pg in opt.param_groups:
                        pg["lr"] *= 0.5
                    g.load_state(best_state)
            elapsed = time.perf_counter() - start
            if progress is not None:
                progress(min(1.0, elapsed / budget), f"loss {float(loss.detach()):.4g}, held-out {best:.4g} (was {loss0:.4g})")
            if elapsed >= budget:
                stopped = "budget"
            elif halvings > 3:
                stopped = "converged"
            elif epochs and epoch >= epochs:
                stopped = "epochs"
            if stopped:
                break
    h = heldout_loss()
    if h < best:
        best, best_state = h, weights()
    g.load_state(best_state)

    healed = _write_back(student, g.state())
    # the truth is onnxruntime on the written graph: agreement before and after, held-out
    healed_sess = _session(healed, [], threads)
    before = _run_all(pruned_sess, hold_batches, float_out)
    after = _run_all(healed_sess, hold_batches, float_out)
    teacher_out = {k: np.concatenate([t[k] for t in hold_targets]) for k in float_out}
    cos_before, cos_after = _cosines(before, teacher_out), _cosines(after, teacher_out)
    kept = best >= loss0
    if kept:
        healed = student
        cos_after = cos_before
    result = HealResult(
        tensors_trained=len(g.keys), values_trained=int(sum(p.numel() for p in g.parameters())), features=[f.name for f in feats],
        train_samples=int(len(train_idx)) * (1 if samples.per_sample else step_size),
        heldout_samples=int(n_hold) * (1 if samples.per_sample else step_size), steps=steps,
        epochs=round(epoch, 2), seconds=round(time.perf_counter() - start, 1), stopped=stopped,
        loss_before=loss0, loss_after=min(best, loss0), cosine_before=cos_before, cosine_after=cos_after,
        kept_pruned_weights=kept, lr=lr)
    if output is not None:
        protect = tuple(p for p in (original, pruned) if isinstance(p, (str, os.PathLike)))
        save_proto(healed, Path(output), protect=protect)
    return healed, result


def has_attention(proto: onnx.ModelProto) -> bool:
    """Whether the graph computes attention: a Softmax whose output a MatMul reads (probabilities
    times values), in the main graph."""
    softmax = {o for n in proto.graph.node if n.op_type == "Softmax" for o in n.output}
    return any(n.op_type == "MatMul" and softmax & set(n.input) for n in proto.graph.node)


def _same_interface(teacher: onnx.ModelProto, student: onnx.ModelProto) -> None:
    t_in = {i.name for i in teacher.graph.input} - {i.name for i in teacher.graph.initializer}
    s_in = {i.name for i in student.graph.input} - {i.name for i in student.graph.initializer}
    if t_in != s_in:
        raise UsageError(f"the two models take different inputs ({sorted(t_in)} vs {sorted(s_in)}); "
                         "heal needs the original and the model pruned from it")
    t_out, s_out = [o.name for o in teacher.graph.output], [o.name for o in student.graph.output]
    if t_out != s_out:
        raise UsageError(f"the two models have different outputs ({t_out} vs {s_out})")


def _loss(torch: Any, g: TorchGraph, feed: dict[str, np.ndarray], t: dict[str, np.ndarray],
          outputs: list[str], feats: list[Feature]) -> Any:
    got = g.run({k: torch.from_numpy(np.asarray(v)) for k, v in feed.items()}, outputs + [f.name for f in feats])
    loss = sum(_nmse(torch, got[k], torch.from_numpy(np.asarray(t[k], np.float32))) for k in outputs) / len(outputs)
    if feats:
        loss = loss + sum(_nmse(torch, got[f.name], torch.from_numpy(np.asarray(f.target(t[f.name]), np.float32)))
                          for f in feats) / len(feats)
    return loss


def _run_all(sess: Any, batches: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    outs = [dict(zip([o.name for o in sess.get_outputs()], sess.run(None, b))) for b in batches]
    return {k: np.concatenate([o[k] for o in outs]) for k in names}


def _write_back(student: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``student`` with the trained values in place: same nodes, names and order."""
    healed = onnx.ModelProto()
    healed.CopyFrom(student)
    for init in healed.graph.initializer:
        if init.name in values:
            init.CopyFrom(numpy_helper.from_array(values[init.name], init.name))
    for node in healed.graph.node:
        if node.op_type == "Constant" and node.output[0] in values:
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(values[node.output[0]], node.attribute[0].t.name))
    return healed
