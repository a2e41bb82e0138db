"""Checking a model is valid and comparing two models numerically in onnxruntime.

Validation = ``onnx.checker.check_model(full_check=True)`` (which includes strict shape
inference) plus an onnxruntime run. Comparison runs both models on the same seeded inputs on the
CPU provider with graph optimizations off, so the numbers reflect the models, not the optimizer,
and reports per output the largest absolute difference and the cosine similarity.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from . import io as _io
from .errors import ApplyError, UsageError, VerificationError

__all__ = [
    "OutputAgreement",
    "session",
    "make_feeds",
    "run",
    "validate",
    "compare",
]

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

ModelLike = onnx.ModelProto | str | os.PathLike[str] | bytes

log = logging.getLogger(__name__)

#: onnxruntime's own log lines (coloured, timestamped, on stderr) never reach the terminal: a
#: failure that matters is raised as an exception, and onnxprune quotes it in its one line.
#: 4 is FATAL: ERROR lines (3) are printed for failures that are then raised anyway.
ORT_LOG_SEVERITY = 4
ort.set_default_logger_severity(ORT_LOG_SEVERITY)


@dataclass
class OutputAgreement:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    cosine: float

    def ok(self, rtol: float = 1e-4, atol: float = 1e-5, ref_scale: float = 1.0) -> bool:
        return self.max_abs <= atol + rtol * ref_scale


def session(
    model: ModelLike,
    optimize: bool = False,
    threads: int = 0,
    provider: str | list[str | tuple[str, dict[str, Any]]] = "CPUExecutionProvider",
    spin: bool = True,
) -> ort.InferenceSession:
    """An onnxruntime session; graph optimizations are off unless ``optimize``.

    ``spin=False`` stops idle intra-op workers from busy-waiting: needed when several sessions
    take turns on few cores, where one session's spinning workers would steal time from the next.
    """
    opts = ort.SessionOptions()
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = ORT_LOG_SEVERITY
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if isinstance(model, onnx.ModelProto):
        if _io.initializer_bytes(model) > _io.EXTERNAL_DATA_THRESHOLD:
            raise VerificationError("models over 2 GB must be passed to onnxruntime as a path")
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = os.fspath(model)
    providers = [provider] if isinstance(provider, str) else list(provider)
    return ort.InferenceSession(model, opts, providers=providers)


def user_session(path: str | os.PathLike[str], **kwargs: Any) -> ort.InferenceSession:
    """:func:`session` for a model the user gave: if onnxruntime cannot load it, a one-line refusal."""
    try:
        return session(path, **kwargs)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UsageError(f"onnxruntime cannot load {os.fspath(path)}: {ort_message(exc)}") from exc


def ort_message(exc: BaseException) -> str:
    """The first line of an onnxruntime error, without its status-code prefix."""
    text = _first_line(exc)
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from \S+ failed:)?", "", text).strip()


def make_feeds(
    sess: ort.InferenceSession,
    input_shapes: dict[str, list[int]] | None = None,
    seed: int = 0,
    batch: int = 1,
) -> dict[str, np.ndarray]:
    """Seeded inputs: standard normal floats, small non-negative integers, random booleans.

    Symbolic dimensions take ``input_shapes`` values, else ``batch`` for the first axis and 1
    elsewhere.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for inp in sess.get_inputs():
        if input_shapes and inp.name in input_shapes:
            shape = list(input_shapes[inp.name])
        else:
            shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(inp.shape)]
        dtype = _NP_TYPES.get(inp.type)
        if dtype is None:
            raise VerificationError(f"input '{inp.name}' has type {inp.type}, which onnxprune cannot generate")
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[inp.name] = rng.random(shape) < 0.5
        else:
            feeds[inp.name] = rng.integers(0, 4, size=shape).astype(dtype)
    return feeds


