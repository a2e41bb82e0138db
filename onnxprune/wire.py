"""Reading an ``.onnx`` file's graph without its weights, from the protobuf wire format.

``onnx.load`` reads the whole file into memory and parses it, so a model's weights are held
twice while it loads (the file's bytes and the parsed message) and once more when they are
copied into numpy. :func:`split_weights` instead walks the file's top-level fields through a
read-only memory map and returns a copy of the model without the bytes of its large float
initializers, plus where each of those bytes lies in the file, so each weight can be read
straight into its numpy array (:func:`onnxprune.io.read_external`) and is in memory once.

Only the common, well-formed layout is handled: one ``graph`` field, weights in ``raw_data``.
Anything else (external data, a weight whose size does not match its dims, a malformed or
unusual encoding) returns ``None`` and the caller parses the file the ordinary way, which also
gives the precise error for a damaged file.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import onnx

from .io import _FLOAT_TYPES as _PROBE_FLOAT_TYPES
from .io import PROBE_MIN_ELEMENTS

__all__ = ["split_weights", "write_model"]
#: Float initializers with at least this many elements are left in the file: the shape probe's
#: bound for zero weights, so a probe of the returned model needs none of their bytes.
LEAN_MIN_ELEMENTS = PROBE_MIN_ELEMENTS
# the probe's float types but bfloat16, which the graph library converts as it loads
_FLOAT_TYPES = _PROBE_FLOAT_TYPES - {onnx.TensorProto.BFLOAT16}

# field numbers (onnx.proto)
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 8, 9
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_LENGTH_DELIMITED = 2


class _Malformed(Exception):
    """The bytes are not the simple layout this module reads."""


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _fields(buf: mmap.mmap | bytes, start: int, end: int):
    """Yields ``(number, wire type, field start, value start, value end)`` over ``buf[start:end]``."""
    pos = start
    while pos < end:
        key, vpos = _varint(buf, pos, end)
        number, wtype = key >> 3, key & 7
        if wtype == 0:
            _, vend = _varint(buf, vpos, end)
        elif wtype == 1:
            vend = vpos + 8
        elif wtype == 5:
            vend = vpos + 4
        elif wtype == _LENGTH_DELIMITED:
            n, vpos = _varint(buf, vpos, end)
            vend = vpos + n
        else:  # groups: not in onnx.proto
            raise _Malformed
        if number == 0 or vend > end:
            raise _Malformed
        yield number, wtype, pos, vpos, vend
        pos = vend


def _key(number: int, wtype: int) -> bytes:
    return _encode_varint(number << 3 | wtype)


def _tensor(buf: mmap.mmap, start: int, end: int) -> tuple[str, int, int, bytes] | None:
    """``(name, raw data offset, length, the tensor's bytes without its raw data)`` for a large
    float initializer stored inline, else ``None`` (it stays as it is)."""
    dims: list[int] = []
    dtype = 0
    name = None
    raw: tuple[int, int] | None = None
    kept: list[bytes] = []
    for number, wtype, fstart, vstart, vend in _fields(buf, start, end):
        if number == _TENSOR_RAW and wtype == _LENGTH_DELIMITED:
            raw = (vstart, vend - vstart)
            continue
        if number in (_TENSOR_EXTERNAL, _TENSOR_LOCATION):
            return None
        if number == _TENSOR_DIMS:
            if wtype == _LENGTH_DELIMITED:  # packed
                pos = vstart
                while pos < vend:
                    d, pos = _varint(buf, pos, vend)
                    dims.append(d)
            else:
                dims.append(_varint(buf, vstart, vend)[0])
        elif number == _TENSOR_TYPE and wtype == 0:
            dtype = _varint(buf, vstart, vend)[0]
        elif number == _TENSOR_NAME and wtype == _LENGTH_DELIMITED:
            try:
                name = bytes(buf[vstart:vend]).decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed from None
        kept.append(bytes(buf[fstart:vend]))
    if raw is None or name is None or dtype not in _FLOAT_TYPES or any(d >= 1 << 62 for d in dims):
        return None
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if count < LEAN_MIN_ELEMENTS:
        return None
    if count * onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize != raw[1]:
        return None  # damaged: the ordinary parse names it
    return name, raw[0], raw[1], b"".join(kept)


def _string(number: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return _key(number, _LENGTH_DELIMITED) + _encode_varint(len(data)) + data


def _external(location: str, offset: int, length: int) -> bytes:
    """A tensor's ``external_data`` entries and ``data_location = EXTERNAL``, encoded."""
    out = b""
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = _string(1, key) + _string(2, value)
        out += _key(_TENSOR_EXTERNAL, _LENGTH_DELIMITED) + _encode_varint(len(entry)) + entry
    return out + _key(_TENSOR_LOCATION, 0) + _encode_varint(onnx.TensorProto.EXTERNAL)


def _graph(buf: mmap.mmap, start: int, end: int, spans: dict[str, tuple[int, int]], location: str) -> bytes:
    parts: list[bytes] = []
    for number, wtype, fstart, vstart, vend in _fields(buf, start, end):
        found = _tensor(buf, vstart, vend) if number == _GRAPH_INITIALIZER and wtype == _LENGTH_DELIMITED else None
        if found is None:
            parts.append(bytes(buf[fstart:vend]))
            continue
        name, offset, length, rest = found
        if name in spans:
            raise _Malformed  # a repeated name: the ordinary parse refuses it by name
        spans[name] = (offset, length)
        rest += _external(location, offset, length)
        parts.append(_key(_GRAPH_INITIALIZER, _LENGTH_DELIMITED) + _encode_varint(len(rest)) + rest)
    return b"".join(parts)


def split_weights(path: str | os.PathLike[str]) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
    """The serialized model without its large inline float weights, and ``{initializer name:
    (offset, length)}`` of each left-out weight's bytes in the file; ``None`` where the file is
    empty or not in the layout read here (the caller then parses it whole).

    Each left-out weight is marked as external data in the file itself (its name, offset and
    length), so the returned model is a valid ONNX model whose data lives beside it.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    try:
        parts: list[bytes] = []
        spans: dict[str, tuple[int, int]] = {}
        graphs = 0
        for number, wtype, fstart, vstart, vend in _fields(buf, 0, size):
            if number == _MODEL_GRAPH and wtype == _LENGTH_DELIMITED:
                graphs += 1
                body = _graph(buf, vstart, vend, spans, p.name)
                parts.append(_key(_MODEL_GRAPH, _LENGTH_DELIMITED) + _encode_varint(len(body)) + body)
            else:
                parts.append(bytes(buf[fstart:vend]))
        if graphs != 1 or not spans:
            return None
        return b"".join(parts), spans
    except _Malformed:
        return None
    finally:
        buf.close()


# ------------------------------------------------------------------------------------- writing


def _around(message, field_name: str) -> tuple[bytes, bytes]:  # noqa: ANN001 - any protobuf message
    """``message`` serialized without ``field_name``, as the bytes before and after where that
    field goes, so ``before + field + after`` is what ``SerializeToString`` gives.

    A copy with the field set to an empty placeholder is serialized and split around it (the
    order fields are written in is protobuf's own). The field itself is never read: reading a
    tensor's ``raw_data``, ``ListFields`` or ``ByteSize`` copies its bytes.
    """
    out = type(message)()
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if name == field_name:
            continue
        if field.is_repeated:
            if len(getattr(message, name)):
                getattr(out, name).extend(getattr(message, name))
        elif message.HasField(name):
            if field.type == field.TYPE_MESSAGE:
                getattr(out, name).CopyFrom(getattr(message, name))
            else:
                setattr(out, name, getattr(message, name))
    field = message.DESCRIPTOR.fields_by_name[field_name]
    if field.is_repeated:
        getattr(out, field_name).add()
    elif field.type == field.TYPE_MESSAGE:
        getattr(out, field_name).SetInParent()
    else:
        setattr(out, field_name, b"")
    data = out.SerializeToString()
    for number, _, fstart, _, vend in _fields(data, 0, len(data)):
        if number == field.number:
            return data[:fstart], data[vend:]
    raise AssertionError(f"placeholder for {field_name} not serialized")  # pragma: no cover


def _frame(number: int, size: int) -> bytes:
    return _key(number, _LENGTH_DELIMITED) + _encode_varint(size)


def write_model(model: onnx.ModelProto, f, data=None, location: str = "", min_bytes: int = 1024,  # noqa: ANN001
                values: dict[str, np.ndarray] | None = None) -> None:
    """Writes ``model`` to the binary file ``f`` one initializer at a time.

    ``SerializeToString`` would first build the whole file in memory, one more copy of every
    weight; here only one tensor is serialized at a time. The bytes read back with ``onnx.load``
    as the same model. ``values`` gives the bytes of initializers that ``model`` holds without
    data (:func:`onnxprune.graph.export_without_weights`), written straight from the arrays.
    With ``data`` (a binary file) the raw bytes of each initializer of at least ``min_bytes`` go
    there instead, 4096-byte aligned, referenced as external data at ``location``. ``model``
    itself is never changed.
    """
    values = values or {}
    graph = model.graph
    # Each message is written around its big field in protobuf's own order: the same bytes.
    head, tail = _around(model, "graph")
    before, after = _around(graph, "initializer")
    # (tensor fields before raw_data, where the raw bytes come from, their length, fields after)
    pieces: list[tuple[bytes, np.ndarray | onnx.TensorProto | None, int, bytes]] = []
    outside: list[int] = []
    for t in graph.initializer:
        v = values.get(t.name)
        if v is not None:
            src, n = v, v.nbytes
        elif t.HasField("raw_data"):
            src, n = t, len(t.raw_data)
        else:
            pieces.append((t.SerializeToString(), None, 0, b""))
            continue
        if data is not None and n >= min_bytes:
            outside.append(len(pieces))
        first, last = _around(t, "raw_data")
        pieces.append((first, src, n, last))
    offsets: dict[int, int] = {}
    offset = 0
    for k in outside:  # the bytes go to ``data``; the tensor says where
        first, src, n, last = pieces[k]
        offset += -offset % 4096
        offsets[k] = offset
        ref = onnx.TensorProto.FromString(first + last)
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(n))):
            entry = ref.external_data.add()
            entry.key, entry.value = key, value
        ref.data_location = onnx.TensorProto.EXTERNAL
        pieces[k] = (ref.SerializeToString(), src, n, b"")
        offset += n
    sizes = [len(first) + len(last) + (0 if k in offsets or src is None else len(_frame(_TENSOR_RAW, n)) + n)
             for k, (first, src, n, last) in enumerate(pieces)]
    total = len(before) + len(after) + sum(len(_frame(_GRAPH_INITIALIZER, s)) + s for s in sizes)
    f.write(head)
    f.write(_frame(_MODEL_GRAPH, total))
    f.write(before)
    for k, ((first, src, n, last), size) in enumerate(zip(pieces, sizes)):
        f.write(_frame(_GRAPH_INITIALIZER, size))
        f.write(first)
        if src is not None:
            raw = src.raw_data if isinstance(src, onnx.TensorProto) else memoryview(np.ascontiguousarray(src)).cast("B")
            if k in offsets:
                data.seek(offsets[k])
                data.write(raw)
            else:
                f.write(_frame(_TENSOR_RAW, n))
                f.write(raw)
            del raw
        f.write(last)
    f.write(after)
    f.write(tail)
