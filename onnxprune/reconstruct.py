"""Reconstruction: refit the layers that read pruned channels so they keep their outputs.

Removing channels takes input features away from every *consumer* that reads them (a
Conv/Gemm/MatMul with a constant weight). Write a consumer as ``y = x·M + b`` with input row
``x ∈ R^K`` (a feature vector, or an im2col patch of ``C_in·k_h·k_w`` values for a Conv) and
``M ∈ R^{K×N}``. After pruning only the features ``S`` remain (``P`` are gone). On calibration
data we look for ``M'_S, b'`` with ``x_S·M'_S + b' ≈ x·M + b``, i.e. the *original* model's
output of that layer. With the centered second moment ``C = E[x xᵀ] - μμᵀ`` (``μ = E[x]``),
ridge least squares with an intercept, with the ridge pulling towards the weights the layer
already has (``min ‖X_S M'_S - X M‖² + λ‖M'_S - M_S‖²``), gives

    M'_S = (C_SS + λI)⁻¹ (C_S· M + λ M_S)          b' = b + μ·M - μ_S·M'_S

which is ``W' = (X_Sᵀ X_S + λI)⁻¹ X_Sᵀ Y`` with ``Y = X M`` written with centered data (plus
the prior term): only Gram blocks are needed, never ``Y``. ``λ = α·mean(diag C_SS)`` (``α`` =
``ridge``, relative, so one value suits every layer's scale). Pulling towards ``M_S`` rather
than towards zero matters when calibration rows do not span every input direction (a
Flatten→Gemm head has ``C·H·W`` features, often more than the samples): there the weights stay
as they were instead of collapsing to zero. If a removed feature is a linear combination of
kept ones, the refit is exact; if it is constant (a dead channel), it is exact through the
bias, and ``M'_S = M_S``.

Where the refit is off or impossible (no Gram statistics, a 3-D Conv) the weights of kept
features are left as they were and only the mean is restored — *bias compensation*:
``b' = b + μ_P·M_P``, the removed features' average contribution. A consumer without a bias
gets one (Conv/Gemm input, or an ``Add`` after a MatMul).

Cases:

- BatchNorm or an activation between producer and consumer needs no folding: statistics are
  taken of the consumer's actual input tensor, after everything in between; a BatchNorm after
  the consumer sees the same pre-normalization output as before.
- Grouped and depthwise Convs lose whole groups (their inputs and outputs together), so nothing
  reads a removed channel through them: there is nothing to refit or compensate.
- A group spanning several branches (a residual stage: one channel read by the convs of every
  block and by the head) is refit consumer by consumer; each sees its own input.
- A weight shared by several nodes (tied) is not refit (one refit cannot suit two inputs).

The first refit targets the original model's layer output from the original model's inputs
(one-shot). :func:`correct` then refits again on the inputs each layer receives in the pruned
model (both models run side by side on the calibration data), so errors left by earlier layers
are compensated instead of accumulating through a deep network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from .calibration import (
    CalibrationStats,
    Consumer,
    CrossGramStats,
    channel_key,
    find_consumers,
    weight_matrix,
)
from .depgraph import DepGraph
from .graph import Model, const_value, set_const_value
from .plan import Plan

__all__ = ["Cut", "RefitReport", "consumer_cuts", "reconstruct", "correct", "refit_weights"]

log = logging.getLogger(__name__)


@dataclass
class Cut:
    """A consumer that loses input features, with what it needs after the plan is applied."""

    consumer: Consumer
    kept_in: np.ndarray  # atom indices kept on the weight's input axis
    kept_out: np.ndarray | None  # output indices kept (None: all)
    weight: np.ndarray  # the original weight
    bias: np.ndarray | None  # the original effective bias (length N), if any
    scale: float = 1.0  # Gemm alpha (y = alpha·x·B + beta·C)
    bias_scale: float = 1.0  # Gemm beta
    #: the bias change already written (kept outputs), so a later pass can replace it
    applied_shift: np.ndarray | None = None


@dataclass
class RefitReport:
    node: str
    mode: str  # "refit", "bias" or "skip"
    kept: int
    total: int
    reason: str = ""


def consumer_cuts(dg: DepGraph, plan: Plan) -> list[Cut]:
    """The consumers whose input features ``plan`` removes (call before applying the plan)."""
    kept = dg.kept_indices(plan.removed)
    tensors = dg.model.graph.tensors()
    nodes = {n.name: n for n in dg.model.graph.nodes}
    out: list[Cut] = []
    for c in find_consumers(dg.model):
        key = (c.w, c.w_in)
        if key not in kept:
            continue
        node = nodes[c.node]
        w = np.array(const_value(tensors[c.w]))
        kept_out = kept.get((c.w, c.w_out))
        bias, alpha, beta = None, 1.0, 1.0
        if c.op == "Gemm":
            alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
        if c.op in ("Conv", "Gemm") and len(node.inputs) > 2 and node.inputs[2].name:
            bv = const_value(node.inputs[2])
            if bv is None or (bv.ndim == 2 and bv.shape[0] > 1):
                log.info("%s '%s': bias is not a constant vector; left as it is", c.op, c.node)
                continue
            bias = np.broadcast_to(np.asarray(bv, dtype=np.float64).reshape(-1), (w.shape[c.w_out],)).copy() \
                if bv.size in (1, w.shape[c.w_out]) else None
            if bias is None:
                continue
        out.append(Cut(c, kept[key], kept_out, w, bias, alpha, beta))
    return out


def refit_weights(
    cov_ss: np.ndarray, cov_s_all: np.ndarray, m: np.ndarray, mu_s: np.ndarray, mu_all: np.ndarray,
    m_s0: np.ndarray,
    ridge: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """``M'_S = (C_SS + λI)⁻¹ (C_S· M + λ M_S)`` and the bias change ``μ·M - μ_S·M'_S``.

    ``M_S`` (``m_s0``) defaults to the rows of ``m`` at the kept features, which the caller
    passes when the kept features are not simply a subset (cross statistics).
    """
    lam = ridge * float(np.mean(np.diag(cov_ss))) if cov_ss.size else 0.0
    lam = max(lam, 1e-12)
    a = cov_ss + lam * np.eye(cov_ss.shape[0])
    rhs = cov_s_all @ m + lam * m_s0
    try:
        m_s = np.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:
        m_s = np.linalg.lstsq(a, rhs, rcond=None)[0]
    return m_s, mu_all @ m - mu_s @ m_s


def _features(c: Consumer, atoms: np.ndarray) -> np.ndarray:
    if c.kernel == 1:
        return atoms
    return (atoms[:, None] * c.kernel + np.arange(c.kernel)[None, :]).reshape(-1)


def _feature_means(c: Consumer, stats: CalibrationStats, k: int) -> np.ndarray | None:
    g = stats.grams.get(c.node)
    if g is not None and g.s is not None:
        return g.mean
    ch = stats.channels.get(channel_key(c))
    if ch is None or ch.mean is None:
        return None
    # per-channel mean for every kernel tap (zero padding at borders is ignored here)
    return np.repeat(ch.mean, c.kernel) if len(ch.mean) * c.kernel == k else None


def _write_bias(model: Model, node: gs.Node, c: Consumer, value: np.ndarray, dtype: np.dtype) -> None:
    value = value.astype(dtype)
    if c.op in ("Conv", "Gemm"):
        if len(node.inputs) > 2 and node.inputs[2].name and len(node.inputs[2].outputs) == 1 \
                and const_value(node.inputs[2]) is not None:
            set_const_value(node.inputs[2], value)
            return
        t = gs.Constant(f"{node.name}_compensated_bias", value)
        if len(node.inputs) > 2:
            node.inputs[2] = t
        else:
            node.inputs.append(t)
        return
    # MatMul: a following Add of a constant vector is its bias; otherwise add one.
    y = node.outputs[0]
    users = list(y.outputs)
    if len(users) == 1 and users[0].op == "Add":
        add = users[0]
        other = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
        ov = const_value(other)
        if ov is not None and ov.ndim >= 1 and ov.size == value.size and len(other.outputs) == 1:
            set_const_value(other, (ov.reshape(-1) + value).reshape(ov.shape).astype(dtype))
            return
    mid = gs.Variable(f"{y.name}_before_bias", dtype=y.dtype)
    node.outputs[0] = mid
    add = gs.Node("Add", name=f"{node.name}_compensated_bias_add",
                  inputs=[mid, gs.Constant(f"{node.name}_compensated_bias", value)], outputs=[y])
    model.graph.nodes.append(add)
    model.graph.toposort()


def _write(model: Model, node: gs.Node, cut: Cut, m_s: np.ndarray, shift: np.ndarray) -> str | None:
    """Writes ``M'_S`` (kept features x kept outputs) and the bias change; a reason if it cannot."""
    c = cut.consumer
    w_now = node.inputs[1]
    m_s = m_s / cut.scale
    dtype = cut.weight.dtype
    if c.is_conv:
        w_new = m_s.T.reshape((m_s.shape[1], len(cut.kept_in)) + cut.weight.shape[2:])
    elif c.w_in == 0:
        w_new = m_s
    else:
        w_new = m_s.T
    if tuple(w_new.shape) != tuple(const_value(w_now).shape):
        return f"weight shape {const_value(w_now).shape} != refit {w_new.shape}"
    set_const_value(w_now, np.ascontiguousarray(w_new.astype(dtype)))
    out_idx = cut.kept_out if cut.kept_out is not None else np.arange(len(shift))
    if c.op == "MatMul":  # the bias lives in an Add: write the change since the last pass
        prev = cut.applied_shift if cut.applied_shift is not None else np.zeros_like(shift)
        _write_bias(model, node, c, shift - prev, dtype)
    else:
        bias0 = cut.bias * cut.bias_scale if cut.bias is not None else np.zeros(cut.weight.shape[c.w_out])
        new_bias = bias0[out_idx] + shift
        _write_bias(model, node, c, new_bias / cut.bias_scale if c.op == "Gemm" else new_bias, dtype)
    cut.applied_shift = shift
    return None