def run(model: ModelLike | ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = model if isinstance(model, ort.InferenceSession) else session(model)
    return [as_array(o) for o in sess.run(None, feeds)]


def as_array(value: Any) -> np.ndarray:
    """An onnxruntime output as an array that can be compared.

    Tensors are returned as they are; a sequence of maps (a classifier's ``ZipMap`` scores)
    becomes a ``[items, keys]`` array of the values in key order; a sequence of tensors is
    stacked when their shapes agree and concatenated flat when they do not.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return np.asarray([[v[k] for k in sorted(v)] for v in value])
        if value and all(isinstance(v, np.ndarray) for v in value):
            if len({v.shape for v in value}) == 1:
                return np.stack(value)
            return np.concatenate([v.reshape(-1) for v in value])
    if isinstance(value, dict):
        return np.asarray([value[k] for k in sorted(value)])
    return np.asarray(value)


def numeric(a: np.ndarray) -> bool:
    """Whether ``a`` holds numbers (differences and cosines mean something)."""
    return a.dtype.kind in "biufc"


def computes_in_float16(model: onnx.ModelProto) -> bool:
    """Whether ``model`` holds float16 weights (initializers or ``Constant`` values)."""
    consts = [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in [*model.graph.initializer, *consts])


def disagreement(a: np.ndarray, b: np.ndarray, half: bool = False) -> str:
    """Why output ``b`` is not output ``a`` up to rounding, or ''.

    Agreement: within relative 1e-3 of the output's scale; for a model that computes in float16
    (``half``), where every fused op rounds differently, cosine 0.999 and a mean difference
    under 1 % of the scale also agree. Outputs that are not floats must be equal.
    """
    if np.shape(a) != np.shape(b):
        return f"shape {np.shape(a)} became {np.shape(b)}"
    if not (numeric(a) and numeric(b)) or a.dtype.kind not in "fc":
        return "" if np.array_equal(a, b) else f"{int(np.count_nonzero(a != b))} values differ"
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(a64[np.isfinite(a64)]), initial=1.0))
    if np.allclose(b64, a64, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
        return ""
    if half and _cosine(np.nan_to_num(a64), np.nan_to_num(b64)) >= 0.999 \
            and float(np.nanmean(np.abs(a64 - b64))) <= 1e-2 * scale:
        return ""
    return f"largest difference {float(np.nanmax(np.abs(a64 - b64))):.3g} at scale {scale:.3g}"


#: Above this many bytes of weights a model is validated from a temporary file with external
#: data: the checker and onnxruntime then read the file instead of two more in-memory copies
#: (the checker of a proto serializes it, onnxruntime parses its own).
FILE_VALIDATION_BYTES = 16 << 20


def validate(model: onnx.ModelProto, feeds: dict[str, np.ndarray] | None = None,
             input_shapes: dict[str, list[int]] | None = None,
             reference: ModelLike | None = None, what: str = "pruned model",
             values: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Checks ``model`` with the full checker and runs it; raises :class:`ApplyError` if either fails.

    ``what`` names the model in messages ("pruned model", "optimized model"). ``values`` are the
    bytes of initializers ``model`` holds without data (:meth:`onnxprune.graph.Model.export`);
    they are put into ``model`` only where it is validated in memory (small models).

    ``reference`` is the model it was made from: a check the reference fails too is not the
    pruning's doing (it is logged once and passed), and a run that fails is blamed on the
    pruned model only if the reference runs on the same feed.
    """
    size = _io.initializer_bytes(model)
    if size > min(FILE_VALIDATION_BYTES, _io.EXTERNAL_DATA_THRESHOLD):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            if size > _io.EXTERNAL_DATA_THRESHOLD:
                _io.fill_weights(model, values or {})
                _io.save_external(model, Path(path), "model.onnx.data")
            else:
                _io.save_for_reading(model, Path(path), values)
            return _validate(path, model, feeds, input_shapes, reference, what)
    _io.fill_weights(model, values or {})
    return _validate(model, model, feeds, input_shapes, reference, what)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check(source: ModelLike) -> str:
    """The first line of what the full checker (with strict shape inference) says, or ''."""
    try:
        onnx.checker.check_model(source if not isinstance(source, bytes) else onnx.load_from_string(source),
                                 full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        kind = "shape inference" if isinstance(exc, onnx.shape_inference.InferenceError) else "the ONNX checker"
        return f"fails {kind}: {_first_line(exc)}"
    except Exception as exc:  # protobuf or file errors: report, do not crash
        return f"fails the ONNX checker: {_first_line(exc)}"
    return ""


def _validate(source: onnx.ModelProto | str, model: onnx.ModelProto,
              feeds: dict[str, np.ndarray] | None,
              input_shapes: dict[str, list[int]] | None,
              reference: ModelLike | None, what: str = "pruned model") -> list[np.ndarray]:
    problem = _check(source)
    if problem:
        before = _check(os.fspath(reference) if isinstance(reference, os.PathLike) else reference) \
            if reference is not None else ""
        if not before:
            raise ApplyError(f"{what} {problem}")
        log.warning("the original model already %s; not a regression, so it is passed", before)
    try:
        sess = session(source)
    except Exception as exc:  # onnxruntime raises its own exception types
        first = _first_line(exc)
        custom = _custom_domains(model)
        if custom and any(m in first for m in _NO_KERNEL):
            log.warning("onnxruntime has no kernel for the custom domain(s) %s; the result was "
                        "checked by the ONNX checker only", ", ".join(sorted(custom)))
            return []
        if reference is not None and not _loads(reference):
            log.warning("onnxruntime cannot load the original model either (%s); the result was "
                        "checked by the ONNX checker only", first)
            return []
        raise ApplyError(f"{what} does not run in onnxruntime: {first}") from exc
    if feeds is None:
        from .feeds import plan_feeds

        feeds = plan_feeds(model, input_shapes, check=False).make(seed=0)
    try:
        return run(sess, feeds)
    except Exception as exc:
        first = _first_line(exc)
        if reference is not None:
            try:
                run(reference, feeds)
            except Exception as ref_exc:
                raise UsageError(
                    "the original model does not run on the generated inputs either "
                    f"({_first_line(ref_exc)}); give input sizes with --input-shape or real inputs "
                    "with --calib") from exc
        raise ApplyError(f"{what} does not run in onnxruntime: {first}") from exc


def _loads(model: ModelLike) -> bool:
    try:
        session(model)
    except Exception:
        return False
    return True


#: onnxruntime's words for "this op exists nowhere in my kernels".
_NO_KERNEL = ("is not a registered function/op", "Could not find an implementation")
_KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"}


def _custom_domains(model: onnx.ModelProto) -> set[str]:
    """Domains of nodes that neither onnx nor onnxruntime define (model-local functions excluded)."""
    local = {(f.domain, f.name) for f in model.functions}
    return {
        n.domain for n in model.graph.node
        if n.domain not in _KNOWN_DOMAINS and (n.domain, n.op_type) not in local
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).reshape(-1), b.astype(np.float64).reshape(-1)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a64, b64) / (na * nb))


def compare(
    original: ModelLike | ort.InferenceSession,
    pruned: ModelLike | ort.InferenceSession,
    feeds: dict[str, np.ndarray] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    seed: int = 0,
) -> list[OutputAgreement]:
    """Runs both models on the same inputs; one :class:`OutputAgreement` per output."""
    s1 = original if isinstance(original, ort.InferenceSession) else session(original)
    s2 = pruned if isinstance(pruned, ort.InferenceSession) else session(pruned)
    feeds = feeds or make_feeds(s1, input_shapes, seed=seed)
    o1, o2 = run(s1, feeds), run(s2, feeds)
    names = [o.name for o in s1.get_outputs()]
    out: list[OutputAgreement] = []
    for name, a, b in zip(names, o1, o2):
        if a.shape != b.shape:
            raise VerificationError(f"output '{name}' changed shape: {a.shape} -> {b.shape}")
        if a.dtype.kind in "fc":
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        else:
            diff = float(np.count_nonzero(a != b))
        cos = _cosine(a, b) if numeric(a) and numeric(b) else float(np.mean(a == b)) if a.size else 1.0
        out.append(OutputAgreement(name, tuple(a.shape), diff, cos))
    return out

