"""Fixing the sizes of symbolic graph-input dimensions, so shape code can fold away.

A model exported with a dynamic batch or sequence length computes its Reshape targets at run
time. When it will only ever run at one size (an edge deployment, a benchmark), writing those
sizes into the graph inputs lets shape inference make every dimension static, and
:class:`~passes.fold_constants.FoldConstants` then folds all shape arithmetic. This changes the
model's interface on purpose (it then accepts only that size), so it is never part of
``cleanup``: ask for it by name, with sizes given as ``shapes`` or as ``--input-shape``.
"""

from __future__ import annotations

from onnxprune.graph import Model

from .base import InPlacePass, PassResult
from .registry import register

__all__ = ["FixInputShapes"]


@register
class FixInputShapes(InPlacePass):
    """Write fixed sizes into symbolic graph-input dimensions (changes the interface on purpose)."""

    name = "fix-input-shapes"
    preserves_interface = False

    def __init__(self, shapes: dict[str, list[int]] | None = None) -> None:
        """
        Args:
            shapes: ``{input name: [d0, d1, ...]}``; default: the ``--input-shape`` values the
                model was loaded with.
        """
        self.shapes = shapes

    def _shapes(self, model: Model) -> dict[str, list[int]]:
        return dict(self.shapes if self.shapes is not None else model.input_shapes)

    def requires(self, model: Model) -> str | None:
        shapes = self._shapes(model)
        if not shapes:
            return "no sizes given: pass shapes={...} or --input-shape NAME:D0,D1,..."
        inputs = {t.name: t for t in model.graph.inputs}
        for name, dims in shapes.items():
            t = inputs.get(name)
            if t is None:
                return f"'{name}' is not a graph input (inputs: {', '.join(inputs)})"
            if t.shape is not None and len(t.shape) != len(dims):
                return f"input '{name}' has {len(t.shape)} dimensions, {len(dims)} were given"
            for have, want in zip(t.shape or [], dims):
                if isinstance(have, int) and have >= 0 and have != want:
                    return f"input '{name}' has static size {list(t.shape)}; cannot make it {dims}"
        return None

    def run(self, model: Model) -> PassResult:
        changed = False
        inputs = {t.name: t for t in model.graph.inputs}
        for name, dims in self._shapes(model).items():
            t = inputs[name]
            if t.shape is None or list(t.shape) != list(dims):
                t.shape = [int(d) for d in dims]
                changed = True
        return PassResult(model, changed)
