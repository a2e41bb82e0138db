"""Fold a zero ``Pad`` into the padding of the Conv or pooling op that reads it.

``Conv(Pad(x, p))`` with constant-mode padding by zeros on the spatial axes only equals
``Conv(x)`` with the Pad's amounts added to the Conv's ``pads`` (begin and end of each spatial
axis). The same holds for ``AveragePool`` with ``count_include_pad=1`` (zeros counted either
way); MaxPool is left alone, since its own padding is not zeros. ``auto_pad`` other than
``NOTSET`` is left alone too.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import compact, detach, single_consumer

__all__ = ["FusePad", "fuse_pad"]


def _pads_of(pad: gs.Node) -> np.ndarray | None:
    mode = pad.attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode != "constant":
        return None
    if len(pad.inputs) > 1:
        pads = const_value(pad.inputs[1])
        value = const_value(pad.inputs[2]) if len(pad.inputs) > 2 and pad.inputs[2].name else np.zeros(1)
        if len(pad.inputs) > 3 and pad.inputs[3].name:
            return None  # explicit axes
    else:
        pads = np.asarray(pad.attrs.get("pads", []))
        value = np.asarray(pad.attrs.get("value", 0.0))
    if pads is None or value is None or np.any(np.asarray(value) != 0):
        return None
    return np.asarray(pads, dtype=np.int64).reshape(-1)


def fuse_pad(graph: gs.Graph) -> int:
    """Folds eligible Pad -> Conv/AveragePool pairs in place; returns the count."""
    fused = 0
    for pad in [n for n in graph.nodes if n.op == "Pad"]:
        y = pad.outputs[0]
        node = single_consumer(graph, y)
        if node is None or node.inputs[0] is not y:
            continue
        if node.op == "AveragePool" and int(node.attrs.get("count_include_pad", 0)) != 1:
            continue
        if node.op not in ("Conv", "AveragePool"):
            continue
        auto = node.attrs.get("auto_pad", "NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET":
            continue
        pads = _pads_of(pad)
        if pads is None or pads.size % 2 or pads.size < 6:
            continue
        rank = pads.size // 2
        begin, end = pads[:rank], pads[rank:]
        if begin[0] or begin[1] or end[0] or end[1] or np.any(pads < 0):
            continue  # batch or channel padding, or cropping
        old = node.attrs.get("pads")
        spatial = rank - 2
        old = np.zeros(2 * spatial, dtype=np.int64) if old is None else np.asarray(old, dtype=np.int64)
        if old.size != 2 * spatial:
            continue
        node.attrs["pads"] = [int(v) for v in np.concatenate([old[:spatial] + begin[2:], old[spatial:] + end[2:]])]
        node.inputs[0] = pad.inputs[0]
        detach(pad)
        fused += 1
    compact(graph)
    return fused


@register
class FusePad(InPlacePass):
    """Fold a constant zero Pad on spatial axes into the following Conv/AveragePool's pads."""

    name = "fuse-pad"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, fuse_pad(model.graph) > 0)
