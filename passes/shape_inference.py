"""Shape inference as a pass: element types and shapes of intermediate tensors, kept symbolic.

onnx's inference (with data propagation, so shapes computed by ``Shape``/``Concat`` chains are
followed) annotates every intermediate tensor. Symbolic dimensions (``batch``, ``seq``) stay
symbolic: a dimension is only ever written as a number when it is that number for every input
the model accepts, which is what makes the folding and no-op elimination that read these
annotations safe. Graph inputs and outputs are never re-annotated.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxprune.graph import Model
from onnxprune.io import _SHAPE_PRESERVING

from .base import InPlacePass, PassResult
from .registry import register

__all__ = ["InferShapes", "infer_shapes"]

log = logging.getLogger(__name__)


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[int, list[int | str | None] | None] | None:
    t = vi.type
    if not t.HasField("tensor_type"):
        return None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tt.elem_type, dims


#: Initializers up to this many elements keep their values for data propagation (shape
#: vectors, axes); bigger ones become typed graph inputs, so inference never copies weights.
_KEEP_VALUES = 64


def _drop_weights(proto: onnx.ModelProto) -> None:
    g = proto.graph
    listed = {i.name for i in g.input}
    keep = []
    for init in g.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= _KEEP_VALUES:
            keep.append(init)
        elif init.name not in listed:
            g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    kept = [onnx.TensorProto.FromString(t.SerializeToString()) for t in keep]
    del g.initializer[:]
    g.initializer.extend(kept)


def infer_shapes(model: Model) -> int:
    """Annotates the graph's intermediate tensors in place; returns how many changed."""
    proto = model.to_proto()
    # Stale annotations (left by an exporter, or by a rewrite that changed a width) would
    # conflict with what inference finds; infer from the graph alone.
    del proto.graph.value_info[:]
    _drop_weights(proto)
    inferred = proto
    for _ in range(4):
        try:
            inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
        except Exception as exc:  # inference is an aid; a model it cannot handle stays as it is
            log.info("shape inference failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return 0
        # onnx infers nothing for a few ops whose output has their input's shape
        # (GroupNormalization at opset 21): fill those in and infer again downstream.
        typed = {vi.name: vi for vi in list(inferred.graph.input) + list(inferred.graph.value_info)}
        added = False
        for node in inferred.graph.node:
            if node.op_type in _SHAPE_PRESERVING and node.input and node.input[0] in typed:
                out = node.output[0] if node.output else ""
                if out and out not in typed:
                    vi = onnx.ValueInfoProto()
                    vi.CopyFrom(typed[node.input[0]])
                    vi.name = out
                    proto.graph.value_info.append(vi)
                    added = True
        if not added:
            break
    io_names = {t.name for t in model.graph.inputs} | {t.name for t in model.graph.outputs}
    found: dict[str, tuple[int, list[int | str | None] | None]] = {}
    for vi in inferred.graph.value_info:
        got = _shape_of(vi)
        if got is not None:
            found[vi.name] = got
    changed = 0
    for name, t in model.graph.tensors().items():
        if not isinstance(t, gs.Variable) or name in io_names:
            continue
        elem, dims = found.get(name, (0, None))
        # A shape inference cannot confirm is dropped: rewrites may have made it stale.
        if (None if t.shape is None else list(t.shape)) != dims:
            t.shape = dims
            changed += 1
        if elem and t.dtype is None:
            t.dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            changed += 1
    return changed


@register
class InferShapes(InPlacePass):
    """Annotate intermediate tensors with element types and (symbolic) shapes."""

    name = "shape-inference"

    def run(self, model: Model) -> PassResult:
        return PassResult(model, infer_shapes(model) > 0)
