"""Runs an ONNX graph differentiably: one torch function per ONNX op, weights as parameters.

Healing needs gradients of a pruned graph with respect to its stored weights, and the trained
values must go back into the *same* graph (same nodes, names, opset, metadata). A converter to a
torch module would have to be inverted to find which parameter was which initializer; an
interpreter keeps that mapping by construction: every float initializer (or ``Constant`` tensor)
that a weighted op reads is a ``torch.nn.Parameter`` keyed by its ONNX name, everything else is a
constant, and the graph runs node by node in its stored (topological) order.

Ops are mapped to torch functions by the ONNX definitions (pads, auto_pad, opset-dependent axes,
Resize coordinate modes). An op without a mapping, or an attribute value the mapping does not
cover, raises :class:`UnsupportedOp` naming the node, so healing says why it cannot run rather
than training a different function. :func:`check_against` compares the interpreter with
onnxruntime before any training starts.

torch is imported by :func:`require_torch` only: the core commands never need it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import UnsupportedModelError, UsageError

INSTALL_HINT = "pip install 'onnxprune[heal]' (or: pip install torch)"


class UnsupportedOp(UnsupportedModelError):
    """The graph holds an op (or an attribute value) the interpreter does not run."""


def require_torch() -> Any:
    """Imports torch, or raises a one-line :class:`UsageError` saying what to install."""
    try:
        import torch
    except ImportError:
        raise UsageError(f"healing needs PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


#: (op, input slot) pairs whose float initializer is a trained weight; ``None`` = every slot
WEIGHT_SLOTS: dict[str, tuple[int, ...] | None] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": None, "Einsum": None,
    "BatchNormalization": (1, 2), "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2),
    "GroupNormalization": (1, 2),
    "Add": None, "Sub": None, "Mul": None, "Div": (0,), "PRelu": (1,),
}


def _np_dtype(elem_type: int) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
            raise UnsupportedOp(f"node '{node.name or node.output[0]}' ({node.op_type}) holds a subgraph; "
                                "healing runs graphs without control flow")
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


def trainable_names(proto: onnx.ModelProto) -> list[str]:
    """Float initializers (and ``Constant`` tensors) with more than one element read as weights."""
    floats = {i.name for i in proto.graph.initializer
              if _np_dtype(i.data_type).kind == "f" and int(np.prod(i.dims, dtype=np.int64)) > 1}
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            t = n.attribute[0].t
            if _np_dtype(t.data_type).kind == "f" and int(np.prod(t.dims, dtype=np.int64)) > 1:
                floats.add(n.output[0])
    chosen: list[str] = []
    seen: set[str] = set()
    for n in proto.graph.node:
        slots = WEIGHT_SLOTS.get(n.op_type, ())
        for k, name in enumerate(n.input):
            if name in floats and name not in seen and (slots is None or k in slots):
                seen.add(name)
                chosen.append(name)
    return chosen


class TorchGraph:
    """An ONNX graph as a differentiable function of its trainable weights.

    ``params`` maps ONNX names to ``torch.nn.Parameter`` (float32); ``run(feeds, names)`` returns
    the named values (graph outputs by default) for a dict of input tensors.
    """

    def __init__(self, proto: onnx.ModelProto, trainable: list[str] | None = None) -> None:
        torch = require_torch()
        self.torch = torch
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
        names = trainable_names(proto) if trainable is None else trainable
        self.dtypes: dict[str, np.dtype] = {}
        self.consts: dict[str, Any] = {}
        for init in proto.graph.initializer:
            arr = numpy_helper.to_array(init)
            self.dtypes[init.name] = arr.dtype
            self.consts[init.name] = _to_torch(torch, arr)
        self.nodes: list[tuple[onnx.NodeProto, dict[str, Any]]] = []
        for n in _topological(proto.graph):
            if n.domain not in ("", "ai.onnx"):
                raise UnsupportedOp(f"node '{n.name or n.output[0]}' is {n.domain}::{n.op_type}, a custom-domain op "
                                    "healing cannot run")
            if n.op_type not in _OPS:
                raise UnsupportedOp(f"node '{n.name or n.output[0]}' is a {n.op_type}, which healing cannot run yet")
            at = _attrs(n)
            if n.op_type == "Constant":
                arr = _constant(at, n)
                self.dtypes[n.output[0]] = arr.dtype
                self.consts[n.output[0]] = _to_torch(torch, arr)
                continue
            self.nodes.append((n, at))
        self.params = torch.nn.ParameterDict()
        self.keys: dict[str, str] = {}
        for name in names:
            key = f"p{len(self.keys)}"
            self.keys[name] = key
            self.params[key] = torch.nn.Parameter(self.consts[name].detach().clone().float())
        last: dict[str, int] = {}
        for k, (n, _) in enumerate(self.nodes):
            for i in n.input:
                last[i] = k
        self._last = last
        self.outputs = [o.name for o in proto.graph.output]

    def parameters(self) -> list[Any]:
        return list(self.params.values())

    def state(self) -> dict[str, np.ndarray]:
        """The trained values by ONNX name, in each initializer's stored dtype."""
        return {name: self.params[key].detach().cpu().numpy().astype(self.dtypes[name])
                for name, key in self.keys.items()}

    def load_state(self, values: dict[str, Any]) -> None:
        with self.torch.no_grad():
            for name, v in values.items():
                self.params[self.keys[name]].copy_(v)

    def run(self, feeds: dict[str, Any], names: list[str] | None = None) -> dict[str, Any]:
        torch = self.torch
        want = list(self.outputs if names is None else names)
        keep = set(want)
        env: dict[str, Any] = {}
        for name, key in self.keys.items():
            env[name] = self.params[key]
        for k, v in feeds.items():
            env[k] = v if isinstance(v, torch.Tensor) else _to_torch(torch, np.asarray(v))
        for k, (n, at) in enumerate(self.nodes):
            args = [None if not i else env[i] if i in env else self.consts[i] for i in n.input]
            try:
                outs = _OPS[n.op_type](self, n, at, args)
            except UnsupportedOp:
                raise
            except Exception as exc:  # a shape or dtype the mapping does not cover
                raise UnsupportedOp(f"node '{n.name or n.output[0]}' ({n.op_type}) failed in the torch interpreter: "
                                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, v in zip(n.output, outs):
                if name:
                    env[name] = v
            for i in n.input:  # free what nothing later reads (autograd keeps what backward needs)
                if self._last.get(i) == k and i not in keep and i in env and i not in self.keys and i not in feeds:
                    del env[i]
        return {w: env[w] if w in env else self.consts[w] for w in want}


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in an order that computes every input first (some converters append nodes)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    order: list[onnx.NodeProto] = []
    while pending:
        rest = [n for n in pending if not all(i in known for i in n.input)]
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            n = rest[0]
            missing = next(i for i in n.input if i not in known)
            raise UsageError(f"node '{n.name or n.output[0]}' reads '{missing}', which nothing computes")
        for n in ready:
            known.update(n.output)
        order += ready
        pending = rest
    return order


def _to_torch(torch: Any, arr: np.ndarray) -> Any:
    if arr.dtype == np.float16 or arr.dtype == np.float64 or str(arr.dtype) == "bfloat16":
        arr = arr.astype(np.float32)  # trained and run in float32; written back in the stored dtype
    elif arr.dtype == np.uint64 or arr.dtype == np.uint32 or arr.dtype == np.uint16:
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.array(arr, copy=True))


