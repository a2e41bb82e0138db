"""Merging identical initializers into one.

Two constants are merged when they have the same element type, shape and bytes (compared by a
digest, then exactly). Readers of the duplicates read the first one instead; the duplicates
become unused and :class:`~passes.dead_code.RemoveDeadNodes` drops them. Graph outputs are never
merged. Pruning copies uniform shared constants back per reader before it slices anything (see
:func:`onnxprune.graph.untie_uniform_constants`), so merging here never couples unrelated layers'
channels.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import is_graph_output

__all__ = ["DeduplicateInitializers", "deduplicate_initializers"]


def deduplicate_initializers(graph: gs.Graph) -> int:
    """Points readers of duplicate constants at one copy; returns how many were redirected."""
    first: dict[tuple[str, tuple[int, ...], bytes], list[gs.Constant]] = {}
    redirected = 0
    for t in list(graph.tensors().values()):
        if not isinstance(t, gs.Constant) or not t.outputs or is_graph_output(graph, t):
            continue
        v = np.asarray(t.values)
        key = (str(v.dtype), tuple(v.shape), hashlib.sha1(v.tobytes()).digest())
        same = first.setdefault(key, [])
        keep = next((c for c in same if np.array_equal(np.asarray(c.values), v)), None)
        if keep is None:
            same.append(t)
            continue
        for node in list(t.outputs):
            for i, inp in enumerate(node.inputs):
                if inp is t:
                    node.inputs[i] = keep
                    redirected += 1
    return redirected


@register
class DeduplicateInitializers(InPlacePass):
    """Merge initializers with identical type, shape and values."""

    name = "dedup-initializers"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, deduplicate_initializers(model.graph) > 0)
