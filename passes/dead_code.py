"""Removing what no graph output depends on: dead nodes and unused initializers.

onnx-graphsurgeon's ``cleanup`` walks back from the graph outputs and drops every node and
constant not reached. Graph inputs stay even when unused: they are part of the model's interface.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.graph import Model

from .base import InPlacePass, PassResult
from .registry import register

__all__ = ["RemoveDeadNodes", "remove_dead"]


def remove_dead(graph: gs.Graph) -> int:
    """Removes dead nodes and unused initializers in place; returns how many things went."""
    n_nodes = len(graph.nodes)
    n_tensors = len(graph.tensors())
    graph.cleanup(remove_unused_graph_inputs=False)
    return (n_nodes - len(graph.nodes)) + (n_tensors - len(graph.tensors()))


@register
class RemoveDeadNodes(InPlacePass):
    """Remove nodes and initializers that no graph output depends on."""

    name = "remove-dead"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, remove_dead(model.graph) > 0)
