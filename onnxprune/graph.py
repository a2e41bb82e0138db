"""The in-memory model: one ``gs.Graph`` plus the facts every stage needs.

A model is converted to ``gs.Graph`` once on load and exported once on save; everything in
between (dependency graph, planning, applying) reads and edits the same graph object.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from .feeds import FeedPlan, plan_feeds
from .io import (
    PROBE_MIN_ELEMENTS,
    ExternalRef,
    SourceFile,
    default_opset,
    fill_weights,
    infer_static_shapes,
    load_proto,
    load_proto_deferred,
    read_external,
    trim_memory,
)

__all__ = [
    "Model",
    "load",
    "const_value",
    "set_const_value",
    "is_const",
    "untie_uniform_constants",
    "fold_small_constants",
]

log = logging.getLogger(__name__)


def _constant_node(t: gs.Tensor) -> gs.Node | None:
    if isinstance(t, gs.Variable) and len(t.inputs) == 1:
        node = t.inputs[0]
        if node.op == "Constant" and isinstance(node.attrs.get("value"), gs.Constant):
            return node
    return None


def is_const(t: gs.Tensor) -> bool:
    """True for initializers and outputs of ``Constant`` nodes carrying a tensor value."""
    return isinstance(t, gs.Constant) or _constant_node(t) is not None


class StoredValues(LazyValues):
    """A large float weight left in the model's file until something uses it.

    :func:`const_value` reads it each time without keeping it, pruning replaces it by the cut
    array, and export writes it straight from the file: the weights of a loaded model are never
    all in memory at once. The graph library's own ``Constant.values`` reads it for good.
    """

    def __init__(self, name: str, ref: ExternalRef, source: SourceFile) -> None:
        self.ref, self.source = ref, source
        self.tensor = onnx.TensorProto(name=name, dims=list(ref.dims), data_type=ref.data_type)
        self.shape = list(ref.dims)
        self.dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ref.data_type))
        self.nbytes = ref.length

    def load(self) -> np.ndarray:
        return read_external(self.ref, self.source)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        v = self.load()
        return v if dtype is None else v.astype(dtype, copy=False)


def const_value(t: gs.Tensor) -> np.ndarray | None:
    """The value of an initializer or a ``Constant`` node output, else ``None``."""
    if isinstance(t, gs.Constant):
        if isinstance(t._values, StoredValues):
            return t._values.load()  # read for this use only
        return np.asarray(t.values)
    node = _constant_node(t)
    if node is not None:
        return np.asarray(node.attrs["value"].values)
    return None


def set_const_value(t: gs.Tensor, value: np.ndarray) -> None:
    """Replaces the value of an initializer or of the ``Constant`` node producing ``t``."""
    if isinstance(t, gs.Constant):
        t.values = value
        return
    node = _constant_node(t)
    if node is None:
        raise TypeError(f"tensor '{t.name}' is not a constant")
    old = node.attrs["value"]
    node.attrs["value"] = gs.Constant(old.name, value, export_dtype=old.export_dtype)


@dataclass
class Model:
    """A loaded model: the graph, static shapes, and what saving needs to restore.

    Attributes:
        graph: the graph every stage edits.
        shapes: static shape per tensor name (symbolic inputs fixed by ``input_shapes``).
        opset: default-domain opset version.
        source: the file the model came from, if any (never overwritten).
        input_shapes: dimensions given by the user for symbolic graph inputs.
    """

    graph: gs.Graph
    shapes: dict[str, tuple[int | None, ...]]
    opset: int
    ir_version: int
    source: str | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    metadata: list[tuple[str, str]] = field(default_factory=list)
    doc_string: str = ""
    model_version: int = 0
    #: The model as given (before any pass), for passes that compare with it; not copied.
    original: onnx.ModelProto | None = field(default=None, repr=False, compare=False)
    #: Inputs that fit the model, proven on it when it was loaded (:mod:`onnxprune.feeds`);
    #: their sizes are the sizes the analysis used.
    feeds: FeedPlan | None = field(default=None, repr=False, compare=False)
    #: Types of values that are not tensors (sequences, maps, optionals: a classifier's ZipMap
    #: output), which the graph library writes back as tensors; restored on export.
    other_types: dict[str, onnx.TypeProto] = field(default_factory=dict, repr=False, compare=False)
    #: node names given at load so reports can point at nameless nodes; not written back
    auto_names: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def analysis_shapes(self) -> dict[str, list[int]]:
        """Sizes of the graph inputs as analysed: the user's, else those the feed plan chose."""
        out = self.feeds.shapes() if self.feeds is not None else {}
        out.update(self.input_shapes)
        return out

    # ----------------------------------------------------------------- queries
    def tensors(self) -> dict[str, gs.Tensor]:
        return self.graph.tensors()

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        return self.shapes.get(name)

    def dim(self, name: str, axis: int) -> int | None:
        s = self.shapes.get(name)
        if s is None or not -len(s) <= axis < len(s):
            return None
        return s[axis]

    # ------------------------------------------------------------------ export
    def to_proto(self) -> onnx.ModelProto:
        """Exports the graph once, restoring opsets, IR version and metadata."""
        model, values = self.export()
        return fill_weights(model, values)

    def export(self) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
        """Like :meth:`to_proto`, with the large weights left out (:func:`export_without_weights`)."""
        graph = self.graph
        model, values = export_without_weights(graph)
        hoist_shared_subgraph_initializers(model.graph)
        if self.other_types:
            for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
                if vi.name in self.other_types:
                    vi.type.CopyFrom(self.other_types[vi.name])
        model.ir_version = self.ir_version
        model.doc_string = self.doc_string
        model.model_version = self.model_version
        del model.metadata_props[:]
        for k, v in self.metadata:
            model.metadata_props.add(key=k, value=v)
        if self.ir_version < 4:
            # IR 3 requires every initializer to be listed as a graph input too.
            listed = {i.name for i in model.graph.input}
            for init in model.graph.initializer:
                if init.name not in listed:
                    model.graph.input.append(
                        onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims)
                    )
        return model, values

    def forget_auto_names(self, proto: onnx.ModelProto) -> None:
        """Leaves nameless in ``proto`` the nodes the exporter left nameless (the names given at
        load are for reports; written, they only cost bytes: 8 % of a weight-free DenseNet)."""
        for node in proto.graph.node:
            if node.name in self.auto_names:
                node.name = ""

    def refresh_shapes(self) -> None:
        """Forgets stale shape annotations of intermediate tensors and infers them again."""
        io_names = {t.name for t in self.graph.inputs} | {t.name for t in self.graph.outputs}
        for t in self.graph.tensors().values():
            if isinstance(t, gs.Variable) and t.name not in io_names:
                t.shape = None
        proto, _ = self.export()  # shapes need no weight bytes (see export_without_weights)
        self.shapes = infer_static_shapes(proto, self.analysis_shapes, feeds=self.feeds)


