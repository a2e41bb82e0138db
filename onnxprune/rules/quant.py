"""Quantization: QDQ pairs are pruned through; quantized operators are barriers with reasons.

``QuantizeLinear``/``DequantizeLinear`` are elementwise: ``y = (x - zp) * scale`` (or its
rounding inverse) reads element *i* of ``x`` only, so every axis of the output is :class:`Same`
as the input's. Their ``scale`` and ``zero_point`` are either one value (per-tensor: broadcast,
:class:`Free`) or a vector along ``axis`` (per-channel): then they follow that axis and are sliced
with it, consistently with the quantized weight. Pruning a channel of a QDQ model therefore cuts
the int8 weight rows, their scales and their zero points together; quantized values of the kept
channels are unchanged, so the result dequantizes to exactly the same kept weights.

Blocked quantization (``block_size``, opset 21) groups elements of an axis into blocks with one
scale each; slicing channels out of a block is not implemented, so that axis is a barrier.

Operators that compute on quantized tensors (``QLinearConv``, ``QLinearMatMul``, ``ConvInteger``,
``MatMulInteger``, ``DynamicQuantizeLinear``, onnxruntime's ``QGemm``/``QLinear*``) carry weights,
scales and zero points in operator-specific input slots; they are barriers that say so, and the
float parts of the model around them are still pruned.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from . import Free, Opaque, Relation, RuleContext, Same, axes_of, norm_axis, register


@register("QuantizeLinear", "DequantizeLinear", since=10)
def qdq(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    x, y = node.inputs[0], node.outputs[0]
    r = ctx.rank(x)
    if r is None:
        return [Opaque(k, f"{node.op} '{node.name}': input shape unknown") for k in axes_of(y, ctx)]
    params = [t for t in node.inputs[1:3] if t.name]
    if int(node.attrs.get("block_size", 0) or 0) > 0:
        axis = norm_axis(int(node.attrs.get("axis", 1)), r)
        reason = f"{node.op} '{node.name}': blocked quantization (block_size) along axis {axis}"
        rels: list[Relation] = [Same((x.name, a), (y.name, a)) for a in range(r) if a != axis]
        rels += [Opaque((x.name, axis), reason), Opaque((y.name, axis), reason)]
        return rels + [Opaque(k, reason) for t in params for k in axes_of(t, ctx)]
    rels = [Same((x.name, a), (y.name, a)) for a in range(r)]
    scale = node.inputs[1] if len(node.inputs) > 1 else None
    ss = ctx.shape(scale) if scale is not None and scale.name else None
    per_channel = ss is not None and len(ss) == 1 and ss[0] != 1 and r > 0
    if not per_channel:
        return rels + [Free(k) for t in params for k in axes_of(t, ctx)]
    axis = norm_axis(int(node.attrs.get("axis", 1)), r)
    for t in params:
        seed = ctx.const(t) is not None and np.asarray(ctx.const(t)).ndim == 1
        rels.append(Same((y.name, axis), (t.name, 0), seed=seed))
    return rels


_QUANTIZED_OPS = (
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear",
)  # fmt: skip
_MS_QUANTIZED_OPS = (
    "QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSoftmax", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "QAttention", "QOrderedMatMul", "MatMulNBits",
)  # fmt: skip


def _quantized_barrier(node: gs.Node, ctx: RuleContext) -> list[Relation]:
    reason = (
        f"{node.op} '{node.name}' computes on quantized tensors; slicing its packed weights, "
        "scales and zero points is not implemented (barrier)"
    )
    tensors = [t for t in list(node.inputs) + list(node.outputs) if t.name]
    return [Opaque(k, reason) for t in tensors for k in axes_of(t, ctx)]


register(*_QUANTIZED_OPS)(_quantized_barrier)
register(*_MS_QUANTIZED_OPS, domain="com.microsoft")(_quantized_barrier)
