"""Calibration data and the activation statistics gathered from it in onnxruntime.

Sources of calibration inputs (all end up as a list of batched feed dicts):

- a ``.npy``/``.npz`` file or a folder of them: a ``.npz`` maps input names to arrays (a model
  with one input also accepts any single key, and a ``labels`` key is ignored); a ``.npy`` feeds
  a model with one input. An array whose rank equals the input's rank is a stack of samples
  along the batch axis; one rank lower is a single sample;
- a folder of images with a preprocessing spec (:class:`ImageSpec`: size, NCHW/NHWC layout,
  RGB/BGR order, ``(x/255 - mean) / std``); needs Pillow (``pip install 'onnxprune[images]'``);
- any Python iterable of feed dicts (API only);
- seeded random data (``"random"``), the last resort: it exercises the graph but says nothing
  about accuracy, and a warning says so.

Statistics are collected by running the model in onnxruntime with the tensors we need exposed
as extra graph outputs, one batch at a time, so memory is bounded by one batch of activations
plus the accumulators:

- per channel of a tensor (:class:`ChannelStats`): count, mean and variance merged across
  batches with Chan's parallel update — for batch statistics ``(n_b, μ_b, M2_b)``::

      δ = μ_b - μ;  n' = n + n_b;  μ' = μ + δ·n_b/n';  M2' = M2 + M2_b + δ²·n·n_b/n'

  (numerically stable where the naive ``Σx² - n·μ²`` cancels), and the share of exact zeros
  (APoZ, the average percentage of zeros after a ReLU);
- per consumer (a Conv/Gemm/MatMul reading the tensor through a constant weight), the Gram
  matrix ``G = Σ x xᵀ`` and the sum ``Σ x`` of its input rows ``x``: for Gemm/MatMul a row is
  one position's feature vector; for a Conv it is an im2col patch (``C_in·k_h·k_w`` values in
  the weight's ``[c, k_y, k_x]`` order, zero padding included), sampled at seeded random output
  positions and capped per consumer (``max_rows``), because a full im2col matrix is ``H·W``
  times larger than the activation itself. Gram matrices are accumulated in float64 after
  shifting the rows by the first batch's mean.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .errors import UsageError
from .feeds import FeedPlan, plan_feeds
from .graph import Model, const_value

__all__ = [
    "ImageSpec",
    "Calibration",
    "Consumer",
    "ChannelStats",
    "GramStats",
    "CalibrationStats",
    "load_calibration",
    "find_consumers",
    "collect_stats",
    "im2col_rows",
    "channel_key",
    "weight_matrix",
    "model_inputs",
    "CrossGramStats",
    "collect_cross_stats",
    "collect_tensor_stats",
]

log = logging.getLogger(__name__)

#: ``progress(done, total)`` is called after each batch.
Progress = Callable[[int, int], None]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


# ------------------------------------------------------------------------------- sources
@dataclass
class ImageSpec:
    """How to turn an image file into a model input.

    ``size`` is ``(height, width)`` (default: the model input's static size); pixels are scaled
    to [0, 1] by ``scale`` and normalized per channel as ``(x - mean) / std``.
    """

    size: tuple[int, int] | None = None
    layout: str = "NCHW"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    bgr: bool = False
    scale: float = 1.0 / 255.0


@dataclass
class InputInfo:
    name: str
    shape: list[int | None]
    dtype: np.dtype


@dataclass
class Calibration:
    """Calibration inputs as batched feed dicts (``batches``) and the number of samples."""

    batches: list[dict[str, np.ndarray]]
    n_samples: int
    source: str = "data"

    @property
    def is_random(self) -> bool:
        return self.source == "random"


def model_inputs(proto: onnx.ModelProto) -> list[InputInfo]:
    """Graph inputs that are not initializers, with static dims (``None`` where symbolic)."""
    inits = {i.name for i in proto.graph.initializer}
    out = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        out.append(InputInfo(vi.name, dims, onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)))
    return out


def _as_batch(arr: np.ndarray, inp: InputInfo, where: str) -> np.ndarray:
    rank = len(inp.shape)
    if arr.ndim == rank - 1:
        arr = arr[None]
    if arr.ndim != rank:
        raise UsageError(
            f"{where}: array of shape {arr.shape} does not fit input '{inp.name}' of rank {rank}"
        )
    for i, (d, want) in enumerate(zip(arr.shape[1:], inp.shape[1:]), start=1):
        if want is not None and d != want:
            raise UsageError(
                f"{where}: axis {i} is {d} but input '{inp.name}' needs {want} (shape {inp.shape})"
            )
    if arr.dtype != inp.dtype:
        if arr.dtype.kind != inp.dtype.kind and not (arr.dtype.kind in "iu" and inp.dtype.kind in "iu"):
            raise UsageError(f"{where}: dtype {arr.dtype} cannot feed input '{inp.name}' ({inp.dtype})")
        arr = arr.astype(inp.dtype)
    return arr


def _array_feed(path: Path, inputs: list[InputInfo], optional: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Arrays of one file by input name; ``optional`` inputs (masks, states, scalars) may be absent."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise UsageError(f"{path}: cannot read as .npy/.npz ({exc})") from exc
    names = [i.name for i in inputs]
    required = [i for i in inputs if i.name not in optional]
    if isinstance(data, np.ndarray):
        return _checked_file(path, data, inputs, required, names)
    try:
        with data:
            keys = [k for k in data.files if k != "labels"]
            arrays = {k: data[k] for k in keys}
    except Exception as exc:  # pickled object arrays, truncated members
        reason = "it holds pickled objects, which are never loaded" if "allow_pickle" in str(exc) else str(exc)
        raise UsageError(f"{path}: cannot read as .npz ({reason})") from exc
    return _checked_npz(path, arrays, inputs, required, names, optional)


def _finite(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` if it holds numbers and no NaN/Inf; calibration refuses the rest (they poison statistics)."""
    if arr.dtype.kind not in "biufc":
        raise UsageError(f"{where}: arrays of dtype {arr.dtype} cannot feed a model; save numbers")
    if arr.dtype.kind in "fc":
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise UsageError(f"{where}: {bad} of {arr.size} values are NaN or infinite; calibration needs "
                             "finite inputs (fix or leave out this sample)")
    return arr


def _checked_file(path: Path, data: np.ndarray, inputs: list[InputInfo], required: list[InputInfo],
                  names: list[str]) -> dict[str, np.ndarray]:
    data = _finite(data, str(path))
    if len(required) == 1 and len(inputs) > 1:
        return {required[0].name: _as_batch(data, required[0], str(path))}
    if len(inputs) != 1:
        raise UsageError(f"{path}: a .npy feeds one input, but the model has {len(inputs)} "
                         f"({', '.join(names)}); use .npz with one key per input")
    return {inputs[0].name: _as_batch(data, inputs[0], str(path))}


def _checked_npz(path: Path, data: dict[str, np.ndarray], inputs: list[InputInfo], required: list[InputInfo],
                 names: list[str], optional: frozenset[str]) -> dict[str, np.ndarray]:
    data = {k: _finite(v, f"{path}[{k}]") for k, v in data.items()}
    keys = list(data)
    if len(inputs) == 1 and len(keys) == 1:
        return {inputs[0].name: _as_batch(data[keys[0]], inputs[0], f"{path}[{keys[0]}]")}
    if len(required) == 1 and len(keys) == 1 and keys[0] not in names:
        return {required[0].name: _as_batch(data[keys[0]], required[0], f"{path}[{keys[0]}]")}
    missing = [n for n in names if n not in keys and n not in optional]
    if missing:
        raise UsageError(f"{path}: no array for input(s) {', '.join(missing)} (keys: {', '.join(keys)})")
    return {i.name: _as_batch(data[i.name], i, f"{path}[{i.name}]") for i in inputs if i.name in keys}


def _image_feed(path: Path, inputs: list[InputInfo], spec: ImageSpec) -> dict[str, np.ndarray]:
    try:
        from PIL import Image
    except ImportError as exc:
        raise UsageError("image calibration needs Pillow: pip install 'onnxprune[images]'") from exc
    if len(inputs) != 1:
        raise UsageError(f"image calibration feeds one input, but the model has {len(inputs)}")
    inp = inputs[0]
    if len(inp.shape) != 4 or spec.layout not in ("NCHW", "NHWC"):
        raise UsageError(f"input '{inp.name}' of shape {inp.shape} is not a {spec.layout} image batch")
    c_axis, h_axis, w_axis = (1, 2, 3) if spec.layout == "NCHW" else (3, 1, 2)
    channels = inp.shape[c_axis] or 3
    size = spec.size or (inp.shape[h_axis], inp.shape[w_axis])
    if size[0] is None or size[1] is None:
        raise UsageError(f"input '{inp.name}' has no static image size; give one (--image-size H,W)")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((int(size[1]), int(size[0])), Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read image ({exc})") from exc
    x = x[..., None] if x.ndim == 2 else x
    if spec.bgr:
        x = x[..., ::-1]
    x = x * spec.scale
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if mean.size not in (1, x.shape[-1]) or std.size not in (1, x.shape[-1]):
        raise UsageError(f"--mean/--std need 1 or {x.shape[-1]} values")
    x = (x - mean) / std
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return {inp.name: np.ascontiguousarray(x[None]).astype(inp.dtype)}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _feeds_from_path(path: Path, inputs: list[InputInfo], spec: ImageSpec | None,
                     optional: frozenset[str] = frozenset()) -> Iterator[dict[str, np.ndarray]]:
    if not path.exists():
        raise UsageError(f"calibration data '{path}' does not exist (give a folder, a .npz/.npy file, or 'random')")
    files = [path] if path.is_file() else _files(path)
    arrays = [p for p in files if p.suffix.lower() in (".npy", ".npz")]
    images = [p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES]
    if not arrays and not images:
        raise UsageError(f"calibration data '{path}': no .npy, .npz or image files found")
    if arrays and images:
        raise UsageError(f"calibration data '{path}' mixes arrays and images; keep one kind per folder")
    for p in arrays:
        yield _array_feed(p, inputs, optional)
    image_inputs = [i for i in inputs if i.name not in optional] if len(inputs) > 1 else inputs
    for p in images:
        yield _image_feed(p, image_inputs, spec or ImageSpec())


def _rebatch(feeds: Iterable[dict[str, np.ndarray]], n_samples: int, batch_size: int,
             stacked: dict[str, int] | None = None) -> tuple[list[dict[str, np.ndarray]], int]:
    """Concatenates feeds along their batch axes and cuts ``n_samples`` into batches.

    ``stacked`` maps the inputs that carry samples to their batch axis (default: every input,
    axis 0); the others (states, scalars) are shared by a batch and taken from its first feed.
    Feeds whose other shapes differ (sequences of several lengths) stay separate batches.
    """
    pending: list[dict[str, np.ndarray]] = []
    batches: list[dict[str, np.ndarray]] = []
    total = 0

    def axis(k: str) -> int | None:
        return 0 if stacked is None else stacked.get(k)

    def cut(v: np.ndarray, k: str, lo: int, hi: int | None) -> np.ndarray:
        a = axis(k)
        if a is None or v.ndim <= a:
            return v
        index = [slice(None)] * v.ndim
        index[a] = slice(lo, hi)
        return v[tuple(index)]

    def count(f: dict[str, np.ndarray]) -> int:
        for k, v in f.items():
            a = axis(k)
            if a is not None and v.ndim > a:
                return int(v.shape[a])
        return 1

    def flush(final: bool) -> None:
        if not pending:
            return
        cat = {}
        for k in pending[0]:
            a = axis(k)
            cat[k] = np.concatenate([f[k] for f in pending], axis=a) if a is not None and pending[0][k].ndim > a \
                else pending[0][k]
        n = count(cat)
        full = n if final else n - n % batch_size
        for i in range(0, full, batch_size):
            batches.append({k: cut(v, k, i, min(i + batch_size, full)) for k, v in cat.items()})
        pending.clear()
        if full < n:
            pending.append({k: cut(v, k, full, None) for k, v in cat.items()})

    def sig(f: dict[str, np.ndarray]) -> tuple:
        out = []
        for k, v in f.items():
            a = axis(k)
            out.append((k, v.shape[:a] + v.shape[a + 1:]) if a is not None else (k, v.shape, v.tobytes()))
        return tuple(out)

    for feed in feeds:
        n = count(feed)
        take = min(n, n_samples - total)
        if take <= 0:
            break
        feed = {k: cut(v, k, 0, take) for k, v in feed.items()}
        if pending and sig(pending[0]) != sig(feed):
            flush(final=True)
        pending.append(feed)
        total += take
        if sum(count(f) for f in pending) >= batch_size:
            flush(final=False)
    flush(final=True)
    return batches, total


def _complete(feed: dict[str, np.ndarray], plan: FeedPlan, k: int) -> dict[str, np.ndarray]:
    """Adds the inputs a feed lacks (masks, states, scalars) as the plan makes them, sized to match.

    A symbolic dimension takes the size the given arrays have for the same dimension name;
    the batch axis takes the feed's batch.
    """
    missing = [s for s in plan.specs if s.name not in feed]
    if not missing:
        return feed
    sizes: dict[str, int] = {}
    batch = None
    for s in plan.specs:
        arr = feed.get(s.name)
        if arr is None:
            continue
        for a, d in enumerate(s.dims):
            if isinstance(d, str) and a < arr.ndim:
                sizes.setdefault(d, int(arr.shape[a]))
        if s.batch_axis is not None and s.batch_axis < arr.ndim:
            batch = batch or int(arr.shape[s.batch_axis])
    out = dict(feed)
    rng = np.random.default_rng(k)
    for s in missing:
        shape = [sizes.get(d, s.shape[a]) if isinstance(d, str) else s.shape[a] for a, d in enumerate(s.dims)]
        if s.batch_axis is not None and batch is not None:
            shape[s.batch_axis] = batch
        out[s.name] = replace(s, shape=shape).array(rng, None)
    return out


def _same_count(feed: dict[str, np.ndarray], stacked: dict[str, int], k: int) -> dict[str, np.ndarray]:
    """``feed`` if every input that carries samples holds the same number of them."""
    counts = {n: int(v.shape[stacked[n]]) for n, v in feed.items() if n in stacked and v.ndim > stacked[n]}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{n}' {c}" for n, c in counts.items())
        raise UsageError(f"calibration sample {k + 1}: its inputs hold different numbers of samples ({listed}); "
                         "give every input the same count")
    return feed


#: calibration samples used by default: refits generalize with more (all-MiniLM-L6-v2 at 30 % of
#: MACs removed: cosine on held-out sentences 0.878 from 256 samples, 0.919 from 1536; a
#: MobileNetV2 re-id embedder 0.613 from 256 crops, 0.684 from 1024); random data says nothing
#: more with more samples, so it keeps to RANDOM_SAMPLES
DEFAULT_SAMPLES = 1024
RANDOM_SAMPLES = 256


def load_calibration(
    source: str | Path | Iterable[dict[str, np.ndarray]] | Calibration,
    model: onnx.ModelProto | Model,
    n_samples: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    image_spec: ImageSpec | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    plan: FeedPlan | None = None,
) -> Calibration:
    """Reads up to ``n_samples`` calibration samples for ``model`` into batches.

    Args:
        source: a folder or ``.npy``/``.npz`` file, a folder of images, an iterable of feed dicts,
            or ``"random"`` (seeded standard-normal data; logs a warning).
        model: the model the data is for (its graph inputs decide names, ranks and dtypes).
        n_samples: at most this many samples are used (default :data:`DEFAULT_SAMPLES`, and
            :data:`RANDOM_SAMPLES` for ``"random"``).
        batch_size: samples per onnxruntime run.
        seed: for ``"random"``.
        image_spec: preprocessing for image folders.
        input_shapes: sizes of symbolic input dims for ``"random"`` data.
        plan: the model's :class:`~onnxprune.feeds.FeedPlan` (made here if not given): random
            data follows it, and it fills inputs that data files leave out (masks, states,
            scalars such as a sample rate).
    """
    if isinstance(source, Calibration):
        return source
    if n_samples is None:
        n_samples = RANDOM_SAMPLES if isinstance(source, str) and source == "random" else DEFAULT_SAMPLES
    if n_samples < 1 or batch_size < 1:
        raise UsageError(f"calibration needs n_samples >= 1 and batch_size >= 1 (got {n_samples}, {batch_size})")
    proto = model.to_proto() if isinstance(model, Model) else model
    inputs = model_inputs(proto)
    if plan is None:
        plan = model.feeds if isinstance(model, Model) and model.feeds is not None else plan_feeds(proto, input_shapes)
    if input_shapes:
        plan = plan.with_shapes(input_shapes)
    optional = frozenset(s.name for s in plan.specs if s.role in ("mask", "state", "scalar"))
    if plan.batch_free:
        stacked = {s.name: s.batch_axis for s in plan.specs if s.batch_axis is not None}
    else:  # a fixed batch: one sample (one batch of the fixed size) per run
        stacked = {s.name: 0 for s in plan.specs
                   if s.role in ("data", "index", "mask") and len(s.dims) >= 2 and isinstance(s.dims[0], int)}
        batch_size = next((int(s.dims[0]) for s in plan.specs if s.name in stacked), 1)  # type: ignore[arg-type]
    if isinstance(source, str) and source == "random":
        plan.require()
        log.warning("calibrating on random data: statistics exercise the graph but say nothing "
                    "about accuracy on real inputs")
        batches = list(plan.samples(n_samples, batch_size, seed))
        log.info("calibration: %d samples in %d batches (random)", n_samples, len(batches))
        return Calibration(batches, n_samples, "random")
    if isinstance(source, (str, Path)):
        feeds: Iterable[dict[str, np.ndarray]] = _feeds_from_path(Path(source), inputs, image_spec, optional)
        kind = "data"
    else:
        names = {i.name for i in inputs}
        by_name = {i.name: i for i in inputs}

        def check(it: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
            for k, feed in enumerate(it):
                if not set(feed) <= names or not names - set(feed) <= optional:
                    raise UsageError(f"calibration feed {k} has keys {sorted(feed)}, the model needs {sorted(names)}")
                yield {n: _as_batch(_finite(np.asarray(v), f"calibration feed {k}, input '{n}'"), by_name[n],
                                    f"calibration feed {k}") for n, v in feed.items()}

        feeds = check(source)
        kind = "data"
    feeds = (_complete(_same_count(f, stacked, k), plan, k) for k, f in enumerate(feeds))
    batches, total = _rebatch(feeds, n_samples, batch_size, stacked)
    if total == 0:
        raise UsageError("calibration data holds no samples")
    log.info("calibration: %d samples in %d batches (%s)", total, len(batches), kind)
    return Calibration(batches, total, kind)


# ------------------------------------------------------------------------------ consumers
@dataclass(frozen=True)
class Consumer:
    """A node reading activation ``x`` through a constant weight ``w``.

    ``w_in``/``w_out`` are the weight axes of input features and outputs; ``x_axis`` is the
    channel axis of ``x``; ``kernel`` the number of weights per (input channel, output) pair
    (``k_h·k_w`` for a Conv, 1 for Gemm/MatMul).
    """

    node: str
    op: str
    x: str
    w: str
    w_in: int
    w_out: int
    x_axis: int
    kernel: int

    @property
    def is_conv(self) -> bool:
        return self.op == "Conv"

    def features(self, atoms: np.ndarray) -> np.ndarray:
        """Rows of :func:`weight_matrix` (input features) that the input channels ``atoms`` span."""
        atoms = np.asarray(atoms, dtype=np.int64)
        if self.kernel == 1:
            return atoms
        return (atoms[:, None] * self.kernel + np.arange(self.kernel)[None, :]).reshape(-1)


def ridge_lambda(cov: np.ndarray, ridge: float) -> float:
    """The refit's ridge ``λ = ridge·mean(diag C)`` (at least 1e-12) for covariance ``cov``."""
    return max(ridge * float(np.mean(np.diag(cov))) if cov.size else 0.0, 1e-12)


def find_consumers(model: Model) -> list[Consumer]:
    """Conv (ungrouped, 1-D/2-D), Gemm (``transA=0``) and MatMul nodes with a constant weight."""
    out: list[Consumer] = []
    for node in model.graph.nodes:
        if node.op not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
            continue
        x, w = node.inputs[0], node.inputs[1]
        wv = const_value(w)
        if wv is None or const_value(x) is not None or wv.dtype.kind != "f":
            continue
        if node.op == "Conv":
            if int(node.attrs.get("group", 1)) != 1 or wv.ndim not in (3, 4):
                continue
            out.append(Consumer(node.name, "Conv", x.name, w.name, 1, 0, 1, int(np.prod(wv.shape[2:]))))
        elif node.op == "Gemm":
            if int(node.attrs.get("transA", 0)) or wv.ndim != 2:
                continue
            tb = int(node.attrs.get("transB", 0))
            out.append(Consumer(node.name, "Gemm", x.name, w.name, 1 if tb else 0, 0 if tb else 1, 1, 1))
        else:
            if wv.ndim != 2:
                continue
            xs = model.shapes.get(x.name)
            if xs is None:
                continue
            out.append(Consumer(node.name, "MatMul", x.name, w.name, 0, 1, len(xs) - 1, 1))
    return out


def weight_matrix(w: np.ndarray, c: Consumer) -> np.ndarray:
    """The weight as ``M[K, N]`` so that a consumer output row is ``y = x · M`` (+ bias)."""
    if c.is_conv:
        return w.reshape(w.shape[0], -1).T
    return w if c.w_in == 0 else w.T


# ----------------------------------------------------------------------------- statistics
@dataclass
class ChannelStats:
    """Streaming per-channel count, mean, M2 (sum of squared deviations) and zero count."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    zeros: np.ndarray | None = None

    def update(self, x: np.ndarray, axis: int) -> None:
        c = x.shape[axis]
        v = np.moveaxis(x, axis, -1).reshape(-1, c)
        if v.dtype.kind != "f":
            v = v.astype(np.float64)
        nb = v.shape[0]
        if nb == 0:
            return
        # batch moments in the data's precision, sums in float64 (no float64 copy of the batch)
        mb = v.mean(axis=0, dtype=np.float64)
        m2b = np.square(v - mb.astype(v.dtype)).sum(axis=0, dtype=np.float64)
        zb = np.count_nonzero(v == 0, axis=0)
        if self.mean is None:
            self.n, self.mean, self.m2, self.zeros = nb, mb, m2b, zb.astype(np.int64)
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + np.square(delta) * (self.n * nb / n)
        self.zeros = self.zeros + zb
        self.n = n

    @property
    def var(self) -> np.ndarray:
        assert self.m2 is not None
        return self.m2 / max(self.n, 1)

    @property
    def mean_square(self) -> np.ndarray:
        assert self.mean is not None
        return self.var + np.square(self.mean)

    @property
    def apoz(self) -> np.ndarray:
        assert self.zeros is not None
        return self.zeros / max(self.n, 1)


@dataclass
class GramStats:
    """``n`` rows, their sum ``s`` (float64) and their shifted Gram matrix.

    ``gram`` holds ``Σ (x - c)(x - c)ᵀ`` with ``c`` the first batch's mean, in float64 throughout
    (near-singular blocks are common, and float32 rounding there, ~1e-5 of the entries, would be
    amplified by the solve). Shifting keeps
    ``C = G/n - (μ - c)(μ - c)ᵀ`` free of the cancellation that ``Σ x xᵀ/n - μμᵀ`` suffers in
    float32 when means are large next to spreads.
    """

    n: int = 0
    s: np.ndarray | None = None
    gram: np.ndarray | None = None
    shift: np.ndarray | None = None

    def update(self, rows: np.ndarray) -> None:
        r = rows.astype(np.float64, copy=False)
        if self.s is None:
            self.s = np.zeros(r.shape[1])
            self.shift = r.mean(axis=0, dtype=np.float64)
            self.gram = np.zeros((r.shape[1], r.shape[1]))
        assert self.shift is not None and self.gram is not None
        self.n += r.shape[0]
        self.s += r.sum(axis=0, dtype=np.float64)
        rc = r - self.shift.astype(r.dtype)
        self.gram += rc.T @ rc

    @property
    def mean(self) -> np.ndarray:
        assert self.s is not None
        return self.s / max(self.n, 1)

    def covariance(self) -> np.ndarray:
        """``E[x xᵀ] - μμᵀ``: the centered second moment the least-squares refit needs."""
        assert self.gram is not None and self.shift is not None
        d = self.mean - self.shift
        return self.gram.astype(np.float64) / max(self.n, 1) - np.outer(d, d)

    def second_moment_sum(self) -> np.ndarray:
        """``Σ x xᵀ`` recovered from the shifted sums."""
        assert self.gram is not None and self.shift is not None and self.s is not None
        c = self.shift
        return self.gram.astype(np.float64) + np.outer(c, self.s) + np.outer(self.s, c) - self.n * np.outer(c, c)


@dataclass
class CalibrationStats:
    """Per tensor channel statistics, per consumer node Gram statistics."""

    channels: dict[str, ChannelStats] = field(default_factory=dict)
    grams: dict[str, GramStats] = field(default_factory=dict)
    n_samples: int = 0
    random: bool = False


def _conv_geometry(node: gs.Node, x_shape: tuple[int, ...], w_shape: tuple[int, ...]):
    nd = len(w_shape) - 2
    k = list(w_shape[2:])
    strides = list(node.attrs.get("strides", [1] * nd))
    dil = list(node.attrs.get("dilations", [1] * nd))
    pads = list(node.attrs.get("pads", [0] * (2 * nd)))
    auto = node.attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            size = x_shape[2 + i]
            out = math.ceil(size / strides[i])
            total = max(0, (out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - size)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[nd + i] = lo, total - lo
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    return k, strides, dil, pads


def im2col_rows(x: np.ndarray, node: gs.Node, w_shape: tuple[int, ...], max_rows: int | None,
                rng: np.random.Generator) -> np.ndarray:
    """im2col patches of a Conv input at (sampled) output positions, ``[rows, C·∏k]``.

    The column order is the weight's ``[c, k...]`` order, so ``patches @ W.reshape(O, -1).T``
    equals the Conv output (without bias) at those positions.
    """
    if x.ndim == 3:  # 1-D conv as a 2-D conv of height 1
        x = x[:, :, None, :]
        w_shape = (w_shape[0], w_shape[1], 1, w_shape[2])
        node_attrs = {k: ([1] + list(v) if k in ("strides", "dilations") else v) for k, v in node.attrs.items()}
        if "pads" in node.attrs:
            p = list(node.attrs["pads"])
            node_attrs["pads"] = [0, p[0], 0, p[1]]
        node = gs.Node(op="Conv", attrs=node_attrs)
    k, s, d, p = _conv_geometry(node, x.shape, w_shape)
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    ho = (h + p[0] + p[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + p[1] + p[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    total = b * ho * wo
    if max_rows is not None and total > max_rows:
        pick = np.sort(rng.choice(total, size=max_rows, replace=False))
    else:
        pick = np.arange(total)
    bi, rest = np.divmod(pick, ho * wo)
    oy, ox = np.divmod(rest, wo)
    iy = oy[:, None] * s[0] + np.arange(k[0])[None, :] * d[0]  # [m, kh]
    ix = ox[:, None] * s[1] + np.arange(k[1])[None, :] * d[1]  # [m, kw]
    patches = xp[bi[:, None, None, None], np.arange(c)[None, :, None, None], iy[:, None, :, None], ix[:, None, None, :]]
    return patches.reshape(len(pick), -1)


def feature_rows(x: np.ndarray, c: Consumer, node: gs.Node, w_shape: tuple[int, ...],
                 max_rows: int | None, rng: np.random.Generator) -> np.ndarray:
    """Input rows of a consumer: im2col patches for a Conv, feature vectors otherwise."""
    if c.is_conv:
        return im2col_rows(x, node, w_shape, max_rows, rng)
    rows = x.reshape(-1, x.shape[-1])
    if max_rows is not None and rows.shape[0] > max_rows:
        rows = rows[np.sort(rng.choice(rows.shape[0], size=max_rows, replace=False))]
    return rows


def tapped_session(proto: onnx.ModelProto, names: list[str], threads: int = 0, spin: bool = True):
    """An optimized session over ``proto`` that also returns the intermediate tensors ``names``."""
    from .verify import session

    tapped = onnx.ModelProto()
    tapped.CopyFrom(proto)
    have = {o.name for o in tapped.graph.output}
    for n in names:
        if n not in have:
            tapped.graph.output.append(onnx.ValueInfoProto(name=n))
    # Outputs without a type are accepted by onnxruntime; fill types where inference knows them.
    try:
        inferred = onnx.shape_inference.infer_shapes(tapped)
        types = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for o in tapped.graph.output:
            if not o.HasField("type") and o.name in types:
                o.type.CopyFrom(types[o.name])
    except Exception:  # inference is an aid only
        pass
    for o in tapped.graph.output:
        if not o.HasField("type"):
            o.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return session(tapped, optimize=True, threads=threads, spin=spin)


def collect_stats(
    model: Model,
    calib: Calibration,
    consumers: list[Consumer],
    channels: bool = True,
    grams: Iterable[str] = (),
    max_rows: int = 8192,
    seed: int = 0,
    max_gram_bytes: int = 3 << 29,
    progress: Progress | None = None,
    proto: onnx.ModelProto | None = None,
) -> CalibrationStats:
    """Runs the calibration batches through ``model`` and accumulates statistics.

    Args:
        model: the model (not modified); ``proto`` may pass its export to save a copy.
        calib: the batches.
        consumers: nodes whose input tensors get :class:`ChannelStats` (when ``channels``).
        grams: names of consumer nodes that also get :class:`GramStats`.
        max_rows: at most this many rows (im2col patches or positions) per consumer overall.
        seed: for sampling patch positions.
        max_gram_bytes: Gram matrices held at once; more consumers are done in further passes.
        progress: called as ``progress(done, total)`` after each batch.
    """
    proto = proto if proto is not None else model.to_proto()
    nodes = {n.name: n for n in model.graph.nodes}
    by_name = {c.node: c for c in consumers}
    want = [by_name[g] for g in grams if g in by_name]
    stats = CalibrationStats(n_samples=calib.n_samples, random=calib.is_random)
    graph_inputs = {t.name for t in model.graph.inputs}
    # Chunks of Gram consumers under the memory bound; the first pass also gathers channel stats.
    chunks: list[list[Consumer]] = [[]]
    used = 0
    for c in want:
        k = int(np.prod(const_value(nodes[c.node].inputs[1]).shape[1:])) if c.is_conv else \
            const_value(nodes[c.node].inputs[1]).shape[c.w_in]
        size = 8 * k * k
        if chunks[-1] and used + size > max_gram_bytes:
            chunks.append([])
            used = 0
        chunks[-1].append(c)
        used += size
    channel_taps = {channel_key(c): (c.x, c.x_axis) for c in consumers}
    per_batch = max(1, math.ceil(max_rows / max(len(calib.batches), 1)))
    total = len(calib.batches) * len(chunks)
    done = 0
    for ci, chunk in enumerate(chunks):
        taps = sorted({c.x for c in chunk} | ({c.x for c in consumers} if channels and ci == 0 else set()))
        if not taps:
            continue
        run_names = [t for t in taps if t not in graph_inputs]
        sess = tapped_session(proto, run_names) if run_names else None
        rng = np.random.default_rng(seed)
        for feeds in calib.batches:
            values: dict[str, np.ndarray] = {t: feeds[t] for t in taps if t in graph_inputs}
            if sess is not None:
                outs = sess.run(run_names, feeds)
                values.update(zip(run_names, outs))
            if channels and ci == 0:
                for key, (x, axis) in channel_taps.items():
                    stats.channels.setdefault(key, ChannelStats()).update(values[x], axis)
            for c in chunk:
                w_shape = tuple(const_value(nodes[c.node].inputs[1]).shape)
                rows = feature_rows(values[c.x], c, nodes[c.node], w_shape, per_batch, rng)
                stats.grams.setdefault(c.node, GramStats()).update(rows)
            done += 1
            if progress is not None:
                progress(done, total)
    return stats


def channel_key(c: Consumer) -> str:
    """Key of a consumer's input channel statistics in :attr:`CalibrationStats.channels`."""
    return f"{c.x}#{c.x_axis}"


@dataclass
class CrossGramStats:
    """Rows ``p`` of a pruned model's layer input next to rows ``o`` of the original's.

    Holds ``n``, ``Σp``, ``Σo``, and the shifted ``Σ p pᵀ`` and ``Σ p oᵀ`` (float64): what a refit of the pruned
    layer needs to reproduce the original layer's output from the inputs it actually receives.
    """

    n: int = 0
    sp: np.ndarray | None = None
    so: np.ndarray | None = None
    gpp: np.ndarray | None = None
    gpo: np.ndarray | None = None
    cp: np.ndarray | None = None
    co: np.ndarray | None = None

    def update(self, p: np.ndarray, o: np.ndarray) -> None:
        dt = np.float64
        p, o = p.astype(dt, copy=False), o.astype(dt, copy=False)
        if self.sp is None:
            self.sp, self.so = np.zeros(p.shape[1]), np.zeros(o.shape[1])
            self.cp, self.co = p.mean(axis=0, dtype=np.float64), o.mean(axis=0, dtype=np.float64)
            self.gpp = np.zeros((p.shape[1],) * 2)
            self.gpo = np.zeros((p.shape[1], o.shape[1]))
        self.n += p.shape[0]
        self.sp += p.sum(axis=0, dtype=np.float64)
        self.so += o.sum(axis=0, dtype=np.float64)
        pc, oc = p - self.cp.astype(dt), o - self.co.astype(dt)  # shifted, as in GramStats
        self.gpp += pc.T @ pc
        self.gpo += pc.T @ oc

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(C_pp, C_po, μ_p, μ_o)`` with ``C_pq = E[p qᵀ] - μ_p μ_qᵀ``."""
        assert self.gpp is not None and self.gpo is not None and self.sp is not None and self.so is not None
        n = max(self.n, 1)
        mp, mo = self.sp / n, self.so / n
        dp, do = mp - self.cp, mo - self.co
        return (self.gpp.astype(np.float64) / n - np.outer(dp, dp),
                self.gpo.astype(np.float64) / n - np.outer(dp, do), mp, mo)


def collect_cross_stats(
    original: onnx.ModelProto,
    pruned: onnx.ModelProto,
    layers: list[tuple[Consumer, gs.Node, tuple[int, ...]]],
    calib: Calibration,
    max_rows: int = 8192,
    seed: int = 0,
    max_gram_bytes: int = 3 << 29,
    progress: Progress | None = None,
) -> dict[str, CrossGramStats]:
    """Runs both models on each batch and pairs the input rows of each layer.

    ``layers`` lists ``(consumer, node, original weight shape)``; rows are sampled at the same
    positions in both models (same seed, same geometry).
    """
    inputs = {i.name for i in model_inputs(original)}
    chunks: list[list[tuple[Consumer, gs.Node, tuple[int, ...]]]] = [[]]
    used = 0
    for item in layers:
        c, _, w_shape = item
        k = int(np.prod(w_shape[1:])) if c.is_conv else w_shape[c.w_in]
        if chunks[-1] and used + 16 * k * k > max_gram_bytes:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += 16 * k * k
    per_batch = max(1, math.ceil(max_rows / max(len(calib.batches), 1)))
    out: dict[str, CrossGramStats] = {}
    total, done = len(calib.batches) * len(chunks), 0
    for chunk in chunks:
        taps = sorted({c.x for c, _, _ in chunk} - inputs)
        s_o = tapped_session(original, taps) if taps else None
        s_p = tapped_session(pruned, taps) if taps else None
        for b, feeds in enumerate(calib.batches):
            vo = {t: feeds[t] for t in inputs if t in feeds}
            vp = dict(vo)
            if taps:
                vo.update(zip(taps, s_o.run(taps, feeds)))
                vp.update(zip(taps, s_p.run(taps, feeds)))
            for i, (c, node, w_shape) in enumerate(chunk):
                rows_o = feature_rows(vo[c.x], c, node, w_shape, per_batch, np.random.default_rng([seed, b, i]))
                rows_p = feature_rows(vp[c.x], c, node, w_shape, per_batch, np.random.default_rng([seed, b, i]))
                out.setdefault(c.node, CrossGramStats()).update(rows_p, rows_o)
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def collect_tensor_stats(
    proto: onnx.ModelProto,
    taps: dict[str, int],
    batches: list[dict[str, np.ndarray]],
    progress: Progress | None = None,
) -> dict[str, ChannelStats]:
    """Per-channel :class:`ChannelStats` of the tensors ``taps`` (name -> channel axis) over ``batches``."""
    inputs = {i.name for i in model_inputs(proto)}
    names = sorted(t for t in taps if t not in inputs)
    sess = tapped_session(proto, names) if names else None
    out: dict[str, ChannelStats] = {}
    for done, feeds in enumerate(batches, 1):
        values = {t: feeds[t] for t in taps if t in inputs}
        if sess is not None:
            values.update(zip(names, sess.run(names, feeds)))
        for name, axis in taps.items():
            out.setdefault(name, ChannelStats()).update(values[name], axis)
        if progress is not None:
            progress(done, len(batches))
    return out