#: Float weights left out by :func:`export_without_weights`: those a shape probe replaces by
#: zeros (so shape inference and measurement need none of their bytes).
_LEFT_OUT_TYPES = frozenset(np.dtype(t) for t in (np.float32, np.float16, np.float64))


def export_without_weights(graph: gs.Graph) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``gs.export_onnx`` with the large weights left out: ``(proto, {name: array})``, where each
    named initializer of ``proto`` has its type and dims and no data (:func:`fill_weights` puts
    the arrays in, or :func:`onnxprune.wire.write_model` writes them from the arrays).

    The exporter makes every initializer as a tensor of its own and the graph then copies them
    all in, so at its peak every weight would be held three times (numpy, the loose tensors,
    the graph).
    """
    inner = {name for sub in _subgraphs(graph) for name in sub.tensors()}  # exported there too: left as they are
    swapped: list[tuple[gs.Constant, Any]] = []
    try:
        for t in graph.tensors().values():
            if isinstance(t, gs.Constant) and isinstance(t._values, StoredValues):
                if t.name in inner:  # exported by the library with the subgraph: needs its bytes
                    t.values = t._values.load()
                    continue
                swapped.append((t, t._values))  # written straight from the file
                t._values = LazyValues(t._values.tensor)
                continue
            if not isinstance(t, gs.Constant) or isinstance(t._values, LazyValues) or t.name in inner:
                continue
            v = t._values
            if not isinstance(v, np.ndarray) or v.size < PROBE_MIN_ELEMENTS or v.dtype not in _LEFT_OUT_TYPES or (
                    t.export_dtype is not None and np.dtype(t.export_dtype) != v.dtype):
                continue
            empty = onnx.TensorProto(name=t.name, dims=list(v.shape),
                                     data_type=onnx.helper.np_dtype_to_tensor_dtype(v.dtype))
            swapped.append((t, v))
            t._values = LazyValues(empty)
        model = gs.export_onnx(graph, do_type_check=False)
    finally:
        for t, v in swapped:
            t._values = v
    return model, {t.name: v for t, v in swapped}


def untie_uniform_constants(graph: gs.Graph) -> int:
    """Gives each user its own copy of a shared constant whose elements are all equal.

    Exporters and simplifiers merge identical tensors; with freshly initialized or folded
    weights many Conv biases are all zero and end up as one initializer read by dozens of
    unrelated layers. Sharing by coincidence of value must not couple those layers' channels,
    and a uniform tensor carries no per-channel identity, so copying it is exact. Non-uniform
    shared tensors (tied weights) stay shared and couple their users on purpose.

    Returns the number of copies made.
    """
    made = 0
    for t in list(graph.tensors().values()):
        if not isinstance(t, gs.Constant) or len(t.outputs) < 2 or int(np.prod(t.shape)) < 2:
            continue
        v = const_value(t)
        if not (v.dtype.kind in "fiub" and np.all(v == v.reshape(-1)[0])):
            continue
        for k, node in enumerate(list(t.outputs)[1:], start=1):
            copy = gs.Constant(f"{t.name}__copy{k}", np.array(v), export_dtype=t.export_dtype)
            for i, inp in enumerate(node.inputs):
                if inp is t:
                    node.inputs[i] = copy
            made += 1
    return made


#: Ops that turn stored weights into computed ones; folding them would store the weights in
#: float32 (a QDQ model's int8 weights, a mixed-precision model's float16/bfloat16 weights).
_STORAGE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


def _keeps_storage_type(node: gs.Node) -> bool:
    """True for nodes folding must leave alone: dequantization, casts of float weights, and
    weights made at run time by ``ConstantOfShape`` (one value repeated: folded, a few bytes of
    graph become stored floats; the rules prune them through their shape vector)."""
    if node.op in _STORAGE_OPS:
        return True
    if node.op == "ConstantOfShape":
        fill = node.attrs.get("value")
        return isinstance(fill, gs.Constant) and np.asarray(fill.values).dtype.kind == "f"
    if node.op in ("Cast", "CastLike") and node.inputs and isinstance(node.inputs[0], gs.Constant):
        t = node.inputs[0]
        dt = t.export_dtype if t.export_dtype is not None else t.dtype
        try:
            kind = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dt) if isinstance(dt, int) else dt).kind
        except Exception:  # bfloat16 and other types numpy does not name
            kind = "f"
        return kind == "f" or "float" in str(dt).lower()
    return False


def fold_small_constants(graph: gs.Graph, max_bytes: int = 4096) -> None:
    """Evaluates subgraphs whose inputs are all constants, when their results are small.

    Exporters leave index arithmetic unevaluated (``Slice(Shape(x), 0, Mod(2, 3))``); folded, a
    Reshape target becomes readable and its axes can be followed. Tensors over ``max_bytes`` are
    left alone, so weights are never duplicated; ``Shape`` is never folded, so symbolic batch
    and sequence sizes stay dynamic.
    """
    from onnx_graphsurgeon.logger import G_LOGGER

    before = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR  # folding reports every node it skips
    try:
        graph.fold_constants(size_threshold=max_bytes, fold_shapes=False, error_ok=True,
                             should_exclude_node=_keeps_storage_type)
        graph.cleanup(remove_unused_graph_inputs=False)
    except Exception as exc:  # folding is an aid to analysis, never a requirement
        log.info("constant folding skipped: %s", exc)
    finally:
        G_LOGGER.severity = before


def _name_nodes(graph: gs.Graph) -> set[str]:
    """Gives every nameless node a unique readable name so reports can point at it; returns
    the names it gave."""
    given: set[str] = set()
    used = {n.name for n in graph.nodes if n.name}
    for i, node in enumerate(graph.nodes):
        if not node.name:
            base = f"{node.op}_{i}"
            name, k = base, 0
            while name in used:
                k += 1
                name = f"{base}_{k}"
            node.name = name
            used.add(name)
            given.add(name)
    return given


def _subgraphs(graph: gs.Graph):  # noqa: ANN202 - yields gs.Graph
    """Every subgraph below ``graph`` (``If``/``Loop``/``Scan`` bodies, nested ones too)."""
    stack = [graph]
    while stack:
        for node in stack.pop().nodes:
            for attr in node.attrs.values():
                for sub in attr if isinstance(attr, list) else [attr]:
                    if isinstance(sub, gs.Graph):
                        stack.append(sub)
                        yield sub


def _all_constants(graph: gs.Graph):  # noqa: ANN202 - yields gs.Constant
    """Every constant of ``graph`` and of its subgraphs (a weight of the main graph that only
    ``If`` branches read is a tensor of the branches, not of the main graph)."""
    seen: set[int] = set()
    for g in [graph, *_subgraphs(graph)]:
        for t in g.tensors().values():
            if isinstance(t, gs.Constant) and id(t) not in seen:
                seen.add(id(t))
                yield t


def _read_weights(graph: gs.Graph, deferred: dict[str, ExternalRef]) -> None:
    """Takes every weight out of the parsed protobuf, so it can be freed when loading ends.

    Weights left in the file (``deferred``: large inline weights, or those of models over the
    protobuf limit) stay there when they are float (:class:`StoredValues`) and are otherwise
    read straight from it; the rest are read into numpy now."""
    sources: dict[Path, SourceFile] = {}
    inner = {name for sub in _subgraphs(graph) for name in sub.tensors()}  # exported whole, with bytes
    for t in _all_constants(graph):
        lazy = t._values if isinstance(t._values, LazyValues) else None
        stored = lazy is not None and lazy.tensor.data_location == onnx.TensorProto.EXTERNAL
        ref = deferred.get(t.name) if stored else None
        if ref is not None and t._export_dtype is None and lazy.dtype in _LEFT_OUT_TYPES and t.name not in inner:
            # float weights stay in the file until used (see StoredValues)
            source = sources.get(ref.path) or sources.setdefault(ref.path, SourceFile(ref.path))
            t._values = StoredValues(t.name, ref, source)
        else:
            t.values = read_external(ref) if ref is not None else np.asarray(t.values)
        # The data now lives in memory; where it goes on disk is decided when saving.
        t.data_location = None


def hoist_shared_subgraph_initializers(graph: onnx.GraphProto) -> int:
    """Stores once, in ``graph``, a weight that the export copied into several subgraphs.

    A weight of the main graph that both branches of an ``If`` read (a VAD's LSTM weights, used
    for 8 and 16 kHz alike) comes back from the graph library as one initializer per branch,
    which doubles it in the file. Copies that are identical and whose name means nothing else in
    ``graph`` go back to ``graph`` (subgraphs see outer values). Returns how many were removed.
    """
    copies: dict[str, list[tuple[onnx.GraphProto, onnx.TensorProto]]] = {}

    def walk(g: onnx.GraphProto) -> None:
        for node in g.node:
            for attr in node.attribute:
                subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
                for sub in subs:
                    for t in sub.initializer:
                        copies.setdefault(t.name, []).append((sub, t))
                    walk(sub)

    walk(graph)
    used = {vi.name for vi in graph.input} | {o for n in graph.node for o in n.output}
    outer = {t.name: t for t in graph.initializer}
    removed = 0
    for name, found in copies.items():
        if len(found) < 2 or name in used:
            continue
        blob = found[0][1].SerializeToString()
        if any(t.SerializeToString() != blob for _, t in found[1:]):
            continue
        if name in outer and outer[name].SerializeToString() != blob:
            continue
        if name not in outer:
            graph.initializer.append(found[0][1])
            outer[name] = graph.initializer[-1]
        for sub, _ in found:
            keep = [x for x in sub.initializer if x.name != name]
            del sub.initializer[:]
            sub.initializer.extend(keep)
            removed += 1
    return removed


def _other_types(proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Copies of the declared types that are not tensor types (see :attr:`Model.other_types`)."""
    found: dict[str, onnx.TypeProto] = {}
    for vi in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        if vi.type.WhichOneof("value") not in (None, "tensor_type"):
            found[vi.name] = onnx.TypeProto()
            found[vi.name].CopyFrom(vi.type)
    return found