def current_matrix(node: gs.Node, cut: Cut) -> np.ndarray:
    """The pruned layer's present weight as ``[kept features, kept outputs]`` (alpha applied)."""
    return weight_matrix(np.asarray(const_value(node.inputs[1]), dtype=np.float64), cut.consumer) * cut.scale


def correct(model: Model, cuts: list[Cut], cross: dict[str, CrossGramStats], ridge: float = 1e-3) -> int:
    """Refits each cut layer on the inputs it receives in the pruned model (error feedback).

    With ``p`` the layer's input rows in the pruned model and ``o`` in the original, the target is
    still the original output ``o·M``:

        M'' = (C_pp + λI)⁻¹ (C_po M + λ M')        b'' = b + μ_o·M - μ_p·M''

    where ``M'`` is the present (one-shot) weight. Errors that earlier layers' cuts leave in
    ``p`` are absorbed here instead of being passed on. Returns the number of layers refit.
    """
    nodes = {n.name: n for n in model.graph.nodes}
    done = 0
    for cut in cuts:
        st = cross.get(cut.consumer.node)
        node = nodes.get(cut.consumer.node)
        if st is None or st.gpp is None or node is None or len(node.inputs[1].outputs) > 1:
            continue
        m = weight_matrix(cut.weight.astype(np.float64), cut.consumer) * cut.scale
        out_idx = cut.kept_out if cut.kept_out is not None else np.arange(m.shape[1])
        m = m[:, out_idx]
        now = current_matrix(node, cut)
        c_pp, c_po, mu_p, mu_o = st.moments()
        if c_pp.shape[0] != now.shape[0] or c_po.shape[1] != m.shape[0]:
            continue
        m_s, shift = refit_weights(c_pp, c_po, m, mu_p, mu_o, now, ridge)
        if _write(model, node, cut, m_s, shift) is None:
            done += 1
    log.info("error-feedback refit of %d layers", done)
    return done


