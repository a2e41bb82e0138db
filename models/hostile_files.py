"""Hostile and broken model files, written on purpose, for the refusal tests and the table in
docs/reliability.md: truncated or non-ONNX bytes, corrupt weights, external data that escapes
the model's folder, absurd dimensions, cycles, duplicate and dangling tensor names.

:func:`make_case` writes one case into a folder and returns its path and a word the one-line
error must contain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.zoo import ZOO

__all__ = ["CASES", "make_case"]


def _tiny(nodes=None, inputs=None, inits=None, outputs=None) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = nodes if nodes is not None else [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["output"], name="relu"),
    ]
    inputs = inputs or [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])]
    outputs = outputs or [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 4, 4])]
    g = helper.make_graph(nodes, "g", inputs, outputs, [w] if inits is None else inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _save(m: onnx.ModelProto, p: Path) -> None:
    p.write_bytes(m.SerializeToString())  # no checker: these models are broken on purpose


def _external(tmp: Path, location: str) -> Path:
    """A model one folder down whose weights name ``location`` as their external data file."""
    inner = tmp / "inner"
    inner.mkdir(exist_ok=True)
    m = ZOO["vgg_like"]()
    onnx.save_model(m, str(tmp / "ref.onnx"), save_as_external_data=True, location="w.data", size_threshold=0)
    m = onnx.load(str(tmp / "ref.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    p = inner / "m.onnx"
    _save(m, p)
    return p


def make_case(case: str, tmp: Path) -> tuple[Path, str]:
    """Writes the hostile file for ``case``; returns its path and a word the error must contain."""
    p = tmp / "bad.onnx"
    good = ZOO["resnet_basic"]().SerializeToString()
    if case == "truncated":
        p.write_bytes(good[: len(good) // 2])
        return p, "not a readable ONNX model"
    if case == "random_bytes":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return p, "not"
    if case == "empty_file":
        p.write_bytes(b"")
        return p, "no graph"
    if case == "zip_file":
        p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
        return p, "not"
    if case == "tensor_not_model":
        p.write_bytes(numpy_helper.from_array(np.ones((8, 8), np.float32), "t").SerializeToString())
        return p, "not"
    if case == "short_weights":
        m = _tiny()
        m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:20]
        _save(m, p)
        return p, "initializer 'w'"
    if case == "external_escapes":
        (tmp / "secret.data").write_bytes(b"\0" * 10_000_000)
        return _external(tmp, "../secret.data"), "outside the model's folder"
    if case == "external_escapes_far":
        return _external(tmp, "../../../../etc/passwd"), "outside the model's folder"
    if case == "external_absolute":
        return _external(tmp, str(tmp / "w.data")), "absolute path"
    if case == "external_truncated":
        p = _external(tmp, "w.data")
        data = (tmp / "w.data").read_bytes()
        (tmp / "inner" / "w.data").write_bytes(data[: len(data) // 2])
        return p, "external data"
    if case == "absurd_input_dims":
        big = [1, 3, 10**13, 10**13]
        _save(_tiny(inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, big)]), p)
        return p, "absurd dimensions"
    if case == "absurd_weight_dims":
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 3, 10**7, 10**7], raw_data=b"\0" * 48)
        _save(_tiny(inits=[w]), p)
        return p, "absurd dimensions"
    if case == "cycle":
        nodes = [
            helper.make_node("Add", ["input", "b"], ["a"], name="first"),
            helper.make_node("Relu", ["a"], ["b"], name="second"),
            helper.make_node("Identity", ["b"], ["output"], name="out"),
        ]
        out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])
        _save(_tiny(nodes=nodes, outputs=[out], inits=[]), p)
        return p, "cycle"
    if case == "duplicate_names":
        nodes = [
            helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
            helper.make_node("Relu", ["c"], ["c"], name="relu_in_place"),
            helper.make_node("Relu", ["c"], ["output"], name="relu"),
        ]
        _save(_tiny(nodes=nodes), p)
        return p, "produced twice"
    if case == "dangling_input":
        nodes = [
            helper.make_node("Conv", ["input", "w_missing"], ["c"], name="conv"),
            helper.make_node("Relu", ["c"], ["output"], name="relu"),
        ]
        _save(_tiny(nodes=nodes), p)
        return p, "reads 'w_missing'"
    if case == "opset_from_the_future":
        m = _tiny()
        m.opset_import[0].version = 999
        _save(m, p)
        return p, "opset 999"
    if case == "folder":
        p.mkdir()
        return p, "folder"
    raise AssertionError(case)


#: Every case :func:`make_case` knows.
CASES = ["truncated", "random_bytes", "empty_file", "zip_file", "tensor_not_model", "short_weights",
         "external_escapes", "external_escapes_far", "external_absolute", "external_truncated",
         "absurd_input_dims", "absurd_weight_dims", "cycle", "duplicate_names", "dangling_input",
         "opset_from_the_future", "folder"]
