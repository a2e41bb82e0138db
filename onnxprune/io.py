"""Loading and saving ONNX models safely.

Loading accepts a path or an ``onnx.ModelProto``; external data is resolved relative to the
model file and must stay inside that folder. Saving is atomic: the model (and its external data
file when it is large) is written into a temporary folder beside the target and moved into place
with ``os.replace``, so a failure never leaves a half-written model, and the input is never the
target.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from .errors import ModelLoadError, ModelSaveError, UnsupportedModelError, UsageError

__all__ = [
    "MIN_OPSET",
    "load_proto",
    "load_proto_deferred",
    "read_external",
    "ExternalRef",
    "save_proto",
    "save_text",
    "save_figure",
    "check_structure",
    "default_opset",
    "initializer_bytes",
    "infer_static_shapes",
    "parse_input_shapes",
]

log = logging.getLogger(__name__)

MIN_OPSET = 7
#: Every model file this process has written (in order), for what an interruption reports.
WRITTEN: list[Path] = []
#: The most elements one generated input may have (1 GiB of float32): sizes past it are typos.
MAX_INPUT_ELEMENTS = 1 << 28
#: Above this many bytes of weights a model is written with its tensors in an external file.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: Initializers with at most this many elements stay in the shape-inference skeleton (they are
#: shape vectors, axes, scales); bigger ones become typed graph inputs.
_SKELETON_MAX_ELEMENTS = 64
#: Ops whose first output has the shape of their first input (used where onnx infers nothing).
_SHAPE_PRESERVING = frozenset(
    {"GroupNormalization", "LayerNormalization", "SimplifiedLayerNormalization",
     "SkipLayerNormalization", "BiasGelu", "FastGelu", "QuickGelu", "Gelu"}
)  # fmt: skip


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1 if model.ir_version < 3 else 0


def _check_versions(model: onnx.ModelProto, where: str) -> None:
    if model.ir_version < 3:
        raise UnsupportedModelError(
            f"{where}: IR version {model.ir_version} is older than 3, which onnxprune does not read"
        )
    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedModelError(
            f"{where}: IR version {model.ir_version} is newer than this onnx package supports "
            f"({onnx.IR_VERSION}); upgrade onnx"
        )
    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if opset < MIN_OPSET:
        raise UnsupportedModelError(
            f"{where}: default-domain opset {opset} is older than {MIN_OPSET}, the oldest onnxprune "
            f"and onnxruntime read; convert it first: onnx.version_converter.convert_version(model, "
            f"{MIN_OPSET})"
        )
    if opset > newest:
        raise UnsupportedModelError(
            f"{where}: default-domain opset {opset} is outside the supported range "
            f"{MIN_OPSET}..{newest}"
        )


def _resolve_external(model: onnx.ModelProto, base_dir: Path, where: str) -> None:
    """Checks every external-data reference and loads it into the model."""
    _check_external_paths(model, base_dir, where)
    try:
        external_data_helper.load_external_data_for_model(model, str(base_dir.resolve()))
    except Exception as exc:  # truncated data file, bad offsets
        raise ModelLoadError(f"{where}: cannot read external data: {exc}") from exc


def _check_external_paths(model: onnx.ModelProto, base_dir: Path, where: str) -> None:
    """Every external-data file must be a file inside the model's folder."""
    base = base_dir.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        loc = info.location
        if not loc or os.path.isabs(loc):
            raise ModelLoadError(
                f"{where}: tensor '{tensor.name}' names external data '{loc}' by an absolute path; "
                "only files beside the model are read"
            )
        target = (base / loc).resolve()
        if base not in target.parents and target != base:
            raise ModelLoadError(
                f"{where}: tensor '{tensor.name}' names external data '{loc}' outside the model's "
                "folder; refusing to read it"
            )
        if not target.is_file():
            raise ModelLoadError(
                f"{where}: external data file '{loc}' for tensor '{tensor.name}' is missing "
                f"(looked in {base})"
            )


#: A declared dimension or element count beyond this is corruption, not a model.
MAX_DIM = 2**40
MAX_ELEMENTS = 2**36


def _dims_of(vi: onnx.ValueInfoProto) -> list[int]:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return []
    return [int(d.dim_value) for d in t.tensor_type.shape.dim if d.HasField("dim_value")]


