"""Helpers for the pass tests: models from onnx.parser text, equivalence in onnxruntime."""

from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune import verify


def make_model(text: str, seed: int = 0, **inits: np.ndarray | tuple[int, ...]) -> onnx.ModelProto:
    """Parses ``text`` and adds initializers: arrays as given, shapes as seeded normal values."""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    for name, value in inits.items():
        arr = value if isinstance(value, np.ndarray) else rng.standard_normal(value).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(arr, name))
    onnx.checker.check_model(model, full_check=True)
    return model


def op_counts(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in model.graph.node)


def interface(model: onnx.ModelProto) -> list[tuple[str, str]]:
    return [(v.name, str(v.type)) for v in list(model.graph.input) + list(model.graph.output)]


def symbolic_shapes(sess, batch: int, other: int = 5) -> dict[str, list[int]]:
    """Concrete input shapes: the first symbolic dimension seen at axis 0 is ``batch``, any other
    symbol ``other``; a symbol keeps one value across inputs (so a mask matches its ids)."""
    values: dict[str, int] = {}
    shapes: dict[str, list[int]] = {}
    for inp in sess.get_inputs():
        dims = []
        for i, d in enumerate(inp.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
                continue
            key = str(d)
            if key not in values:
                values[key] = batch if i == 0 else other
            dims.append(values[key])
        shapes[inp.name] = dims
    return shapes


def assert_equivalent(
    original: onnx.ModelProto, result: onnx.ModelProto, batches=(1, 2), tol: float = 1e-5,
    input_shapes=None,
) -> None:
    """Full check of ``result``, same interface, and equal outputs within ``tol`` (relative to scale)."""
    onnx.checker.check_model(result, full_check=True)
    assert interface(result) == interface(original)
    s1, s2 = verify.session(original), verify.session(result)
    for b in batches:
        shapes = input_shapes or symbolic_shapes(s1, b, other=3 + b)
        feeds = verify.make_feeds(s1, shapes, seed=3 + b, batch=b)
        for a, c in zip(verify.run(s1, feeds), verify.run(s2, feeds)):
            assert a.shape == c.shape and a.dtype == c.dtype
            if a.dtype.kind == "f":
                scale = max(1.0, float(np.max(np.abs(a))) if a.size else 1.0)
                np.testing.assert_allclose(c, a, rtol=tol, atol=tol * scale)
            else:
                np.testing.assert_array_equal(c, a)
