"""Parameters and multiply-accumulates per node, from static shapes.

MACs: ``Conv`` = |Y|·(C_in/g)·∏k (each output element is a dot product over one filter);
``ConvTranspose`` = |X|·(C_out/g)·∏k; ``Gemm``/``MatMul`` = |Y|·K. Other ops count no MACs.
Parameters are the elements of floating-point constants (each shared tensor counted once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from .graph import Model, const_value

__all__ = ["Profile", "profile", "LINEAR_OPS"]

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Profile:
    macs: int
    params: int
    node_macs: dict[str, int] = field(default_factory=dict)
    node_params: dict[str, int] = field(default_factory=dict)


def _numel(shape: tuple[int | None, ...] | None) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)  # type: ignore[arg-type]


def node_macs(node: gs.Node, model: Model) -> int:
    s = model.shapes
    try:
        if node.op == "Conv":
            y, w = _numel(s.get(node.outputs[0].name)), s.get(node.inputs[1].name)
            return (y or 0) * math.prod(w[1:]) if w else 0
        if node.op == "ConvTranspose":
            x, w = _numel(s.get(node.inputs[0].name)), s.get(node.inputs[1].name)
            return (x or 0) * math.prod(w[1:]) if w else 0
        if node.op == "Gemm":
            y, a = _numel(s.get(node.outputs[0].name)), s.get(node.inputs[0].name)
            k = a[0] if int(node.attrs.get("transA", 0)) else a[1]
            return (y or 0) * (k or 0)
        if node.op == "MatMul":
            y, a = _numel(s.get(node.outputs[0].name)), s.get(node.inputs[0].name)
            return (y or 0) * (a[-1] or 0) if a else 0
    except (TypeError, IndexError):
        return 0
    return 0


def profile(model: Model) -> Profile:
    """MACs and parameter counts of ``model`` (symbolic dims as fixed at load)."""
    prof = Profile(0, 0)
    counted: set[str] = set()
    for node in model.graph.nodes:
        m = node_macs(node, model)
        prof.node_macs[node.name] = m
        prof.macs += m
        p = 0
        for t in node.inputs:
            if not t.name or t.name in counted:
                continue
            v = const_value(t) if isinstance(t, gs.Constant) else None
            if v is not None and np.issubdtype(v.dtype, np.floating):
                counted.add(t.name)
                p += int(v.size)
        if node.op == "Constant":
            v = const_value(node.outputs[0])
            if v is not None and np.issubdtype(v.dtype, np.floating) and v.size > 1:
                p += int(v.size)
        prof.node_params[node.name] = p
        prof.params += p
    return prof