def _restore_boundary_shapes(graph: gs.Graph, proto: onnx.ModelProto) -> None:
    """Gives graph inputs and outputs back the shapes they declare.

    Some exporters list a graph output again in ``value_info`` with its type but no shape;
    onnx-graphsurgeon reads ``value_info`` after the outputs, so the declared shape would be
    lost and the written model would fail the full checker.
    """
    declared = {vi.name: vi for vi in [*proto.graph.input, *proto.graph.output]}
    for t in [*graph.inputs, *graph.outputs]:
        vi = declared.get(t.name)
        if vi is None or getattr(t, "shape", None) is not None or not vi.type.tensor_type.HasField("shape"):
            continue
        t.shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                   for d in vi.type.tensor_type.shape.dim]


def _proven_feeds(
    proto: onnx.ModelProto, input_shapes: dict[str, list[int]], runnable: Any,
) -> tuple[FeedPlan, dict[str, tuple[int | None, ...]]]:
    """The feed plan proven on the model, and every tensor's static shape at its sizes.

    Shapes static inference cannot tell (data-dependent shape code) are measured in the same
    onnxruntime run that proves the feed, when the first sizes tried run; otherwise (another
    size was needed) in a run of their own at the proven sizes.
    """
    first = plan_feeds(proto, input_shapes, check=False).shapes()
    static, unknown = infer_static_shapes(proto, {**first, **input_shapes}, static_only=True)
    feeds = plan_feeds(proto, input_shapes, runnable=runnable, measure=unknown)
    if feeds.shapes() == first and all(n in feeds.measured for n, _ in unknown):
        return feeds, {**static, **{n: feeds.measured[n] for n, _ in unknown}}
    return feeds, infer_static_shapes(proto, {**feeds.shapes(), **input_shapes}, feeds=feeds)