def reconstruct(
    model: Model, cuts: list[Cut], stats: CalibrationStats, refit: bool = True, ridge: float = 1e-3
) -> list[RefitReport]:
    """Rewrites, in place, the consumers of ``cuts`` in the pruned ``model``.

    ``model`` must be the model the cuts were taken from, with the plan applied (weights already
    sliced); ``stats`` holds the original model's Gram statistics of each consumer's input (for
    ``refit``) or at least its channel means (bias compensation).
    """
    nodes = {n.name: n for n in model.graph.nodes}
    reports: list[RefitReport] = []
    for cut in cuts:
        c = cut.consumer
        node = nodes.get(c.node)
        w_now = node.inputs[1] if node is not None else None
        if node is None or w_now is None or const_value(w_now) is None:
            reports.append(RefitReport(c.node, "skip", 0, 0, "node or weight gone after pruning"))
            continue
        if len(w_now.outputs) > 1:
            reports.append(RefitReport(c.node, "skip", 0, 0, "weight shared with other nodes"))
            continue
        m = weight_matrix(cut.weight.astype(np.float64), c) * cut.scale  # [K, N]
        k, n = m.shape
        feats = _features(c, cut.kept_in)
        removed = np.setdiff1d(np.arange(k), feats)
        gram = stats.grams.get(c.node) if refit else None
        if gram is not None and gram.gram is not None and gram.gram.shape[0] == k:
            cov = gram.covariance()
            mu = gram.mean
            m_s, shift = refit_weights(cov[np.ix_(feats, feats)], cov[feats], m, mu[feats], mu,
                                         m[feats], ridge)
            mode = "refit"
        else:
            mu = _feature_means(c, stats, k)
            if mu is None:
                reports.append(RefitReport(c.node, "skip", len(feats), k, "no statistics for its input"))
                continue
            m_s = m[feats]
            shift = mu[removed] @ m[removed]
            mode = "bias"
        out_idx = cut.kept_out if cut.kept_out is not None else np.arange(n)
        why = _write(model, node, cut, m_s[:, out_idx], shift[out_idx])
        if why:
            reports.append(RefitReport(c.node, "skip", len(feats), k, why))
            continue
        reports.append(RefitReport(c.node, mode, len(feats), k))
    n_refit = sum(r.mode == "refit" for r in reports)
    n_bias = sum(r.mode == "bias" for r in reports)
    log.info("reconstruction: %d consumers refit, %d bias-compensated, %d skipped",
             n_refit, n_bias, len(reports) - n_refit - n_bias)
    return reports
