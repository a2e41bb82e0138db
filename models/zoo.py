"""A zoo of small CNN test models built directly with :mod:`onnx.helper`.

Every builder returns a self-contained, valid :class:`onnx.ModelProto` with seeded
float32 weights. The models are deliberately tiny (8..64 channels, inputs of about
3x32x32) so that they run in milliseconds in onnxruntime, yet each one exercises a
specific structural pattern that a channel pruner has to handle: residual adds,
grouped and depthwise convolutions, channel concatenation and splitting,
squeeze-excitation gating, flatten-into-dense heads, up-sampling paths, 1-D and 3-D
convolutions and a long chain of normalisation and activation operators.

Conventions shared by all models:

* the graph input is called ``"input"`` and is NCHW (NCL / NCDHW for the 1-D / 3-D
  nets) with a symbolic batch dimension ``"N"`` and fixed spatial sizes;
* the graph output is called ``"output"`` (a second head, where present, is
  ``"output2"``) and declares its full shape;
* node names are unique and readable (``"layer1.0.conv1"``), initializers are named
  after their node (``"layer1.0.conv1.weight"``);
* weights are He-normal scaled so activations stay O(1); BatchNormalization uses
  random positive variances and random means, scales and biases; biases are non-zero;
* the default opset is 17 with IR version 8. ``norms_and_acts`` uses opset 21 (IR
  version 10) because GroupNormalization, Mish and Gelu need it.

Example:
    >>> from models.zoo import build
    >>> model = build("resnet_basic", seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "DEFAULT_OPSET",
    "ZOO",
    "ModelBuilder",
    "audio_conv1d",
    "build",
    "conv3d_net",
    "densenet_block",
    "efficientnet_se",
    "flatten_gemm_head",
    "inception_like",
    "mobilenet_v2",
    "norms_and_acts",
    "reshape_matmul_head",
    "resnet_basic",
    "resnet_bottleneck",
    "resnext_grouped",
    "unet_like",
    "vgg_like",
    "yolo_like",
]

DEFAULT_OPSET = 17
"""Opset used by every model unless stated otherwise."""

# IR version to pair with each opset; onnxruntime 1.32 loads all of these.
_IR_VERSION_FOR_OPSET: dict[int, int] = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}

# BatchNormalization scale range for the last BN of a residual branch.
_RESIDUAL_GAMMA = (0.2, 0.5)

Dim = int | str
Shape = tuple[Dim, ...]


class ModelBuilder(Protocol):
    """Signature shared by every builder in :data:`ZOO`."""

    def __call__(self, seed: int = 0) -> onnx.ModelProto: ...


def _as_tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    """Broadcasts an int to an ``n``-tuple, or validates a sequence of length ``n``."""
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(f"expected {n} values, got {out}")
    return out


def _broadcast(a: Shape, b: Shape) -> Shape:
    """Numpy-style broadcast of two shapes that may contain symbolic dims."""
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out: list[Dim] = []
    for da, db in zip(a, b):
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ValueError(f"cannot broadcast {a} with {b}")
    return tuple(out)


def _pool_out(size: int, k: int, s: int, p_total: int, d: int = 1) -> int:
    """Output length of a convolution / pooling window (floor mode)."""
    return (size + p_total - d * (k - 1) - 1) // s + 1


class _GraphBuilder:
    """Incrementally builds an ONNX graph while tracking every tensor's shape.

    Each op method appends one or more nodes (plus their initializers) and returns
    the name of the produced tensor. Shapes are tracked with a symbolic batch
    dimension ``"N"`` so that channel counts (``shape[1]``) and spatial sizes are
    always known while the model is being assembled.

    Args:
        name: Graph name.
        seed: Seed of the numpy generator used for every weight.
        opset: Default-domain opset the graph targets.
    """

    def __init__(self, name: str, seed: int, opset: int = DEFAULT_OPSET) -> None:
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[str] = []
        self.value_info: list[str] = []
        self.shapes: dict[str, Shape] = {}
        self._node_names: set[str] = set()
        self._tensor_names: set[str] = set()
        self._scalars: dict[float, str] = {}

    # ------------------------------------------------------------------ bookkeeping
    def shape(self, x: str) -> Shape:
        """Returns the tracked shape of tensor ``x`` (batch dim is ``"N"``)."""
        return self.shapes[x]

    def channels(self, x: str) -> int:
        """Returns the channel count (axis 1) of tensor ``x``."""
        c = self.shapes[x][1]
        assert isinstance(c, int)
        return c

    def _claim_tensor(self, name: str) -> str:
        if name in self._tensor_names:
            raise ValueError(f"duplicate tensor name {name!r}")
        self._tensor_names.add(name)
        return name

    def input(self, shape: Sequence[int], name: str = "input") -> str:
        """Declares a float32 graph input ``[N, *shape]``."""
        full: Shape = ("N", *shape)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(full)))
        self.shapes[self._claim_tensor(name)] = full
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Adds a constant initializer and returns its name."""
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        self.shapes[self._claim_tensor(name)] = tuple(int(d) for d in array.shape)
        return name

    def ints(self, name: str, values: Sequence[int]) -> str:
        """Adds a 1-D int64 initializer (shapes, axes, pads, split sizes...)."""
        return self.initializer(name, np.asarray(list(values), dtype=np.int64))

    def scalar(self, value: float) -> str:
        """Returns a shared float32 scalar initializer holding ``value``."""
        key = float(value)
        if key not in self._scalars:
            label = f"{key:g}".replace("-", "m").replace(".", "p")
            value_array = np.array(key, dtype=np.float32)
            self._scalars[key] = self.initializer(f"const.scalar_{label}", value_array)
        return self._scalars[key]

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        name: str,
        out_shapes: Sequence[Shape],
        **attrs: object,
    ) -> list[str]:
        """Appends a node whose outputs are named ``<name>.out`` / ``<name>.out<i>``."""
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name!r}")
        self._node_names.add(name)
        if len(out_shapes) == 1:
            outputs = [f"{name}.out"]
        else:
            outputs = [f"{name}.out{i}" for i in range(len(out_shapes))]
        for out, shp in zip(outputs, out_shapes):
            self.shapes[self._claim_tensor(out)] = tuple(shp)
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=name, **attrs))
        return outputs

    def _op(self, op: str, inputs: Sequence[str], name: str, shape: Shape, **attrs: object) -> str:
        return self.node(op, inputs, name, [shape], **attrs)[0]

    # ---------------------------------------------------------------- weight helpers
    def _normal(self, shape: Sequence[int], std: float) -> np.ndarray:
        return (self.rng.standard_normal(tuple(shape)) * std).astype(np.float32)

    def _uniform(self, shape: Sequence[int], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, size=tuple(shape)).astype(np.float32)

    def _bias(self, n: int) -> np.ndarray:
        """Non-zero bias: random sign times a magnitude in [0.02, 0.2]."""
        sign = self.rng.choice(np.array([-1.0, 1.0]), size=n)
        return (sign * self.rng.uniform(0.02, 0.2, size=n)).astype(np.float32)

    def _he(self, shape: Sequence[int], fan_in: float) -> np.ndarray:
        return self._normal(shape, math.sqrt(2.0 / fan_in))

    def uniform_const(self, name: str, shape: Sequence[int], low: float, high: float) -> str:
        """Float32 initializer drawn uniformly from ``[low, high)``."""
        return self.initializer(name, self._uniform(shape, low, high))

    def channel_const(self, name: str, x: str, low: float, high: float) -> str:
        """Per-channel constant of shape ``[C, 1, ..., 1]`` broadcastable against ``x``."""
        rank = len(self.shape(x))
        shape = (self.channels(x),) + (1,) * (rank - 2)
        return self.initializer(name, self._uniform(shape, low, high))

    # ------------------------------------------------------------------ convolutions
    def conv(
        self,
        x: str,
        cout: int,
        k: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        group: int = 1,
        bias: bool = False,
        *,
        name: str,
        pad: int | Sequence[int] | None = None,
        dilation: int = 1,
    ) -> str:
        """Conv (1-D, 2-D or 3-D depending on the rank of ``x``); "same" pad by default."""
        xs = self.shape(x)
        cin, nd = self.channels(x), len(xs) - 2
        ks, ss, ds = _as_tuple(k, nd), _as_tuple(stride, nd), _as_tuple(dilation, nd)
        if pad is None:
            ps = tuple(d * (kk - 1) // 2 for kk, d in zip(ks, ds))
        else:
            ps = _as_tuple(pad, nd)
        if cin % group or cout % group:
            raise ValueError(f"{name}: channels {cin}->{cout} not divisible by group {group}")
        fan_in = cin // group * math.prod(ks)
        w = self._he((cout, cin // group, *ks), fan_in)
        inputs = [x, self.initializer(f"{name}.weight", w)]
        if bias:
            inputs.append(self.initializer(f"{name}.bias", self._bias(cout)))
        spatial = tuple(
            _pool_out(int(h), kk, s, 2 * p, d) for h, kk, s, p, d in zip(xs[2:], ks, ss, ps, ds)
        )
        return self._op(
            "Conv",
            inputs,
            name,
            (xs[0], cout, *spatial),
            kernel_shape=list(ks),
            strides=list(ss),
            pads=list(ps) * 2,
            dilations=list(ds),
            group=group,
        )

    def conv_transpose(
        self, x: str, cout: int, k: int = 2, stride: int = 2, bias: bool = True, *, name: str
    ) -> str:
        """ConvTranspose without padding (``k == stride`` gives an exact up-sampling)."""
        xs = self.shape(x)
        cin, nd = self.channels(x), len(xs) - 2
        ks, ss = _as_tuple(k, nd), _as_tuple(stride, nd)
        fan_in = cin * math.prod(ks) / math.prod(ss)
        w = self._he((cin, cout, *ks), fan_in)
        inputs = [x, self.initializer(f"{name}.weight", w)]
        if bias:
            inputs.append(self.initializer(f"{name}.bias", self._bias(cout)))
        spatial = tuple((int(h) - 1) * s + kk for h, kk, s in zip(xs[2:], ks, ss))
        return self._op(
            "ConvTranspose",
            inputs,
            name,
            (xs[0], cout, *spatial),
            kernel_shape=list(ks),
            strides=list(ss),
        )

    # ---------------------------------------------------------------- normalisation
    def bn(
        self,
        x: str,
        *,
        name: str,
        eps: float = 1e-5,
        gamma: tuple[float, float] = (0.5, 1.5),
    ) -> str:
        """BatchNormalization (inference) with random, non-trivial statistics.

        ``gamma`` is the range of the random scale; residual branches use a smaller
        range so that activations stay O(1) across a stack of residual additions.
        """
        c = self.channels(x)
        inputs = [
            x,
            self.initializer(f"{name}.weight", self._uniform((c,), *gamma)),
            self.initializer(f"{name}.bias", self._bias(c)),
            self.initializer(f"{name}.running_mean", self._normal((c,), 0.2)),
            self.initializer(f"{name}.running_var", self._uniform((c,), 0.5, 1.5)),
        ]
        return self._op("BatchNormalization", inputs, name, self.shape(x), epsilon=eps)

    def instance_norm(self, x: str, *, name: str, eps: float = 1e-5) -> str:
        """InstanceNormalization with per-channel scale and bias of shape ``[C]``."""
        c = self.channels(x)
        inputs = [
            x,
            self.initializer(f"{name}.weight", self._uniform((c,), 0.5, 1.5)),
            self.initializer(f"{name}.bias", self._bias(c)),
        ]
        return self._op("InstanceNormalization", inputs, name, self.shape(x), epsilon=eps)

    def group_norm(self, x: str, num_groups: int, *, name: str, eps: float = 1e-5) -> str:
        """GroupNormalization-21 with per-channel scale and bias of shape ``[C]``."""
        if self.opset < 21:
            raise ValueError("GroupNormalization with per-channel scale needs opset >= 21")
        c = self.channels(x)
        inputs = [
            x,
            self.initializer(f"{name}.weight", self._uniform((c,), 0.5, 1.5)),
            self.initializer(f"{name}.bias", self._bias(c)),
        ]
        y = self._op(
            "GroupNormalization", inputs, name, self.shape(x), num_groups=num_groups, epsilon=eps
        )
        # GroupNormalization-21 is a context-dependent function without a type and shape
        # inference function in onnx, so its output type is declared explicitly; otherwise
        # strict shape inference fails on every downstream node.
        self.value_info.append(y)
        return y

    # ------------------------------------------------------------------ activations
    def unary(self, op: str, x: str, *, name: str, **attrs: object) -> str:
        """Any shape-preserving single-input operator (Relu, Tanh, Identity, ...)."""
        return self._op(op, [x], name, self.shape(x), **attrs)

    def relu(self, x: str, *, name: str) -> str:
        """Relu."""
        return self.unary("Relu", x, name=name)

    def sigmoid(self, x: str, *, name: str) -> str:
        """Sigmoid."""
        return self.unary("Sigmoid", x, name=name)

    def clip(self, x: str, low: float, high: float, *, name: str) -> str:
        """Clip with ``min``/``max`` given as (shared) scalar initializer inputs."""
        return self._op("Clip", [x, self.scalar(low), self.scalar(high)], name, self.shape(x))

    def relu6(self, x: str, *, name: str) -> str:
        """ReLU6 written as ``Clip(x, 0, 6)``."""
        return self.clip(x, 0.0, 6.0, name=name)

    def silu(self, x: str, *, name: str) -> str:
        """SiLU / Swish written as ``x * Sigmoid(x)`` (nodes ``<name>.sigmoid``, ``<name>.mul``)."""
        s = self.sigmoid(x, name=f"{name}.sigmoid")
        return self.mul(x, s, name=f"{name}.mul")

    def hardswish(self, x: str, *, name: str) -> str:
        """HardSwish."""
        return self.unary("HardSwish", x, name=name)

    def hardsigmoid(
        self, x: str, *, name: str, alpha: float = 1.0 / 6.0, beta: float = 0.5
    ) -> str:
        """HardSigmoid (PyTorch ``hardsigmoid`` coefficients by default)."""
        return self.unary("HardSigmoid", x, name=name, alpha=alpha, beta=beta)

    def leaky_relu(self, x: str, alpha: float = 0.1, *, name: str) -> str:
        """LeakyRelu."""
        return self.unary("LeakyRelu", x, name=name, alpha=alpha)

    def prelu(self, x: str, *, name: str) -> str:
        """PRelu with a per-channel slope of shape ``[C, 1, ..., 1]``."""
        slope = self.channel_const(f"{name}.slope", x, 0.05, 0.3)
        return self._op("PRelu", [x, slope], name, self.shape(x))

    # ----------------------------------------------------------------- elementwise
    def binary(self, op: str, a: str, b: str, *, name: str) -> str:
        """Broadcasting binary operator (Add, Mul, Sub, Div, ...)."""
        return self._op(op, [a, b], name, _broadcast(self.shape(a), self.shape(b)))

    def add(self, a: str, b: str, *, name: str) -> str:
        """Add."""
        return self.binary("Add", a, b, name=name)

    def mul(self, a: str, b: str, *, name: str) -> str:
        """Mul."""
        return self.binary("Mul", a, b, name=name)

    # --------------------------------------------------------------------- pooling
    def _pool(
        self, op: str, x: str, k: int, stride: int | None, pad: int, *, name: str
    ) -> str:
        xs = self.shape(x)
        nd = len(xs) - 2
        s = k if stride is None else stride
        spatial = tuple(_pool_out(int(h), k, s, 2 * pad) for h in xs[2:])
        return self._op(
            op,
            [x],
            name,
            (*xs[:2], *spatial),
            kernel_shape=[k] * nd,
            strides=[s] * nd,
            pads=[pad] * (2 * nd),
        )

    def maxpool(
        self, x: str, k: int = 2, stride: int | None = None, pad: int = 0, *, name: str
    ) -> str:
        """MaxPool (stride defaults to the kernel size)."""
        return self._pool("MaxPool", x, k, stride, pad, name=name)

    def avgpool(
        self, x: str, k: int = 2, stride: int | None = None, pad: int = 0, *, name: str
    ) -> str:
        """AveragePool (stride defaults to the kernel size)."""
        return self._pool("AveragePool", x, k, stride, pad, name=name)

    def _global_pool(self, op: str, x: str, *, name: str) -> str:
        xs = self.shape(x)
        return self._op(op, [x], name, (*xs[:2], *([1] * (len(xs) - 2))))

    def gap(self, x: str, *, name: str) -> str:
        """GlobalAveragePool."""
        return self._global_pool("GlobalAveragePool", x, name=name)

    def gmp(self, x: str, *, name: str) -> str:
        """GlobalMaxPool."""
        return self._global_pool("GlobalMaxPool", x, name=name)

    def reduce(
        self, op: str, x: str, axes: Sequence[int], keepdims: bool = True, *, name: str
    ) -> str:
        """ReduceMean / ReduceMax; axes as attribute before opset 18, as input from 18 on."""
        xs = self.shape(x)
        axes = [a % len(xs) for a in axes]
        if keepdims:
            out: Shape = tuple(1 if i in axes else d for i, d in enumerate(xs))
        else:
            out = tuple(d for i, d in enumerate(xs) if i not in axes)
        if self.opset >= 18:
            axes_input = self.ints(f"{name}.axes", axes)
            return self._op(op, [x, axes_input], name, out, keepdims=int(keepdims))
        return self._op(op, [x], name, out, axes=axes, keepdims=int(keepdims))

    # ------------------------------------------------------------ shape manipulation
    def concat(self, xs: Sequence[str], axis: int = 1, *, name: str) -> str:
        """Concat along ``axis`` (channels by default)."""
        shapes = [self.shape(x) for x in xs]
        total = sum(int(s[axis]) for s in shapes)
        out = tuple(total if i == axis else d for i, d in enumerate(shapes[0]))
        return self._op("Concat", list(xs), name, out, axis=axis)

    def split(self, x: str, sizes: Sequence[int], axis: int = 1, *, name: str) -> list[str]:
        """Split along ``axis`` with the split sizes given as an int64 initializer input."""
        xs = self.shape(x)
        if sum(sizes) != xs[axis]:
            raise ValueError(f"{name}: split sizes {sizes} do not add up to {xs[axis]}")
        outs = [tuple(s if i == axis else d for i, d in enumerate(xs)) for s in sizes]
        return self.node("Split", [x, self.ints(f"{name}.split", sizes)], name, outs, axis=axis)

    def slice(self, x: str, start: int, end: int, axis: int = 1, *, name: str) -> str:
        """Slice ``[start:end]`` on one axis (starts/ends/axes as int64 initializers)."""
        xs = self.shape(x)
        out = tuple(end - start if i == axis else d for i, d in enumerate(xs))
        inputs = [
            x,
            self.ints(f"{name}.starts", [start]),
            self.ints(f"{name}.ends", [end]),
            self.ints(f"{name}.axes", [axis]),
        ]
        return self._op("Slice", inputs, name, out)

    def flatten(self, x: str, *, name: str) -> str:
        """Flatten(axis=1): ``[N, C, H, W] -> [N, C*H*W]``."""
        xs = self.shape(x)
        return self._op("Flatten", [x], name, (xs[0], math.prod(int(d) for d in xs[1:])), axis=1)

    def reshape(self, x: str, target: Sequence[int], *, name: str) -> str:
        """Reshape with a constant target shape (``0`` copies, ``-1`` infers)."""
        xs = self.shape(x)
        dims: list[Dim] = [xs[i] if t == 0 else t for i, t in enumerate(target)]
        if -1 in dims:
            known = math.prod(int(d) for d in dims if isinstance(d, int) and d != -1)
            total = math.prod(int(d) for d in xs if isinstance(d, int))
            dims[dims.index(-1)] = total // known
        return self._op("Reshape", [x, self.ints(f"{name}.shape", target)], name, tuple(dims))

    def squeeze(self, x: str, axes: Sequence[int], *, name: str) -> str:
        """Squeeze with axes as an int64 initializer input."""
        xs = self.shape(x)
        out = tuple(d for i, d in enumerate(xs) if i not in axes)
        return self._op("Squeeze", [x, self.ints(f"{name}.axes", axes)], name, out)

    def unsqueeze(self, x: str, axes: Sequence[int], *, name: str) -> str:
        """Unsqueeze with axes as an int64 initializer input."""
        out = list(self.shape(x))
        for a in sorted(axes):
            out.insert(a, 1)
        return self._op("Unsqueeze", [x, self.ints(f"{name}.axes", axes)], name, tuple(out))

    def transpose(self, x: str, perm: Sequence[int], *, name: str) -> str:
        """Transpose."""
        xs = self.shape(x)
        return self._op("Transpose", [x], name, tuple(xs[p] for p in perm), perm=list(perm))

    def pad(self, x: str, pads: Sequence[int], value: float = 0.0, *, name: str) -> str:
        """Constant-mode Pad; ``pads`` is ``[begin..., end...]`` over all axes."""
        xs = self.shape(x)
        r = len(xs)
        out = tuple(
            d if isinstance(d, str) else d + pads[i] + pads[i + r] for i, d in enumerate(xs)
        )
        inputs = [x, self.ints(f"{name}.pads", pads), self.scalar(value)]
        return self._op("Pad", inputs, name, out, mode="constant")

    def resize(self, x: str, scales: Sequence[float], *, name: str, mode: str = "nearest") -> str:
        """Resize by constant ``scales`` (no roi, no sizes)."""
        xs = self.shape(x)
        out = tuple(d if isinstance(d, str) else int(math.floor(d * s)) for d, s in zip(xs, scales))
        sc = self.initializer(f"{name}.scales", np.asarray(scales, dtype=np.float32))
        return self._op("Resize", [x, "", sc], name, out, mode=mode)

    # --------------------------------------------------------------------- dense
    def gemm(self, x: str, nout: int, *, name: str, gain: float = 2.0) -> str:
        """Gemm with ``transB=1`` (weight ``[out, in]``) and a bias ``[out]``."""
        nin = int(self.shape(x)[1])
        w = self._normal((nout, nin), math.sqrt(gain / nin))
        inputs = [
            x,
            self.initializer(f"{name}.weight", w),
            self.initializer(f"{name}.bias", self._bias(nout)),
        ]
        return self._op("Gemm", inputs, name, (self.shape(x)[0], nout), transB=1)

    def dense(self, x: str, nout: int, *, name: str, gain: float = 2.0) -> str:
        """Keras-style Dense: ``MatMul`` by a constant ``[in, out]`` kernel, then ``Add`` bias."""
        xs = self.shape(x)
        nin = int(xs[-1])
        w = self._normal((nin, nout), math.sqrt(gain / nin))
        kernel = self.initializer(f"{name}.kernel", w)
        mm = self._op("MatMul", [x, kernel], f"{name}.matmul", (*xs[:-1], nout))
        return self.add(mm, self.initializer(f"{name}.bias", self._bias(nout)), name=f"{name}.add")

    # --------------------------------------------------------------------- output
    def output(self, x: str, name: str = "output") -> str:
        """Marks tensor ``x`` as a graph output, renaming it to ``name``."""
        if x not in self.shapes or any(x == i.name for i in self.inputs):
            raise ValueError(f"{x!r} is not a node output")
        for node in self.nodes:
            for seq in (node.input, node.output):
                for i, t in enumerate(seq):
                    if t == x:
                        seq[i] = name
        self.value_info = [name if v == x else v for v in self.value_info]
        self._tensor_names.discard(x)
        self.shapes[self._claim_tensor(name)] = self.shapes.pop(x)
        self.outputs.append(name)
        return name

    def build(self, doc: str = "") -> onnx.ModelProto:
        """Assembles the :class:`onnx.ModelProto`."""
        outputs = [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, list(self.shapes[o]))
            for o in self.outputs
        ]
        value_info = [
            helper.make_tensor_value_info(v, TensorProto.FLOAT, list(self.shapes[v]))
            for v in self.value_info
            if v not in self.outputs
        ]
        graph = helper.make_graph(
            self.nodes,
            self.name,
            self.inputs,
            outputs,
            self.initializers,
            doc_string=doc,
            value_info=value_info,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=_IR_VERSION_FOR_OPSET[self.opset],
            producer_name="onnxprune.models.zoo",
            doc_string=doc,
        )
        return model

    # ------------------------------------------------------------ common composites
    def conv_bn_act(
        self,
        x: str,
        cout: int,
        k: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        group: int = 1,
        *,
        name: str,
        act: str | None = "relu",
        pad: int | Sequence[int] | None = None,
        gamma: tuple[float, float] = (0.5, 1.5),
    ) -> str:
        """``Conv(bias=False) -> BatchNormalization -> activation``.

        Nodes are named ``<name>.conv``, ``<name>.bn`` and ``<name>.act``;
        ``act`` is one of ``"relu"``, ``"relu6"``, ``"silu"``, ``"hardswish"`` or ``None``.
        """
        y = self.conv(x, cout, k, stride, group, bias=False, name=f"{name}.conv", pad=pad)
        y = self.bn(y, name=f"{name}.bn", gamma=gamma)
        return self._act(y, act, name=f"{name}.act")

    def _act(self, x: str, act: str | None, *, name: str) -> str:
        if act is None:
            return x
        if act == "relu":
            return self.relu(x, name=name)
        if act == "relu6":
            return self.relu6(x, name=name)
        if act == "silu":
            return self.silu(x, name=name)
        if act == "hardswish":
            return self.hardswish(x, name=name)
        raise ValueError(f"unknown activation {act!r}")

    def classifier(self, x: str, num_classes: int = 10, *, name: str = "fc") -> str:
        """``GlobalAveragePool -> Flatten -> Gemm`` head; returns the logits tensor."""
        y = self.gap(x, name="avgpool")
        y = self.flatten(y, name="flatten")
        return self.gemm(y, num_classes, name=name, gain=1.0)


# =============================================================================== builders


def vgg_like(seed: int = 0) -> onnx.ModelProto:
    """VGG-style plain network with a flatten-into-dense head.

    Exercises Conv/BN/Relu stacks, MaxPool and a ``Flatten`` of a ``32 x 4 x 4``
    feature map into ``Gemm(transB=1) -> Relu -> Gemm``; every conv channel of the
    last stage expands to 16 consecutive input features of the first Gemm.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("vgg_like", seed)
    x = b.input((3, 32, 32))
    idx = 0
    for stage, (width, n_convs) in enumerate([(16, 2), (32, 2), (32, 1)]):
        for _ in range(n_convs):
            x = b.conv(x, width, 3, bias=True, name=f"features.{idx}.conv")
            x = b.bn(x, name=f"features.{idx}.bn")
            x = b.relu(x, name=f"features.{idx}.relu")
            idx += 1
        x = b.maxpool(x, 2, name=f"features.pool{stage}")
    x = b.flatten(x, name="flatten")  # 32 * 4 * 4 = 512 features
    x = b.gemm(x, 64, name="classifier.0")
    x = b.relu(x, name="classifier.1")
    x = b.gemm(x, 10, name="classifier.2", gain=1.0)
    b.output(x)
    return b.build("VGG-like Conv/BN/Relu stacks with a Flatten -> Gemm -> Relu -> Gemm head.")


def _basic_block(b: _GraphBuilder, x: str, cout: int, stride: int, *, name: str) -> str:
    """ResNet basic block; projection shortcut when the shape changes."""
    y = b.conv(x, cout, 3, stride, name=f"{name}.conv1")
    y = b.bn(y, name=f"{name}.bn1")
    y = b.relu(y, name=f"{name}.relu1")
    y = b.conv(y, cout, 3, name=f"{name}.conv2")
    y = b.bn(y, name=f"{name}.bn2", gamma=_RESIDUAL_GAMMA)
    shortcut = x
    if stride != 1 or b.channels(x) != cout:
        shortcut = b.conv(x, cout, 1, stride, name=f"{name}.downsample.0")
        shortcut = b.bn(shortcut, name=f"{name}.downsample.1")
    y = b.add(y, shortcut, name=f"{name}.add")
    return b.relu(y, name=f"{name}.relu2")


def resnet_basic(seed: int = 0) -> onnx.ModelProto:
    """Small ResNet with basic blocks.

    Exercises residual ``Add`` with identity shortcuts (channels of both Add inputs
    must be pruned together) and projection shortcuts (1x1 stride-2 conv + BN), then a
    ``GlobalAveragePool -> Flatten -> Gemm`` head.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("resnet_basic", seed)
    x = b.input((3, 32, 32))
    x = b.conv(x, 16, 3, name="conv1")
    x = b.bn(x, name="bn1")
    x = b.relu(x, name="relu")
    x = _basic_block(b, x, 16, 1, name="layer1.0")
    x = _basic_block(b, x, 32, 2, name="layer2.0")
    x = _basic_block(b, x, 32, 1, name="layer2.1")
    x = _basic_block(b, x, 64, 2, name="layer3.0")
    b.output(b.classifier(x))
    return b.build("ResNet basic blocks with identity and projection shortcuts.")


def _bottleneck(b: _GraphBuilder, x: str, width: int, stride: int, *, name: str) -> str:
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1 expand x4); projection when needed."""
    cout = width * 4
    y = b.conv(x, width, 1, name=f"{name}.conv1")
    y = b.bn(y, name=f"{name}.bn1")
    y = b.relu(y, name=f"{name}.relu1")
    y = b.conv(y, width, 3, stride, name=f"{name}.conv2")
    y = b.bn(y, name=f"{name}.bn2")
    y = b.relu(y, name=f"{name}.relu2")
    y = b.conv(y, cout, 1, name=f"{name}.conv3")
    y = b.bn(y, name=f"{name}.bn3", gamma=_RESIDUAL_GAMMA)
    shortcut = x
    if stride != 1 or b.channels(x) != cout:
        shortcut = b.conv(x, cout, 1, stride, name=f"{name}.downsample.0")
        shortcut = b.bn(shortcut, name=f"{name}.downsample.1")
    y = b.add(y, shortcut, name=f"{name}.add")
    return b.relu(y, name=f"{name}.relu3")


def resnet_bottleneck(seed: int = 0) -> onnx.ModelProto:
    """Small ResNet with bottleneck blocks.

    Exercises the 1x1 reduce -> 3x3 -> 1x1 expand (x4) pattern: the inner widths are
    freely prunable while the expanded width is tied to the shortcut. Contains
    projection shortcuts (stride 1 and stride 2) and an identity shortcut.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("resnet_bottleneck", seed)
    x = b.input((3, 32, 32))
    x = b.conv(x, 16, 3, name="conv1")
    x = b.bn(x, name="bn1")
    x = b.relu(x, name="relu")
    x = b.maxpool(x, 3, 2, 1, name="maxpool")  # 16 x 16
    x = _bottleneck(b, x, 8, 1, name="layer1.0")  # 16 -> 32, projection
    x = _bottleneck(b, x, 8, 1, name="layer1.1")  # identity
    x = _bottleneck(b, x, 16, 2, name="layer2.0")  # 32 -> 64, stride-2 projection
    b.output(b.classifier(x))
    return b.build("ResNet bottleneck blocks with projection and identity shortcuts.")


def _inverted_residual(
    b: _GraphBuilder,
    x: str,
    cout: int,
    expand: int,
    stride: int,
    *,
    name: str,
    dw_multiplier: int = 1,
) -> str:
    """MobileNetV2 inverted residual; residual Add when input and output shapes match."""
    cin = b.channels(x)
    y = x
    i = 0
    if expand != 1:
        y = b.conv_bn_act(y, cin * expand, 1, name=f"{name}.conv.{i}", act="relu6")
        i += 1
    hidden = b.channels(y)
    y = b.conv_bn_act(
        y, hidden * dw_multiplier, 3, stride, group=hidden, name=f"{name}.conv.{i}", act="relu6"
    )
    y = b.conv(y, cout, 1, name=f"{name}.conv.{i + 1}")
    y = b.bn(y, name=f"{name}.conv.{i + 2}", gamma=_RESIDUAL_GAMMA)
    if stride == 1 and cin == cout:
        y = b.add(x, y, name=f"{name}.add")
    return y


def mobilenet_v2(seed: int = 0) -> onnx.ModelProto:
    """Small MobileNetV2.

    Exercises inverted residual blocks: 1x1 expand, depthwise 3x3 (``group ==
    channels``), ReLU6 as ``Clip(x, 0, 6)`` with min/max inputs, linear 1x1 projection
    and a residual ``Add`` when shapes match. One depthwise conv has channel
    multiplier 2 (``group = C_in``, ``C_out = 2 * C_in``), so each input channel owns
    two output channels.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("mobilenet_v2", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 16, 3, 2, name="features.0", act="relu6")  # 16 x 16
    x = _inverted_residual(b, x, 8, 1, 1, name="features.1")
    x = _inverted_residual(b, x, 16, 6, 2, name="features.2")  # 8 x 8
    x = _inverted_residual(b, x, 16, 4, 1, name="features.3")  # residual
    x = _inverted_residual(b, x, 24, 2, 1, name="features.4", dw_multiplier=2)  # 32 -> 64 dw
    x = _inverted_residual(b, x, 24, 2, 1, name="features.5")  # residual
    x = b.conv_bn_act(x, 64, 1, name="features.6", act="relu6")
    b.output(b.classifier(x, name="classifier"))
    return b.build("MobileNetV2 inverted residuals with depthwise convs and ReLU6 as Clip.")


def densenet_block(seed: int = 0) -> onnx.ModelProto:
    """DenseNet-BC style dense block plus transition.

    Exercises dense connectivity: layer ``i`` consumes ``Concat(axis=1)`` of the stem
    output and all previous layer outputs (pre-activation BN -> Relu -> Conv), so each
    feature map appears at a different channel offset in several concats. A
    transition (BN, Relu, 1x1 conv, AveragePool) follows, then a GAP head.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("densenet_block", seed)
    growth, bottleneck = 8, 16
    x = b.input((3, 32, 32))
    x = b.conv(x, 16, 3, name="features.conv0")
    features = [x]
    for i in range(1, 4):
        name = f"features.denseblock1.denselayer{i}"
        y = features[0] if len(features) == 1 else b.concat(features, name=f"{name}.concat")
        y = b.bn(y, name=f"{name}.norm1")
        y = b.relu(y, name=f"{name}.relu1")
        y = b.conv(y, bottleneck, 1, name=f"{name}.conv1")
        y = b.bn(y, name=f"{name}.norm2")
        y = b.relu(y, name=f"{name}.relu2")
        y = b.conv(y, growth, 3, name=f"{name}.conv2")
        features.append(y)
    x = b.concat(features, name="features.denseblock1.concat")  # 16 + 3 * 8 = 40
    x = b.bn(x, name="features.transition1.norm")
    x = b.relu(x, name="features.transition1.relu")
    x = b.conv(x, 20, 1, name="features.transition1.conv")
    x = b.avgpool(x, 2, name="features.transition1.pool")  # 16 x 16
    x = b.bn(x, name="features.norm5")
    x = b.relu(x, name="features.relu5")
    b.output(b.classifier(x, name="classifier"))
    return b.build("DenseNet dense block (Concat of all previous features) and transition.")


def _squeeze_excite(
    b: _GraphBuilder,
    x: str,
    reduced: int,
    *,
    name: str,
    style: str = "efficientnet",
    pool: str = "gap",
) -> str:
    """Squeeze-excitation gate: pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> Mul.

    ``style="efficientnet"`` uses SiLU and Sigmoid, ``style="mobilenetv3"`` uses Relu
    and HardSigmoid. ``pool`` is ``"gap"`` (GlobalAveragePool) or ``"reducemean"``
    (ReduceMean over axes [2, 3] with keepdims=1).
    """
    c = b.channels(x)
    if pool == "gap":
        s = b.gap(x, name=f"{name}.avgpool")
    else:
        s = b.reduce("ReduceMean", x, [2, 3], keepdims=True, name=f"{name}.avgpool")
    s = b.conv(s, reduced, 1, bias=True, name=f"{name}.fc1")
    if style == "efficientnet":
        s = b.silu(s, name=f"{name}.act")
        s = b.conv(s, c, 1, bias=True, name=f"{name}.fc2")
        s = b.sigmoid(s, name=f"{name}.gate")
    else:
        s = b.relu(s, name=f"{name}.act")
        s = b.conv(s, c, 1, bias=True, name=f"{name}.fc2")
        s = b.hardsigmoid(s, name=f"{name}.gate")
    return b.mul(x, s, name=f"{name}.scale")  # [N, C, H, W] * [N, C, 1, 1]


def _mbconv(
    b: _GraphBuilder,
    x: str,
    cout: int,
    expand: int,
    k: int,
    stride: int,
    *,
    name: str,
    act: str = "silu",
    se_style: str = "efficientnet",
    se_pool: str = "gap",
) -> str:
    """MBConv: 1x1 expand -> depthwise kxk -> SE -> 1x1 project (+ residual)."""
    cin = b.channels(x)
    hidden = cin * expand
    y = b.conv_bn_act(x, hidden, 1, name=f"{name}.expand", act=act)
    y = b.conv_bn_act(y, hidden, k, stride, group=hidden, name=f"{name}.dwconv", act=act)
    y = _squeeze_excite(b, y, max(4, cin // 4), name=f"{name}.se", style=se_style, pool=se_pool)
    y = b.conv_bn_act(y, cout, 1, name=f"{name}.project", act=None, gamma=_RESIDUAL_GAMMA)
    if stride == 1 and cin == cout:
        y = b.add(x, y, name=f"{name}.add")
    return y


def efficientnet_se(seed: int = 0) -> onnx.ModelProto:
    """EfficientNet / MobileNetV3 style MBConv blocks with squeeze-excitation.

    Exercises SiLU written as ``x * Sigmoid(x)`` and SE gating, where an
    ``[N, C, 1, 1]`` gate computed by GAP -> 1x1 conv reduce -> SiLU -> 1x1 conv
    expand -> Sigmoid multiplies the ``[N, C, H, W]`` feature (the expand conv's
    output channels are tied to the gated feature's channels). One SE block pools with
    ``ReduceMean(axes=[2, 3], keepdims=1)`` instead of GlobalAveragePool, and one
    MobileNetV3 style block uses HardSwish and an SE gate with HardSigmoid.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("efficientnet_se", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 16, 3, 2, name="stem", act="silu")  # 16 x 16
    x = _mbconv(b, x, 16, 4, 3, 1, name="blocks.0")  # residual, SE with GAP
    x = _mbconv(b, x, 24, 4, 3, 2, name="blocks.1", se_pool="reducemean")  # 8 x 8
    x = _mbconv(
        b, x, 24, 3, 5, 1, name="blocks.2", act="hardswish", se_style="mobilenetv3"
    )  # residual, MobileNetV3 style
    x = b.conv_bn_act(x, 64, 1, name="head", act="hardswish")
    b.output(b.classifier(x, name="classifier"))
    return b.build("MBConv blocks with squeeze-excitation, SiLU as x*Sigmoid(x) and HardSwish.")


def _inception_module(
    b: _GraphBuilder,
    x: str,
    c1: int,
    c3r: int,
    c3: int,
    c5r: int,
    c5: int,
    cp: int,
    *,
    name: str,
) -> str:
    """GoogLeNet inception module; the four branches are concatenated on axis 1."""
    b1 = b.conv_bn_act(x, c1, 1, name=f"{name}.branch1")
    b2 = b.conv_bn_act(x, c3r, 1, name=f"{name}.branch2.0")
    b2 = b.conv_bn_act(b2, c3, 3, name=f"{name}.branch2.1")
    b3 = b.conv_bn_act(x, c5r, 1, name=f"{name}.branch3.0")
    b3 = b.conv_bn_act(b3, c5, 5, name=f"{name}.branch3.1")
    b4 = b.maxpool(x, 3, 1, 1, name=f"{name}.branch4.pool")
    b4 = b.conv_bn_act(b4, cp, 1, name=f"{name}.branch4.1")
    return b.concat([b1, b2, b3, b4], name=f"{name}.concat")


def inception_like(seed: int = 0) -> onnx.ModelProto:
    """GoogLeNet-style network with two inception modules.

    Exercises parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 5x5; MaxPool 3x3/s1/p1 ->
    1x1) whose outputs are concatenated on axis 1 at different channel offsets, with a
    3x3 conv consuming the first concat and the second concat feeding the head.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("inception_like", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 16, 3, name="conv1")
    x = b.maxpool(x, 2, name="maxpool1")  # 16 x 16
    x = _inception_module(b, x, 8, 8, 12, 4, 6, 6, name="inception3a")  # 32 channels
    x = b.conv_bn_act(x, 32, 3, name="conv2")
    x = b.maxpool(x, 2, name="maxpool2")  # 8 x 8
    x = _inception_module(b, x, 16, 12, 16, 4, 8, 8, name="inception3b")  # 48 channels
    b.output(b.classifier(x))
    return b.build("Inception modules: parallel branches concatenated on the channel axis.")


def unet_like(seed: int = 0) -> onnx.ModelProto:
    """Small U-Net for segmentation.

    Exercises an encoder (convs + MaxPool, with one explicit constant ``Pad`` on the
    spatial axes before an unpadded conv), a decoder with one ``ConvTranspose``
    (stride 2) up-step and one ``Resize`` (nearest, scales ``[1, 1, 2, 2]``) up-step,
    skip connections concatenated with the up-sampled features, and a final 1x1 conv
    to 2 classes that keeps the spatial map.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 2, 32, 32]``.
    """
    b = _GraphBuilder("unet_like", seed)
    x = b.input((3, 32, 32))
    # Encoder.
    x = b.conv_bn_act(x, 8, 3, name="enc1.0")
    skip1 = b.conv_bn_act(x, 8, 3, name="enc1.1")  # 8 x 32 x 32
    x = b.maxpool(skip1, 2, name="pool1")
    x = b.pad(x, [0, 0, 1, 1, 0, 0, 1, 1], name="enc2.pad")
    x = b.conv_bn_act(x, 16, 3, name="enc2.0", pad=0)
    skip2 = b.conv_bn_act(x, 16, 3, name="enc2.1")  # 16 x 16 x 16
    x = b.maxpool(skip2, 2, name="pool2")
    x = b.conv_bn_act(x, 32, 3, name="bottleneck.0")
    x = b.conv_bn_act(x, 32, 3, name="bottleneck.1")  # 32 x 8 x 8
    # Decoder: transposed-conv up-step.
    x = b.conv_transpose(x, 16, 2, 2, name="up2.convt")  # 16 x 16 x 16
    x = b.concat([skip2, x], name="up2.concat")
    x = b.conv_bn_act(x, 16, 3, name="dec2.0")
    x = b.conv_bn_act(x, 16, 3, name="dec2.1")
    # Decoder: resize up-step.
    x = b.resize(x, [1.0, 1.0, 2.0, 2.0], name="up1.resize")  # 16 x 32 x 32
    x = b.conv(x, 8, 1, bias=True, name="up1.conv")
    x = b.concat([skip1, x], name="up1.concat")
    x = b.conv_bn_act(x, 8, 3, name="dec1.0")
    x = b.conv_bn_act(x, 8, 3, name="dec1.1")
    x = b.conv(x, 2, 1, bias=True, name="head")
    b.output(x)
    return b.build("U-Net with ConvTranspose and Resize up-steps, Concat skips and a Pad.")


def _c2f(b: _GraphBuilder, x: str, cout: int, n: int, *, name: str) -> str:
    """YOLOv8 C2f block: cv1 -> Split -> n bottlenecks -> Concat -> cv2."""
    hidden = cout // 2
    y = b.conv_bn_act(x, 2 * hidden, 1, name=f"{name}.cv1", act="silu")
    parts = b.split(y, [hidden, hidden], name=f"{name}.split")
    cur = parts[1]
    for i in range(n):
        m = b.conv_bn_act(cur, hidden, 3, name=f"{name}.m.{i}.cv1", act="silu")
        m = b.conv_bn_act(m, hidden, 3, name=f"{name}.m.{i}.cv2", act="silu", gamma=_RESIDUAL_GAMMA)
        cur = b.add(cur, m, name=f"{name}.m.{i}.add")
        parts.append(cur)
    y = b.concat(parts, name=f"{name}.concat")
    return b.conv_bn_act(y, cout, 1, name=f"{name}.cv2", act="silu")


def yolo_like(seed: int = 0) -> onnx.ModelProto:
    """YOLOv8-style backbone with a C2f block and two detection heads.

    Exercises ``Split(axis=1)`` with split sizes given as an initializer input, a
    ``Concat`` of both split halves and every bottleneck output, SiLU as
    ``x * Sigmoid(x)``, and a channel-axis ``Slice`` (starts/ends/axes initializers)
    taking the middle channels of a feature map into a side branch that is
    concatenated back with the full map. Two outputs, one per head.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and outputs ``output`` ``[N, 18, 8, 8]``
        and ``output2`` ``[N, 18, 4, 4]``.
    """
    b = _GraphBuilder("yolo_like", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 16, 3, 2, name="model.0", act="silu")  # 16 x 16
    x = b.conv_bn_act(x, 32, 3, 2, name="model.1", act="silu")  # 8 x 8
    p3 = _c2f(b, x, 32, 2, name="model.2")
    p4 = b.conv_bn_act(p3, 64, 3, 2, name="model.3", act="silu")  # 64 x 4 x 4
    side = b.slice(p4, 16, 48, name="model.4.slice")
    side = b.conv_bn_act(side, 32, 3, name="model.4.cv", act="silu")
    p4 = b.concat([p4, side], name="model.4.concat")  # 96 channels
    # Heads.
    h3 = b.conv_bn_act(p3, 32, 3, name="head.p3.0", act="silu")
    h3 = b.conv(h3, 18, 1, bias=True, name="head.p3.1")
    h4 = b.conv_bn_act(p4, 32, 3, name="head.p4.0", act="silu")
    h4 = b.conv(h4, 18, 1, bias=True, name="head.p4.1")
    b.output(h3, "output")
    b.output(h4, "output2")
    return b.build("YOLOv8-like C2f block (Split/Concat), channel Slice branch, two heads.")


def _resnext_block(
    b: _GraphBuilder, x: str, stride: int, *, name: str, width: int = 32, cout: int = 64
) -> str:
    """ResNeXt block: 1x1 -> grouped 3x3 (group=4) -> 1x1, residual Add, Relu."""
    y = b.conv_bn_act(x, width, 1, name=f"{name}.conv1")
    y = b.conv_bn_act(y, width, 3, stride, group=4, name=f"{name}.conv2")
    y = b.conv_bn_act(y, cout, 1, name=f"{name}.conv3", act=None, gamma=_RESIDUAL_GAMMA)
    shortcut = x
    if stride != 1 or b.channels(x) != cout:
        shortcut = b.conv_bn_act(x, cout, 1, stride, name=f"{name}.downsample", act=None)
    y = b.add(y, shortcut, name=f"{name}.add")
    return b.relu(y, name=f"{name}.relu")


def resnext_grouped(seed: int = 0) -> onnx.ModelProto:
    """Small ResNeXt with grouped 3x3 convolutions.

    Exercises ``1x1 conv -> grouped 3x3 conv (group=4, 32 -> 32) -> 1x1 conv`` with a
    residual ``Add`` (projection shortcuts in the first and third blocks, identity in
    the second); pruning the grouped conv must keep the channel count divisible by 4 and
    remove channels group-consistently.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("resnext_grouped", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 32, 3, 2, name="stem")  # 16 x 16
    x = _resnext_block(b, x, 1, name="layer1.0")  # 32 -> 64, projection shortcut
    x = _resnext_block(b, x, 1, name="layer1.1")  # identity shortcut
    x = _resnext_block(b, x, 2, name="layer2.0")  # 8 x 8, stride-2 projection
    b.output(b.classifier(x))
    return b.build("ResNeXt blocks with grouped 3x3 convolutions (group=4) and residual Add.")


def flatten_gemm_head(seed: int = 0) -> onnx.ModelProto:
    """Conv stack ending in ``Reshape([0, -1]) -> Gemm``.

    Exercises a Reshape (shape initializer ``[0, -1]``) that flattens a
    ``16 x 8 x 8`` map, so each conv channel maps to 64 consecutive Gemm inputs.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("flatten_gemm_head", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 8, 3, 2, name="features.0")  # 16 x 16
    x = b.conv_bn_act(x, 16, 3, 2, name="features.1")  # 8 x 8
    x = b.reshape(x, [0, -1], name="reshape")  # 1024 features
    x = b.gemm(x, 32, name="fc1")
    x = b.relu(x, name="fc1.relu")
    x = b.gemm(x, 10, name="fc2", gain=1.0)
    b.output(x)
    return b.build("Conv stack with a Reshape([0, -1]) -> Gemm head.")


def reshape_matmul_head(seed: int = 0) -> onnx.ModelProto:
    """Conv stack ending in a Keras-style dense head.

    Exercises ``Flatten -> MatMul`` by a constant ``[in, out]`` kernel followed by an
    ``Add`` of the bias (rows of the kernel, not columns, belong to conv channels),
    twice in a row.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("reshape_matmul_head", seed)
    x = b.input((3, 32, 32))
    x = b.conv_bn_act(x, 8, 3, 2, name="conv2d")  # 16 x 16
    x = b.conv_bn_act(x, 16, 3, 2, name="conv2d_1")  # 8 x 8
    x = b.maxpool(x, 2, name="max_pooling2d")  # 4 x 4
    x = b.flatten(x, name="flatten")  # 256 features
    x = b.dense(x, 32, name="dense")
    x = b.relu(x, name="dense.relu")
    x = b.dense(x, 10, name="dense_1", gain=1.0)
    b.output(x)
    return b.build("Conv stack with Flatten -> MatMul + Add (Keras Dense) head.")


def audio_conv1d(seed: int = 0) -> onnx.ModelProto:
    """1-D convolutional audio classifier.

    Exercises Conv1d stacks with BN/Relu on ``[N, C, L]`` tensors, a depthwise
    Conv1d, LeakyRelu, PRelu with a per-channel slope of shape ``[C, 1]``,
    InstanceNormalization, a GlobalAveragePool squeeze path and a ``ReduceMean`` over
    time (keepdims=0) feeding a Gemm head.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 1, 400]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("audio_conv1d", seed)
    x = b.input((1, 400))
    x = b.conv_bn_act(x, 16, 9, 4, name="conv.0")  # 16 x 100
    x = b.conv(x, 32, 5, 2, name="conv.1.conv")  # 32 x 50
    x = b.bn(x, name="conv.1.bn")
    x = b.leaky_relu(x, 0.1, name="conv.1.act")
    x = b.conv(x, 32, 3, group=32, name="conv.2.dwconv")
    x = b.bn(x, name="conv.2.bn")
    x = b.prelu(x, name="conv.2.act")
    x = b.conv(x, 32, 1, bias=True, name="conv.3.pwconv")
    x = b.instance_norm(x, name="conv.3.norm")
    x = b.relu(x, name="conv.3.act")
    # Channel gate from a GlobalAveragePool over time ([N, C, 1]).
    g = b.gap(x, name="gate.pool")
    g = b.sigmoid(g, name="gate.sigmoid")
    x = b.mul(x, g, name="gate.mul")
    x = b.conv_bn_act(x, 48, 3, 2, name="conv.4")  # 48 x 25
    x = b.reduce("ReduceMean", x, [2], keepdims=False, name="pool")  # [N, 48]
    x = b.gemm(x, 10, name="fc", gain=1.0)
    b.output(x)
    return b.build("1-D audio conv net: BN, depthwise Conv1d, LeakyRelu, PRelu, InstanceNorm.")


def norms_and_acts(seed: int = 0) -> onnx.ModelProto:
    """A single chain of channel-carrying normalisation, activation and shape ops.

    Built at opset 21 (IR 10) so that GroupNormalization (opset 21: scale and bias of
    shape ``[C]``; the opset-18 form with ``[num_groups]`` scale is deprecated and is
    rejected by the checker), Mish (opset 18) and Gelu (opset 20) are native ops.

    Exercises InstanceNormalization, GroupNormalization, Tanh, Elu, Selu, Softplus,
    Mish, Gelu, HardSigmoid, Clip, LeakyRelu, Sigmoid, Identity, Dropout (inference),
    Cast (float -> float), Sub and Div by per-channel ``[C, 1, 1]`` constants, Add of
    a scalar, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMax over
    the spatial axes, Squeeze/Unsqueeze around pooled outputs, and a Transpose to
    channels-last (with a per-channel ``Mul`` on the last axis) and back.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 3, 32, 32]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("norms_and_acts", seed, opset=21)
    x = b.input((3, 32, 32))
    x = b.conv(x, 16, 3, bias=True, name="conv0")
    x = b.instance_norm(x, name="instnorm0")
    x = b.unary("Tanh", x, name="tanh0")
    x = b.conv(x, 16, 3, bias=True, name="conv1")
    x = b.group_norm(x, 4, name="groupnorm1")
    x = b.unary("Elu", x, name="elu1", alpha=1.0)
    x = b.conv(x, 16, 3, bias=True, name="conv2")
    x = b.unary("Selu", x, name="selu2")
    x = b.conv(x, 16, 3, bias=True, name="conv3")
    x = b.unary("Softplus", x, name="softplus3")
    x = b.unary("Mish", x, name="mish3")
    x = b.conv(x, 24, 3, bias=True, name="conv4")
    x = b.unary("Gelu", x, name="gelu4")
    x = b.maxpool(x, 2, name="maxpool4")  # 16 x 16
    x = b.conv(x, 24, 3, bias=True, name="conv5")
    x = b.hardsigmoid(x, name="hardsigmoid5", alpha=0.2, beta=0.5)
    x = b.conv(x, 24, 3, bias=True, name="conv6")
    x = b.clip(x, -2.0, 2.0, name="clip6")
    x = b.leaky_relu(x, 0.2, name="leakyrelu6")
    x = b.unary("Identity", x, name="identity6")
    x = b.unary("Dropout", x, name="dropout6")
    x = b.unary("Cast", x, name="cast6", to=TensorProto.FLOAT)
    x = b.binary("Sub", x, b.channel_const("sub7.value", x, -0.3, 0.3), name="sub7")
    x = b.binary("Div", x, b.channel_const("div7.value", x, 0.5, 2.0), name="div7")
    x = b.add(x, b.scalar(0.25), name="add7")
    x = b.conv(x, 32, 3, bias=True, name="conv8")
    x = b.unary("Sigmoid", x, name="sigmoid8")
    x = b.avgpool(x, 2, name="avgpool8")  # 8 x 8
    # Channels-last detour with a per-channel scale on the last axis.
    t = b.transpose(x, [0, 2, 3, 1], name="to_nhwc")
    t = b.mul(t, b.uniform_const("nhwc_scale.value", (32,), 0.5, 1.5), name="nhwc_scale")
    x = b.transpose(t, [0, 3, 1, 2], name="to_nchw")
    x = b.conv(x, 32, 3, bias=True, name="conv9")
    # Global statistics combined into a channel gate.
    avg = b.squeeze(b.gap(x, name="stats.gap"), [2, 3], name="stats.gap.squeeze")  # [N, C]
    mx = b.squeeze(b.gmp(x, name="stats.gmp"), [2, 3], name="stats.gmp.squeeze")
    rmx = b.reduce("ReduceMax", x, [2, 3], keepdims=False, name="stats.reducemax")
    s = b.add(b.add(avg, mx, name="stats.add0"), rmx, name="stats.add1")
    s = b.unsqueeze(s, [2, 3], name="stats.unsqueeze")  # [N, C, 1, 1]
    s = b.sigmoid(s, name="stats.gate")
    x = b.mul(x, s, name="gate.mul")
    x = b.conv(x, 32, 1, bias=True, name="conv10")
    x = b.relu(x, name="relu10")
    b.output(b.classifier(x))
    return b.build("Chain of normalisation, activation, pooling and shape ops on channel tensors.")


def conv3d_net(seed: int = 0) -> onnx.ModelProto:
    """Small 3-D convolutional network.

    Exercises Conv3d (including an anisotropic ``1x3x3`` kernel), BatchNormalization
    and Relu on 5-D ``[N, C, D, H, W]`` tensors, a 3-D MaxPool and a GAP head.

    Args:
        seed: Seed for the weights.

    Returns:
        Model with input ``[N, 2, 8, 16, 16]`` and output ``[N, 10]``.
    """
    b = _GraphBuilder("conv3d_net", seed)
    x = b.input((2, 8, 16, 16))
    x = b.conv_bn_act(x, 8, 3, name="layer1")
    x = b.conv_bn_act(x, 16, 3, 2, name="layer2")  # 16 x 4 x 8 x 8
    x = b.maxpool(x, 2, name="pool2")  # 16 x 2 x 4 x 4
    x = b.conv_bn_act(x, 32, (1, 3, 3), name="layer3")
    b.output(b.classifier(x))
    return b.build("3-D conv net with BatchNormalization and Relu.")


ZOO: dict[str, ModelBuilder] = {
    "vgg_like": vgg_like,
    "resnet_basic": resnet_basic,
    "resnet_bottleneck": resnet_bottleneck,
    "mobilenet_v2": mobilenet_v2,
    "densenet_block": densenet_block,
    "efficientnet_se": efficientnet_se,
    "inception_like": inception_like,
    "unet_like": unet_like,
    "yolo_like": yolo_like,
    "resnext_grouped": resnext_grouped,
    "flatten_gemm_head": flatten_gemm_head,
    "reshape_matmul_head": reshape_matmul_head,
    "audio_conv1d": audio_conv1d,
    "norms_and_acts": norms_and_acts,
    "conv3d_net": conv3d_net,
}
"""Builder for each zoo model, by name. Each builder is callable with no arguments."""


def build(name: str, seed: int = 0) -> onnx.ModelProto:
    """Builds the zoo model called ``name``.

    Args:
        name: A key of :data:`ZOO`.
        seed: Seed for the weights.

    Returns:
        The model.

    Raises:
        KeyError: If ``name`` is not in :data:`ZOO`.
    """
    try:
        builder = ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; available: {sorted(ZOO)}") from None
    return builder(seed=seed)
