"""The pass contract: ``PassResult(model, modified)``, with checks before and after.

A pass is an object whose options are set in its constructor; calling it on a
:class:`~onnxprune.graph.Model` returns a :class:`PassResult`. The base class runs the pass's
declared precondition (:meth:`Pass.requires`) before and postcondition (:meth:`Pass.ensures`)
after, and, unless the pass says it changes the model's interface, checks that every graph input
and output keeps its name, element type and shape: a model that callers feed and read must look
the same after optimization.

Two flavours:

- :class:`InPlacePass` edits ``model.graph`` and returns the same :class:`Model` (cheap, the
  usual case for graph rewrites);
- :class:`FunctionalPass` returns a new :class:`Model` and leaves its input untouched (the base
  class checks both), for passes whose callers need the original afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.errors import OnnxPruneError, PassError
from onnxprune.graph import Model

__all__ = [
    "Pass",
    "InPlacePass",
    "FunctionalPass",
    "PassResult",
    "PassError",
    "interface_of",
]

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What a pass returns: the (possibly new) model and whether anything changed."""

    model: Model
    modified: bool


Interface = tuple[tuple[tuple[str, str, tuple[object, ...] | None], ...], ...]


def _describe(t: gs.Tensor) -> tuple[str, str, tuple[object, ...] | None]:
    dtype = t.dtype
    dt = str(np.dtype(dtype)) if dtype is not None and not isinstance(dtype, int) else str(dtype)
    shape = tuple(t.shape) if t.shape is not None else None
    return (t.name, dt, shape)


def interface_of(model: Model) -> Interface:
    """Names, element types and shapes of the graph inputs and outputs, in order."""
    g = model.graph
    return (tuple(_describe(t) for t in g.inputs), tuple(_describe(t) for t in g.outputs))


def _interface_change(before: Interface, after: Interface) -> str | None:
    for kind, b, a in (("input", before[0], after[0]), ("output", before[1], after[1])):
        if [x[0] for x in b] != [x[0] for x in a]:
            return f"graph {kind}s changed from {[x[0] for x in b]} to {[x[0] for x in a]}"
        for (name, dt0, s0), (_, dt1, s1) in zip(b, a):
            if dt0 != dt1:
                return f"graph {kind} '{name}' changed type {dt0} -> {dt1}"
            if s0 != s1:
                return f"graph {kind} '{name}' changed shape {s0} -> {s1}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Pass:
    """Base class of every pass.

    Subclasses set :attr:`name` (the registry name, ``verb-noun``), write a one-line class
    docstring (shown by ``onnxprune passes``), take their options as constructor arguments and
    implement :meth:`run`. Calling the pass checks the contract around :meth:`run`.
    """

    #: Registry and error-message name.
    name: str = "pass"
    #: False for passes that may legitimately change graph inputs/outputs.
    preserves_interface: bool = True
    #: True when :meth:`run` edits its argument; False when it returns a new model.
    in_place: bool = True
    #: False for passes that must run once (pruning removes more each time it runs): a
    #: :class:`~passes.manager.PassManager` runs them in its first round only.
    repeatable: bool = True

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def requires(self, model: Model) -> str | None:
        """Precondition: a reason the pass cannot run on ``model``, or ``None``."""
        return None

    def ensures(self, model: Model) -> str | None:
        """Postcondition: a reason the result breaks the pass's promise, or ``None``."""
        return None

    def run(self, model: Model) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def options(self) -> dict[str, object]:
        """The constructor options of this pass (for reports and recipes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def __call__(self, model: Model, history: Sequence[str] = ()) -> PassResult:
        """Runs the pass with its contract checked.

        Args:
            model: the model to transform.
            history: names of the passes that ran before (for error messages).

        Raises:
            PassError: the precondition or postcondition failed, or the pass raised.
        """
        why = self.requires(model)
        if why:
            err = PassError(f"cannot run: {why}", self.name, history)
            err.exit_code = 2  # the model or the options do not fit the pass: bad input
            raise err
        before = interface_of(model) if self.preserves_interface else None
        fingerprint = None if self.in_place else _fingerprint(model)
        try:
            result = self.run(model)
        except PassError as exc:
            if exc.pass_name:
                raise
            raise PassError(exc.reason, self.name, history) from exc
        except OnnxPruneError as exc:
            err = PassError(_first_line(exc), self.name, history)
            err.exit_code = exc.exit_code
            raise err from exc
        except Exception as exc:  # a bug or an unexpected graph: name the pass
            raise PassError(f"{type(exc).__name__}: {_first_line(exc)}", self.name, history) from exc
        if not isinstance(result, PassResult):
            raise PassError(f"returned {type(result).__name__}, not PassResult", self.name, history)
        if self.in_place and result.model is not model:
            raise PassError("an in-place pass must return the model it was given", self.name, history)
        if not self.in_place:
            if result.model is model and result.modified:
                raise PassError("a functional pass must return a new model", self.name, history)
            if _fingerprint(model) != fingerprint:
                raise PassError("a functional pass modified its input model", self.name, history)
        if before is not None:
            why = _interface_change(before, interface_of(result.model))
            if why:
                raise PassError(f"broke the model interface: {why}", self.name, history)
        why = self.ensures(result.model)
        if why:
            raise PassError(f"broke its postcondition: {why}", self.name, history)
        log.info("%s: %s", self.name, "modified" if result.modified else "no change")
        return result


def _fingerprint(model: Model) -> tuple[object, ...]:
    """Cheap identity of a graph's structure: nodes, their tensors, and the graph interface."""
    g = model.graph
    return (
        tuple((id(n), n.op, tuple(t.name for t in n.inputs), tuple(t.name for t in n.outputs)) for n in g.nodes),
        interface_of(model),
    )


class InPlacePass(Pass):
    """A pass that edits ``model.graph`` and returns the same :class:`Model`."""

    in_place = True


class FunctionalPass(Pass):
    """A pass that returns a new :class:`Model` and leaves its input untouched.

    Subclasses implement :meth:`transform` on a private copy; the base class makes the copy
    (graph structure copied, weight arrays shared, so transforms must replace arrays, not write
    into them).
    """

    in_place = False

    def transform(self, model: Model) -> bool:  # pragma: no cover - abstract
        """Edits the copy ``model``; returns whether anything changed."""
        raise NotImplementedError

    def run(self, model: Model) -> PassResult:
        copy = copy_model(model)
        modified = self.transform(copy)
        return PassResult(copy if modified else model, modified)


def copy_model(model: Model) -> Model:
    """A copy of ``model`` whose graph can be edited without touching the original."""
    from dataclasses import replace

    return replace(
        model,
        graph=model.graph.copy(),
        shapes=dict(model.shapes),
        input_shapes=dict(model.input_shapes),
        metadata=list(model.metadata),
    )