def load(
    source: str | os.PathLike[str] | onnx.ModelProto | Model,
    input_shapes: dict[str, list[int]] | None = None,
    prepare: bool = True,
) -> Model:
    """Loads a model from a path or ``ModelProto`` into a :class:`Model`.

    Args:
        source: ``.onnx`` path (external data is read from beside it) or a ``ModelProto``.
        input_shapes: fixed dimensions for symbolic graph inputs, ``{name: [1, 3, 224, 224]}``;
            other symbolic dimensions take sizes the model is proven to run at
            (:func:`onnxprune.feeds.plan_feeds`: batch 1, image sides from the strides, token
            and time lengths from a ladder).
        prepare: get the graph ready for channel analysis (static shapes measured, small
            constant subgraphs folded, uniform shared constants copied per user). ``False``
            keeps the graph exactly as stored, for passes that do their own rewriting; shapes
            are then left empty until :meth:`Model.refresh_shapes`.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        proto, deferred = load_proto(source), {}
    else:
        proto, deferred = load_proto_deferred(source)
    input_shapes = dict(input_shapes or {})
    feeds = None
    shapes: dict[str, tuple[int | None, ...]] = {}
    if prepare:
        runnable = proto if isinstance(source, onnx.ModelProto) else os.fspath(source)
        feeds, shapes = _proven_feeds(proto, input_shapes, runnable)
    from onnx_graphsurgeon.logger import G_LOGGER

    severity = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR  # bfloat16/float8 weights: gs warns it keeps the ONNX type
    try:
        graph = gs.import_onnx(proto)
        _restore_boundary_shapes(graph, proto)
        _read_weights(graph, deferred)
    finally:
        G_LOGGER.severity = severity
    auto_names = _name_nodes(graph)
    if prepare:
        untie_uniform_constants(graph)
        fold_small_constants(graph)
    meta: list[Any] = [(p.key, p.value) for p in proto.metadata_props]
    model = Model(
        graph=graph,
        shapes=shapes,
        opset=default_opset(proto),
        ir_version=proto.ir_version,
        source=None if isinstance(source, onnx.ModelProto) else str(source),
        input_shapes=input_shapes,
        metadata=meta,
        doc_string=proto.doc_string,
        model_version=proto.model_version,
        feeds=feeds,
        other_types=_other_types(proto),
        auto_names=auto_names,
    )
    del proto  # the weights now live only in the graph
    trim_memory()  # the parsed file and the sessions that proved the feeds are gone
    return model
