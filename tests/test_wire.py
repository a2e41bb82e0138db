"""Loading without parsing the weights, and writing one tensor at a time (onnxprune.wire)."""

from __future__ import annotations

import io as _bytes_io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from models.zoo import resnet_basic, resnet_bottleneck, yolo_like
from onnxprune import graph, wire
from onnxprune.io import load_proto_deferred, read_external, save_for_reading, save_proto
from onnxprune.verify import run, session


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(params=[resnet_basic, yolo_like])
def saved(request, tmp_path: Path) -> tuple[onnx.ModelProto, Path]:
    model = request.param()
    model.metadata_props.add(key="origin", value="a test")
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path))
    return model, path


def test_split_leaves_large_float_weights_in_the_file_and_reads_them_back(saved):
    model, path = saved
    proto, refs = load_proto_deferred(path)
    assert refs, "the large weights stay in the file"
    assert proto.ByteSize() < path.stat().st_size // 2
    want = _weights(model)
    for t in proto.graph.initializer:
        if t.name in refs:
            assert t.data_location == onnx.TensorProto.EXTERNAL and not t.HasField("raw_data")
            np.testing.assert_array_equal(read_external(refs[t.name]), want[t.name])
        else:  # small tensors (biases, shape vectors) are parsed as usual
            np.testing.assert_array_equal(numpy_helper.to_array(t), want[t.name])
    assert {t.name for t in proto.graph.initializer} == set(want)
    assert list(proto.graph.node) == list(model.graph.node)
    assert [(p.key, p.value) for p in proto.metadata_props] == [("origin", "a test")]


def test_loading_from_the_file_equals_loading_the_parsed_model(saved):
    model, path = saved
    lean, whole = graph.load(path), graph.load(onnx.load(str(path)))
    assert lean.shapes == whole.shapes
    a, b = lean.to_proto(), whole.to_proto()
    assert [n.name for n in a.graph.node] == [n.name for n in b.graph.node]
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_a_file_in_another_layout_is_parsed_whole(tmp_path: Path):
    model = resnet_bottleneck()
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    proto, refs = load_proto_deferred(path)  # its data lies elsewhere: the ordinary path loads it
    assert not refs and all(t.HasField("raw_data") for t in proto.graph.initializer)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(model.SerializeToString()[:-7])
    assert wire.split_weights(truncated) is None


EXPORTS = Path(__file__).resolve().parent.parent / "models" / "exports"


@pytest.mark.parametrize("name", ["bert_tiny_dynamo", "keras_transformer", "paddle_cnn", "resnet_legacy"])
def test_write_model_writes_the_bytes_of_an_exported_file(name: str):
    path = EXPORTS / f"{name}.onnx"
    buf = _bytes_io.BytesIO()
    wire.write_model(onnx.load(str(path)), buf)
    assert buf.getvalue() == path.read_bytes()


def test_write_model_is_the_serialized_model(saved):
    model, _ = saved
    buf = _bytes_io.BytesIO()
    before = model.SerializeToString()
    wire.write_model(model, buf)
    assert buf.getvalue() == before  # the same bytes as protobuf's own serializer
    assert model.SerializeToString() == before  # the model given is not changed


def test_saved_for_reading_runs_like_the_model(saved, tmp_path: Path):
    model, _ = saved
    out = tmp_path / "check" / "m.onnx"
    out.parent.mkdir()
    save_for_reading(model, out)
    assert out.stat().st_size < (out.parent / "m.onnx.data").stat().st_size
    onnx.checker.check_model(str(out), full_check=True)
    feed = {model.graph.input[0].name: np.random.default_rng(0).standard_normal(
        [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]).astype(np.float32)}
    for a, b in zip(run(session(str(out)), feed), run(session(model), feed)):
        np.testing.assert_array_equal(a, b)
    back = onnx.load(str(out))
    assert all(np.array_equal(v, _weights(model)[k]) for k, v in _weights(back).items())
    inline = tmp_path / "inline.onnx"
    save_proto(model, inline)
    assert onnx.load(str(inline)) == model


def test_export_leaves_weights_out_and_writing_from_the_arrays_gives_the_model(saved, tmp_path: Path):
    _, path = saved
    model = graph.load(path)
    whole = model.to_proto()
    skeleton, values = model.export()
    assert values and all(not t.HasField("raw_data") for t in skeleton.graph.initializer if t.name in values)
    assert skeleton.ByteSize() < whole.ByteSize() // 2
    buf = _bytes_io.BytesIO()
    wire.write_model(skeleton, buf, values=values)
    assert buf.getvalue() == whole.SerializeToString()
    out = tmp_path / "v" / "m.onnx"
    out.parent.mkdir()
    save_for_reading(skeleton, out, values)
    back = onnx.load(str(out))
    assert _weights(back).keys() == _weights(whole).keys()
    assert all(np.array_equal(v, _weights(whole)[k]) for k, v in _weights(back).items())


def _half_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each large weight stored as float16 and read through a Cast."""
    casts = []
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size >= 4096:
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float16), t.name + "_h"))
            casts.append(onnx.helper.make_node("Cast", [t.name], [t.name[:-2]], name=t.name + ".cast",
                                               to=onnx.TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def test_half_precision_weights_load_from_the_file_as_they_are_stored(tmp_path: Path):
    from onnxprune.cli import main

    model = _half_weights(resnet_basic())
    path = tmp_path / "half.onnx"
    onnx.save_model(model, str(path))
    _, refs = load_proto_deferred(path)
    assert refs and all(r.data_type == onnx.TensorProto.FLOAT16 for r in refs.values())
    lean, whole = graph.load(path), graph.load(model)
    wa, wb = _weights(lean.to_proto()), _weights(whole.to_proto())
    assert all(wa[k].dtype == wb[k].dtype and np.array_equal(wa[k], wb[k]) for k in wb)
    out = tmp_path / "small.onnx"
    assert main(["prune", str(path), "-o", str(out), "--ratio", "0.5", "--check"]) == 0
    pruned = onnx.load(str(out))
    onnx.checker.check_model(pruned, full_check=True)
    assert {t.data_type for t in pruned.graph.initializer if t.name.endswith("_h")} == {onnx.TensorProto.FLOAT16}
