"""Parameters and multiply-accumulates per node, from static shapes.

MACs (one multiply-accumulate = one unit), with ``|T|`` the element count of tensor ``T``:

- ``Conv``: |Y|·(C_in/g)·∏k — each output element is a dot product over one filter;
- ``ConvTranspose``: |X|·(C_out/g)·∏k — each input element is scattered through one filter;
- ``Gemm`` and ``MatMul``: |Y|·K with K the reduced dimension; this covers activation × activation
  products (attention's Q·Kᵀ and P·V) as well as layers with constant weights;
- ``MaxPool``/``AveragePool``/``LpPool``: |Y|·∏k (one accumulate or compare per window element);
  ``Global*Pool``: |X|;
- ``BatchNormalization``, ``InstanceNormalization``, ``LayerNormalization``,
  ``GroupNormalization``, ``RMSNormalization``: |X| (the per-element scale and shift; the
  statistics of the non-batch norms are counted in the same pass).

Other ops count no MACs. Parameters are the elements of floating-point constants (bfloat16 and
float8 included) and of quantized weights read by ``DequantizeLinear``, each shared tensor counted once, attributed to the first node that reads it. Shapes come from shape
inference with symbolic input dimensions fixed at load (``--input-shape``); a node whose shapes
stay unknown counts 0 and is listed in :attr:`Profile.unknown`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from .graph import Model

if TYPE_CHECKING:
    from .depgraph import DepGraph

__all__ = ["NodeStat", "Profile", "profile", "node_macs", "CostModel", "LINEAR_OPS", "POOL_OPS", "NORM_OPS"]

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOL_OPS = ("MaxPool", "AveragePool", "LpPool")
GLOBAL_POOL_OPS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
NORM_OPS = (
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "RMSNormalization",
)
COUNTED_OPS = LINEAR_OPS + POOL_OPS + GLOBAL_POOL_OPS + NORM_OPS


@dataclass
class NodeStat:
    """One node's share: MACs, parameters it introduces, and its first output's shape."""

    name: str
    op: str
    macs: int
    params: int
    shape: tuple[int | None, ...] | None


@dataclass
class Profile:
    macs: int
    params: int
    node_macs: dict[str, int] = field(default_factory=dict)
    node_params: dict[str, int] = field(default_factory=dict)
    nodes: list[NodeStat] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def by_op(self) -> dict[str, dict[str, int]]:
        """``{op_type: {"count", "macs", "params"}}``, largest MACs first."""
        out: dict[str, dict[str, int]] = {}
        for n in self.nodes:
            row = out.setdefault(n.op, {"count": 0, "macs": 0, "params": 0})
            row["count"] += 1
            row["macs"] += n.macs
            row["params"] += n.params
        return dict(sorted(out.items(), key=lambda kv: (-kv[1]["macs"], -kv[1]["params"], kv[0])))


def _numel(shape: tuple[int | None, ...] | None) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)  # type: ignore[arg-type]


def _known(*values: int | None) -> bool:
    return all(v is not None for v in values)


def node_macs(node: gs.Node, model: Model) -> int | None:
    """MACs of one node (see the module docstring); ``None`` when its shapes are unknown."""
    s = model.shapes

    def shape(i: int, outputs: bool = False) -> tuple[int | None, ...] | None:
        ts = node.outputs if outputs else node.inputs
        if i >= len(ts) or not ts[i].name:
            return None
        return s.get(ts[i].name)

    op = node.op
    if op not in COUNTED_OPS:
        return 0
    try:
        if op == "Conv":
            y, w = _numel(shape(0, True)), shape(1)
            return y * math.prod(w[1:]) if y is not None and w and _known(*w) else None  # type: ignore[arg-type]
        if op == "ConvTranspose":
            x, w = _numel(shape(0)), shape(1)
            return x * math.prod(w[1:]) if x is not None and w and _known(*w) else None  # type: ignore[arg-type]
        if op == "Gemm":
            y, a = _numel(shape(0, True)), shape(0)
            if y is None or not a or len(a) != 2:
                return None
            k = a[0] if int(node.attrs.get("transA", 0)) else a[1]
            return y * k if k is not None else None
        if op == "MatMul":
            y, a = _numel(shape(0, True)), shape(0)
            if y is None or not a or a[-1] is None:
                return None
            return y * int(a[-1])
        if op in POOL_OPS:
            y = _numel(shape(0, True))
            k = node.attrs.get("kernel_shape")
            return y * math.prod(int(d) for d in k) if y is not None and k else None
        if op in GLOBAL_POOL_OPS or op in NORM_OPS:
            return _numel(shape(0))
    except (TypeError, IndexError, ValueError):
        return None
    return 0


def _is_float(dtype: object) -> bool:
    """Floating point, including types numpy names only through ml_dtypes (bfloat16, float8)."""
    try:
        if np.issubdtype(np.dtype(dtype), np.floating):  # type: ignore[arg-type]
            return True
    except TypeError:
        pass
    return "float" in str(dtype).lower()


def _float_elements(t: gs.Constant, quantized: bool = False) -> int:
    # shape/dtype only: counting must not load (and so copy) the weights
    if quantized or _is_float(t.dtype):
        return int(np.prod(t.shape, dtype=np.int64))
    return 0


def profile(model: Model) -> Profile:
    """MACs and parameter counts of ``model`` per node (symbolic dims as fixed at load)."""
    prof = Profile(0, 0)
    counted: set[str] = set()
    for node in model.graph.nodes:
        m = node_macs(node, model)
        if m is None:
            prof.unknown.append(node.name)
            m = 0
        p = 0
        for i, t in enumerate(node.inputs):
            if isinstance(t, gs.Constant) and t.name and t.name not in counted:
                n = _float_elements(t, quantized=node.op == "DequantizeLinear" and i == 0)
                if n:
                    counted.add(t.name)
                    p += n
        if node.op == "Constant":
            v = node.attrs.get("value")
            if isinstance(v, gs.Constant):
                n = _float_elements(v)
                p += n if n > 1 else 0
        out = node.outputs[0].name if node.outputs else None
        prof.nodes.append(NodeStat(node.name, node.op, m, p, model.shapes.get(out) if out else None))
        prof.node_macs[node.name] = m
        prof.node_params[node.name] = p
        prof.macs += m
        prof.params += p
    return prof


class CostModel:
    """MACs and params of a model after removing channels, estimated without rewriting it.

    Per node it keeps its MACs and params and the channel ids whose kept share scales them (a
    weighted layer scales with each pruned weight axis, a grouped Conv also with its input
    groups, any other op with its input's channel axis); removing channels multiplies by the
    kept shares. Exact for Conv/Gemm/MatMul layers whose axes are pruned independently.
    """

    def __init__(self, model: Model, dg: DepGraph) -> None:
        self.dg = dg
        self._nodes: list[tuple[int, int, list[tuple[np.ndarray, int]]]] = []
        shapes = model.shapes
        for node in model.graph.nodes:
            macs = node_macs(node, model) or 0
            params = sum(int(np.prod(t.shape)) for t in node.inputs
                         if isinstance(t, gs.Constant) and np.issubdtype(np.dtype(t.dtype), np.floating))
            if not macs and not params:
                continue
            factors: list[tuple[np.ndarray, int]] = []
            w = node.inputs[1] if len(node.inputs) > 1 else None
            if node.op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and w is not None and isinstance(w, gs.Constant):
                ws = shapes.get(w.name) or tuple(w.shape)
                for a in range(len(ws)):
                    ch = self._space_of(w.name, a)
                    if ch is not None:
                        factors.append((ch, len(ch)))
                g = int(node.attrs.get("group", 1)) if node.op == "Conv" else 1
                if g > 1:  # pruning removes whole groups: input channels scale too
                    ch = self._space_of(node.inputs[0].name, 1)
                    out = self._space_of(node.outputs[0].name, 1)
                    if ch is not None and out is None:
                        factors.append((ch, len(ch)))
            else:
                x = node.inputs[0] if node.inputs else None
                ch = self._space_of(x.name, 1) if x is not None else None
                if ch is not None:
                    factors.append((ch, len(ch)))
            self._nodes.append((macs, params, factors))
        self.full_macs = sum(m for m, _, _ in self._nodes)
        self.full_params = sum(p for _, p, _ in self._nodes)

    def _space_of(self, name: str, axis: int) -> np.ndarray | None:
        key = (name, axis)
        if key in self.dg.spaces and self.dg.spaces[key].size:
            return self.dg.space_channels(key)
        return None

    def macs_params(self, removed: np.ndarray) -> tuple[int, int]:
        """Estimated MACs and params of the model with ``removed`` channels gone."""
        macs = params = 0.0
        for m, p, factors in self._nodes:
            s = 1.0
            for ch, n in factors:
                s *= (n - removed[ch].sum()) / n
            macs += m * s
            params += p * s
        return int(round(macs)), int(round(params))
