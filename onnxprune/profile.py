"""Parameters and multiply-accumulates per node, from static shapes.

MACs: ``Conv`` = |Y|·(C_in/g)·∏k (each output element is a dot product over one filter);
``ConvTranspose`` = |X|·(C_out/g)·∏k; ``Gemm``/``MatMul`` = |Y|·K. Other ops count no MACs.
Parameters are the elements of floating-point constants and of quantized weights read by
``DequantizeLinear`` (each shared tensor counted once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from .graph import Model

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


def _is_float(dtype: object) -> bool:
    """Floating point, including types numpy names only through ml_dtypes (bfloat16, float8)."""
    try:
        if np.issubdtype(np.dtype(dtype), np.floating):  # type: ignore[arg-type]
            return True
    except TypeError:
        pass
    return "float" in str(dtype).lower()


def profile(model: Model) -> Profile:
    """MACs and parameter counts of ``model`` (symbolic dims as fixed at load)."""
    prof = Profile(0, 0)
    counted: set[str] = set()
    for node in model.graph.nodes:
        m = node_macs(node, model)
        prof.node_macs[node.name] = m
        prof.macs += m
        p = 0
        for i, t in enumerate(node.inputs):
            if isinstance(t, gs.Constant) and t.name and t.name not in counted:
                # shape/dtype only: counting must not load (and so copy) the weights
                if _is_float(t.dtype) or (node.op == "DequantizeLinear" and i == 0):
                    counted.add(t.name)
                    p += int(np.prod(t.shape, dtype=np.int64))
        if node.op == "Constant":
            v = node.attrs.get("value")
            if isinstance(v, gs.Constant) and np.issubdtype(np.dtype(v.dtype), np.floating):
                n = int(np.prod(v.shape, dtype=np.int64))
                p += n if n > 1 else 0
        prof.node_params[node.name] = p
        prof.params += p
    return prof
