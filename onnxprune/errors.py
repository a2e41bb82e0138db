"""One error hierarchy for onnxprune.

Every error names the node, tensor or file at fault and, where there is one, the way out. The CLI
maps each class to an exit code and prints one line; library callers catch ``OnnxPruneError``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "OnnxPruneError",
    "ModelLoadError",
    "ModelSaveError",
    "UnsupportedModelError",
    "PlanError",
    "UsageError",
    "ApplyError",
    "VerificationError",
    "PassError",
]


class OnnxPruneError(Exception):
    """Base class of every error onnxprune raises on purpose."""

    exit_code = 1


class ModelLoadError(OnnxPruneError):
    """The input is missing, not ONNX, truncated, or its external data cannot be read."""

    exit_code = 2


class UnsupportedModelError(OnnxPruneError):
    """The model is valid ONNX but uses an opset or IR version onnxprune cannot handle."""

    exit_code = 2


class ModelSaveError(OnnxPruneError):
    """The output could not be written (the input is never touched)."""

    exit_code = 3


class PlanError(OnnxPruneError):
    """Pruning options are inconsistent (bad ratio, unknown criterion, ...)."""

    exit_code = 2


class UsageError(OnnxPruneError):
    """A command-line value is malformed or names something the model does not have."""

    exit_code = 2


class ApplyError(OnnxPruneError):
    """The pruned graph failed validation; nothing was written."""

    exit_code = 4


class VerificationError(OnnxPruneError):
    """Numeric comparison of two models could not be carried out."""

    exit_code = 4


class PassError(OnnxPruneError):
    """A pass failed, or broke its pre/postcondition.

    Attributes:
        pass_name: the pass that failed.
        history: names of the passes that ran before it, in order.
    """

    exit_code = 4

    def __init__(self, message: str, pass_name: str = "", history: Sequence[str] = ()) -> None:
        self.pass_name = pass_name
        self.history = list(history)
        self.reason = message
        where = f"pass '{pass_name}'" if pass_name else "pass"
        after = f" (after {', '.join(self.history)})" if self.history else " (first pass)"
        super().__init__(f"{where}{after}: {message}" if pass_name else message)