def _constant(at: dict[str, Any], node: onnx.NodeProto) -> np.ndarray:
    if "value" in at:
        return np.asarray(at["value"])
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                    ("value_ints", np.int64)):
        if key in at:
            return np.asarray(at[key], dtype=dt)
    raise UnsupportedOp(f"Constant '{node.output[0]}' with {sorted(at)} is not supported")


# ------------------------------------------------------------------------------------ op table
def _ints(t: Any) -> list[int]:
    return [int(v) for v in (t.reshape(-1).tolist() if hasattr(t, "reshape") else t)]


def _axes(g: TorchGraph, at: dict[str, Any], args: list[Any], slot: int, since: int) -> list[int] | None:
    if g.opset >= since:
        return _ints(args[slot]) if len(args) > slot and args[slot] is not None else None
    return list(at["axes"]) if "axes" in at else None


def _dtype(torch: Any, elem_type: int) -> Any:
    np_t = _np_dtype(elem_type)
    if np_t.kind == "f":
        return torch.float32
    return {np.dtype(np.bool_): torch.bool, np.dtype(np.int8): torch.int8, np.dtype(np.uint8): torch.uint8,
            np.dtype(np.int16): torch.int16, np.dtype(np.int32): torch.int32}.get(np_t, torch.int64)


def _spatial_pads(g: TorchGraph, at: dict[str, Any], x: Any, kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[int]:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` with auto_pad resolved against the input shape."""
    nd = len(kernel)
    mode = at.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", "VALID"):
        return list(at.get("pads", [0] * 2 * nd)) if mode == "NOTSET" else [0] * 2 * nd
    begins, ends = [], []
    for d in range(nd):
        size = x.shape[2 + d]
        out = -(-size // strides[d])
        total = max(0, (out - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX ``[b1..bn, e1..en]`` to torch's last-axis-first ``[bn, en, ..., b1, e1]``."""
    nd = len(pads) // 2
    out: list[int] = []
    for d in reversed(range(nd)):
        out += [pads[d], pads[d + nd]]
    return out


def _conv(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    F = g.torch.nn.functional
    x, w = a[0], a[1]
    b = a[2] if len(a) > 2 else None
    nd = w.dim() - 2
    kernel = list(at.get("kernel_shape", w.shape[2:]))
    strides = list(at.get("strides", [1] * nd))
    dil = list(at.get("dilations", [1] * nd))
    pads = _spatial_pads(g, at, x, kernel, strides, dil)
    if pads[:nd] != pads[nd:]:
        x = F.pad(x, _torch_pad(pads))
        pads = [0] * 2 * nd
    fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    return fn(x, w, b, strides, pads[:nd], dil, int(at.get("group", 1)))


def _conv_transpose(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    F = g.torch.nn.functional
    x, w = a[0], a[1]
    b = a[2] if len(a) > 2 else None
    nd = w.dim() - 2
    if at.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or "output_shape" in at:
        raise UnsupportedOp(f"ConvTranspose '{n.name}' with auto_pad/output_shape is not supported")
    pads = list(at.get("pads", [0] * 2 * nd))
    if pads[:nd] != pads[nd:]:
        raise UnsupportedOp(f"ConvTranspose '{n.name}' with asymmetric pads is not supported")
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
    return fn(x, w, b, list(at.get("strides", [1] * nd)), pads[:nd], list(at.get("output_padding", [0] * nd)),
              int(at.get("group", 1)), list(at.get("dilations", [1] * nd)))


def _pool(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    F = g.torch.nn.functional
    x = a[0]
    kernel = list(at["kernel_shape"])
    nd = len(kernel)
    strides = list(at.get("strides", [1] * nd))
    dil = list(at.get("dilations", [1] * nd))
    pads = _spatial_pads(g, at, x, kernel, strides, dil)
    ceil = bool(at.get("ceil_mode", 0))
    if len(n.output) > 1 and n.output[1]:
        raise UnsupportedOp(f"MaxPool '{n.name}' with an indices output is not supported")
    if n.op_type == "MaxPool":
        if pads[:nd] != pads[nd:] or any(pads[d] * 2 > kernel[d] for d in range(nd)):
            x = F.pad(x, _torch_pad(pads), value=-math.inf)
            pads = [0] * 2 * nd
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
        return fn(x, kernel, strides, pads[:nd], dil, ceil)
    if any(d != 1 for d in dil):
        raise UnsupportedOp(f"AveragePool '{n.name}' with dilations is not supported")
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    include = bool(at.get("count_include_pad", 0))
    if pads[:nd] == pads[nd:] and all(pads[d] * 2 <= kernel[d] for d in range(nd)):
        return fn(x, kernel, strides, pads[:nd], ceil, include)
    padded = F.pad(x, _torch_pad(pads))
    total = fn(padded, kernel, strides, 0, ceil, True)
    if include:
        return total
    ones = F.pad(g.torch.ones_like(x[:1, :1]), _torch_pad(pads))
    return total / fn(ones, kernel, strides, 0, ceil, True)


def _gemm(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, w = a[0], a[1]
    if at.get("transA", 0):
        x = x.t()
    if at.get("transB", 0):
        w = w.t()
    y = at.get("alpha", 1.0) * (x @ w)
    if len(a) > 2 and a[2] is not None:
        y = y + at.get("beta", 1.0) * a[2]
    return y


def _layer_norm(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    axis = int(at.get("axis", -1)) % x.dim()
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / g.torch.sqrt(var + at.get("epsilon", 1e-5)) * a[1]
    if len(a) > 2 and a[2] is not None:
        y = y + a[2]
    return y


def _group_norm(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, scale, bias = a[0], a[1], a[2]
    groups, c = int(at["num_groups"]), x.shape[1]
    y = x.reshape(x.shape[0], groups, -1)
    mean = y.mean(dim=2, keepdim=True)
    var = ((y - mean) ** 2).mean(dim=2, keepdim=True)
    y = ((y - mean) / g.torch.sqrt(var + at.get("epsilon", 1e-5))).reshape(x.shape)
    if scale.numel() != c:  # opset 18: one scale and bias per group
        scale, bias = scale.repeat_interleave(c // groups), bias.repeat_interleave(c // groups)
    shape = [1, c] + [1] * (x.dim() - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


def _softmax(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    fn = g.torch.softmax if n.op_type == "Softmax" else g.torch.log_softmax
    if g.opset >= 13:
        return fn(x, dim=int(at.get("axis", -1)))
    axis = int(at.get("axis", 1)) % x.dim()
    shape = x.shape
    return fn(x.reshape(int(np.prod(shape[:axis])), -1), dim=1).reshape(shape)


def _reduce(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    torch = g.torch
    x = a[0]
    since = 13 if n.op_type == "ReduceSum" else 18
    axes = _axes(g, at, a, 1, since)
    keep = bool(at.get("keepdims", 1))
    if not axes:
        if at.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    dims = tuple(int(d) % max(1, x.dim()) for d in axes)
    op = n.op_type
    if op == "ReduceMean":
        return x.mean(dim=dims, keepdim=keep)
    if op == "ReduceSum":
        return x.sum(dim=dims, keepdim=keep)
    if op == "ReduceMax":
        return x.amax(dim=dims, keepdim=keep)
    if op == "ReduceMin":
        return x.amin(dim=dims, keepdim=keep)
    if op == "ReduceSumSquare":
        return (x * x).sum(dim=dims, keepdim=keep)
    if op == "ReduceL2":
        return torch.sqrt((x * x).sum(dim=dims, keepdim=keep))
    if op == "ReduceL1":
        return x.abs().sum(dim=dims, keepdim=keep)
    if op == "ReduceLogSumExp":
        return torch.logsumexp(x, dim=dims, keepdim=keep)
    y = x
    for d in sorted(dims, reverse=True):  # ReduceProd
        y = y.prod(dim=d, keepdim=keep)
    return y


def _reshape(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    shape = _ints(a[1]) if g.opset >= 5 else list(at["shape"])
    if not at.get("allowzero", 0):
        shape = [x.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return x.reshape(shape)


def _slice(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    torch = g.torch
    x = a[0]
    if g.opset < 10:
        starts, ends = list(at["starts"]), list(at["ends"])
        axes = list(at.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(a[1]), _ints(a[2])
        axes = _ints(a[3]) if len(a) > 3 and a[3] is not None else list(range(len(starts)))
        steps = _ints(a[4]) if len(a) > 4 and a[4] is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = ax % x.dim()
        size = x.shape[ax]
        if st > 0:
            s = min(max(s + size if s < 0 else s, 0), size)
            e = min(max(e + size if e < 0 else e, 0), size)
            idx = [slice(None)] * x.dim()
            idx[ax] = slice(s, e, st)
            x = x[tuple(idx)]
        else:
            s = min(max(s + size if s < 0 else s, -1), size - 1)
            e = min(max(e + size if e < 0 else e, -1), size - 1)
            x = x.index_select(ax, torch.arange(s, e, st, dtype=torch.int64))
    return x


def _gather(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, idx = a[0], a[1].long()
    axis = int(at.get("axis", 0)) % x.dim()
    idx = g.torch.where(idx < 0, idx + x.shape[axis], idx)
    out = x.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1:]))


def _split(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    axis = int(at.get("axis", 0)) % x.dim()
    if g.opset >= 13 and len(a) > 1 and a[1] is not None:
        sizes = _ints(a[1])
    elif "split" in at:
        sizes = list(at["split"])
    else:
        k = len(n.output)
        step = -(-x.shape[axis] // k)
        sizes = [min(step, x.shape[axis] - step * i) for i in range(k)]
    return list(g.torch.split(x, sizes, dim=axis))


def _squeeze(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    axes = _axes(g, at, a, 1, 13)
    if axes is None:
        return x.squeeze()
    for d in sorted((ax % x.dim() for ax in axes), reverse=True):
        x = x.squeeze(d)
    return x


def _unsqueeze(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    axes = _axes(g, at, a, 1, 13) or []
    rank = x.dim() + len(axes)
    for d in sorted(ax % rank for ax in axes):
        x = x.unsqueeze(d)
    return x


def _pad(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    F = g.torch.nn.functional
    x = a[0]
    if g.opset >= 11:
        pads = _ints(a[1])
        value = float(a[2].reshape(-1)[0]) if len(a) > 2 and a[2] is not None and a[2].numel() else 0.0
        axes = _ints(a[3]) if len(a) > 3 and a[3] is not None else None
    else:
        pads, value, axes = list(at["pads"]), float(at.get("value", 0.0)), None
    if axes is not None:
        full = [0] * (2 * x.dim())
        for k, ax in enumerate(axes):
            full[ax % x.dim()] = pads[k]
            full[ax % x.dim() + x.dim()] = pads[k + len(axes)]
        pads = full
    mode = at.get("mode", "constant")
    tp = _torch_pad(pads)
    while len(tp) >= 2 and tp[-1] == 0 and tp[-2] == 0:
        tp = tp[:-2]
    if not tp:
        return x
    if mode == "constant":
        return F.pad(x, tp, value=value)
    return F.pad(x, tp, mode={"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode])


def _resize_axis(torch: Any, x: Any, axis: int, out: int, scale: float, at: dict[str, Any], linear: bool) -> Any:
    size = x.shape[axis]
    if out == size and scale == 1.0:
        return x
    mode = at.get("coordinate_transformation_mode", "half_pixel")
    o = torch.arange(out, dtype=torch.float64)
    if mode == "asymmetric":
        src = o / scale
    elif mode == "align_corners":
        src = o * (size - 1) / max(out - 1, 1)
    elif mode == "pytorch_half_pixel":
        src = (o + 0.5) / scale - 0.5 if out > 1 else torch.zeros_like(o)
    elif mode == "tf_half_pixel_for_nn":
        src = (o + 0.5) / scale
    elif mode == "half_pixel":
        src = (o + 0.5) / scale - 0.5
    else:
        raise UnsupportedOp(f"Resize coordinate_transformation_mode '{mode}' is not supported")
    if not linear:
        rule = at.get("nearest_mode", "round_prefer_floor")
        if rule == "floor":
            i = torch.floor(src)
        elif rule == "ceil":
            i = torch.ceil(src)
        elif rule == "round_prefer_ceil":
            i = torch.floor(src + 0.5)
        else:
            i = torch.ceil(src - 0.5)
        return x.index_select(axis, i.clamp(0, size - 1).long())
    src = src.clamp(0, size - 1)
    lo = torch.floor(src).long()
    hi = (lo + 1).clamp(max=size - 1)
    w = (src - lo).to(x.dtype)
    shape = [1] * x.dim()
    shape[axis] = out
    w = w.reshape(shape)
    return x.index_select(axis, lo) * (1 - w) + x.index_select(axis, hi) * w


def _resize(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    torch = g.torch
    x = a[0]
    mode = at.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise UnsupportedOp(f"{n.op_type} '{n.name}' mode '{mode}' is not supported")
    if n.op_type == "Upsample":
        scales = [float(s) for s in (a[1].reshape(-1).tolist() if len(a) > 1 else at["scales"])]
        at = {**at, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        sizes = [int(math.floor(d * s)) for d, s in zip(x.shape, scales)]
    else:
        scales_t = a[2] if len(a) > 2 and a[2] is not None and a[2].numel() else None
        sizes_t = a[3] if len(a) > 3 and a[3] is not None and a[3].numel() else None
        if g.opset < 11:
            scales_t, sizes_t = a[1], None
        if sizes_t is not None:
            sizes = _ints(sizes_t)
            scales = [o / d for o, d in zip(sizes, x.shape)]
        else:
            scales = [float(s) for s in scales_t.reshape(-1).tolist()]
            sizes = [int(math.floor(d * s)) for d, s in zip(x.shape, scales)]
        if g.opset < 11:
            at = {**at, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    for axis in range(x.dim()):
        x = _resize_axis(torch, x, axis, sizes[axis], scales[axis], at, mode == "linear")
    return x


def _clip(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    if g.opset < 11:
        lo, hi = at.get("min", -math.inf), at.get("max", math.inf)
    else:
        lo = float(a[1]) if len(a) > 1 and a[1] is not None else -math.inf
        hi = float(a[2]) if len(a) > 2 and a[2] is not None else math.inf
    return a[0].clamp(lo, hi)


def _cast(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    return a[0].to(_dtype(g.torch, int(at["to"])))


def _expand(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    shape = g.torch.broadcast_shapes(tuple(a[0].shape), tuple(_ints(a[1])))
    return a[0].expand(shape)


def _constant_of_shape(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    v = np.asarray(at.get("value", np.zeros(1, np.float32))).reshape(-1)
    return g.torch.full(tuple(_ints(a[0])), v[0].item(), dtype=_to_torch(g.torch, v).dtype)


def _shape(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    dims = list(a[0].shape)
    start, end = at.get("start", 0), at.get("end", None)
    return g.torch.tensor(dims[start:end], dtype=g.torch.int64)


def _div(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, y = a
    if x.is_floating_point() or y.is_floating_point():
        return x / y
    return g.torch.div(x, y, rounding_mode="trunc")


def _depth_to_space(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, b = a[0], int(at["blocksize"])
    N, C, H, W = x.shape
    if at.get("mode", "DCR") == "DCR":
        y = x.reshape(N, b, b, C // (b * b), H, W).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(N, C // (b * b), b, b, H, W).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(N, C // (b * b), H * b, W * b)


def _space_to_depth(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, b = a[0], int(at["blocksize"])
    N, C, H, W = x.shape
    y = x.reshape(N, C, H // b, b, W // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(N, C * b * b, H // b, W // b)


def _topk(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    k = int(a[1].reshape(-1)[0]) if g.opset >= 10 else int(at["k"])
    v, i = g.torch.topk(a[0], k, dim=int(at.get("axis", -1)), largest=bool(at.get("largest", 1)),
                        sorted=bool(at.get("sorted", 1)))
    return [v, i]


def _arg(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    axis = int(at.get("axis", 0))
    if at.get("select_last_index", 0):
        x = x.flip(axis)
    fn = g.torch.argmax if n.op_type == "ArgMax" else g.torch.argmin
    i = fn(x, dim=axis, keepdim=bool(at.get("keepdims", 1)))
    return x.shape[axis] - 1 - i if at.get("select_last_index", 0) else i


def _cumsum(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x, axis = a[0], int(a[1].reshape(-1)[0])
    if at.get("reverse", 0):
        x = x.flip(axis)
    y = x.cumsum(axis)
    if at.get("exclusive", 0):
        y = y - x
    return y.flip(axis) if at.get("reverse", 0) else y


def _one_hot(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    idx, depth, values = a[0].long(), int(a[1].reshape(-1)[0]), a[2]
    idx = g.torch.where(idx < 0, idx + depth, idx)
    hot = g.torch.nn.functional.one_hot(idx.clamp(0, depth - 1), depth) * ((idx >= 0) & (idx < depth)).unsqueeze(-1)
    y = values[0] + (values[1] - values[0]) * hot.to(values.dtype)
    axis = int(at.get("axis", -1))
    return y if axis == -1 else y.movedim(-1, axis % y.dim())


def _flatten(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
    x = a[0]
    axis = int(at.get("axis", 1))
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), int(np.prod(x.shape[axis:], dtype=np.int64)))


def _unary(fn: Callable[[Any, Any, dict[str, Any]], Any]) -> Callable[..., Any]:
    return lambda g, n, at, a: fn(g.torch, a[0], at)


def _binary(fn: Callable[[Any, Any, Any], Any]) -> Callable[..., Any]:
    return lambda g, n, at, a: fn(g.torch, a[0], a[1])


def _variadic(fn: Callable[[Any, Any, Any], Any]) -> Callable[..., Any]:
    def run(g: TorchGraph, n: onnx.NodeProto, at: dict[str, Any], a: list[Any]) -> Any:
        y = a[0]
        for b in a[1:]:
            y = fn(g.torch, y, b)
        return y / len(a) if n.op_type == "Mean" else y
    return run


def _hard_sigmoid(t: Any, x: Any, at: dict[str, Any]) -> Any:
    return (x * at.get("alpha", 0.2) + at.get("beta", 0.5)).clamp(0, 1)


def _gelu(t: Any, x: Any, at: dict[str, Any]) -> Any:
    return t.nn.functional.gelu(x, approximate="tanh" if at.get("approximate", "none") == "tanh" else "none")


_OPS: dict[str, Callable[..., Any]] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "MaxPool": _pool, "AveragePool": _pool,
    "Gemm": _gemm, "LayerNormalization": _layer_norm, "GroupNormalization": _group_norm, "Softmax": _softmax, "LogSoftmax": _softmax,
    "Reshape": _reshape, "Slice": _slice, "Gather": _gather, "Split": _split, "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze, "Pad": _pad, "Resize": _resize, "Upsample": _resize, "Clip": _clip,
    "Cast": _cast, "Expand": _expand, "ConstantOfShape": _constant_of_shape, "Shape": _shape, "Div": _div,
    "DepthToSpace": _depth_to_space, "SpaceToDepth": _space_to_depth, "TopK": _topk, "ArgMax": _arg,
    "ArgMin": _arg, "CumSum": _cumsum, "Constant": lambda g, n, at, a: None,
    "MatMul": _binary(lambda t, x, y: t.matmul(x, y)),
    "Add": _binary(lambda t, x, y: x + y), "Sub": _binary(lambda t, x, y: x - y),
    "Mul": _binary(lambda t, x, y: x * y), "Pow": _binary(lambda t, x, y: t.pow(x, y.to(x.dtype))),
    "Equal": _binary(lambda t, x, y: x == y), "Less": _binary(lambda t, x, y: x < y),
    "Greater": _binary(lambda t, x, y: x > y), "LessOrEqual": _binary(lambda t, x, y: x <= y),
    "GreaterOrEqual": _binary(lambda t, x, y: x >= y), "And": _binary(lambda t, x, y: x & y),
    "Or": _binary(lambda t, x, y: x | y), "Xor": _binary(lambda t, x, y: x ^ y),
    "PRelu": _binary(lambda t, x, y: t.where(x < 0, x * y, x)),
    "Mod": lambda g, n, at, a: g.torch.fmod(a[0], a[1]) if at.get("fmod", 0) else g.torch.remainder(a[0], a[1]),
    "Where": lambda g, n, at, a: g.torch.where(a[0], a[1], a[2]),
    "Max": _variadic(lambda t, x, y: t.maximum(x, y)), "Min": _variadic(lambda t, x, y: t.minimum(x, y)),
    "Sum": _variadic(lambda t, x, y: x + y), "Mean": _variadic(lambda t, x, y: x + y),
    "Concat": lambda g, n, at, a: g.torch.cat([v for v in a if v is not None], dim=int(at["axis"])),
    "Transpose": lambda g, n, at, a: a[0].permute(*(at.get("perm") or reversed(range(a[0].dim())))),
    "Flatten": _flatten,
    "Tile": lambda g, n, at, a: a[0].repeat(*_ints(a[1])),
    "Range": lambda g, n, at, a: g.torch.arange(a[0].item(), a[1].item(), a[2].item(), dtype=a[0].dtype),
    "Einsum": lambda g, n, at, a: g.torch.einsum(at["equation"], *a),
    "BatchNormalization": lambda g, n, at, a: g.torch.nn.functional.batch_norm(
        a[0], a[3], a[4], a[1], a[2], False, 0.0, at.get("epsilon", 1e-5)),
    "InstanceNormalization": lambda g, n, at, a: g.torch.nn.functional.instance_norm(
        a[0], weight=a[1], bias=a[2], eps=at.get("epsilon", 1e-5)),
    "LRN": lambda g, n, at, a: g.torch.nn.functional.local_response_norm(
        a[0], int(at["size"]), at.get("alpha", 1e-4), at.get("beta", 0.75), at.get("bias", 1.0)),
    "GlobalAveragePool": _unary(lambda t, x, at: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)),
    "GlobalMaxPool": _unary(lambda t, x, at: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)),
    "Identity": _unary(lambda t, x, at: x), "Dropout": lambda g, n, at, a: [a[0], g.torch.ones_like(a[0], dtype=g.torch.bool)],
    "Relu": _unary(lambda t, x, at: t.relu(x)), "Sigmoid": _unary(lambda t, x, at: t.sigmoid(x)),
    "Tanh": _unary(lambda t, x, at: t.tanh(x)), "Exp": _unary(lambda t, x, at: t.exp(x)),
    "Log": _unary(lambda t, x, at: t.log(x)), "Sqrt": _unary(lambda t, x, at: t.sqrt(x)),
    "Erf": _unary(lambda t, x, at: t.erf(x)), "Neg": _unary(lambda t, x, at: -x),
    "Abs": _unary(lambda t, x, at: x.abs()), "Reciprocal": _unary(lambda t, x, at: 1.0 / x),
    "Floor": _unary(lambda t, x, at: t.floor(x)), "Ceil": _unary(lambda t, x, at: t.ceil(x)),
    "Round": _unary(lambda t, x, at: t.round(x)), "Sign": _unary(lambda t, x, at: t.sign(x)),
    "Sin": _unary(lambda t, x, at: t.sin(x)), "Cos": _unary(lambda t, x, at: t.cos(x)),
    "Not": _unary(lambda t, x, at: ~x), "IsNaN": _unary(lambda t, x, at: t.isnan(x)),
    "IsInf": _unary(lambda t, x, at: t.isinf(x)), "OneHot": _one_hot,
    "Softplus": _unary(lambda t, x, at: t.nn.functional.softplus(x)),
    "Softsign": _unary(lambda t, x, at: x / (1 + x.abs())),
    "HardSigmoid": _unary(_hard_sigmoid),
    "HardSwish": _unary(lambda t, x, at: x * (x / 6 + 0.5).clamp(0, 1)),
    "LeakyRelu": _unary(lambda t, x, at: t.nn.functional.leaky_relu(x, at.get("alpha", 0.01))),
    "Elu": _unary(lambda t, x, at: t.nn.functional.elu(x, at.get("alpha", 1.0))),
    "Selu": _unary(lambda t, x, at: at.get("gamma", 1.0507009873554805) * t.where(
        x > 0, x, at.get("alpha", 1.6732632423543772) * (t.exp(x) - 1))),
    "Celu": _unary(lambda t, x, at: t.nn.functional.celu(x, at.get("alpha", 1.0))),
    "Gelu": _unary(_gelu), "Mish": _unary(lambda t, x, at: t.nn.functional.mish(x)),
    "ThresholdedRelu": _unary(lambda t, x, at: t.where(x > at.get("alpha", 1.0), x, t.zeros_like(x))),
    "ReduceMean": _reduce, "ReduceSum": _reduce, "ReduceMax": _reduce, "ReduceMin": _reduce,
    "ReduceProd": _reduce, "ReduceSumSquare": _reduce, "ReduceL2": _reduce, "ReduceL1": _reduce,
    "ReduceLogSumExp": _reduce,
}


def check_against(g: TorchGraph, reference: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                  ) -> float:
    """Largest relative L2 difference between the interpreter's outputs and ``reference``
    (onnxruntime's outputs of the same graph on ``feeds``)."""
    torch = g.torch
    with torch.no_grad():
        got = g.run({k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()})
    worst = 0.0
    for name, ref in reference.items():
        ref = np.asarray(ref, np.float64) if np.asarray(ref).dtype.kind == "f" else np.asarray(ref)
        mine = got[name].detach().cpu().numpy()
        if ref.dtype.kind != "f":
            worst = max(worst, 0.0 if np.array_equal(mine.astype(ref.dtype), ref) else 1.0)
            continue
        den = float(np.linalg.norm(ref)) + 1e-6 * math.sqrt(ref.size)  # outputs that are all ~0
        worst = max(worst, float(np.linalg.norm(mine.astype(np.float64) - ref)) / den)
    return worst
