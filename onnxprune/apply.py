"""Applying a plan: slice every constant in a pruned space, then let rules rewrite attributes.

Slicing is generic: a constant tensor that lies in a space along axis ``a`` keeps exactly the
atoms the plan keeps there (``np.take(W, kept, axis=a)``), for every space it lies in (a Conv
weight is cut along axis 0 by its output group and along axis 1 by its input group). Because a
shared initializer is one tensor, it is one space: its users were coupled into one group by the
analysis and it is cut once, consistently. Afterwards each op's rewriter updates what depends on
sizes (Conv ``group``, Reshape shape vectors, Split sizes, Slice bounds, Resize sizes), stale
shape annotations are dropped and shapes are inferred again.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict

import numpy as np

from .depgraph import DepGraph
from .errors import ApplyError
from .graph import const_value, set_const_value
from .plan import Plan
from .rules import ApplyContext, find_rewriter

__all__ = ["apply_plan"]

log = logging.getLogger(__name__)

#: Cutting a constant at least this big is followed by a garbage collection.
_COLLECT_BYTES = 32 << 20


def apply_plan(dg: DepGraph, plan: Plan) -> int:
    """Edits ``dg.model`` in place according to ``plan``; returns the number of tensors cut.

    The dependency graph is stale afterwards (build a new one to analyse the result).
    """
    model = dg.model
    kept = dg.kept_indices(plan.removed)
    if not kept:
        return 0
    tensors = model.graph.tensors()
    cuts: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for key, idx in kept.items():
        sp = dg.spaces[key]
        if sp.const:
            cuts[key[0]].append((key[1], idx))
        if len(idx) == 0:
            raise ApplyError(f"plan empties '{key[0]}' axis {key[1]}; keep at least one channel")
    for name, axes in cuts.items():
        t = tensors[name]
        value = const_value(t)
        if value is None:  # pragma: no cover - spaces are const only when a value exists
            raise ApplyError(f"constant '{name}' has no value to slice")
        big = value.nbytes >= _COLLECT_BYTES
        for axis, idx in axes:
            value = np.take(value, idx, axis=axis)
        set_const_value(t, np.ascontiguousarray(value))
        del value
        if big:
            # The replaced array is freed only when the garbage collector breaks the graph's
            # reference cycles; collect now so a big model never holds old and new weights.
            gc.collect()
    gc.collect()
    sizes = {k: sp.size for k, sp in dg.spaces.items()}
    ctx = ApplyContext(kept, sizes, model.shapes, model.opset)
    for node in model.graph.nodes:
        rw = find_rewriter(node)
        if rw is not None:
            rw(node, ctx)
    model.graph.cleanup(remove_unused_graph_inputs=False)
    model.refresh_shapes()
    log.info("sliced %d constants across %d spaces", len(cuts), len(kept))
    return len(cuts)
