"""Running passes in order, repeatedly, until none changes the model.

Rewrites enable each other: eliminating an Identity puts a BatchNormalization right after its
Conv, folding that BatchNorm leaves an initializer unused, removing it lets two Reshapes meet.
The manager runs its list again while any pass reports a change, up to ``max_rounds`` rounds, so
the result does not depend on the order a user happened to list the passes in. Passes that
must run once (pruning) declare ``repeatable = False`` and run in the first round only. A pass
that always reports a change would loop forever; the round bound stops it, with a warning
naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from onnxprune.graph import Model

from .base import InPlacePass, Pass, PassError, PassResult

__all__ = ["PassManager"]

log = logging.getLogger(__name__)


class PassManager(InPlacePass):
    """Runs a list of passes in order, again and again, until none changes the model."""

    name = "pass-manager"

    def __init__(
        self,
        passes: Sequence[Pass],
        max_rounds: int = 8,
        fixed_point: bool = True,
        on_pass: Callable[[Pass, PassResult], None] | None = None,
    ) -> None:
        """
        Args:
            passes: the passes, run in this order each round.
            max_rounds: the step bound; a list still changing the model after this many rounds
                stops with a warning naming the passes that still changed something.
            fixed_point: run rounds until nothing changes (False: one round).
            on_pass: called after every pass with its result (progress reporting).
        """
        if max_rounds < 1:
            raise PassError(f"max_rounds must be at least 1, got {max_rounds}")
        for p in passes:
            if not isinstance(p, Pass):
                raise PassError(f"{p!r} is not a Pass")
        self.passes = list(passes)
        self.max_rounds = max_rounds
        self.fixed_point = fixed_point
        self._on_pass = on_pass
        #: Names of the passes run by the last call, in order (for reports).
        self.trace: list[str] = []
        #: Number of rounds the last call needed.
        self.rounds = 0
        #: Whether the last call reached a fixed point within the bound.
        self.converged = True

    @property
    def in_place(self) -> bool:  # type: ignore[override]
        return all(p.in_place for p in self.passes)

    @property
    def preserves_interface(self) -> bool:  # type: ignore[override]
        return all(p.preserves_interface for p in self.passes)

    def options(self) -> dict[str, object]:
        return {"passes": [p.name for p in self.passes], "max_rounds": self.max_rounds}

    def __call__(self, model: Model, history: Sequence[str] = ()) -> PassResult:
        # The manager checks nothing itself: each pass checks its own contract, with the full
        # history of what ran before it.
        return self.run(model, history)

    def run(self, model: Model, history: Sequence[str] = ()) -> PassResult:  # type: ignore[override]
        self.trace = list(history)
        start = len(self.trace)
        any_change = False
        changed: list[str] = []
        self.converged = False
        for rnd in range(1, self.max_rounds + 1):
            self.rounds = rnd
            changed = []
            for p in self.passes:
                if rnd > 1 and not p.repeatable:
                    continue
                result = p(model, self.trace)
                self.trace.append(p.name)
                model = result.model
                if result.modified:
                    changed.append(p.name)
                if self._on_pass is not None:
                    self._on_pass(p, result)
            any_change = any_change or bool(changed)
            if not changed or not self.fixed_point:
                self.converged = not changed or not self.fixed_point
                break
        if not self.converged:
            log.warning(
                "passes did not reach a fixed point in %d rounds; still changing: %s",
                self.max_rounds, ", ".join(dict.fromkeys(changed)),
            )
        del self.trace[:start]
        return PassResult(model, any_change)
