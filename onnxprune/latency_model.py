"""A latency model measured on the target execution provider: per-layer lookup tables.

Why tables of single layers, and not of whole candidates: a search asks for the latency of
thousands of per-group channel configurations, and timing each as a whole model costs a session
and dozens of runs. Layers, on the other hand, repeat (a ResNet-50 has about twenty distinct Conv
shapes), and a layer's time depends only on its own input and output widths. So, as NetAdapt
does, every distinct Conv/Gemm/MatMul layer (same op, attributes, input and weight shapes) is
cut out as a one-node model and timed on the target provider at the kept counts the caller's
candidate configurations give each channel axis (the search passes one per ratio level, so
every prediction it asks for is a lookup: kernels are not monotone in width), or else at a grid
of kept fractions (``1, 3/4, 1/2, 1/4`` of the inputs × the same of the outputs, counts rounded
to ``round_to``); a width in between is read by bilinear interpolation. Layers that
cannot be cut out (transposed convolutions, activation × activation products) are timed at full
width and scaled by their MACs.

What the table leaves out — elementwise ops, pools, copies, per-op dispatch, the fusions
onnxruntime makes in a whole graph — is fitted, not guessed. For a configuration *c*::

    S(c) = Σ_layers table(layer, kept_in(c), kept_out(c))          (ms, isolated layers)
    A(c) = Σ_spaces elements per channel × kept channels / same at full width   (activation share)
    T(c) ≈ a + b·S(c) + c·A(c)          a, b, c ≥ 0

``a, b, c`` come from a non-negative least-squares fit (of relative errors) to whole models timed in turns (A B A B
... in one process, :func:`onnxprune.bench.interleaved_latency`): the original, uniform prunings
at the search's levels and a few seeded random configurations. The candidates a search finally
chooses are timed again end to end, and their prediction error is reported by the search.

Latency is timed serially in the calling process: timing on cores that parallel workers are
busy on would measure the contention, not the model.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper

from .bench import Runner, interleave
from .depgraph import DepGraph
from .graph import Model, const_value
from .profile import CostModel

__all__ = ["LayerSpec", "LatencyModel", "GRID"]

log = logging.getLogger(__name__)

#: kept fractions of each channel axis at which a layer is timed (without candidate counts)
GRID = (1.0, 0.75, 0.5, 0.25)
#: a timed model faster than this is run back to back within each turn (one sample = their mean)
MIN_TURN_MS = 2.0

Progress = Callable[[str, int, int], None]


@dataclass
class LayerSpec:
    """One weighted layer: what it computes and which channel spaces its weight follows."""

    node: str
    op: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    attrs: dict[str, Any]
    has_bias: bool
    #: weight axis -> channel ids (one per atom) of the space that axis follows
    w_axes: dict[int, np.ndarray] = field(repr=False, default_factory=dict)
    exact: bool = True  # False: timed at full width and scaled by MACs

    @property
    def signature(self) -> str:
        return json.dumps([self.op, self.x_shape, self.w_shape, self.attrs, self.has_bias, self.exact],
                          sort_keys=True, default=str)

    def counts(self, removed: np.ndarray) -> tuple[int, ...]:
        """Kept size of each weight axis that follows a channel space (axis order)."""
        out = []
        for a in sorted(self.w_axes):
            out.append(int(self.w_shape[a] - removed[self.w_axes[a]].sum()))
        return tuple(out)

    def full_counts(self) -> tuple[int, ...]:
        return tuple(self.w_shape[a] for a in sorted(self.w_axes))


def _attr_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_attr_value(x) for x in v]
    if isinstance(v, (int, float, str)):
        return v
    return str(v)


def _layer_model(spec: LayerSpec, counts: tuple[int, ...], opset: int) -> onnx.ModelProto | None:
    """A one-node model of ``spec`` with its channel axes cut to ``counts`` (None: not buildable)."""
    w_shape = list(spec.w_shape)
    for a, n in zip(sorted(spec.w_axes), counts):
        w_shape[a] = n
    if min(w_shape) < 1:
        return None
    attrs = dict(spec.attrs)
    x_shape = list(spec.x_shape)
    if spec.op == "Conv":
        g = int(attrs.get("group", 1))
        c_out_full = spec.w_shape[0]
        if g > 1:
            per_group = c_out_full // g
            if w_shape[0] % per_group:
                return None
            attrs["group"] = w_shape[0] // per_group
        x_shape[1] = w_shape[1] * int(attrs.get("group", 1))
    elif spec.op == "Gemm":
        k_axis = 1 if int(attrs.get("transB", 0)) else 0
        x_k = 0 if int(attrs.get("transA", 0)) else 1
        x_shape[x_k] = w_shape[k_axis]
    elif spec.op == "MatMul":
        x_shape[-1] = w_shape[0]
    else:
        return None
    rng = np.random.default_rng(0)
    w = rng.standard_normal(w_shape).astype(np.float32) * 0.05
    inits = [onnx.numpy_helper.from_array(w, "W")]
    inputs = ["X", "W"]
    n_out = w_shape[0] if spec.op == "Conv" else (w_shape[0] if spec.op == "Gemm" and int(attrs.get("transB", 0)) else w_shape[-1])
    if spec.has_bias:
        inits.append(onnx.numpy_helper.from_array(np.zeros(n_out, np.float32), "B"))
        inputs.append("B")
    node = helper.make_node(spec.op, inputs, ["Y"], **{k: v for k, v in attrs.items()})
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 13))])
    model.ir_version = min(model.ir_version, 9)
    return model


def _overhead_model() -> onnx.ModelProto:
    node = helper.make_node("Identity", ["X"], ["Y"])
    graph = helper.make_graph([node], "empty", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    return model


def _grid_counts(n: int, round_to: int) -> list[int]:
    out = []
    for f in GRID:
        c = n if f == 1.0 else max(1, round(n * f / round_to) * round_to)
        c = min(n, max(c, 1))
        if c not in out:
            out.append(c)
    return sorted(out)


def _nnls3(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares for a handful of columns: best over all active sets."""
    best, best_err = np.zeros(X.shape[1]), float(np.sum(y**2))
    for k in range(1, X.shape[1] + 1):
        for cols in itertools.combinations(range(X.shape[1]), k):
            coef, *_ = np.linalg.lstsq(X[:, cols], y, rcond=None)
            if np.any(coef < 0):
                continue
            full = np.zeros(X.shape[1])
            full[list(cols)] = coef
            err = float(np.sum((X @ full - y) ** 2))
            if err < best_err:
                best, best_err = full, err
    return best


