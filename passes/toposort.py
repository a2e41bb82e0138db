"""Topological sort: every node after the producers of its inputs (what ONNX requires)."""

from __future__ import annotations

from onnxprune.graph import Model

from .base import InPlacePass, PassResult
from .registry import register

__all__ = ["SortTopologically"]


@register
class SortTopologically(InPlacePass):
    """Order nodes so every node comes after the producers of its inputs."""

    name = "toposort"

    def run(self, model: Model) -> PassResult:
        before = [id(n) for n in model.graph.nodes]
        model.graph.toposort()
        return PassResult(model, [id(n) for n in model.graph.nodes] != before)

    def ensures(self, model: Model) -> str | None:
        seen = {t.name for t in model.graph.inputs} | {
            t.name for t in model.graph.tensors().values() if not t.inputs
        }
        for n in model.graph.nodes:
            for t in n.inputs:
                if t.name and t.name not in seen:
                    return f"node '{n.name}' reads '{t.name}' before it is produced"
            seen.update(t.name for t in n.outputs)
        return None
