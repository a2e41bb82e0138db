"""Inputs that fit a model: sizes its symbolic dimensions accept, values its graph accepts.

Every command that runs a model without the user's data (validation after pruning, ``--check``,
``--calib random``, bench, compare, search, profile) takes its inputs from one
:class:`FeedPlan`, made by :func:`plan_feeds` and proven on the original model before use:

- **roles** come from how the graph uses each input: integers that reach a ``Gather`` (an
  embedding, a position table) are ``index`` inputs with values inside that table; inputs named
  or used as masks get ones; recurrent and cache states (``h0``, ``state``, ``past_*``, initial
  states of LSTM/GRU/RNN) get zeros; one-element inputs that the graph compares with constants
  (a VAD's ``sr`` against 16000 in an ``If``) get one of those constants; everything else is
  ``data`` (standard-normal floats, small integers).
- **sizes** of symbolic dimensions: ``input_shapes`` first, then what the graph says (the
  channel count a consuming Conv/MatMul/Gemm/normalization needs, a size in the metadata),
  then a ladder per kind of axis: image axes try the smallest multiple of the model's total
  stride that is at least 224, then other multiples and 32·k; token, time and audio axes their
  own ladders. The batch axis is 1 unless a batch is asked for.
- **the proof**: the first feed of the ladder that the original model runs in onnxruntime is
  kept. When none runs, :meth:`FeedPlan.require` refuses with one line naming the input and
  how to give its size or data.

A plan also says along which axis each input stacks samples (``batch_axis``): only truly free
axes (the symbolic batch dimension, found by name across inputs); state and scalar inputs are
shared by every sample of a batch, and a model with a fixed batch gets one sample per run.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import onnx

from .errors import UsageError

__all__ = ["InputSpec", "FeedPlan", "plan_feeds", "feeds_for", "model_feeds"]

log = logging.getLogger(__name__)

#: Ops whose output carries the values of their first input (for following an input forward).
_PASS_THROUGH = frozenset({
    "Cast", "CastLike", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand",
    "Transpose", "Slice", "Tile", "Concat", "Split", "Clip", "Max", "Min", "Abs", "Neg",
    "Add", "Sub", "Mul", "Where", "Gather", "Mod",
})
_COMPARE = ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")
_SPATIAL_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
                          "ConvTranspose"})
_STATE_NAME = re.compile(
    r"(^|[_.\-/:])(h|c|h0|c0|hx|cx|hn|cn|state|states|hidden|cache|past|memory|cell|carry)([_.\-/:0-9]|$)"
    r"|state|past_key|past_value|cache", re.IGNORECASE)
_MASK_NAME = re.compile(r"mask", re.IGNORECASE)
_LEN_NAME = re.compile(r"(^|[_.\-])(len|length|lengths|lens|seq_len)([_.\-0-9]|$)", re.IGNORECASE)

#: Ladders of sizes tried for a symbolic dimension, by kind of axis (first that runs wins).
TOKEN_LADDER = (64, 128, 32, 16, 77, 256, 512, 8, 1)
AUDIO_LADDER = (512, 1024, 16000, 4000, 8000, 256, 1600, 64, 32, 1)
TIME_LADDER = (64, 100, 128, 32, 256, 16, 512, 1000, 8, 1)
#: The most feeds tried, and the most seconds spent trying, before giving up.
MAX_TRIALS = 24
MAX_SECONDS = 90.0


@dataclass
class InputSpec:
    """How to make one graph input.

    ``role`` is ``data``, ``index`` (integers in ``[0, high)``), ``mask`` (ones), ``state``
    (zeros) or ``scalar`` (filled with ``value``). ``shape`` is the resolved size at batch 1;
    ``batch_axis`` the axis that stacks samples (``None``: shared by all samples).
    """

    name: str
    dtype: np.dtype
    dims: list[int | str | None]
    shape: list[int]
    role: str = "data"
    high: int = 4
    value: float | int | None = None
    batch_axis: int | None = None
    #: where ``shape`` came from per symbolic axis (``given``, ``batch``, ``graph``, ``guess``)
    sources: dict[int, str] = field(default_factory=dict)

    @property
    def guessed(self) -> list[int]:
        return [a for a, s in self.sources.items() if s == "guess"]

    def array(self, rng: np.random.Generator, batch: int | None) -> np.ndarray:
        shape = list(self.shape)
        if batch is not None and self.batch_axis is not None:
            shape[self.batch_axis] = batch
        kind = self.dtype.kind
        if self.role == "mask" or (kind == "b" and self.role == "data"):
            return np.ones(shape, dtype=self.dtype)
        if self.role == "state":
            return np.zeros(shape, dtype=self.dtype)
        if self.role == "scalar" and self.value is not None:
            return np.full(shape, self.value, dtype=self.dtype)
        if kind in "fc":
            return rng.standard_normal(shape).astype(self.dtype)
        if kind == "b":
            return rng.random(shape) < 0.5
        high = self.high if self.role == "index" else (256 if self.dtype == np.uint8 else 4)
        return rng.integers(0, max(int(high), 1), size=shape).astype(self.dtype)


@dataclass
class FeedPlan:
    """Feeds for a model: one :class:`InputSpec` per graph input, proven on the original.

    ``verified`` is True when the original model ran on the plan's feed; ``error`` says why
    no feed was proven (onnxruntime cannot load the model, or nothing tried ran).
    """

    specs: list[InputSpec]
    verified: bool = False
    error: str = ""
    tried: int = 0
    #: output shapes of the run that proved the feed, when ``plan_feeds`` was given ``measure``
    measured: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)
    #: proves, the first time it matters, that two samples run at once (see ``batch_free``)
    _prove: Any = field(default=None, repr=False, compare=False)

    def shapes(self) -> dict[str, list[int]]:
        return {s.name: list(s.shape) for s in self.specs}

    @property
    def batch_free(self) -> bool:
        """Whether samples can be stacked in one run (some input has a free batch axis).

        The run that proves it (two samples at once) happens the first time this is asked:
        analysing a model never pays for it.
        """
        if self._prove is not None:
            prove, self._prove = self._prove, None
            prove(self)
        return any(s.batch_axis is not None for s in self.specs)

    def __getstate__(self) -> dict[str, Any]:
        self.batch_free  # noqa: B018 - settle the proof: a pending run does not travel
        return {**self.__dict__, "_prove": None}

    @property
    def batch_size(self) -> int:
        """Samples in one feed at the plan's own shapes."""
        for s in self.specs:
            if s.batch_axis is not None:
                return int(s.shape[s.batch_axis])
        return 1

    def make(self, seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
        """A seeded feed; ``batch`` sets the size of every free batch axis."""
        rng = np.random.default_rng(seed)
        return {s.name: s.array(rng, batch) for s in self.specs}

    def samples(self, n: int, batch_size: int, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """``n`` seeded samples as feeds of at most ``batch_size`` (one per feed if not free)."""
        step = max(1, batch_size) if self.batch_free else 1
        done, k = 0, 0
        while done < n:
            b = min(step, n - done)
            yield self.make(seed + k, b if self.batch_free else None)
            done += b if self.batch_free else 1
            k += 1

    def require(self) -> FeedPlan:
        """Raises :class:`UsageError` (one line, naming the input) unless a feed was proven."""
        if not self.verified and self.error and self.tried:
            raise UsageError(self.error)
        return self

    def with_shapes(self, input_shapes: dict[str, list[int]]) -> FeedPlan:
        """The plan with some inputs' sizes replaced (a new batch, a user's shape)."""
        specs = []
        for s in self.specs:
            if s.name in input_shapes:
                s = replace(s, shape=[int(d) for d in input_shapes[s.name]])
            specs.append(s)
        return replace(self, specs=specs)


# ------------------------------------------------------------------------------ graph facts
class _Uses:
    """Who reads each tensor, in the main graph and in every subgraph, and constant values."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.dims: dict[str, list[int]] = {}
        self.producers: dict[str, onnx.NodeProto] = {}
        self._walk(model.graph)

    def _walk(self, g: onnx.GraphProto) -> None:
        for t in g.initializer:
            self.dims[t.name] = list(t.dims)
            if int(np.prod(t.dims, dtype=np.int64)) <= 16:
                try:
                    self.consts[t.name] = onnx.numpy_helper.to_array(t)
                except Exception:  # exotic types: no value, dims suffice
                    pass
        for node in g.node:
            for i, name in enumerate(node.input):
                if name:
                    self.readers.setdefault(name, []).append((node, i))
            for o in node.output:
                self.producers[o] = node
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        self.dims[node.output[0]] = list(a.t.dims)
                        if int(np.prod(a.t.dims, dtype=np.int64)) <= 16:
                            try:
                                self.consts[node.output[0]] = onnx.numpy_helper.to_array(a.t)
                            except Exception:
                                pass
                    elif a.name in ("value_int", "value_float"):
                        self.consts[node.output[0]] = np.array(a.i if a.name == "value_int" else a.f)
                        self.dims[node.output[0]] = []
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    self._walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        self._walk(sg)

    def table_dims(self, name: str) -> list[int] | None:
        """Dims of a constant table, looking through dequantization and casts."""
        seen = 0
        while name not in self.dims and name in self.producers and seen < 4:
            node = self.producers[name]
            if node.op_type not in ("DequantizeLinear", "Cast", "Identity", "Transpose"):
                return None
            name, seen = node.input[0], seen + 1
        return self.dims.get(name)

    def forward(self, name: str, depth: int = 6) -> Iterator[tuple[onnx.NodeProto, int, int]]:
        """``(node, input index, depth)`` for readers of ``name`` and of tensors carrying its values."""
        frontier, seen = [(name, 0)], {name}
        while frontier:
            t, d = frontier.pop()
            for node, i in self.readers.get(t, []):
                yield node, i, d
                passes = node.op_type in _PASS_THROUGH and not (node.op_type == "Gather" and i == 1)
                if passes and d < depth:
                    for o in node.output:
                        if o and o not in seen:
                            seen.add(o)
                            frontier.append((o, d + 1))


def _index_high(uses: _Uses, name: str) -> int | None:
    """Size of the smallest table an integer input indexes, following its values forward."""
    highs = []
    for node, i, _ in uses.forward(name):
        op = node.op_type
        if op in ("Gather", "GatherElements") and i == 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = uses.table_dims(node.input[0])
            if dims and -len(dims) <= axis < len(dims) and dims[axis] > 0:
                highs.append(int(dims[axis]))
        elif op == "EmbedLayerNormalization" and i in (0, 1):
            table = node.input[2] if i == 0 else (node.input[4] if len(node.input) > 4 else "")
            dims = uses.table_dims(table) if table else None
            if dims:
                highs.append(int(dims[0]))
        elif op == "OneHot" and i == 0:
            depth = uses.consts.get(node.input[1])
            if depth is not None and depth.size == 1:
                highs.append(int(depth.reshape(-1)[0]))
    return min(highs) if highs else None


def _compared_values(uses: _Uses, name: str) -> list[float]:
    """Constants the graph compares an input with (``Equal`` first), e.g. a sample rate."""
    eq, other = [], []
    for node, i, _ in uses.forward(name, depth=3):
        if node.op_type not in _COMPARE or len(node.input) != 2:
            continue
        c = uses.consts.get(node.input[1 - i])
        if c is None or c.size != 1 or c.dtype.kind not in "iuf":
            continue
        (eq if node.op_type == "Equal" else other).append(float(c.reshape(-1)[0]))
    out: list[float] = []
    for v in eq + other:
        if v not in out:
            out.append(v)
    return out


def _is_state(uses: _Uses, name: str) -> bool:
    if _STATE_NAME.search(name):
        return True
    return any(node.op_type in ("LSTM", "GRU", "RNN") and i in (5, 6)
               for node, i, _ in uses.forward(name, depth=2))


def _is_mask(uses: _Uses, name: str) -> bool:
    if _MASK_NAME.search(name):
        return True
    return any(node.op_type == "Where" and i == 0 and d <= 1 for node, i, d in uses.forward(name, depth=1))


def _channel_hint(uses: _Uses, name: str, rank: int) -> dict[int, int]:
    """Axis sizes the first consumers need: Conv channels, MatMul/Gemm/normalization features."""
    hints: dict[int, int] = {}
    for node, i, d in uses.forward(name, depth=2):
        if d > 1 or i != 0:
            continue
        op = node.op_type
        w = uses.table_dims(node.input[1]) if len(node.input) > 1 else None
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if op == "Conv" and w and len(w) == rank and d == 0:
            hints.setdefault(1, int(w[1]) * int(group))
        elif op == "MatMul" and w and len(w) == 2:
            hints.setdefault(rank - 1, int(w[0]))
        elif op == "Gemm" and w and len(w) == 2 and rank == 2:
            tb = next((a.i for a in node.attribute if a.name == "transB"), 0)
            hints.setdefault(1, int(w[1] if tb else w[0]))
        elif op in ("LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization") and w:
            hints.setdefault(rank - 1, int(np.prod(w)))
        elif op in ("BatchNormalization", "InstanceNormalization") and w and len(w) == 1 and d == 0:
            hints.setdefault(1, int(w[0]))
    return hints


def _rank_from_use(uses: _Uses, name: str) -> int | None:
    """The rank an input without a declared shape must have, read off the op that consumes it.

    A Conv (or ConvTranspose) taking it as data fixes it to its weight's rank; a Gemm to 2.
    """
    for node, i, d in uses.forward(name, depth=1):
        if d != 0 or i != 0:
            continue
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            w = uses.table_dims(node.input[1])
            if w:
                return len(w)
        if node.op_type == "Gemm":
            return 2
    return None


def _total_stride(model: onnx.ModelProto, start: str) -> int:
    """Largest product of strides of the convolutions and pools along any path from ``start``."""
    factor: dict[str, int] = {start: 1}
    for node in model.graph.node:
        ins = [factor[n] for n in node.input if n in factor]
        if not ins:
            continue
        f = max(ins)
        if node.op_type in _SPATIAL_OPS:
            strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [])
            f *= max(strides) if strides else 1
        for o in node.output:
            factor[o] = min(f, 256)
    return max(factor.values())


def _metadata_size(model: onnx.ModelProto) -> list[int]:
    """Image sizes the exporter wrote into metadata (``imgsz``, ``input_size``, ...)."""
    for p in model.metadata_props:
        if re.search(r"imgsz|img_size|image_size|input_size|input_shape", p.key, re.IGNORECASE):
            nums = [int(x) for x in re.findall(r"\d+", p.value)]
            if 1 <= len(nums) <= 4 and all(8 <= n <= 4096 for n in nums[-2:]):
                return nums[-2:] if len(nums) >= 2 else nums * 2
    return []


# ------------------------------------------------------------------------------ the plan
def _declared(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


@dataclass
class _Axis:
    """One symbolic dimension to size, possibly shared by several inputs (same name)."""

    key: str
    ladder: list[int]
    source: str
    members: list[tuple[str, int]] = field(default_factory=list)


def _ladder(first: list[int], rest: tuple[int, ...] | list[int]) -> list[int]:
    out: list[int] = []
    for v in list(first) + list(rest):
        if v > 0 and v not in out:
            out.append(int(v))
    return out


def plan_feeds(
    model: onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    runnable: str | os.PathLike[str] | bytes | onnx.ModelProto | None = None,
    batch: int = 1,
    check: bool = True,
    measure: list[tuple[str, int]] | None = None,
) -> FeedPlan:
    """Chooses input sizes and values for ``model`` and proves them on it in onnxruntime.

    Args:
        model: the model (weights may be deferred; only the graph is read here).
        input_shapes: sizes given by the user (they win; they are still tried on the model).
        runnable: what onnxruntime loads to prove the feed (default: ``model`` itself); give the
            file's path for models with external data.
        batch: size of the free batch axis.
        check: run the original on candidate feeds; ``False`` returns the first candidate.
        measure: intermediate tensors ``(name, element type)`` to add to the proving run; their
            shapes land in :attr:`FeedPlan.measured` (one run proves the feed and measures them).
    """
    input_shapes = dict(input_shapes or {})
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in inits]
    uses = _Uses(model)
    specs: list[InputSpec] = []
    declared: dict[str, list[int | str | None]] = {}
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            raise UsageError(f"input '{vi.name}' is not a tensor ({vi.type.WhichOneof('value')}); "
                             "onnxprune can only feed tensor inputs")
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        except Exception:
            raise UsageError(f"input '{vi.name}' has element type "
                             f"{onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)}, "
                             "which onnxprune cannot generate") from None
        dims = _declared(vi)
        given = input_shapes.get(vi.name)
        if dims is None and given is None:
            rank = _rank_from_use(uses, vi.name)
            dims = [None] * rank if rank else None
        if dims is None:
            if given is None:
                raise UsageError(f"graph input '{vi.name}' has no shape information; give its size "
                                 f"with --input-shape {vi.name}:D0,D1,...")
            dims = [int(d) for d in given]
        if given is not None and len(given) != len(dims):
            raise UsageError(f"--input-shape for '{vi.name}' has {len(given)} dimensions, the model's "
                             f"input has {len(dims)}")
        for axis, (want, got) in enumerate(zip(dims, given or [])):
            if isinstance(want, int) and want > 0 and got != want:
                raise UsageError(f"--input-shape gives '{vi.name}' size {got} on axis {axis}, which the model "
                                 f"fixes at {want} (shape {['?' if not isinstance(d, int) or d <= 0 else d for d in dims]})")
        declared[vi.name] = dims
        spec = InputSpec(vi.name, dtype, dims, [d if isinstance(d, int) else 0 for d in dims])
        numel_static = all(d == 1 for d in dims)  # a scalar, or one element of any rank
        if dtype.kind in "iu":
            high = _index_high(uses, vi.name)
            if _is_mask(uses, vi.name):
                spec.role = "mask"
            elif high is not None:
                spec.role, spec.high = "index", high
            elif _is_state(uses, vi.name):
                spec.role = "state"
            elif numel_static or _compared_values(uses, vi.name) or _LEN_NAME.search(vi.name):
                spec.role = "scalar"
        elif dtype.kind == "b":
            spec.role = "mask"
        elif dtype.kind == "f":
            if _MASK_NAME.search(vi.name):
                spec.role = "mask"
            elif _is_state(uses, vi.name):
                spec.role = "state"
            elif numel_static and _compared_values(uses, vi.name):
                spec.role = "scalar"
        specs.append(spec)

    # the batch: symbolic axis 0 of every data/index/mask input of rank >= 2, and the symbols
    # those axes are named by wherever else they appear (a state's [layers, batch, hidden])
    batch_keys: set[str] = set()
    for s in specs:
        if s.role != "state" and len(s.dims) >= 2 and not isinstance(s.dims[0], int):
            batch_keys.add(s.dims[0] if isinstance(s.dims[0], str) else f"{s.name}:0")
        batch_keys.update(d for d in s.dims if isinstance(d, str) and re.fullmatch(
            r"(batch|batch_size|batchsize|n|b|bs|num_batch|unk__\d+_batch)", d, re.IGNORECASE))
    named_batch = any(not k.endswith(":0") or ":" not in k for k in batch_keys)
    for s in specs:  # a state with one unnamed symbolic axis carries the batch there
        free = [a for a, d in enumerate(s.dims) if not isinstance(d, int)]
        if s.role == "state" and batch_keys and len(free) == 1 and s.dims[free[0]] is None and not named_batch:
            batch_keys.add(f"{s.name}:{free[0]}")

    meta_hw = _metadata_size(model)
    axes: dict[str, _Axis] = {}
    for s in specs:
        given = input_shapes.get(s.name)
        hints = _channel_hint(uses, s.name, len(s.dims)) if s.role == "data" else {}
        spatial: list[int] = []
        stride = 1
        if len(s.dims) == 4 and s.role == "data":
            nhwc = isinstance(s.dims[3], int) and s.dims[3] in (1, 2, 3, 4) and not (
                isinstance(s.dims[1], int) and s.dims[1] in (1, 2, 3, 4))
            spatial = [1, 2] if nhwc else [2, 3]
            if any(not isinstance(s.dims[a], int) for a in spatial):
                stride = _total_stride(model, s.name)
        for a, d in enumerate(s.dims):
            if isinstance(d, int):
                continue
            key = d if isinstance(d, str) else f"{s.name}:{a}"
            if given is not None:
                s.shape[a] = int(given[a])
                s.sources[a] = "given"
                if key in batch_keys:
                    s.batch_axis = a
                continue
            if key in batch_keys:
                s.shape[a] = batch
                s.sources[a] = "batch"
                s.batch_axis = a
                continue
            if a in hints:
                s.shape[a] = hints[a]
                s.sources[a] = "graph"
                continue
            if key in axes:
                axes[key].members.append((s.name, a))
                continue
            if s.role == "state":
                ladder = _ladder([1], TIME_LADDER)
            elif a in spatial:
                first = [((224 + stride - 1) // stride) * stride]
                if meta_hw:
                    first.insert(0, meta_hw[spatial.index(a)])
                ladder = _ladder(first, [stride, 2 * stride, 4 * stride, 10 * stride, 20 * stride,
                                         32, 64, 128, 256, 320, 640, 1024, 16])
            elif spatial and a not in spatial:
                ladder = _ladder([3, 1], TIME_LADDER)
            elif s.role == "index" or s.dtype.kind in "iu":
                ladder = list(TOKEN_LADDER)
            elif len(s.dims) <= 2 and s.dtype.kind == "f":
                ladder = list(AUDIO_LADDER)
            else:
                ladder = list(TIME_LADDER)
            axes[key] = _Axis(key, ladder, "guess", [(s.name, a)])
            s.sources[a] = "guess"
    for ax in axes.values():
        for name, a in ax.members:
            spec = next(x for x in specs if x.name == name)
            spec.sources[a] = "guess"

    def assign(k: int) -> None:
        by_name = {s.name: s for s in specs}
        for ax in axes.values():
            v = ax.ladder[min(k, len(ax.ladder) - 1)]
            for name, a in ax.members:
                by_name[name].shape[a] = v
        seq = max((ax.ladder[min(k, len(ax.ladder) - 1)] for ax in axes.values()), default=1)
        for s in specs:
            if s.role == "scalar":
                cands = _compared_values(uses, s.name) + ([float(seq)] if _LEN_NAME.search(s.name) else []) + [1.0, 0.0]
                s.value = cands[min(scalar_pick.get(s.name, 0), len(cands) - 1)]
                if s.dtype.kind in "iub":
                    s.value = int(s.value)

    scalar_pick: dict[str, int] = {}
    assign(0)
    plan = FeedPlan(specs)
    if not check:
        return plan
    n_ladder = max((len(ax.ladder) for ax in axes.values()), default=1)
    scalars = [s for s in specs if s.role == "scalar"]
    trials: list[tuple[int, dict[str, int]]] = [(k, {}) for k in range(n_ladder)]
    for s in scalars:
        n_c = len(_compared_values(uses, s.name)) + 2 + bool(_LEN_NAME.search(s.name))
        trials[1:1] = [(0, {s.name: j}) for j in range(1, n_c)]
    # Feeds are tried first on the model's shape probe (its large weights zeros made at run
    # time: whether a feed runs does not depend on weight values, and onnxruntime then holds no
    # copy of the weights); only if no feed runs there is the model itself tried.
    probe, probe_bytes = _probe_session(model, measure or [])
    if probe is None and measure:
        probe, probe_bytes = _probe_session(model)
    if probe is not None and _try_feeds(probe, plan, trials, assign, scalar_pick, batch, quiet=True,
                                        lazy=probe_bytes):
        return plan
    sess = _session_or_none(runnable if runnable is not None else model, plan)
    if sess is None:
        return plan
    if _try_feeds(sess, plan, trials, assign, scalar_pick, batch):
        return plan
    scalar_pick.clear()
    assign(0)
    plan.error = _refusal(specs, axes, plan.error or "")
    return plan


def _probe_session(model: onnx.ModelProto, extra: list[tuple[str, int]] | None = None) -> tuple[Any, bytes | None]:
    from .io import shape_probe
    from .verify import session

    listed = {o.name for o in model.graph.output}
    probe = shape_probe(model, [(n, t) for n, t in extra or [] if n not in listed])
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in probe.graph.initializer):
        return None, None  # small tensors stored outside: only the file's own session can read them
    data = probe.SerializeToString()
    try:
        return session(data), data
    except Exception:  # custom ops and the like: the model's own session decides
        return None, None


def _try_feeds(sess: Any, plan: FeedPlan, trials: list[tuple[int, dict[str, int]]], assign: Any,
               scalar_pick: dict[str, int], batch: int, quiet: bool = False, lazy: bytes | None = None) -> bool:
    """Runs ``sess`` on each trial feed until one runs; True (and ``plan`` verified) if one did.

    With ``lazy`` (the probe's serialized model, a few kilobytes) the batch proof waits until a
    caller asks :attr:`FeedPlan.batch_free`."""
    t0, first_error = time.monotonic(), ""
    for n, (k, pick) in enumerate(trials[:MAX_TRIALS]):
        scalar_pick.clear()
        scalar_pick.update(pick)
        assign(k)
        plan.tried = n + 1
        try:
            values = sess.run(None, plan.make(seed=0))
        except Exception as exc:  # onnxruntime's own error types
            msg = _first_line(exc)
            first_error = first_error or msg
            if not quiet:
                log.info("feed %s does not run the model: %s", plan.shapes(), msg)
            if time.monotonic() - t0 > MAX_SECONDS:
                break
            continue
        plan.verified = True
        plan.measured = {o.name: tuple(int(d) for d in np.shape(v)) for o, v in zip(sess.get_outputs(), values)}
        if n:
            log.info("inputs sized %s after %d tries", plan.shapes(), n + 1)
        if plan.batch_free and batch == 1:
            if lazy is not None:
                plan._prove = partial(_prove_later, lazy)
            else:
                _prove_batch(sess, plan)
        return True
    if not quiet:
        plan.error = first_error
    return False


def _prove_later(probe: bytes, plan: FeedPlan) -> None:
    from .verify import session

    _prove_batch(session(probe), plan)


def _prove_batch(sess: Any, plan: FeedPlan) -> None:
    """Runs two samples at once; where that fails, the batch axes are not free after all."""
    try:
        sess.run(None, plan.make(seed=1, batch=2))
    except Exception as exc:
        log.info("the model does not take two samples at once (%s); one sample per run", _first_line(exc))
        for s in plan.specs:
            s.batch_axis = None


def _refusal(specs: list[InputSpec], axes: dict[str, _Axis], error: str) -> str:
    """One line: which input could not be fed, what was tried, how to give it."""
    guessed = [s for s in specs if s.guessed]
    valued = [s for s in specs if s.role in ("scalar", "index")]
    target = (guessed or valued or specs or [None])[0]
    if target is None:
        return f"the original model does not run in onnxruntime: {error}"
    dims = ",".join(str(d) if isinstance(d, int) else "1" if target.sources.get(a) == "batch"
                    else f"<{d if isinstance(d, str) else 'D'}>" for a, d in enumerate(target.dims))
    if guessed:
        tried = sorted({v for ax in axes.values() for v in ax.ladder[:6]})
        return (f"no size tried for the symbolic dimensions of input '{target.name}' "
                f"{[d if d is not None else '?' for d in target.dims]} runs the original model "
                f"(tried {', '.join(map(str, tried))}; onnxruntime: {error}); give its size with "
                f"--input-shape {target.name}:{dims} or real inputs with --calib")
    return (f"the original model does not run in onnxruntime on generated values for input "
            f"'{target.name}' (onnxruntime: {error}); give real inputs with --calib")


def _first_line(exc: BaseException) -> str:
    """onnxruntime's message without its status prefix and source paths, on one line."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", line)
    line = re.sub(r"/onnxruntime_src/\S+:\d+ ", "", line)
    line = re.sub(r"onnxruntime::[\w:]+\([^)]*\) ", "", line)
    line = line.replace("Non-zero status code returned while running ", "")
    return line[:300]


def _session_or_none(source: Any, plan: FeedPlan) -> Any:
    from .io import EXTERNAL_DATA_THRESHOLD, initializer_bytes
    from .verify import session

    if isinstance(source, onnx.ModelProto) and initializer_bytes(source) > EXTERNAL_DATA_THRESHOLD:
        plan.error = "the model is over 2 GB and was given without its file"
        return None
    try:
        return session(source)
    except Exception as exc:  # custom ops, opsets onnxruntime lacks: nothing can be proven
        plan.error = f"onnxruntime cannot load the original model: {_first_line(exc)}"
        log.info("%s; feeds are unproven", plan.error)
        return None


# ------------------------------------------------------------------------------ entry points
def feeds_for(
    model: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    seed: int = 0,
    batch: int | None = None,
) -> dict[str, np.ndarray]:
    """A proven feed for ``model`` (a path or a ``ModelProto``); raises :class:`UsageError` if none runs."""
    from .io import load_proto_deferred

    if isinstance(model, onnx.ModelProto):
        proto, runnable = model, model
    else:
        proto, _ = load_proto_deferred(model)
        runnable = os.fspath(model)
    plan = plan_feeds(proto, input_shapes, runnable=runnable, batch=batch or 1).require()
    return plan.make(seed, batch)


def model_feeds(model: str | os.PathLike[str] | onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """A feed the original ``model`` runs on (for tools that check outputs)."""
    return feeds_for(model, seed=seed)
