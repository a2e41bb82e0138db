r"""Fold an inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it.

BatchNormalization computes, per channel :math:`c`,

.. math::  z_c = \gamma_c \frac{y_c - \mu_c}{\sqrt{\sigma^2_c + \epsilon}} + \beta_c
           = s_c\, y_c + t_c,\qquad s_c = \frac{\gamma_c}{\sqrt{\sigma^2_c+\epsilon}},\quad
           t_c = \beta_c - s_c \mu_c .

When :math:`y = W * x + b` is a convolution, :math:`z = (s \odot W) * x + (s \odot b + t)`: the
output-channel slices of the weight are scaled by :math:`s_c` and the bias becomes
:math:`s_c b_c + t_c` (with :math:`b = 0` when the Conv has none). For a Conv the output channel
is weight axis 0; for a ConvTranspose with ``group`` groups the weight is
``(C_in, C_out/group, k...)`` and output channel :math:`g \cdot C_{out}/group + j` is slice ``j``
of axis 1 within group ``g``. For ``Gemm`` (:math:`Y = \alpha A B + \beta_g C`, features on the
last axis) the columns of :math:`B` (rows when ``transB``) are scaled and :math:`C` becomes
:math:`s \odot \beta_g C + t` with :math:`\beta_g = 1`.

Arithmetic is done in float64 and cast back, so the fused model matches the original to
rounding. The producer's output must feed only the BatchNormalization and not be a graph output.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.graph import Model, const_value

from .base import InPlacePass, PassResult
from .registry import register
from .rewrite import compact, detach, new_constant, single_consumer

__all__ = ["FuseBatchNorm", "FoldBatchNorm", "fuse_batchnorm"]


def _bn_affine(bn: gs.Node) -> tuple[np.ndarray, np.ndarray] | None:
    if bn.attrs.get("training_mode", 0) or len(bn.inputs) < 5:
        return None
    if sum(1 for o in bn.outputs if o.name) > 1:  # running statistics requested: training
        return None
    vals = [const_value(t) for t in bn.inputs[1:5]]
    if any(v is None for v in vals):
        return None
    gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in vals)  # type: ignore[arg-type]
    eps = float(bn.attrs.get("epsilon", 1e-5))
    s = gamma / np.sqrt(var + eps)
    return s, beta - s * mean


def _fuse(graph: gs.Graph, prod: gs.Node, bn: gs.Node) -> bool:
    aff = _bn_affine(bn)
    if aff is None:
        return False
    s, t = aff
    w = const_value(prod.inputs[1]) if len(prod.inputs) > 1 else None
    if w is None or w.dtype.kind != "f":
        return False
    dtype = w.dtype
    w64 = w.astype(np.float64)
    b_in = prod.inputs[2] if len(prod.inputs) > 2 and prod.inputs[2].name else None
    b = const_value(b_in) if b_in is not None else None
    if b_in is not None and b is None:
        return False
    if prod.op == "Conv":
        if w.shape[0] != s.size:
            return False
        w_new = w64 * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b_new = (np.zeros(s.size) if b is None else b.astype(np.float64).reshape(-1)) * s + t
    elif prod.op == "ConvTranspose":
        group = int(prod.attrs.get("group", 1))
        cout_g = w.shape[1]
        if cout_g * group != s.size:
            return False
        w_g = w64.reshape((group, w.shape[0] // group, cout_g) + w.shape[2:])
        w_new = (w_g * s.reshape((group, 1, cout_g) + (1,) * (w.ndim - 2))).reshape(w.shape)
        b_new = (np.zeros(s.size) if b is None else b.astype(np.float64).reshape(-1)) * s + t
    elif prod.op == "Gemm":
        trans_b = int(prod.attrs.get("transB", 0))
        n = w.shape[0] if trans_b else w.shape[1]
        if n != s.size:
            return False
        w_new = w64 * (s.reshape(-1, 1) if trans_b else s.reshape(1, -1))
        beta_g = float(prod.attrs.get("beta", 1.0))
        c = np.zeros(s.size) if b is None else beta_g * b.astype(np.float64)
        if c.ndim > 2 or (c.ndim >= 1 and c.shape[-1] not in (1, s.size)):
            return False
        b_new = c * s + t
        prod.attrs["beta"] = 1.0
    else:
        return False
    prod.inputs[1] = new_constant(graph, f"{prod.name}.weight_bn", w_new.astype(dtype))
    bias = new_constant(graph, f"{prod.name}.bias_bn", b_new.astype(dtype))
    if len(prod.inputs) > 2:
        prod.inputs[2] = bias
    else:
        prod.inputs.append(bias)
    # The producer now writes the BatchNorm's output tensor (graph output names survive).
    out = bn.outputs[0]
    detach(bn)
    prod.outputs[0] = out
    return True


def fuse_batchnorm(graph: gs.Graph) -> int:
    """Fuses every eligible Conv/ConvTranspose/Gemm -> BatchNormalization pair; returns the count."""
    fused = 0
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        x = bn.inputs[0]
        if not isinstance(x, gs.Variable) or len(x.inputs) != 1:
            continue
        prod = x.inputs[0]
        if prod.op not in ("Conv", "ConvTranspose", "Gemm") or single_consumer(graph, x) is not bn:
            continue
        if prod.op == "Gemm" and (x.shape is not None and len(x.shape) != 2):
            continue
        if _fuse(graph, prod, bn):
            fused += 1
    compact(graph)
    return fused


@register
class FuseBatchNorm(InPlacePass):
    """Fold BatchNormalization into the preceding Conv, ConvTranspose or Gemm weights and bias."""

    name = "fuse-bn"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, fuse_batchnorm(model.graph) > 0)

    def ensures(self, model: Model) -> str | None:
        for n in model.graph.nodes:
            if n.op in ("Conv", "ConvTranspose") and len(n.inputs) > 2 and n.inputs[2].name:
                w, b = n.inputs[1], n.inputs[2]
                if isinstance(w, gs.Constant) and isinstance(b, gs.Constant) and n.op == "Conv":
                    if b.values.size != w.values.shape[0]:
                        return f"node '{n.name}': bias has {b.values.size} values for {w.values.shape[0]} channels"
        return None


#: The name the design notes use for the same pass.
FoldBatchNorm = FuseBatchNorm
