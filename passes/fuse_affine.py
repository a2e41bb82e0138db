r"""Fold a constant per-channel Mul, Div, Add or Sub that follows a Conv or Gemm into its weights.

For a convolution :math:`y = W * x + b` and a constant :math:`v` that varies at most along the
channel axis (shape ``[C,1,1]``, ``[1,C,1,1]``, ``[1]`` or a scalar):

- :math:`y \cdot v = (v \odot W) * x + v \odot b` (Mul; Div uses :math:`1/v`): output-channel
  slice :math:`c` of the weight (axis 0) and bias value :math:`c` are scaled by :math:`v_c`;
- :math:`y + v = W * x + (b + v)` (Add; Sub adds :math:`-v`): only the bias changes.

For ``Gemm`` (:math:`Y = \alpha A B + \beta_g C`, features on the last axis) the same holds per
output column: columns of :math:`B` (rows when ``transB``) and :math:`C` are scaled, or :math:`v`
is added to :math:`\beta_g C`. The constant must not widen the producer's output by broadcasting,
and the producer's output must feed only the folded node. Arithmetic is done in float64.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import compact, detach, new_constant, single_consumer

__all__ = ["FuseAffine", "fuse_affine"]

_OPS = ("Mul", "Div", "Add", "Sub")


def _per_channel(c: np.ndarray, rank: int, axis: int, n: int) -> np.ndarray | None:
    """``c`` as a length-``n`` vector if it varies only along ``axis`` of a rank-``rank`` tensor."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, n):
        return None
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (n,)).copy()


def _fold(graph: gs.Graph, prod: gs.Node, node: gs.Node) -> bool:
    x = prod.outputs[0]
    k = 0 if node.inputs[0] is x else 1
    c = const_value(node.inputs[1 - k])
    if c is None or (node.op in ("Div", "Sub") and k != 0):
        return False
    w = const_value(prod.inputs[1]) if len(prod.inputs) > 1 else None
    if w is None or w.dtype.kind != "f" or c.dtype != w.dtype:
        return False
    b_in = prod.inputs[2] if len(prod.inputs) > 2 and prod.inputs[2].name else None
    b = const_value(b_in) if b_in is not None else None
    if b_in is not None and b is None:
        return False
    w64 = w.astype(np.float64)
    if prod.op == "Conv":
        n, rank, axis = w.shape[0], w.ndim, 1
    else:  # Gemm
        trans_b = int(prod.attrs.get("transB", 0))
        n, rank, axis = (w.shape[0] if trans_b else w.shape[1]), 2, 1
    v = _per_channel(c, rank, axis, n)
    if v is None:
        return False
    if prod.op == "Conv":
        bias = np.zeros(n) if b is None else b.astype(np.float64).reshape(-1)
        scale_w = lambda s: w64 * s.reshape((-1,) + (1,) * (w.ndim - 1))  # noqa: E731
    else:
        beta_g = float(prod.attrs.get("beta", 1.0))
        bias = np.zeros(n) if b is None else beta_g * b.astype(np.float64)
        if bias.ndim > 2 or (bias.ndim >= 1 and bias.shape[-1] not in (1, n)):
            return False
        scale_w = lambda s: w64 * (s.reshape(-1, 1) if trans_b else s.reshape(1, -1))  # noqa: E731
    if node.op in ("Mul", "Div"):
        s = v if node.op == "Mul" else 1.0 / v
        prod.inputs[1] = new_constant(graph, f"{prod.name}.weight_scaled", scale_w(s).astype(w.dtype))
        b_new = None if b is None else bias * s  # a zero bias stays absent
    else:
        b_new = bias + (v if node.op == "Add" else -v)
    if b_new is not None:
        const = new_constant(graph, f"{prod.name}.bias_folded", np.asarray(b_new).astype(w.dtype))
        if len(prod.inputs) > 2:
            prod.inputs[2] = const
        else:
            prod.inputs.append(const)
        if prod.op == "Gemm":
            prod.attrs["beta"] = 1.0
    out = node.outputs[0]
    detach(node)
    prod.outputs[0] = out
    return True


def fuse_affine(graph: gs.Graph) -> int:
    """Folds every eligible Conv/Gemm -> constant Mul/Div/Add/Sub pair; returns the count."""
    folded = 0
    for prod in [n for n in graph.nodes if n.op in ("Conv", "Gemm")]:
        while prod.outputs:
            x = prod.outputs[0]
            node = single_consumer(graph, x)
            if node is None or node.op not in _OPS or len(node.inputs) != 2:
                break
            if node.inputs[0] is node.inputs[1] or not _fold(graph, prod, node):
                break
            folded += 1
    compact(graph)
    return folded


@register
class FuseAffine(InPlacePass):
    """Fold a constant per-channel Mul/Div/Add/Sub after a Conv or Gemm into its weights and bias."""

    name = "fuse-affine"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, fuse_affine(model.graph) > 0)
