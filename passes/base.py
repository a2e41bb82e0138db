"""The pass contract: ``PassResult(model, modified)``, with checks before and after."""

from __future__ import annotations

from dataclasses import dataclass

from onnxprune.errors import OnnxPruneError
from onnxprune.graph import Model

__all__ = ["Pass", "PassResult", "PassError"]


class PassError(OnnxPruneError):
    """A pass's precondition or postcondition failed."""

    exit_code = 4


@dataclass
class PassResult:
    model: Model
    modified: bool


class Pass:
    """Base class: subclasses implement :meth:`run`; ``__call__`` checks the contract."""

    name = "pass"

    def requires(self, model: Model) -> str | None:
        """A reason the pass cannot run on ``model``, or ``None``."""
        return None

    def ensures(self, model: Model) -> str | None:
        """A reason the result breaks the pass's promise, or ``None``."""
        return None

    def run(self, model: Model) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model: Model) -> PassResult:
        why = self.requires(model)
        if why:
            raise PassError(f"pass '{self.name}' cannot run: {why}")
        result = self.run(model)
        why = self.ensures(result.model)
        if why:
            raise PassError(f"pass '{self.name}' broke its postcondition: {why}")
        return result
