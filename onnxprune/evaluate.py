"""How close a pruned model stays to its original, on real inputs.

Both models run on the same batches (use inputs that were *not* used for calibration). Per
output, over all samples together:

- cosine similarity ``⟨a, b⟩ / (‖a‖·‖b‖)`` and relative L2 error ``‖a - b‖ / ‖a‖``;
- the largest absolute difference;
- for classifier-like outputs (2-D ``[batch, classes]`` floats with at least two classes):
  top-1 agreement, the share of samples whose arg-max class is the same;
- with labels (one integer class per sample), each model's accuracy on the first
  classifier-like output.

Sums are accumulated batch by batch, so memory holds one batch of outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration, Progress
from .errors import UsageError, VerificationError
from .verify import ModelLike, as_array, numeric, session

__all__ = ["OutputFidelity", "Evaluation", "evaluate", "load_labels"]


@dataclass
class OutputFidelity:
    name: str
    cosine: float
    rel_l2: float
    max_abs: float
    top1_agreement: float | None = None


@dataclass
class Evaluation:
    samples: int
    outputs: list[OutputFidelity] = field(default_factory=list)
    accuracy_original: float | None = None
    accuracy_pruned: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labels(path: str | Path) -> np.ndarray:
    """Integer labels from ``.npy``, ``.npz`` (key ``labels`` or a single array) or text (one per line)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"labels file '{p}' does not exist")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = "labels" if "labels" in z.files else (z.files[0] if len(z.files) == 1 else None)
                if key is None:
                    raise UsageError(f"{p}: no 'labels' key (keys: {', '.join(z.files)})")
                arr = z[key]
        else:
            arr = np.loadtxt(p, dtype=np.int64, ndmin=1)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{p}: cannot read labels ({exc})") from exc
    arr = np.asarray(arr).reshape(-1)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise UsageError(f"{p}: labels must be integer classes, got {arr.dtype}")
    return arr.astype(np.int64)


def _classifier_like(a: np.ndarray) -> bool:
    return a.ndim == 2 and a.shape[1] >= 2 and a.dtype.kind == "f"


def evaluate(
    original: ModelLike,
    pruned: ModelLike,
    data: Calibration,
    labels: np.ndarray | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Compares ``pruned`` with ``original`` on every batch of ``data``."""
    s1, s2 = session(original), session(pruned)
    names = [o.name for o in s1.get_outputs()]
    if [o.name for o in s2.get_outputs()] != names:
        raise VerificationError(
            f"the models have different outputs: {names} vs {[o.name for o in s2.get_outputs()]}"
        )
    if labels is not None and len(labels) < data.n_samples:
        raise UsageError(f"{len(labels)} labels for {data.n_samples} samples")
    acc: dict[str, dict[str, float]] = {n: dict(dot=0.0, aa=0.0, bb=0.0, dd=0.0, mx=0.0, same=0.0, cls=0.0)
                                        for n in names}
    correct_a = correct_b = 0
    label_out: str | None = None
    seen = 0
    for i, feeds in enumerate(data.batches):
        oa, ob = [as_array(o) for o in s1.run(None, feeds)], [as_array(o) for o in s2.run(None, feeds)]
        n = len(next(iter(feeds.values())))
        for name, a, b in zip(names, oa, ob):
            if a.shape != b.shape:
                raise VerificationError(f"output '{name}' changed shape: {a.shape} -> {b.shape}")
            if not (numeric(a) and numeric(b)):  # strings: agreement only
                a, b = (a == b).astype(np.float64), np.ones(a.shape)
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            st = acc[name]
            st["dot"] += float(np.sum(a64 * b64))
            st["aa"] += float(np.sum(a64 * a64))
            st["bb"] += float(np.sum(b64 * b64))
            st["dd"] += float(np.sum(np.square(a64 - b64)))
            st["mx"] = max(st["mx"], float(np.max(np.abs(a64 - b64))) if a.size else 0.0)
            if _classifier_like(a):
                st["cls"] = 1.0
                st["same"] += float(np.sum(a.argmax(-1) == b.argmax(-1)))
                if labels is not None and label_out in (None, name):
                    label_out = name
                    y = labels[seen : seen + n]
                    correct_a += int(np.sum(a.argmax(-1) == y))
                    correct_b += int(np.sum(b.argmax(-1) == y))
        seen += n
        if progress is not None:
            progress(i + 1, len(data.batches))
    result = Evaluation(samples=seen)
    for name in names:
        st = acc[name]
        na, nb = np.sqrt(st["aa"]), np.sqrt(st["bb"])
        cos = 1.0 if na == 0 and nb == 0 else (0.0 if na == 0 or nb == 0 else st["dot"] / (na * nb))
        rel = float(np.sqrt(st["dd"]) / na) if na > 0 else (0.0 if st["dd"] == 0 else float("inf"))
        top1 = st["same"] / seen if st["cls"] else None
        result.outputs.append(OutputFidelity(name, float(cos), rel, st["mx"], top1))
    if labels is not None:
        if label_out is None:
            raise UsageError("labels were given but no output is classifier-like ([batch, classes])")
        result.accuracy_original = correct_a / seen
        result.accuracy_pruned = correct_b / seen
    return result