class LatencyModel:
    """Predicts a configuration's latency from per-layer tables and a fitted remainder.

    Args:
        model: the loaded model (shapes fixed).
        dg: its dependency graph.
        provider: onnxruntime provider name the tables are timed on.
        threads: intra-op threads (the same as the end-to-end timings).
        round_to: grid counts are rounded to this multiple.
    """

    def __init__(self, model: Model, dg: DepGraph, provider: str = "CPUExecutionProvider", threads: int = 0,
                 round_to: int = 1, batch: int = 1) -> None:
        self.model, self.dg, self.provider, self.threads, self.round_to = model, dg, provider, threads, round_to
        self.layers: list[LayerSpec] = []
        self.tables: dict[str, dict[tuple[int, ...], float]] = {}
        self.coef = np.array([0.0, 1.0, 0.0])
        self.fit_points: list[dict[str, float]] = []
        self.overhead_ms = 0.0
        self._collect(batch)
        self._collect_activations()
        self.cost = CostModel(model, dg)

    # ---------------------------------------------------------------- structure
    def _space_of(self, name: str, axis: int) -> np.ndarray | None:
        key = (name, axis)
        if key in self.dg.spaces and self.dg.spaces[key].size:
            return self.dg.space_channels(key)
        return None

    def _collect(self, batch: int) -> None:
        shapes = self.model.shapes
        for node in self.model.graph.nodes:
            if node.op not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.inputs) < 2:
                continue
            x, w = node.inputs[0], node.inputs[1]
            if not isinstance(w, gs.Constant) and const_value(w) is None:
                continue
            xs, ws = shapes.get(x.name), shapes.get(w.name)
            if xs is None or ws is None or any(d is None for d in xs) or any(d is None for d in ws):
                continue
            if node.op == "Gemm" and len(xs) != 2:
                continue
            w_axes = {a: ch for a in range(len(ws)) if (ch := self._space_of(w.name, a)) is not None}
            attrs = {k: _attr_value(v) for k, v in node.attrs.items()}
            bias = len(node.inputs) > 2 and bool(node.inputs[2].name) and isinstance(node.inputs[2], gs.Constant)
            if node.op == "Gemm":
                c = node.inputs[2] if bias else None
                bias = bias and c is not None and len(c.shape) == 1
            exact = node.op != "ConvTranspose" and not (node.op == "MatMul" and len(ws) != 2)
            self.layers.append(LayerSpec(node.name, node.op, tuple(int(d) for d in xs), tuple(int(d) for d in ws),
                                         attrs, bias, w_axes, exact))

    def _collect_activations(self) -> None:
        """Elements per channel of every activation space, for the remainder term."""
        weights, chans = [], []
        for key, sp in self.dg.spaces.items():
            if sp.const or sp.virtual or not sp.size:
                continue
            s = self.model.shapes.get(key[0])
            if s is None or any(d is None for d in s):
                continue
            per = math.prod(s) / sp.size  # type: ignore[arg-type]
            weights.append(np.full(sp.size, per))
            chans.append(self.dg.space_channels(key))
        self._act_w = np.concatenate(weights) if weights else np.zeros(0)
        self._act_c = np.concatenate(chans) if chans else np.zeros(0, dtype=np.int64)
        self._act_full = float(self._act_w.sum()) or 1.0

    @property
    def full_macs(self) -> int:
        return self.cost.full_macs

    @property
    def full_params(self) -> int:
        return self.cost.full_params

    def macs_params(self, removed: np.ndarray) -> tuple[int, int]:
        """Estimated MACs and params of the model with ``removed`` channels gone."""
        return self.cost.macs_params(removed)

    def activation_share(self, removed: np.ndarray) -> float:
        if not len(self._act_c):
            return 1.0
        return float((self._act_w * ~removed[self._act_c]).sum() / self._act_full)

    def _layer_ms(self, spec: LayerSpec, counts: tuple[int, ...]) -> float:
        table = self.tables.get(spec.signature)
        if not table:
            return 0.0
        if not spec.exact or not counts:
            full = table.get(spec.full_counts(), next(iter(table.values())))
            if not counts:
                return full
            share = math.prod(c / f for c, f in zip(counts, spec.full_counts()))
            return full * share
        axes = [sorted({k[i] for k in table}) for i in range(len(counts))]
        # bilinear (or linear) interpolation on the timed grid, extrapolating linearly at the ends
        corners, weights = [[]], [1.0]
        for i, c in enumerate(counts):
            grid = axes[i]
            if len(grid) == 1:
                lo = hi = grid[0]
                t = 0.0
            else:
                j = int(np.clip(np.searchsorted(grid, c) - 1, 0, len(grid) - 2))
                lo, hi = grid[j], grid[j + 1]
                t = (c - lo) / (hi - lo)
            corners = [k + [v] for k in corners for v in (lo, hi)]
            weights = [w * f for w in weights for f in (1 - t, t)]
        total = 0.0
        for k, wgt in zip(corners, weights):
            total += wgt * table.get(tuple(k), 0.0)
        return max(total, 0.0)

    def table_sum(self, removed: np.ndarray) -> float:
        """S(c): the isolated layers' time, from the tables (ms)."""
        return float(sum(self._layer_ms(s, s.counts(removed)) for s in self.layers))

    def features(self, removed: np.ndarray) -> np.ndarray:
        return np.array([1.0, self.table_sum(removed), self.activation_share(removed)])

    def predict(self, removed: np.ndarray) -> float:
        """Predicted end-to-end latency (ms) with ``removed`` channels gone."""
        return float(self.features(removed) @ self.coef)

    # ---------------------------------------------------------------- measuring
    def _time_models(self, models: Sequence[tuple[onnx.ModelProto, dict[str, np.ndarray]]], repeat: int,
                     warmup: int) -> list[float]:
        runners = [Runner(m, f, self.provider, self.threads, warmup) for m, f in models]
        # layers of microseconds are run back to back within a turn (see interleaved_latency)
        return [float(np.median(x)) for x in interleave(runners, repeat, MIN_TURN_MS)]

    def _axis_counts(self, spec: LayerSpec, configs: Sequence[np.ndarray] | None) -> list[list[int]]:
        """Per channel axis of ``spec``: the kept counts to time (candidate counts, else the grid)."""
        out = []
        for a in sorted(spec.w_axes):
            n = spec.w_shape[a]
            if configs:
                counts = {int(n - r[spec.w_axes[a]].sum()) for r in configs} | {n}
                out.append(sorted(c for c in counts if c >= 1))
            else:
                out.append(_grid_counts(n, self.round_to))
        return out

    def build_tables(self, repeat: int = 10, warmup: int = 2, chunk: int = 24,
                     progress: Progress | None = None, deadline: Callable[[], bool] | None = None,
                     configs: Sequence[np.ndarray] | None = None) -> int:
        """Times every distinct layer at its candidate channel counts; returns the entries timed.

        ``configs``: removed-channel masks (the search passes one per ratio level) whose kept
        counts on each layer axis are the ones timed, so a prediction is a lookup rather than an
        interpolation (kernels are not monotone in width: 56 channels can run slower than 64).
        Without them, the fixed grid ``GRID`` of kept fractions is timed.
        """
        todo: list[tuple[str, tuple[int, ...], LayerSpec]] = []
        seen: set[str] = set()
        for spec in self.layers:
            sig = spec.signature
            if sig in seen:
                continue
            seen.add(sig)
            self.tables.setdefault(sig, {})
            if not spec.exact or not spec.w_axes:
                grids = [spec.full_counts()]
            else:
                grids = list(itertools.product(*self._axis_counts(spec, configs)))
            for counts in grids:
                if counts not in self.tables[sig]:
                    todo.append((sig, counts, spec))
        opset = self.model.opset
        rng = np.random.default_rng(0)
        empty = _overhead_model()
        done = 0
        for start in range(0, len(todo), chunk):
            if deadline is not None and deadline():
                log.warning("time budget reached while timing layers: %d of %d table entries", done, len(todo))
                break
            part = todo[start : start + chunk]
            models: list[tuple[onnx.ModelProto, dict[str, np.ndarray]]] = [(empty, {"X": np.zeros(1, np.float32)})]
            keep: list[tuple[str, tuple[int, ...]]] = []
            for sig, counts, spec in part:
                proto = _layer_model(spec, counts if spec.exact else spec.full_counts(), opset)
                if proto is None:
                    continue
                x_shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
                models.append((proto, {"X": rng.standard_normal(x_shape).astype(np.float32)}))
                keep.append((sig, counts))
            times = self._time_models(models, repeat, warmup)
            self.overhead_ms = times[0]
            for (sig, counts), t in zip(keep, times[1:]):
                self.tables[sig][counts] = max(t - times[0], 0.0)
            done += len(part)
            if progress is not None:
                progress("timing layers", done, len(todo))
        return done

    def fit(self, removed_list: Sequence[np.ndarray], measured_ms: Sequence[float],
            labels: Sequence[str] | None = None) -> None:
        """Fits ``a, b, c`` to whole-model timings of the given configurations."""
        X = np.stack([self.features(r) for r in removed_list])
        y = np.asarray(measured_ms, dtype=np.float64)
        # relative errors are what matters (and what is reported): weight each row by 1/measured
        w = 1.0 / np.maximum(y, 1e-9)
        self.coef = _nnls3(X * w[:, None], y * w)
        pred = X @ self.coef
        self.fit_points = [
            {"label": (labels[i] if labels else str(i)), "table_ms": float(X[i, 1]), "activation_share": float(X[i, 2]),
             "measured_ms": float(y[i]), "predicted_ms": float(pred[i]),
             "error": float(abs(pred[i] - y[i]) / y[i]) if y[i] else 0.0}
            for i in range(len(y))
        ]
        log.info("latency model: T = %.4f + %.4f*S + %.4f*A (ms)", *self.coef)

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "threads": self.threads,
            "layers": len(self.layers),
            "distinct_layers": len(self.tables),
            "table_entries": sum(len(t) for t in self.tables.values()),
            "overhead_ms": self.overhead_ms,
            "coefficients": {"a_ms": float(self.coef[0]), "b": float(self.coef[1]), "c_ms": float(self.coef[2])},
            "fit": self.fit_points,
        }
