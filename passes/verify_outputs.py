"""Verification as a pass: compare the model so far with the original in onnxruntime.

Both models run on the CPU provider with graph optimizations off, on the same seeded inputs (or
on calibration samples from an ``.npz`` file), at batch 1 and, when the batch dimension is
symbolic, batch 2. The pass fails when any output differs by more than
``atol + rtol * max|reference|`` (or, with ``min_cosine``, when the cosine similarity of any
output falls below it); the message names the output and the largest difference.
It never changes the model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx

from onnxprune.errors import UsageError, VerificationError
from onnxprune.feeds import plan_feeds
from onnxprune.graph import Model
from onnxprune.io import load_proto
from onnxprune.verify import compare, run, session

from .base import InPlacePass, PassError, PassResult
from .registry import register

__all__ = ["VerifyOutputs", "load_calibration"]

log = logging.getLogger(__name__)


def load_calibration(path: str | os.PathLike[str], input_names: list[str]) -> dict[str, np.ndarray]:
    """Reads model inputs from an ``.npz`` file whose array names are the graph input names.

    Raises:
        UsageError: the file is missing, not an ``.npz`` archive, or lacks an input.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: calibration data not found")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:
        raise UsageError(f"{p}: not a readable .npz archive ({type(exc).__name__})") from None
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise UsageError(
            f"{p}: calibration data has no array for input(s) {', '.join(missing)} "
            f"(arrays: {', '.join(sorted(arrays)) or 'none'})"
        )
    return {n: arrays[n] for n in input_names}


def _calibration_feeds(sess: object, arrays: dict[str, np.ndarray], most: int = 8) -> list[dict[str, np.ndarray]]:
    """Splits samples into feeds the model accepts: chunks of its batch size if that is fixed."""
    inputs = sess.get_inputs()  # type: ignore[attr-defined]
    fixed = [i.shape[0] for i in inputs if i.shape and isinstance(i.shape[0], int)]
    n = min((len(a) for a in arrays.values() if a.ndim), default=1)
    step = fixed[0] if fixed else min(n, 16)
    step = max(step, 1)
    feeds = []
    for start in range(0, max(n - step + 1, 1), step):
        feeds.append({k: v[start:start + step] if v.ndim else v for k, v in arrays.items()})
        if len(feeds) >= most:
            break
    return feeds


@register
class VerifyOutputs(InPlacePass):
    """Compare outputs with the original model in onnxruntime; fail beyond the tolerance."""

    name = "verify"

    def __init__(
        self,
        rtol: float = 1e-4,
        atol: float = 1e-5,
        reference: str | os.PathLike[str] | onnx.ModelProto | None = None,
        calibration: str | os.PathLike[str] | None = None,
        seed: int = 0,
        min_cosine: float | None = None,
    ) -> None:
        """
        Args:
            rtol: tolerance relative to the largest reference value of each output.
            atol: absolute tolerance.
            reference: the model to compare with (default: the model as it was before the
                first pass, or the file it was loaded from).
            calibration: ``.npz`` file of inputs to compare on (default: seeded random inputs).
            seed: seed of the random inputs.
            min_cosine: check cosine similarity per output instead of the largest difference
                (for lossy passes such as pruning without fine-tuning).
        """
        self.rtol = rtol
        self.atol = atol
        self.reference = reference
        self.calibration = calibration
        self.seed = seed
        self.min_cosine = min_cosine
        #: Largest absolute difference per output, from the last run.
        self.max_abs: dict[str, float] = {}

    def options(self) -> dict[str, object]:
        opts = dict(super().options())
        opts.pop("max_abs", None)
        if isinstance(opts.get("reference"), onnx.ModelProto):
            opts["reference"] = "<ModelProto>"
        return opts

    def _reference(self, model: Model) -> str | os.PathLike[str] | onnx.ModelProto:
        if self.reference is not None:
            return self.reference
        if model.original is not None:
            return model.original
        if model.source is not None:
            return model.source
        raise PassError("nothing to compare with: give reference=... or load the model from a file")

    def run(self, model: Model) -> PassResult:
        ref = session(self._reference(model))
        cur = session(model.to_proto())
        if self.calibration is not None:
            feed_sets = _calibration_feeds(ref, load_calibration(self.calibration, [i.name for i in ref.get_inputs()]))
        else:
            source = self._reference(model)
            proto = source if isinstance(source, onnx.ModelProto) else load_proto(source)
            plan = plan_feeds(proto, model.input_shapes or None, runnable=source).require()
            batches = (1, 2) if plan.batch_free else (None,)
            feed_sets = [plan.make(seed=self.seed + (b or 1), batch=b) for b in batches]
        self.max_abs = {}
        for feeds in feed_sets:
            scale = [float(np.max(np.abs(o))) if o.size and o.dtype.kind == "f" else 0.0 for o in run(ref, feeds)]
            try:
                agreements = compare(ref, cur, feeds)
            except VerificationError as exc:
                raise PassError(str(exc)) from exc
            for a, s in zip(agreements, scale):
                self.max_abs[a.name] = max(self.max_abs.get(a.name, 0.0), a.max_abs)
                if self.min_cosine is not None:
                    if a.cosine < self.min_cosine:
                        raise PassError(
                            f"output '{a.name}' has cosine similarity {a.cosine:.4f} with the "
                            f"original, below min_cosine={self.min_cosine}"
                        )
                    continue
                if not a.ok(self.rtol, self.atol, s):
                    raise PassError(
                        f"output '{a.name}' differs from the original by up to {a.max_abs:.3g} "
                        f"(allowed {self.atol:g} + {self.rtol:g} x {s:.3g}); cosine {a.cosine:.6f}"
                    )
        log.info("verify: largest differences %s", self.max_abs)
        return PassResult(model, False)
