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

*Statistics matching* (:func:`match_statistics`, no Gram matrices) works on a pruned layer's
outputs instead: each kept output channel ``t`` (after the layer's bias) is mapped to
``t' = a·t + s`` with ``a = σ_o/σ_p`` and ``s = μ_o - a·μ_p``, where ``μ, σ`` are the channel's
mean and standard deviation on calibration data in the original (``o``) and the pruned (``p``)
model. The map folds into the layer: its weight's output slices are scaled by ``a`` and its bias
becomes ``a·b + s``, so the layer's outputs get the original's first two moments per channel,
the repair a BatchNorm after the layer would make with re-estimated running statistics. Layers are
matched stage by stage in dependency order, so each is measured on inputs the layers before it
already repaired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from .calibration import (
    CalibrationStats,
    ChannelStats,
    Consumer,
    CrossGramStats,
    channel_key,
    find_consumers,
    ridge_lambda,
    weight_matrix,
)
from .depgraph import DepGraph
from .graph import Model, const_value, set_const_value
from .plan import Plan

__all__ = [
    "AffineLayer",
    "Cut",
    "RefitReport",
    "affine_layers",
    "consumer_cuts",
    "correct",
    "match_statistics",
    "reconstruct",
    "refit_weights",
]

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
    lam = ridge_lambda(cov_ss, ridge)
    a = cov_ss + lam * np.eye(cov_ss.shape[0])
    rhs = cov_s_all @ m + lam * m_s0
    try:
        m_s = np.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:
        m_s = np.linalg.lstsq(a, rhs, rcond=None)[0]
    return m_s, mu_all @ m - mu_s @ m_s


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
        feats = c.features(cut.kept_in)
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


@dataclass
class AffineLayer:
    """A pruned layer whose output channels can take a per-channel affine map into its weights.

    ``tensor`` is what gets matched: the layer's output, or for a MatMul the end of the chain of
    constant Adds (its bias) that follows it; ``kept_out`` are the original's output channels
    that remain, in order (None: all).
    """

    consumer: Consumer
    tensor: str
    axis: int
    kept_out: np.ndarray | None


def _bias_chain(node: gs.Node, n: int, outputs: set[str]) -> tuple[gs.Tensor, np.ndarray]:
    """The last tensor of the constant-vector Adds after ``node`` and the sum of those vectors."""
    t, total = node.outputs[0], np.zeros(n)
    while len(t.outputs) == 1 and t.outputs[0].op == "Add" and t.name not in outputs:
        add = t.outputs[0]
        other = add.inputs[1] if add.inputs[0] is t else add.inputs[0]
        ov = const_value(other)
        if ov is None or ov.size not in (1, n) or (ov.ndim >= 1 and ov.shape[-1] not in (1, n)):
            break
        total = total + np.broadcast_to(np.asarray(ov, np.float64).reshape(-1), (n,))
        t = add.outputs[0]
    return t, total


def affine_layers(model: Model, kept: dict[tuple[str, int], np.ndarray], reference: set[str]) -> list[AffineLayer]:
    """The Conv (any group), Gemm and MatMul layers of ``model`` that pruning changed.

    ``kept`` is :meth:`~onnxprune.depgraph.DepGraph.kept_indices` of the plan (taken before it
    was applied); a layer qualifies when its weight lost input or output channels, its weight is
    its own, and the tensor to match also exists in the original model (``reference`` names).
    """
    outputs = {t.name for t in model.graph.outputs}
    out: list[AffineLayer] = []
    for node in model.graph.nodes:
        if node.op not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
            continue
        x, w = node.inputs[0], node.inputs[1]
        wv = const_value(w)
        if wv is None or const_value(x) is not None or wv.dtype.kind != "f" or len(w.outputs) > 1:
            continue
        if node.op == "Conv":
            c = Consumer(node.name, "Conv", x.name, w.name, 1, 0, 1, int(np.prod(wv.shape[2:])))
        elif node.op == "Gemm":
            if int(node.attrs.get("transA", 0)) or wv.ndim != 2 or float(node.attrs.get("beta", 1.0)) == 0:
                continue
            tb = int(node.attrs.get("transB", 0))
            c = Consumer(node.name, "Gemm", x.name, w.name, 1 if tb else 0, 0 if tb else 1, 1, 1)
        else:
            if wv.ndim != 2:
                continue
            c = Consumer(node.name, "MatMul", x.name, w.name, 0, 1, -1, 1)
        if (w.name, c.w_in) not in kept and (w.name, c.w_out) not in kept:
            continue
        if c.op in ("Conv", "Gemm") and len(node.inputs) > 2 and node.inputs[2].name:
            bv = const_value(node.inputs[2])
            if bv is None or bv.size not in (1, wv.shape[c.w_out]):
                continue
        tensor = _bias_chain(node, wv.shape[c.w_out], outputs)[0] if c.op == "MatMul" else node.outputs[0]
        if tensor.name not in reference:
            continue
        out.append(AffineLayer(c, tensor.name, 1 if c.op == "Conv" else -1, kept.get((w.name, c.w_out))))
    return out


def match_statistics(
    model: Model,
    layers: list[AffineLayer],
    target: dict[str, ChannelStats],
    current: dict[str, ChannelStats],
) -> int:
    """Folds ``t' = a·t + s`` into each layer so its channels get the ``target`` mean and variance.

    ``target`` holds the original model's statistics of each layer's tensor, ``current`` the
    pruned model's (both by tensor name). A channel whose pruned variance is zero keeps its scale
    and only moves its mean. Returns the number of layers rewritten.
    """
    nodes = {n.name: n for n in model.graph.nodes}
    outputs = {t.name for t in model.graph.outputs}
    done = 0
    for layer in layers:
        c, node = layer.consumer, nodes.get(layer.consumer.node)
        o, p = target.get(layer.tensor), current.get(layer.tensor)
        if node is None or o is None or p is None or o.mean is None or p.mean is None:
            continue
        w = np.asarray(const_value(node.inputs[1]))
        n = w.shape[c.w_out]
        idx = layer.kept_out if layer.kept_out is not None else np.arange(n)
        if len(idx) != n or len(p.mean) != n or len(o.mean) <= int(idx.max(initial=0)):
            log.info("%s '%s': channels of '%s' do not line up; left as it is", c.op, c.node, layer.tensor)
            continue
        mu_o, var_o, mu_p, var_p = o.mean[idx], o.var[idx], p.mean, p.var
        live = var_p > 1e-12 * max(float(var_p.max(initial=0.0)), 1e-30)
        a = np.where(live, np.sqrt(var_o / np.where(live, var_p, 1.0)), 1.0)
        s = mu_o - a * mu_p
        shape = [1] * w.ndim
        shape[c.w_out] = n
        set_const_value(node.inputs[1], np.ascontiguousarray((w * a.reshape(shape)).astype(w.dtype)))
        if c.op == "MatMul":
            _, b = _bias_chain(node, n, outputs)
            _write_bias(model, node, c, (a - 1) * b + s, w.dtype)
        else:
            beta = float(node.attrs.get("beta", 1.0)) if c.op == "Gemm" else 1.0
            has = len(node.inputs) > 2 and node.inputs[2].name
            b = np.broadcast_to(np.asarray(const_value(node.inputs[2]), np.float64).reshape(-1), (n,)) * beta \
                if has else np.zeros(n)
            _write_bias(model, node, c, (a * b + s) / beta, w.dtype)
        done += 1
    log.info("statistics matched on %d layers", done)
    return done