def _check_dims(name: str, dims: list[int], where: str, symbolic_ok: bool = False) -> None:
    """Refuses negative or huge dimensions; ``symbolic_ok``: -1 (and 0) mean "any size" there.

    Exporters write -1 for a dynamic axis of a graph input or output; the checker and
    onnxruntime accept it, so it is read as a symbolic dimension, not as corruption.
    """
    if symbolic_ok:
        dims = [d for d in dims if d > 0]
    bad = [d for d in dims if d < 0 or d > MAX_DIM]
    n = 1
    for d in dims:
        n *= max(int(d), 0)
    if bad or n > MAX_ELEMENTS:
        raise ModelLoadError(
            f"{where}: tensor '{name}' declares absurd dimensions {list(dims)}; the file is corrupt"
        )


#: Strings have no fixed size; sub-byte types pack several elements per stored value.
_UNCHECKED_TYPES = frozenset(
    getattr(onnx.TensorProto, n) for n in ("STRING", "UNDEFINED", "INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
    if hasattr(onnx.TensorProto, n)
)


def _tensor_payload_ok(t: onnx.TensorProto) -> bool:
    """Whether an initializer holds as many elements as its dims say (external data excluded)."""
    if external_data_helper.uses_external_data(t) or t.data_type in _UNCHECKED_TYPES:
        return True
    n = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
    if t.HasField("raw_data"):
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except Exception:
            return True  # 4-bit and other packed types: leave it to onnx
        return len(t.raw_data) == n * itemsize
    fields = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
    count = sum(len(getattr(t, f)) for f in fields)
    if t.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
        count //= 2
    return count == n or (count == 0 and n == 0)


def check_structure(model: onnx.ModelProto, where: str = "model") -> None:
    """Refuses graphs no runtime could execute, naming the tensor or node at fault.

    Checks the main graph for: tensors produced twice (two nodes, or a node and an initializer
    or graph input), node inputs that nothing produces (dangling), cycles, initializers whose
    data does not match their dimensions, and absurd declared dimensions. Subgraphs may read
    outer tensors, so only main-graph nodes are checked for dangling inputs.

    Raises:
        ModelLoadError: naming the first problem found.
    """
    g = model.graph
    producer: dict[str, str] = {}

    def claim(name: str, by: str) -> None:
        if not name:
            return
        if name in producer and producer[name] != by:
            raise ModelLoadError(
                f"{where}: tensor '{name}' is produced twice (by {producer[name]} and {by}); "
                "tensor names must be unique"
            )
        producer[name] = by

    for t in g.initializer:
        _check_dims(t.name, list(t.dims), where)
        if not _tensor_payload_ok(t):
            raise ModelLoadError(
                f"{where}: initializer '{t.name}' holds a different number of elements than its "
                f"dimensions {list(t.dims)} say; the file is corrupt"
            )
        claim(t.name, f"initializer '{t.name}'")
    inits = {t.name for t in g.initializer}
    for vi in g.input:
        _check_dims(vi.name, _dims_of(vi), where, symbolic_ok=True)
        if vi.name not in inits:  # old exporters list initializers as inputs too
            claim(vi.name, f"graph input '{vi.name}'")
    for k, node in enumerate(g.node):
        label = f"node '{node.name or node.op_type + '#' + str(k)}'"
        for o in node.output:
            claim(o, label)
    for k, node in enumerate(g.node):
        for i in node.input:
            if i and i not in producer:
                raise ModelLoadError(
                    f"{where}: node '{node.name or node.op_type + '#' + str(k)}' reads '{i}', "
                    "which no node, initializer or graph input produces"
                )
    for vi in g.output:
        if vi.name not in producer:
            raise ModelLoadError(f"{where}: graph output '{vi.name}' is produced by nothing")
    # Kahn's algorithm: whatever never becomes ready lies on (or behind) a cycle.
    made_by_node = {o: k for k, n in enumerate(g.node) for o in n.output if o}
    waiting = [
        {made_by_node[i] for i in n.input if i in made_by_node} - {k} for k, n in enumerate(g.node)
    ]
    self_loop = [k for k, n in enumerate(g.node) if any(made_by_node.get(i) == k for i in n.input)]
    users: dict[int, list[int]] = {}
    for k, deps in enumerate(waiting):
        for d in deps:
            users.setdefault(d, []).append(k)
    ready = [k for k, deps in enumerate(waiting) if not deps and k not in self_loop]
    done = 0
    while ready:
        k = ready.pop()
        done += 1
        for u in users.get(k, []):
            waiting[u].discard(k)
            if not waiting[u] and u not in self_loop:
                ready.append(u)
    if done < len(g.node):
        stuck = next(k for k in range(len(g.node)) if waiting[k] or k in self_loop)
        n = g.node[stuck]
        raise ModelLoadError(
            f"{where}: the graph has a cycle through node '{n.name or n.op_type}'; "
            "ONNX graphs must be acyclic"
        )


def load_proto(source: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    """Loads a model from a path (with external data) or returns a given ``ModelProto``.

    Raises:
        ModelLoadError: the file is missing, unreadable, not ONNX, or its external data is
            missing or points outside the model's folder.
        UnsupportedModelError: IR version or opset outside what onnxprune handles.
    """
    if isinstance(source, onnx.ModelProto):
        _check_versions(source, "model")
        check_structure(source, "model")
        return source
    path = Path(source)
    where = str(path)
    model = _read_model(path, where)
    _resolve_external(model, path.parent, where)
    _check_payloads(model, where)
    return model


def _read_model(path: Path, where: str, data: bytes | None = None) -> onnx.ModelProto:
    """Parses the model file (without external data), or its bytes ``data`` when given, and
    checks versions and structure."""
    if not path.exists():
        raise ModelLoadError(f"{where}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{where}: is a folder, not an .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False) if data is None else onnx.ModelProto.FromString(data)
    except Exception as exc:
        raise ModelLoadError(
            f"{where}: not a readable ONNX model (protobuf parse failed: {type(exc).__name__})"
        ) from exc
    if not model.HasField("graph") or (
        len(model.graph.node) == 0 and len(model.graph.output) == 0
    ):
        raise ModelLoadError(f"{where}: not an ONNX model (no graph found)")
    _check_versions(model, where)
    check_structure(model, where)
    return model


def _check_payloads(model: onnx.ModelProto, where: str) -> None:
    for t in model.graph.initializer:  # external data is in place now: its size must fit too
        if not _tensor_payload_ok(t):
            raise ModelLoadError(
                f"{where}: external data of '{t.name}' does not match its dimensions "
                f"{list(t.dims)}; the data file is truncated or corrupt"
            )


#: External tensors at least this big are read straight into numpy by :func:`read_external`
#: instead of into the protobuf (only for models over the protobuf limit).
DEFER_MIN_BYTES = 1 << 20


@dataclass(frozen=True)
class ExternalRef:
    """Where the bytes of one initializer lie on disk."""

    path: Path
    offset: int
    length: int
    data_type: int
    dims: tuple[int, ...]


def read_external(ref: ExternalRef, source: SourceFile | None = None) -> np.ndarray:
    """Reads one tensor from its data file into a fresh array (the only copy in memory);
    through ``source`` (the file held open since loading) when given."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(ref.data_type)
    count = int(np.prod(ref.dims, dtype=np.int64))
    if count * dtype.itemsize != ref.length:
        raise ModelLoadError(
            f"{ref.path.name}: {ref.length} bytes at offset {ref.offset} do not hold a "
            f"{list(ref.dims)} tensor of {dtype}"
        )
    out = np.empty(count, dtype=dtype)
    if source is not None:
        source.read_into(ref, memoryview(out).cast("B"))
        return out.reshape(ref.dims)
    with open(ref.path, "rb") as f:
        f.seek(ref.offset)
        if f.readinto(memoryview(out).cast("B")) != ref.length:
            raise ModelLoadError(f"{ref.path.name}: external data is truncated at offset {ref.offset}")
    return out.reshape(ref.dims)


class SourceFile:
    """A weights file held open from loading on, so weights can stay in it until they are used.

    The open handle keeps reading the file that was loaded even when its path is replaced
    (an atomic save over it) or removed; a file changed in place is detected by its size and
    modification time and refused.
    """

    def __init__(self, path: Path) -> None:
        import threading

        self.path = path
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - held for the model's life
        st = os.fstat(self._file.fileno())
        self._stamp = (st.st_size, st.st_mtime_ns)
        self._lock = threading.Lock()

    def read_into(self, ref: ExternalRef, buf: memoryview) -> None:
        with self._lock:
            st = os.fstat(self._file.fileno())
            if (st.st_size, st.st_mtime_ns) != self._stamp:
                raise ModelLoadError(
                    f"{self.path}: the file changed after the model was loaded; its weights "
                    "cannot be read (load the model again)"
                )
            self._file.seek(ref.offset)
            done = 0
            while done < ref.length:
                n = self._file.readinto(buf[done:])
                if not n:
                    raise ModelLoadError(f"{self.path.name}: external data is truncated at offset {ref.offset}")
                done += n

    def __del__(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()


def load_proto_deferred(
    source: str | os.PathLike[str],
) -> tuple[onnx.ModelProto, dict[str, ExternalRef]]:
    """Like :func:`load_proto`, but big external weights of models over the protobuf limit stay
    on disk: they are returned as :class:`ExternalRef` for the caller to read straight into
    numpy, so the weights are never held twice (once in the protobuf, once in numpy)."""
    path = Path(source)
    where = str(path)
    if not path.is_file():
        return load_proto(source), {}
    lean = _load_lean(path, where)
    if lean is not None:
        return lean
    model = _read_model(path, where)
    external = [
        t for t in model.graph.initializer if external_data_helper.uses_external_data(t)
    ]
    total = sum(int(np.prod(t.dims, dtype=np.int64)) for t in external) * 4
    if total <= EXTERNAL_DATA_THRESHOLD:
        _resolve_external(model, path.parent, where)
        _check_payloads(model, where)
        return model, {}
    _check_external_paths(model, path.parent, where)
    base = path.parent.resolve()
    deferred: dict[str, ExternalRef] = {}
    for t in external:
        info = external_data_helper.ExternalDataInfo(t)
        target = base / info.location
        length = info.length if info.length else target.stat().st_size - (info.offset or 0)
        if length < DEFER_MIN_BYTES or t.data_type in (onnx.TensorProto.STRING,):
            external_data_helper.load_external_data_for_tensor(t, str(base))
            continue
        if (info.offset or 0) + length > target.stat().st_size:
            raise ModelLoadError(
                f"{where}: external data of '{t.name}' runs past the end of {info.location}; "
                "the data file is truncated"
            )
        deferred[t.name] = ExternalRef(target, int(info.offset or 0), int(length), t.data_type,
                                       tuple(int(d) for d in t.dims))
    _check_payloads(model, where)
    return model, deferred


def _load_lean(path: Path, where: str) -> tuple[onnx.ModelProto, dict[str, ExternalRef]] | None:
    """The model parsed without the bytes of its large inline float weights (see
    :mod:`onnxprune.wire`): those stay in the file, as :class:`ExternalRef` into it, and are
    marked as external data there so nothing mistakes the parsed model for a whole one."""
    from .wire import split_weights

    split = split_weights(path)
    if split is None:
        return None
    data, spans = split
    model = _read_model(path, where, data)
    del data
    inputs = {i.name for i in model.graph.input}
    if inputs & spans.keys() or any(external_data_helper.uses_external_data(t) and t.name not in spans
                                    for t in external_data_helper._get_all_tensors(model)):
        # a weight that is also a graph input (the probe needs its bytes), or data in other
        # files: parsed whole, the ordinary way
        return None
    target = path.resolve()
    refs = {t.name: ExternalRef(target, *spans[t.name], t.data_type, tuple(int(d) for d in t.dims))
            for t in model.graph.initializer if t.name in spans}
    _check_payloads(model, where)
    return model, refs


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of tensor data held in the model (initializers and Constant nodes)."""
    total = 0
    for t in external_data_helper._get_all_tensors(model):
        if t.HasField("raw_data"):
            total += len(t.raw_data)
        else:
            total += int(np.prod(t.dims, dtype=np.int64)) * 4
    return total


def _may_name_external_data(p: Path, chunk: int = 1 << 20) -> bool:
    """Whether the file holds the field key of an external data reference (``location``).

    Read in chunks, so a large model with inline weights is never held in memory only to learn
    that it names no other file; a False is certain, a True is checked by parsing.
    """
    marker = b"location"
    tail = b""
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            seen = tail + block
            if marker in seen:
                return True
            tail = seen[-(len(marker) - 1):]
    return False


def model_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files a model reads: the ``.onnx`` itself and every external data file it names."""
    p = Path(path)
    files = [p]
    if not p.is_file():
        return files
    try:
        if not _may_name_external_data(p):
            return files
        proto = onnx.load(str(p), load_external_data=False)
    except Exception:  # not readable as ONNX: the file itself is all there is to protect
        return files
    for t in _all_tensors(proto.graph):
        if external_data_helper.uses_external_data(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if loc and (p.parent / loc) not in files:
                files.append(p.parent / loc)
    return files


def _all_tensors(g: onnx.GraphProto):
    yield from g.initializer
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    yield from _all_tensors(sg)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def check_destination(
    target: str | os.PathLike[str],
    protect: tuple[str | os.PathLike[str], ...] = (),
    data_file: bool = True,
) -> None:
    """Refuses, before any work, an output path that cannot or must not be written.

    The target must not be a folder, its folder must exist, and neither it nor the data file
    that may be written beside it (``<name>.data``) may be, or alias through a symbolic or hard
    link, any file an input reads: each protected ``.onnx`` and its external data files.

    Raises:
        UsageError: naming the path and the reason.
    """
    t = Path(target)
    if t.is_dir():
        raise UsageError(f"{t}: is a folder; give a file name for the output (-o {t / 'model.onnx'})")
    if not t.resolve().parent.is_dir():
        raise UsageError(f"{t}: folder {t.resolve().parent} does not exist")
    written = [t] + ([t.with_name(t.name + ".data")] if data_file else [])
    # Only a file that exists can be one an input reads; when none does, the inputs need not be
    # parsed to list their data files (a second full copy of a large model in memory).
    written = [w for w in written if w.exists() or w.is_symlink()]
    if not written:
        return
    for p in protect:
        for f in model_files(p):
            for w in written:
                if _same_file(w, f):
                    what = "the input model" if f == Path(p) else f"the input's external data '{f.name}'"
                    raise UsageError(f"{t}: refusing to overwrite {what}; choose another -o")


def save_proto(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    protect: tuple[str | os.PathLike[str], ...] = (),
    external: bool | None = None,
) -> Path:
    """Writes ``model`` to ``path`` atomically.

    Args:
        model: the model to write; it is not modified.
        path: the target ``.onnx`` file. Its external data (when used) is ``<name>.data`` beside it.
        protect: files that must never be overwritten (the input model and its data files).
        external: force (True) or forbid (False) external data; by default it is used when the
            tensors exceed ~1.8 GB, so models over the 2 GB protobuf limit save correctly.

    Raises:
        ModelSaveError: the target is a protected file or cannot be written.
    """
    target = Path(path)
    resolved = target.resolve()
    use_external = external if external is not None else (
        initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    )
    data_name = target.name + ".data"
    try:
        check_destination(target, protect, data_file=use_external)
    except UsageError as exc:
        raise ModelSaveError(str(exc)) from None
    parent = resolved.parent
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=".onnxprune-", dir=parent))
    except OSError as exc:
        raise ModelSaveError(f"{target}: cannot write to {parent}: {exc.strerror}") from exc
    try:
        tmp_model = tmpdir / target.name
        if use_external:
            save_external(model, tmp_model, data_name)
            os.replace(tmpdir / data_name, parent / data_name)
        else:
            from .wire import write_model

            with open(tmp_model, "wb") as f:
                write_model(model, f)  # one tensor at a time: no serialized copy of the model
        os.replace(tmp_model, resolved)
        WRITTEN.append(target)
    except OSError as exc:
        raise ModelSaveError(f"{target}: write failed: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return target


def fill_weights(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Puts ``values`` into the initializers of ``model`` of those names that hold no data yet,
    one at a time; returns ``model``."""
    for init in model.graph.initializer:
        v = values.get(init.name)
        if v is not None and not init.HasField("raw_data"):
            init.raw_data = np.ascontiguousarray(v).tobytes()
    return model


def save_for_reading(model: onnx.ModelProto, path: Path, values: dict[str, np.ndarray] | None = None) -> None:
    """Writes ``model`` to ``path`` with its large initializers in ``<name>.data`` beside it, for
    the checker and onnxruntime to read (validation): one tensor at a time, ``model`` unchanged,
    no copy of the weights made; ``values`` are the bytes of initializers ``model`` holds without
    data (:meth:`onnxprune.graph.Model.export`). Constant nodes and subgraph tensors stay in the
    graph, so a model over the protobuf limit needs :func:`save_external`.
    """
    from .wire import write_model

    data_name = path.name + ".data"
    with open(path, "wb") as f, open(path.parent / data_name, "wb") as data:
        write_model(model, f, data, data_name, values=values)


def save_external(model: onnx.ModelProto, path: Path, data_name: str) -> None:
    """Saves ``model`` with its tensors in ``data_name`` beside ``path``, without a second copy.

    ``onnx`` moves tensor bytes out of the proto while writing; they are read back afterwards so
    the caller's model is unchanged, and at no time are two copies of the weights in memory.
    """
    try:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
    finally:
        external_data_helper.load_external_data_for_model(model, str(path.parent))


def parse_input_shapes(specs: list[str] | None) -> dict[str, list[int]]:
    """Parses ``name:1,3,224,224`` strings into a dict."""
    out: dict[str, list[int]] = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition(":")
        if not sep or not name:
            raise UsageError(f"bad --input-shape '{spec}': expected name:1,3,224,224")
        try:
            shape = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            raise UsageError(f"bad --input-shape '{spec}': dimensions must be integers") from None
        if name in out:
            raise UsageError(f"--input-shape gives '{name}' twice")
        if any(d < 1 for d in shape):
            raise UsageError(f"bad --input-shape '{spec}': every dimension must be at least 1")
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise UsageError(f"bad --input-shape '{spec}': {math.prod(shape):,} elements in one input is more "
                             f"than onnxprune feeds (at most {MAX_INPUT_ELEMENTS:,})")
        out[name] = shape
    return out


def _skeleton(
    model: onnx.ModelProto, input_shapes: dict[str, list[int]], default_dim: int
) -> onnx.ModelProto:
    """A weight-free copy of ``model`` for shape inference.

    Big initializers become typed graph inputs, so inference never serializes the weights (this
    keeps memory bounded and works past the 2 GB protobuf limit); small ones (shape vectors, axes)
    keep their values, which data propagation needs.
    """
    g = model.graph
    skel = onnx.ModelProto()
    skel.ir_version = max(model.ir_version, 4)
    skel.opset_import.extend(model.opset_import)
    skel.functions.extend(model.functions)
    local_fns = {f.domain for f in model.functions}
    sg = skel.graph
    sg.name = g.name or "graph"
    sg.node.extend(g.node)
    init_names = set()
    for init in g.initializer:
        init_names.add(init.name)
        n = int(np.prod(init.dims, dtype=np.int64))
        if n <= _SKELETON_MAX_ELEMENTS:
            sg.initializer.append(init)
        else:
            sg.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    known = {i.name for i in sg.input}
    for inp in g.input:
        if inp.name in init_names:
            continue  # old exporters list initializers as inputs too
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(inp)
        fixed = input_shapes.get(inp.name)
        if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
            if fixed is None:
                raise UsageError(
                    f"graph input '{inp.name}' has no shape information; give its size with "
                    f"--input-shape {inp.name}:D0,D1,..."
                )
            for d in fixed:  # the exporter wrote no shape: the user's dimensions are the shape
                vi.type.tensor_type.shape.dim.add().dim_value = d
        elif vi.type.HasField("tensor_type"):
            dims = vi.type.tensor_type.shape.dim
            fixed = input_shapes.get(inp.name)
            if fixed is not None and len(fixed) != len(dims):
                raise UsageError(
                    f"--input-shape for '{inp.name}' has {len(fixed)} dimensions, the model's "
                    f"input has {len(dims)}"
                )
            for i, d in enumerate(dims):
                if fixed is not None:
                    d.Clear()
                    d.dim_value = fixed[i]
                elif not d.HasField("dim_value") or d.dim_value <= 0:
                    d.Clear()
                    d.dim_value = default_dim
        if inp.name not in known:
            sg.input.append(vi)
    # onnx infers nothing for ops of custom domains; the exporter's annotations of their outputs
    # are the only shapes there are.
    custom_outputs = {
        o for n in g.node if n.domain not in ("", "ai.onnx") and n.domain not in local_fns
        for o in n.output
    }
    sg.value_info.extend(vi for vi in g.value_info if vi.name in custom_outputs)
    for out in g.output:
        vo = onnx.ValueInfoProto()
        vo.name = out.name
        vo.type.CopyFrom(out.type)
        if vo.type.HasField("tensor_type"):
            vo.type.tensor_type.ClearField("shape")
        sg.output.append(vo)
    return skel


def infer_static_shapes(
    model: onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    default_dim: int = 1,
    feeds: Any = None,
    static_only: bool = False,
) -> Any:
    """Static shapes of every tensor, with symbolic input dimensions fixed.

    With ``static_only`` nothing runs: returns ``(shapes, unknown)``, ``unknown`` the typed
    tensors whose shapes are left to measure, as ``(name, element type)`` for
    :func:`shape_probe` (the caller measures them in a run it makes anyway).

    Symbolic dimensions of graph inputs take the value from ``input_shapes`` or ``default_dim``;
    shapes inference leaves unknown are measured in onnxruntime on ``feeds`` (a
    :class:`~onnxprune.feeds.FeedPlan`; default: one made here).
    Returns ``{tensor name: shape}``; an unknown dimension is ``None``; tensors whose rank is
    unknown are absent.
    """
    input_shapes = input_shapes or {}
    names = {i.name for i in model.graph.input}
    for name in input_shapes:
        if name not in names:
            raise UsageError(
                f"--input-shape names '{name}', which is not a graph input "
                f"(inputs: {', '.join(sorted(names))})"
            )
    skel = _skeleton(model, input_shapes, default_dim)
    inferred = skel
    for _ in range(4):
        try:
            inferred = onnx.shape_inference.infer_shapes(skel, strict_mode=False, data_prop=True)
        except Exception as exc:
            log.warning("shape inference failed (%s); continuing with partial shapes", exc)
            break
        # onnx has no inference for a few ops whose output has the input's shape; fill those in
        # and infer again so everything downstream gets shapes too.
        typed = {vi.name: vi for vi in list(inferred.graph.input) + list(inferred.graph.value_info)}
        added = False
        for node in inferred.graph.node:
            if node.op_type in _SHAPE_PRESERVING and node.input and node.input[0] in typed:
                for out in node.output[:1]:
                    if out and out not in typed:
                        vi = onnx.ValueInfoProto()
                        vi.CopyFrom(typed[node.input[0]])
                        vi.name = out
                        skel.graph.value_info.append(vi)
                        added = True
        if not added:
            break
    shapes: dict[str, tuple[int | None, ...]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            continue
        shapes[vi.name] = tuple(
            int(d.dim_value) if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim
        )
    for init in g.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = tuple(int(d) for d in a.t.dims)
    types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in list(g.input) + list(g.value_info) + list(g.output)
        if vi.type.HasField("tensor_type")
    }
    if static_only:
        return shapes, [(n, types[n]) for n in _unknown(model, shapes, types)]
    shapes.update(_runtime_shapes(model, shapes, types, input_shapes, default_dim, feeds))
    return shapes


def _unknown(model: onnx.ModelProto, shapes: dict[str, tuple[int | None, ...]],
             types: dict[str, int]) -> list[str]:
    """Typed node outputs whose shape static inference left (partly) unknown."""
    return [
        o for n in model.graph.node for o in n.output
        if o and (o not in shapes or any(d is None for d in shapes[o])) and types.get(o, 0) != 0
    ]


def _runtime_shapes(
    model: onnx.ModelProto,
    shapes: dict[str, tuple[int | None, ...]],
    types: dict[str, int],
    input_shapes: dict[str, list[int]],
    default_dim: int,
    feeds: Any = None,
) -> dict[str, tuple[int | None, ...]]:
    """Measures, in onnxruntime, the shapes that static inference left unknown.

    Data-dependent shape code (``Range`` over a sequence length, sliced rotary tables) defeats
    onnx's inference; one run on inputs of the analysed size gives exact sizes instead. The
    run is on a probe of the model (:func:`shape_probe`): its large float weights are zeros made
    at run time, so nothing of their bytes is copied, and models over the protobuf limit are
    measured too. Skipped when onnxruntime cannot run the model.
    """
    g = model.graph
    missing = _unknown(model, shapes, types)
    if not missing:
        return {}
    from .feeds import plan_feeds  # local: feeds and verify build on this module
    from .verify import session

    existing = {o.name for o in g.output}
    added = [n for n in missing if n not in existing]
    try:
        sess = session(shape_probe(model, [(n, types[n]) for n in added]).SerializeToString())
        fixed = {
            k: [int(d) if d is not None else default_dim for d in v]
            for k, v in shapes.items()
            if k in {i.name for i in sess.get_inputs()}
        }
        fixed.update(input_shapes)
        plan = feeds if feeds is not None else plan_feeds(model, fixed, check=False)
        plan = plan.with_shapes(fixed)
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(None, plan.make(seed=0))
    except Exception as exc:  # custom ops, bad inputs: stay with what inference knew
        log.info("could not measure shapes in onnxruntime (%s)", str(exc).splitlines()[0] if str(exc) else exc)
        return {}
    want = set(missing)
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(names, values) if n in want}


def trim_memory() -> None:
    """Hands memory freed by finished onnxruntime sessions and parsed protobufs back to the OS.

    glibc keeps freed heap pages for reuse; after a session of a 100 MB model is gone about as
    much again stays resident, so every later step would add its own peak on top. A no-op
    where the C library has no ``malloc_trim``.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def free_big_blocks_at_once(threshold: int = 1 << 20) -> None:
    """Makes the C library return every freed block of at least ``threshold`` bytes to the OS
    at once (glibc ``M_MMAP_THRESHOLD``), for a process that handles large weights.

    By default glibc raises that threshold after the first large blocks are freed, so later
    weights come from the heap and their memory stays resident after they are freed: pruning
    would hold the original's and the pruned model's weights together at its peak. Called by the
    command line; process-wide, so a library user opts in. A no-op without glibc.
    """
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-3, int(threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


#: Float initializers with at least this many elements are zeros in a :func:`shape_probe`.
PROBE_MIN_ELEMENTS = 4096
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def shape_probe(model: onnx.ModelProto, outputs: list[tuple[str, int]]) -> onnx.ModelProto:
    """A copy of ``model`` for measuring shapes: extra ``outputs`` (name, element type), and each
    large float weight made by ``ConstantOfShape`` as zeros of its shape.

    Shapes do not depend on weight values, so the probe runs like the model while its file holds
    only the graph: serializing a ViT-B/16 for onnxruntime copies kilobytes, not 346 MB. Integer
    tensors (shape vectors, indices) and small ones stay as they are.
    """
    probe = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(probe, field, getattr(model, field))
    probe.opset_import.extend(model.opset_import)
    probe.functions.extend(model.functions)
    g, pg = model.graph, probe.graph
    pg.name = g.name
    pg.input.extend(g.input)
    pg.output.extend(g.output)
    for name, elem in outputs:
        pg.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    listed = {i.name for i in g.input}
    makers: list[onnx.NodeProto] = []
    for t in g.initializer:
        n = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
        if t.data_type in _FLOAT_TYPES and n >= PROBE_MIN_ELEMENTS and t.name not in listed:
            dims = numpy_helper.from_array(np.asarray(t.dims, dtype=np.int64), f"{t.name}__probe_dims")
            zero = onnx.helper.make_tensor("value", t.data_type, [1], [0])
            pg.initializer.append(dims)
            makers.append(onnx.helper.make_node("ConstantOfShape", [dims.name], [t.name], value=zero))
        else:
            pg.initializer.append(t)
    pg.node.extend(makers)
    pg.node.extend(g.node)
    pg.sparse_initializer.extend(g.sparse_initializer)
    return probe


def save_text(path: str | os.PathLike[str], text: str) -> Path:
    """Writes a text file (report, JSON, cache entry) atomically: temporary file + rename.

    The temporary name carries the process id, so processes writing the same file at once
    (parallel search workers filling a cache) never share a temporary file.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return p


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Saves a matplotlib figure atomically (the temporary name keeps the format's suffix)."""
    p = Path(path)
    tmp = p.with_name(f".{p.stem}.{os.getpid()}.tmp{p.suffix}")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, p)
    return p
