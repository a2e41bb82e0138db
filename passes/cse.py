"""Common subexpression elimination: one node per distinct computation.

Two nodes compute the same thing when they have the same domain, op type, attributes and the
very same input tensors; the second one's outputs are replaced by the first's. Exporters write
``Shape(x)`` once per use and the same ``Unsqueeze`` of a batch size several times; after
merging, the shape arithmetic that remains is shared. Nodes with subgraphs and
non-deterministic ops (random generators) are left alone, and graph outputs keep their names.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import compact, detach, is_graph_output

__all__ = ["EliminateCommonSubexpressions", "eliminate_common_subexpressions"]

_NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
     "Bernoulli", "Dropout"}
)


def _attr_key(value: object) -> object:
    if isinstance(value, gs.Constant):
        v = np.asarray(value.values)
        return ("tensor", str(v.dtype), v.shape, v.tobytes())
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, value.tobytes())
    if isinstance(value, list | tuple):
        return tuple(_attr_key(v) for v in value)
    if isinstance(value, gs.Graph | gs.Node.AttributeRef):
        raise TypeError("not comparable")
    if isinstance(value, float | int | str | bytes | bool) or value is None:
        return value
    raise TypeError("not comparable")


def _key(node: gs.Node) -> tuple[object, ...] | None:
    if node.op in _NONDETERMINISTIC or not node.outputs:
        return None
    try:
        attrs = tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items()))
    except TypeError:
        return None
    return (node.domain or "", node.op, attrs, tuple(id(t) for t in node.inputs), len(node.outputs))


def eliminate_common_subexpressions(graph: gs.Graph) -> int:
    """Merges duplicate nodes in place (graph must be sorted); returns how many went."""
    seen: dict[tuple[object, ...], gs.Node] = {}
    merged = 0
    for node in list(graph.nodes):
        key = _key(node)
        if key is None:
            continue
        keep = seen.get(key)
        if keep is None:
            seen[key] = node
            continue
        if any(is_graph_output(graph, o) for o in node.outputs):
            continue
        for mine, theirs in zip(node.outputs, keep.outputs):
            for reader in list(mine.outputs):
                for i, t in enumerate(reader.inputs):
                    if t is mine:
                        reader.inputs[i] = theirs
        detach(node)
        merged += 1
    compact(graph)
    return merged


@register
class EliminateCommonSubexpressions(InPlacePass):
    """Merge nodes that compute the same op on the same inputs with the same attributes."""

    name = "cse"

    def run(self, model: Model) -> PassResult:
        model.graph.toposort()
        return PassResult(model, eliminate_common_subexpressions(model.graph) > 0)
