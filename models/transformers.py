"""Small transformer test models built directly with :mod:`onnx.helper`.

Every builder returns a self-contained, valid :class:`onnx.ModelProto` with seeded
float32 weights, written the way the common exporters write these architectures:

* ``bert_like``, ``gpt_like`` and ``llama_like`` follow the PyTorch TorchScript
  exporter (``torch.onnx.export(..., dynamo=False)``) applied to Hugging Face
  models: Linear layers as ``MatMul`` by a constant ``[in, out]`` weight followed
  by ``Add`` of the bias, head splits through ``Reshape`` targets computed at run
  time from ``Shape -> Gather -> Unsqueeze -> Concat``, Gelu spelled out with
  ``Erf`` or ``Tanh``, LayerNorm either native or decomposed;
* ``vit_like`` is a pre-norm vision transformer with a patch-embedding Conv, an
  expanded class token and constant head reshapes;
* ``keras_nhwc_cnn`` and ``keras_transformer_block`` imitate what tf2onnx writes for
  Keras models: channels-last tensors with ``Transpose`` pairs around every Conv and
  pooling op, bias and batch norm as ``Add`` / ``Mul`` by ``[C]`` constants,
  ``Shape -> Cast(int32) -> Slice -> Concat -> Cast(int64)`` reshape targets and the
  ``ReduceMean``/``Reciprocal`` LayerNorm decomposition.

Conventions shared by all models:

* token models take ``input_ids`` (int64 ``[batch, seq]``) and every model with a
  sequence axis has symbolic ``"batch"`` and ``"seq"`` dimensions, so it runs at any
  sequence length up to its ``max_len``; image models take a fixed-size image with a
  symbolic ``"batch"`` dimension;
* node names are unique and readable and follow the source framework's module names
  (``"encoder.layer.0.attention.self.query.matmul"``, ``"model/conv2d/Conv2D"``);
  weights are named after their layer; Linear weights are stored as ``[in, out]``;
* weights are drawn from a seeded numpy generator with calibrated scales (Linear
  weights ``N(0, 1/fan_in)``, norm scales ``1 + 0.1 * noise``, small non-zero
  biases), so activations stay O(1) through a stack of layers;
* every builder takes its sizes as keyword arguments (``layers``, ``hidden``,
  ``heads``, ``ffn``, ``vocab``, ...) with small defaults so that tests are fast;
  the same builders scale to BERT-base sizes.

Example:
    >>> from models.transformers import build
    >>> model = build("bert_like", seed=0, layers=2, hidden=64, heads=4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.zoo import Shape, _broadcast, _GraphBuilder

__all__ = [
    "BATCH",
    "SEQ",
    "TRANSFORMERS",
    "TransformerBuilder",
    "bert_like",
    "build",
    "gpt_like",
    "keras_nhwc_cnn",
    "keras_transformer_block",
    "llama_like",
    "vit_like",
]

BATCH = "batch"
"""Name of the symbolic batch dimension of every graph input and output."""

SEQ = "seq"
"""Name of the symbolic sequence dimension of the sequence models."""

# IR version to pair with each supported opset; onnxruntime 1.32 loads all of these.
_IR_VERSION_FOR_OPSET: dict[int, int] = {
    13: 7,
    14: 7,
    15: 8,
    16: 8,
    17: 8,
    18: 8,
    19: 9,
    20: 9,
    21: 10,
}

# End index the PyTorch exporter writes for an open-ended slice (``x[..., k:]``).
_INT64_MAX = int(np.iinfo(np.int64).max)

# ``torch.finfo(torch.float32).min``: the masking value of Hugging Face attention.
_FLOAT32_MIN = float(np.finfo(np.float32).min)

_PRODUCER = "onnxprune.models.transformers"


class TransformerBuilder(Protocol):
    """Signature shared by every builder in :data:`TRANSFORMERS`."""

    def __call__(self, seed: int = 0, **sizes: Any) -> onnx.ModelProto: ...


def _head_dim(hidden: int, heads: int) -> int:
    """Returns ``hidden // heads`` after checking that the heads tile the hidden size."""
    if hidden <= 0 or heads <= 0 or hidden % heads:
        raise ValueError(f"hidden size {hidden} is not divisible into {heads} heads")
    return hidden // heads


def _check_sizes(**sizes: int) -> None:
    """Raises ``ValueError`` unless every given size is a positive int."""
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{key} must be a positive int, got {value!r}")


class _Graph(_GraphBuilder):
    """Graph builder with the tensor, shape-arithmetic and norm ops transformers need.

    Extends the zoo builder with typed inputs with symbolic dimensions, int64 shape
    computations, Linear layers, native and decomposed normalisations and attention
    building blocks. Shapes of shape-carrying int tensors are tracked like any other
    tensor (a ``Shape`` of a rank-3 tensor has shape ``(3,)``).

    Args:
        name: Graph name.
        seed: Seed of the numpy generator used for every weight.
        opset: Default-domain opset the graph targets.
        tf_style: Name tensors like TensorFlow (``"<node>:0"``) and sub-layers with
            ``/`` instead of ``.``.
    """

    def __init__(self, name: str, seed: int, opset: int, *, tf_style: bool = False) -> None:
        if opset not in _IR_VERSION_FOR_OPSET:
            raise ValueError(
                f"opset {opset} not supported; use one of {sorted(_IR_VERSION_FOR_OPSET)}"
            )
        super().__init__(name, seed, opset)
        self.tf_style = tf_style
        self.sep = "/" if tf_style else "."
        self._int_scalars: dict[int, str] = {}

    # ------------------------------------------------------------------ bookkeeping
    def sub(self, name: str, part: str) -> str:
        """Name of part ``part`` of layer ``name`` (``name.part`` or ``name/part``)."""
        return f"{name}{self.sep}{part}"

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        name: str,
        out_shapes: Sequence[Shape],
        **attrs: object,
    ) -> list[str]:
        """Appends a node; outputs are ``<name>.out<i>``, or ``<name>:<i>`` in TF style."""
        if not self.tf_style:
            return super().node(op, inputs, name, out_shapes, **attrs)
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name!r}")
        self._node_names.add(name)
        outputs = [f"{name}:{i}" for i in range(len(out_shapes))]
        for out, shp in zip(outputs, out_shapes):
            self.shapes[self._claim_tensor(out)] = tuple(shp)
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=name, **attrs))
        return outputs

    def graph_input(
        self, name: str, dims: Sequence[int | str], elem_type: int = TensorProto.FLOAT
    ) -> str:
        """Declares a graph input with the given (possibly symbolic) dimensions."""
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(dims)))
        self.shapes[self._claim_tensor(name)] = tuple(dims)
        return name

    def build(self, doc: str = "") -> onnx.ModelProto:
        """Assembles the :class:`onnx.ModelProto` (all graph outputs are float32)."""
        outputs = [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, list(self.shapes[o]))
            for o in self.outputs
        ]
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, outputs, self.initializers, doc_string=doc
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=_IR_VERSION_FOR_OPSET[self.opset],
            producer_name=_PRODUCER,
            doc_string=doc,
        )

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Adds a constant initializer (0-d arrays stay 0-d) and returns its name."""
        array = np.asarray(array)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        self.initializers.append(numpy_helper.from_array(array, name))
        self.shapes[self._claim_tensor(name)] = tuple(int(d) for d in array.shape)
        return name

    # ---------------------------------------------------------------- weight helpers
    def randn(self, shape: Sequence[int], std: float) -> np.ndarray:
        """Float32 ``N(0, std^2)`` array (drawn directly in float32, fast at large sizes)."""
        out = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        out *= np.float32(std)
        return out

    def weight(self, name: str, shape: Sequence[int], fan_in: int, gain: float = 1.0) -> str:
        """Initializer drawn from ``N(0, gain / fan_in)``."""
        return self.initializer(name, self.randn(shape, math.sqrt(gain / fan_in)))

    def small_bias(self, name: str, n: int, std: float = 0.05) -> str:
        """Initializer of ``n`` small non-zero values (``N(0, std^2)``)."""
        return self.initializer(name, self.randn((n,), std))

    def norm_params(self, name: str, n: int, *, beta: bool = True) -> list[str]:
        """Scale ``1 + 0.1 * noise`` (and shift ``0.05 * noise``) of a normalisation layer."""
        label = ("gamma", "beta") if self.tf_style else ("weight", "bias")
        out = [self.initializer(self.sub(name, label[0]), 1.0 + self.randn((n,), 0.1))]
        if beta:
            out.append(self.small_bias(self.sub(name, label[1]), n))
        return out

    def int_scalar(self, value: int) -> str:
        """Returns a shared int64 0-d initializer holding ``value`` (Gather/Range operands)."""
        if value not in self._int_scalars:
            label = str(value).replace("-", "m")
            array = np.array(value, dtype=np.int64)
            self._int_scalars[value] = self.initializer(f"const.int64_{label}", array)
        return self._int_scalars[value]

    def int32s(self, name: str, values: Sequence[int]) -> str:
        """Adds a 1-D int32 initializer (TensorFlow shape constants)."""
        return self.initializer(name, np.asarray(list(values), dtype=np.int32))

    # --------------------------------------------------------------- generic ops
    def op(
        self, op: str, inputs: Sequence[str], shape: Shape, *, name: str, **attrs: object
    ) -> str:
        """Any single-output node whose output shape the caller supplies."""
        return self._op(op, inputs, name, tuple(shape), **attrs)

    def matmul(self, a: str, b: str, *, name: str) -> str:
        """MatMul with numpy broadcasting of the batch dimensions."""
        sa, sb = self.shape(a), self.shape(b)
        if len(sb) == 2:
            out: Shape = (*sa[:-1], sb[-1])
        else:
            out = (*_broadcast(sa[:-2], sb[:-2]), sa[-2], sb[-1])
        return self._op("MatMul", [a, b], name, out)

    def linear(self, x: str, nout: int, *, name: str, bias: bool = True, gain: float = 1.0) -> str:
        """Linear layer as ``MatMul`` by a constant ``[in, out]`` weight, then ``Add`` bias.

        Nodes are ``<name>.matmul`` and ``<name>.add`` (``<name>/MatMul`` and
        ``<name>/BiasAdd`` in TF style); weights ``<name>.weight`` / ``<name>.bias``
        (``<name>/kernel`` / ``<name>/bias``).
        """
        nin = int(self.shape(x)[-1])
        if self.tf_style:
            w_name, mm_name, b_name, add_name = ("kernel", "MatMul", "bias", "BiasAdd")
        else:
            w_name, mm_name, b_name, add_name = ("weight", "matmul", "bias", "add")
        w = self.weight(self.sub(name, w_name), (nin, nout), nin, gain)
        y = self.matmul(x, w, name=self.sub(name, mm_name))
        if bias:
            b = self.small_bias(self.sub(name, b_name), nout)
            y = self.add(y, b, name=self.sub(name, add_name))
        return y

    def softmax(self, x: str, *, name: str) -> str:
        """Softmax over the last axis."""
        return self._op("Softmax", [x], name, self.shape(x), axis=-1)

    def gather(self, data: str, indices: str, axis: int = 0, *, name: str) -> str:
        """Gather with shape tracking."""
        ds, ish = self.shape(data), self.shape(indices)
        axis %= len(ds)
        out = (*ds[:axis], *ish, *ds[axis + 1 :])
        return self._op("Gather", [data, indices], name, out, axis=axis)

    def split_last(self, x: str, sizes: Sequence[int], *, name: str) -> list[str]:
        """Split(axis=-1) with the split sizes given as an int64 initializer input."""
        xs = self.shape(x)
        if sum(sizes) != xs[-1]:
            raise ValueError(f"{name}: split sizes {list(sizes)} do not add up to {xs[-1]}")
        outs = [(*xs[:-1], s) for s in sizes]
        split = self.ints(f"{name}.split", sizes)
        return self.node("Split", [x, split], name, outs, axis=-1)

    def reshape_to(self, x: str, target: str, out_shape: Shape, *, name: str) -> str:
        """Reshape by a (computed or constant) shape tensor; the caller gives the result shape."""
        return self._op("Reshape", [x, target], name, tuple(out_shape))

    def reduce_mean_last(self, x: str, *, name: str) -> str:
        """ReduceMean over axis ``-1`` with keepdims (axes as attribute before opset 18)."""
        out = (*self.shape(x)[:-1], 1)
        if self.opset >= 18:
            return self._op(
                "ReduceMean", [x, self.ints(f"{name}.axes", [-1])], name, out, keepdims=1
            )
        return self._op("ReduceMean", [x], name, out, axes=[-1], keepdims=1)

    # ---------------------------------------------------------- shape arithmetic
    def dim_of(self, x: str, axis: int, *, name: str) -> str:
        """``Unsqueeze(Gather(Shape(x), axis), 0)``: dimension ``axis`` of ``x`` as int64 ``[1]``.

        Nodes are ``<name>.shape``, ``<name>.gather`` and ``<name>.unsqueeze``.
        """
        return self.unsqueeze(self.dim_scalar(x, axis, name=name), [0], name=f"{name}.unsqueeze")

    def dim_scalar(self, x: str, axis: int, *, name: str) -> str:
        """``Gather(Shape(x), axis)``: dimension ``axis`` of ``x`` as an int64 scalar."""
        shp = self._op("Shape", [x], f"{name}.shape", (len(self.shape(x)),))
        return self._op("Gather", [shp, self.int_scalar(axis)], f"{name}.gather", (), axis=0)

    def torch_shape(
        self, x: str, axes: Sequence[int], tail: Sequence[tuple[str, int]], *, name: str
    ) -> str:
        """Reshape target ``x.size()[axes] + tail`` as the PyTorch exporter writes it.

        Each dimension taken from ``x`` gets its own ``Shape -> Gather -> Unsqueeze``
        (``<name>.dim<i>.*``); the constant tail entries are int64 ``[1]`` initializers
        named ``<name>.<label>``; everything is joined by ``<name>.concat``.
        """
        parts = [self.dim_of(x, i, name=f"{name}.dim{i}") for i in axes]
        parts += [self.ints(f"{name}.{label}", [value]) for label, value in tail]
        return self._op("Concat", parts, f"{name}.concat", (len(parts),), axis=0)

    def tf_shape(self, x: str, keep: int, tail: Sequence[int], *, name: str) -> str:
        """Reshape target ``concat(tf.shape(x)[:keep], tail)`` as tf2onnx writes it.

        ``Shape -> Cast(int32) -> Slice -> Concat(int32 constant) -> Cast(int64)``.
        """
        shp = self._op("Shape", [x], self.sub(name, "Shape"), (len(self.shape(x)),))
        shp32 = self._op(
            "Cast", [shp], self.sub(name, "Cast"), (len(self.shape(x)),), to=TensorProto.INT32
        )
        head = self._op(
            "Slice",
            [
                shp32,
                self.ints(self.sub(name, "strided_slice/begin"), [0]),
                self.ints(self.sub(name, "strided_slice/end"), [keep]),
                self.ints(self.sub(name, "strided_slice/axes"), [0]),
            ],
            self.sub(name, "strided_slice"),
            (keep,),
        )
        const = self.int32s(self.sub(name, "shape/tail"), tail)
        cat = self._op(
            "Concat", [head, const], self.sub(name, "shape"), (keep + len(tail),), axis=0
        )
        return self._op(
            "Cast", [cat], self.sub(name, "shape/Cast"), (keep + len(tail),), to=TensorProto.INT64
        )

    def positions(self, input_ids: str, *, name: str) -> str:
        """Position ids ``Unsqueeze(Range(0, seq, 1), 0)`` with ``seq`` read from ``input_ids``."""
        seq = self.dim_scalar(input_ids, 1, name=f"{name}.seq_len")
        rng = self._op(
            "Range",
            [self.int_scalar(0), seq, self.int_scalar(1)],
            f"{name}.range",
            (self.shape(input_ids)[1],),
        )
        return self.unsqueeze(rng, [0], name=f"{name}.unsqueeze")

    def slice_to_seq(
        self, table: str, seq_1d: str, axes: Sequence[int], *, name: str, seq_dim: int | str = SEQ
    ) -> str:
        """Slices ``table[..., :seq, ...]`` on each axis in ``axes`` (ends computed at run time)."""
        if len(axes) == 1:
            ends = seq_1d
        else:
            ends = self._op("Concat", [seq_1d] * len(axes), f"{name}.ends", (len(axes),), axis=0)
        inputs = [
            table,
            self.ints(f"{name}.starts", [0] * len(axes)),
            ends,
            self.ints(f"{name}.axes", list(axes)),
        ]
        ts = self.shape(table)
        out = tuple(seq_dim if i in axes else d for i, d in enumerate(ts))
        return self._op("Slice", inputs, name, out)

    # ------------------------------------------------------------------- norms
    def layer_norm(self, x: str, *, name: str, eps: float) -> str:
        """Native LayerNormalization (opset 17) over the last axis."""
        if self.opset < 17:
            raise ValueError("LayerNormalization needs opset >= 17")
        params = self.norm_params(name, int(self.shape(x)[-1]))
        return self._op(
            "LayerNormalization", [x, *params], name, self.shape(x), axis=-1, epsilon=eps
        )

    def layer_norm_torch(self, x: str, *, name: str, eps: float) -> str:
        """LayerNorm as the PyTorch exporter decomposes it below opset 17.

        ``ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div ->
        Mul(gamma) -> Add(beta)``.
        """
        gamma, beta = self.norm_params(name, int(self.shape(x)[-1]))
        mean = self.reduce_mean_last(x, name=f"{name}.mean")
        d = self.binary("Sub", x, mean, name=f"{name}.sub")
        sq = self.binary("Pow", d, self.scalar(2.0), name=f"{name}.pow")
        var = self.reduce_mean_last(sq, name=f"{name}.var")
        var = self.add(var, self.scalar(eps), name=f"{name}.add_eps")
        std = self.unary("Sqrt", var, name=f"{name}.sqrt")
        y = self.binary("Div", d, std, name=f"{name}.div")
        y = self.mul(y, gamma, name=f"{name}.mul_gamma")
        return self.add(y, beta, name=f"{name}.add_beta")

    def layer_norm_tf(self, x: str, *, name: str, eps: float) -> str:
        """Keras LayerNormalization as tf2onnx writes ``tf.nn.moments`` + ``batch_normalization``.

        ``mean = ReduceMean(x)``; ``var = ReduceMean((x - mean) * (x - mean))``;
        ``inv = Reciprocal(Sqrt(var + eps)) * gamma``; ``y = x * inv + (beta - mean * inv)``.
        """
        gamma, beta = self.norm_params(name, int(self.shape(x)[-1]))
        mean = self.reduce_mean_last(x, name=self.sub(name, "moments/mean"))
        d = self.binary("Sub", x, mean, name=self.sub(name, "moments/SquaredDifference"))
        sq = self.mul(d, d, name=self.sub(name, "moments/SquaredDifference__mul"))
        var = self.reduce_mean_last(sq, name=self.sub(name, "moments/variance"))
        var = self.add(var, self.scalar(eps), name=self.sub(name, "batchnorm/add"))
        std = self.unary("Sqrt", var, name=self.sub(name, "batchnorm/Rsqrt__sqrt"))
        inv = self.unary("Reciprocal", std, name=self.sub(name, "batchnorm/Rsqrt"))
        inv = self.mul(inv, gamma, name=self.sub(name, "batchnorm/mul"))
        xs = self.mul(x, inv, name=self.sub(name, "batchnorm/mul_1"))
        ms = self.mul(mean, inv, name=self.sub(name, "batchnorm/mul_2"))
        shift = self.binary("Sub", beta, ms, name=self.sub(name, "batchnorm/sub"))
        return self.add(xs, shift, name=self.sub(name, "batchnorm/add_1"))

    def rms_norm(self, x: str, *, name: str, eps: float) -> str:
        """LLaMA RMSNorm decomposed: ``weight * (x * Reciprocal(Sqrt(mean(x^2) + eps)))``."""
        (weight,) = self.norm_params(name, int(self.shape(x)[-1]), beta=False)
        sq = self.binary("Pow", x, self.scalar(2.0), name=f"{name}.pow")
        var = self.reduce_mean_last(sq, name=f"{name}.mean")
        var = self.add(var, self.scalar(eps), name=f"{name}.add_eps")
        std = self.unary("Sqrt", var, name=f"{name}.sqrt")
        inv = self.unary("Reciprocal", std, name=f"{name}.rsqrt")
        y = self.mul(x, inv, name=f"{name}.mul")
        return self.mul(weight, y, name=f"{name}.mul_weight")

    # ------------------------------------------------------------- activations
    def gelu_erf(self, x: str, *, name: str) -> str:
        """Exact Gelu as the PyTorch exporter writes it below opset 20.

        ``Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(., 0.5)``.
        """
        y = self.binary("Div", x, self.scalar(math.sqrt(2.0)), name=f"{name}.div")
        y = self.unary("Erf", y, name=f"{name}.erf")
        y = self.add(y, self.scalar(1.0), name=f"{name}.add")
        y = self.mul(x, y, name=f"{name}.mul")
        return self.mul(y, self.scalar(0.5), name=f"{name}.mul_half")

    def gelu_tanh(self, x: str, *, name: str, cube: str = "pow") -> str:
        """Tanh-approximated Gelu ``0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``.

        ``cube="pow"`` writes ``x^3`` as ``Pow(x, 3)`` (Hugging Face ``NewGELU``);
        ``cube="mul"`` writes ``x * (x * x)`` (``nn.GELU(approximate="tanh")``).
        """
        if cube == "pow":
            x3 = self.binary("Pow", x, self.scalar(3.0), name=f"{name}.pow")
        else:
            xx = self.mul(x, x, name=f"{name}.square")
            x3 = self.mul(x, xx, name=f"{name}.cube")
        inner = self.mul(x3, self.scalar(0.044715), name=f"{name}.mul_kappa")
        inner = self.add(x, inner, name=f"{name}.add")
        inner = self.mul(inner, self.scalar(math.sqrt(2.0 / math.pi)), name=f"{name}.mul_beta")
        t = self.unary("Tanh", inner, name=f"{name}.tanh")
        t = self.add(t, self.scalar(1.0), name=f"{name}.add_one")
        half = self.mul(x, self.scalar(0.5), name=f"{name}.mul_half")
        return self.mul(half, t, name=f"{name}.mul")

    # --------------------------------------------------------------- embeddings
    def embedding(self, ids: str, vocab: int, hidden: int, *, name: str) -> tuple[str, str]:
        """``Gather`` from a constant ``[vocab, hidden]`` table; returns (output, table)."""
        table = self.initializer(
            f"{name}.weight", self.randn((vocab, hidden), 1.0 / math.sqrt(hidden))
        )
        return self.gather(table, ids, name=name), table


# ============================================================ attention helpers


def _torch_split_heads(
    b: _Graph,
    x: str,
    heads: int,
    head_dim: int,
    perm: Sequence[int],
    *,
    name: str,
    const_shape: bool = False,
) -> str:
    """``x.view(x.size()[:-1] + (heads, head_dim)).permute(perm)``.

    The view target is computed at run time (``Shape -> Gather -> Unsqueeze`` for the
    batch and sequence dims, concatenated with ``[heads]`` and ``[head_dim]``) or, with
    ``const_shape``, a constant ``[0, 0, heads, head_dim]``.
    """
    bs, sq = b.shape(x)[:2]
    if const_shape:
        target = b.ints(f"{name}.view.shape", [0, 0, heads, head_dim])
    else:
        target = b.torch_shape(
            x, [0, 1], [("heads", heads), ("head_dim", head_dim)], name=f"{name}.view"
        )
    y = b.reshape_to(x, target, (bs, sq, heads, head_dim), name=f"{name}.view")
    return b.transpose(y, perm, name=f"{name}.permute")


def _torch_merge_heads(
    b: _Graph, ctx: str, hidden: int, *, name: str, const_shape: bool = False
) -> str:
    """``ctx.permute(0, 2, 1, 3)`` then a view to ``ctx.size()[:-2] + (hidden,)``."""
    ctx = b.transpose(ctx, [0, 2, 1, 3], name=f"{name}.permute")
    bs, sq = b.shape(ctx)[:2]
    if const_shape:
        target = b.ints(f"{name}.view.shape", [0, 0, hidden])
    else:
        target = b.torch_shape(ctx, [0, 1], [("hidden", hidden)], name=f"{name}.view")
    return b.reshape_to(ctx, target, (bs, sq, hidden), name=f"{name}.view")


def _padding_mask(b: _Graph, mask: str, *, name: str) -> str:
    """Additive mask ``(1 - mask[:, None, None, :].float()) * -10000`` of Hugging Face BERT."""
    m = b.unsqueeze(mask, [1, 2], name=f"{name}.unsqueeze")
    m = b.unary("Cast", m, name=f"{name}.cast", to=TensorProto.FLOAT)
    m = b.binary("Sub", b.scalar(1.0), m, name=f"{name}.sub")
    return b.mul(m, b.scalar(-10000.0), name=f"{name}.mul")


# ================================================================== builders


def bert_like(
    seed: int = 0,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    ffn: int = 64,
    vocab: int = 100,
    max_len: int = 64,
    num_labels: int = 2,
    attention_mask: bool = True,
    const_shapes: bool = False,
) -> onnx.ModelProto:
    """BERT encoder with a pooled sequence-classification head (opset 17).

    Written as the PyTorch TorchScript exporter writes Hugging Face
    ``BertForSequenceClassification``:

    * embeddings: ``Gather`` from the word table plus ``Gather`` from the position
      table at ``Unsqueeze(Range(0, Gather(Shape(input_ids), 1), 1), 0)``, then
      ``LayerNormalization``;
    * attention: Q/K/V ``MatMul + Add``; head split by ``Reshape`` to
      ``Concat(Unsqueeze(Gather(Shape(x), 0)), Unsqueeze(Gather(Shape(x), 1)), [heads],
      [head_dim])`` and ``Transpose(0, 2, 1, 3)`` (K: ``Transpose(0, 2, 3, 1)``);
      ``MatMul``, ``Div`` by ``sqrt(head_dim)``, ``Add`` of the padding mask
      ``(1 - mask) * -10000`` (shared by all layers), ``Softmax``, ``MatMul`` by V,
      ``Transpose(0, 2, 1, 3)``, ``Reshape`` to ``[batch, seq, hidden]`` computed the
      same way; output ``MatMul + Add``, residual ``Add``, ``LayerNormalization``;
    * FFN: ``MatMul + Add``, Gelu as ``x * (1 + Erf(x / sqrt 2)) * 0.5``, ``MatMul +
      Add``, residual ``Add``, ``LayerNormalization``;
    * pooler: ``Gather(axis=1, index 0) -> MatMul + Add -> Tanh``, classifier
      ``MatMul + Add``.

    Args:
        seed: Seed for the weights.
        layers: Number of encoder layers.
        hidden: Hidden size.
        heads: Number of attention heads (must divide ``hidden``).
        ffn: Intermediate size of the feed-forward block.
        vocab: Vocabulary size.
        max_len: Rows of the position table (longest supported sequence).
        num_labels: Classifier outputs.
        attention_mask: Add an int64 ``attention_mask`` input ``[batch, seq]`` (1 keeps a
            token, 0 masks it).
        const_shapes: Write the head-split and merge ``Reshape`` targets as constants
            ``[0, 0, heads, head_dim]`` and ``[0, 0, hidden]`` instead of computing them.

    Returns:
        Model with inputs ``input_ids`` (and ``attention_mask``) and outputs
        ``last_hidden_state`` ``[batch, seq, hidden]`` and ``logits`` ``[batch, num_labels]``.
    """
    _check_sizes(
        layers=layers,
        hidden=hidden,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_len=max_len,
        num_labels=num_labels,
    )
    head_dim = _head_dim(hidden, heads)
    b = _Graph("bert_like", seed, opset=17)
    ids = b.graph_input("input_ids", [BATCH, SEQ], TensorProto.INT64)
    mask = None
    if attention_mask:
        mask_in = b.graph_input("attention_mask", [BATCH, SEQ], TensorProto.INT64)
        mask = _padding_mask(b, mask_in, name="extended_attention_mask")

    words, _ = b.embedding(ids, vocab, hidden, name="embeddings.word_embeddings")
    pos_ids = b.positions(ids, name="embeddings.position_ids")
    pos, _ = b.embedding(pos_ids, max_len, hidden, name="embeddings.position_embeddings")
    x = b.add(words, pos, name="embeddings.add")
    x = b.layer_norm(x, name="embeddings.LayerNorm", eps=1e-12)

    for i in range(layers):
        p = f"encoder.layer.{i}"
        att = f"{p}.attention.self"
        q = b.linear(x, hidden, name=f"{att}.query")
        k = b.linear(x, hidden, name=f"{att}.key")
        v = b.linear(x, hidden, name=f"{att}.value")
        q = _torch_split_heads(
            b, q, heads, head_dim, [0, 2, 1, 3], name=f"{att}.query", const_shape=const_shapes
        )
        k = _torch_split_heads(
            b, k, heads, head_dim, [0, 2, 3, 1], name=f"{att}.key", const_shape=const_shapes
        )
        v = _torch_split_heads(
            b, v, heads, head_dim, [0, 2, 1, 3], name=f"{att}.value", const_shape=const_shapes
        )
        s = b.matmul(q, k, name=f"{att}.scores")
        s = b.binary("Div", s, b.scalar(math.sqrt(head_dim)), name=f"{att}.scale")
        if mask is not None:
            s = b.add(s, mask, name=f"{att}.add_mask")
        s = b.softmax(s, name=f"{att}.softmax")
        ctx = b.matmul(s, v, name=f"{att}.context")
        ctx = _torch_merge_heads(b, ctx, hidden, name=f"{att}.context", const_shape=const_shapes)
        y = b.linear(ctx, hidden, name=f"{p}.attention.output.dense")
        y = b.add(y, x, name=f"{p}.attention.output.residual")
        x = b.layer_norm(y, name=f"{p}.attention.output.LayerNorm", eps=1e-12)

        y = b.linear(x, ffn, name=f"{p}.intermediate.dense")
        y = b.gelu_erf(y, name=f"{p}.intermediate.gelu")
        y = b.linear(y, hidden, name=f"{p}.output.dense")
        y = b.add(y, x, name=f"{p}.output.residual")
        x = b.layer_norm(y, name=f"{p}.output.LayerNorm", eps=1e-12)

    last = b.output(x, "last_hidden_state")
    first = b.gather(last, b.int_scalar(0), axis=1, name="pooler.first_token")
    pooled = b.linear(first, hidden, name="pooler.dense")
    pooled = b.unary("Tanh", pooled, name="pooler.activation")
    logits = b.linear(pooled, num_labels, name="classifier")
    b.output(logits, "logits")
    return b.build(
        "BERT encoder (post-LN, Erf Gelu, computed head reshapes) with a pooled classifier."
    )


def vit_like(
    seed: int = 0,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    ffn: int = 64,
    image_size: int = 32,
    patch: int = 8,
    channels: int = 3,
    num_classes: int = 10,
) -> onnx.ModelProto:
    """Pre-norm vision transformer with a class-token head (opset 17).

    * patch embedding: ``Conv(kernel = stride = patch)`` with bias, flattened by
      ``Reshape`` to ``Concat(Slice(Shape(x), 0:2), [-1])`` (the exporter's
      ``flatten(2)``) and ``Transpose(0, 2, 1)`` to ``[batch, patches, hidden]``;
    * class token: a constant ``[1, 1, hidden]`` expanded to the batch with ``Expand``
      whose shape is ``Concat(Unsqueeze(Gather(Shape(pixel_values), 0)), [-1, -1])``
      with the ``-1`` entries replaced by ``1`` through ``Equal`` + ``Where`` (how the
      exporter writes ``expand(batch, -1, -1)``), then ``Concat(axis=1)`` in front of
      the patches; ``Add`` of a constant ``[1, patches + 1, hidden]`` position table;
    * encoder layers: ``LayerNormalization`` -> attention with heads split by a constant
      ``Reshape [0, -1, heads, head_dim]``, scores scaled by ``Mul(1/sqrt(head_dim))``,
      merged by ``Reshape [0, -1, hidden]`` -> residual; ``LayerNormalization`` -> MLP
      with tanh-approximated Gelu (``x * (x * x)`` cube) -> residual;
    * final ``LayerNormalization``, ``Gather(axis=1, index 0)``, ``MatMul + Add`` head.

    Args:
        seed: Seed for the weights.
        layers: Number of encoder layers.
        hidden: Hidden size (patch-embedding channels).
        heads: Number of attention heads (must divide ``hidden``).
        ffn: MLP hidden size.
        image_size: Height and width of the input image.
        patch: Patch size (must divide ``image_size``).
        channels: Image channels.
        num_classes: Classifier outputs.

    Returns:
        Model with input ``pixel_values`` ``[batch, channels, image_size, image_size]``
        and output ``logits`` ``[batch, num_classes]``.
    """
    _check_sizes(
        layers=layers,
        hidden=hidden,
        heads=heads,
        ffn=ffn,
        image_size=image_size,
        patch=patch,
        channels=channels,
        num_classes=num_classes,
    )
    head_dim = _head_dim(hidden, heads)
    if image_size % patch:
        raise ValueError(f"patch size {patch} does not divide image size {image_size}")
    tokens = (image_size // patch) ** 2 + 1
    b = _Graph("vit_like", seed, opset=17)
    px = b.graph_input("pixel_values", [BATCH, channels, image_size, image_size])

    e = "vit.embeddings"
    y = b.conv(px, hidden, patch, patch, bias=True, pad=0, name=f"{e}.patch_embeddings.projection")
    shp = b.op("Shape", [y], (4,), name=f"{e}.patch_embeddings.flatten.shape")
    lead = b.slice(shp, 0, 2, axis=0, name=f"{e}.patch_embeddings.flatten.slice")
    tail = b.ints(f"{e}.patch_embeddings.flatten.minus_one", [-1])
    target = b.op("Concat", [lead, tail], (3,), name=f"{e}.patch_embeddings.flatten.concat", axis=0)
    y = b.reshape_to(y, target, (BATCH, hidden, tokens - 1), name=f"{e}.patch_embeddings.flatten")
    y = b.transpose(y, [0, 2, 1], name=f"{e}.patch_embeddings.transpose")

    cls = b.initializer(f"{e}.cls_token", b.randn((1, 1, hidden), 1.0))
    batch = b.dim_of(px, 0, name=f"{e}.batch_size")
    size = b.op(
        "Concat",
        [batch, b.ints(f"{e}.expand.minus_ones", [-1, -1])],
        (3,),
        name=f"{e}.expand.size",
        axis=0,
    )
    is_neg = b.op(
        "Equal",
        [size, b.ints(f"{e}.expand.neg_ones", [-1, -1, -1])],
        (3,),
        name=f"{e}.expand.equal",
    )
    size = b.op(
        "Where",
        [is_neg, b.ints(f"{e}.expand.ones", [1, 1, 1]), size],
        (3,),
        name=f"{e}.expand.where",
    )
    cls = b.op("Expand", [cls, size], (BATCH, 1, hidden), name=f"{e}.expand")
    x = b.concat([cls, y], axis=1, name=f"{e}.concat")
    pos = b.initializer(f"{e}.position_embeddings", b.randn((1, tokens, hidden), 0.5))
    x = b.add(x, pos, name=f"{e}.add_position")

    split = (BATCH, tokens, heads, head_dim)
    for i in range(layers):
        p = f"vit.encoder.layer.{i}"
        att = f"{p}.attention.attention"
        h = b.layer_norm(x, name=f"{p}.layernorm_before", eps=1e-12)
        qkv = []
        for proj, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            t = b.linear(h, hidden, name=f"{att}.{proj}")
            t = b.reshape_to(
                t,
                b.ints(f"{att}.{proj}.view.shape", [0, -1, heads, head_dim]),
                split,
                name=f"{att}.{proj}.view",
            )
            qkv.append(b.transpose(t, perm, name=f"{att}.{proj}.permute"))
        q, k, v = qkv
        s = b.matmul(q, k, name=f"{att}.scores")
        s = b.mul(s, b.scalar(1.0 / math.sqrt(head_dim)), name=f"{att}.scale")
        s = b.softmax(s, name=f"{att}.softmax")
        ctx = b.matmul(s, v, name=f"{att}.context")
        ctx = b.transpose(ctx, [0, 2, 1, 3], name=f"{att}.context.permute")
        ctx = b.reshape_to(
            ctx,
            b.ints(f"{att}.context.view.shape", [0, -1, hidden]),
            (BATCH, tokens, hidden),
            name=f"{att}.context.view",
        )
        y = b.linear(ctx, hidden, name=f"{p}.attention.output.dense")
        x = b.add(y, x, name=f"{p}.attention.residual")

        h = b.layer_norm(x, name=f"{p}.layernorm_after", eps=1e-12)
        h = b.linear(h, ffn, name=f"{p}.intermediate.dense")
        h = b.gelu_tanh(h, name=f"{p}.intermediate.gelu", cube="mul")
        h = b.linear(h, hidden, name=f"{p}.output.dense")
        x = b.add(h, x, name=f"{p}.output.residual")

    x = b.layer_norm(x, name="vit.layernorm", eps=1e-12)
    x = b.gather(x, b.int_scalar(0), axis=1, name="vit.class_token")
    b.output(b.linear(x, num_classes, name="classifier"), "logits")
    return b.build("Pre-norm ViT: Conv patch embedding, expanded class token, tanh Gelu MLP.")


def gpt_like(
    seed: int = 0,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    ffn: int | None = None,
    vocab: int = 100,
    max_len: int = 64,
    opset: int = 17,
) -> onnx.ModelProto:
    """GPT-2 style decoder with tied input and output embeddings.

    Written as the PyTorch exporter writes Hugging Face ``GPT2LMHeadModel`` with the
    LayerNorms decomposed (the form of opsets below 17):

    * embeddings: ``Gather`` from ``wte`` plus ``Gather`` from ``wpe`` at run-time
      positions ``Unsqueeze(Range(0, seq, 1), 0)``;
    * pre-LN as ``ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div
      -> Mul(gamma) -> Add(beta)``;
    * fused QKV projection (``MatMul`` to ``3 * hidden`` + ``Add``), ``Split(axis=-1)``
      with sizes as an input, computed head reshapes per tensor (as in ``bert_like``);
    * causal mask: each layer's constant lower-triangular bool ``[1, 1, max_len,
      max_len]`` buffer is sliced to ``[1, 1, seq, seq]`` with ends ``Concat(seq, seq)``
      read from ``Shape``, and applied with ``Where(mask, scores, finfo(float32).min)``;
      scores are divided by ``sqrt(head_dim)``;
    * MLP with Hugging Face ``NewGELU`` (``Pow(x, 3)`` + ``Tanh``);
    * final decomposed LN; LM head ``MatMul(x, Transpose(wte))`` through a
      ``Transpose`` node of the embedding initializer itself (truly tied weights).

    Args:
        seed: Seed for the weights.
        layers: Number of decoder blocks.
        hidden: Hidden size.
        heads: Number of attention heads (must divide ``hidden``).
        ffn: MLP hidden size (default ``4 * hidden``).
        vocab: Vocabulary size.
        max_len: Longest supported sequence (rows of ``wpe`` and size of the mask).
        opset: Default-domain opset, 13 to 21 (``ReduceMean`` takes its axes as an
            input from 18 on).

    Returns:
        Model with input ``input_ids`` ``[batch, seq]`` and output ``logits``
        ``[batch, seq, vocab]``.
    """
    ffn = 4 * hidden if ffn is None else ffn
    _check_sizes(layers=layers, hidden=hidden, heads=heads, ffn=ffn, vocab=vocab, max_len=max_len)
    head_dim = _head_dim(hidden, heads)
    b = _Graph("gpt_like", seed, opset=opset)
    ids = b.graph_input("input_ids", [BATCH, SEQ], TensorProto.INT64)
    tok, wte = b.embedding(ids, vocab, hidden, name="transformer.wte")
    pos_ids = b.positions(ids, name="transformer.position_ids")
    pos, _ = b.embedding(pos_ids, max_len, hidden, name="transformer.wpe")
    x = b.add(tok, pos, name="transformer.embeddings.add")
    tril = np.tril(np.ones((max_len, max_len), dtype=bool))[None, None]

    for i in range(layers):
        p = f"transformer.h.{i}"
        att = f"{p}.attn"
        h = b.layer_norm_torch(x, name=f"{p}.ln_1", eps=1e-5)
        qkv = b.linear(h, 3 * hidden, name=f"{att}.c_attn")
        q, k, v = b.split_last(qkv, [hidden] * 3, name=f"{att}.split")
        q = _torch_split_heads(b, q, heads, head_dim, [0, 2, 1, 3], name=f"{att}.query")
        k = _torch_split_heads(b, k, heads, head_dim, [0, 2, 3, 1], name=f"{att}.key")
        v = _torch_split_heads(b, v, heads, head_dim, [0, 2, 1, 3], name=f"{att}.value")
        s = b.matmul(q, k, name=f"{att}.scores")
        s = b.binary("Div", s, b.scalar(math.sqrt(head_dim)), name=f"{att}.scale")
        causal = b.initializer(f"{att}.bias", tril)
        seq_len = b.dim_of(q, 2, name=f"{att}.causal_mask.seq_len")
        causal = b.slice_to_seq(causal, seq_len, [2, 3], name=f"{att}.causal_mask")
        s = b.op("Where", [causal, s, b.scalar(_FLOAT32_MIN)], b.shape(s), name=f"{att}.where")
        s = b.softmax(s, name=f"{att}.softmax")
        ctx = b.matmul(s, v, name=f"{att}.context")
        ctx = _torch_merge_heads(b, ctx, hidden, name=f"{att}.merge_heads")
        y = b.linear(ctx, hidden, name=f"{att}.c_proj")
        x = b.add(x, y, name=f"{p}.residual_attn")

        h = b.layer_norm_torch(x, name=f"{p}.ln_2", eps=1e-5)
        h = b.linear(h, ffn, name=f"{p}.mlp.c_fc")
        h = b.gelu_tanh(h, name=f"{p}.mlp.act", cube="pow")
        h = b.linear(h, hidden, name=f"{p}.mlp.c_proj")
        x = b.add(x, h, name=f"{p}.residual_mlp")

    x = b.layer_norm_torch(x, name="transformer.ln_f", eps=1e-5)
    wte_t = b.transpose(wte, [1, 0], name="lm_head.weight_transpose")
    b.output(b.matmul(x, wte_t, name="lm_head.matmul"), "logits")
    return b.build(
        "GPT-2 decoder: decomposed pre-LN, fused QKV + Split, Where causal mask, tied LM head."
    )


def _rotary_tables(
    max_len: int, head_dim: int, base: float = 10000.0
) -> tuple[np.ndarray, np.ndarray]:
    """``cos`` and ``sin`` of the rotary angles, each ``[max_len, head_dim]`` (halves repeated)."""
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    freqs = np.outer(np.arange(max_len, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def _rotate_half(b: _Graph, x: str, head_dim: int, *, name: str) -> str:
    """``cat(-x[..., d/2:], x[..., :d/2])`` with ``Slice`` of the last axis, ``Neg`` and ``Concat``."""
    half = head_dim // 2
    xs = b.shape(x)
    x1 = b.op(
        "Slice",
        [
            x,
            b.ints(f"{name}.x1.starts", [0]),
            b.ints(f"{name}.x1.ends", [half]),
            b.ints(f"{name}.x1.axes", [-1]),
        ],
        (*xs[:-1], half),
        name=f"{name}.x1",
    )
    x2 = b.op(
        "Slice",
        [
            x,
            b.ints(f"{name}.x2.starts", [half]),
            b.ints(f"{name}.x2.ends", [_INT64_MAX]),
            b.ints(f"{name}.x2.axes", [-1]),
        ],
        (*xs[:-1], head_dim - half),
        name=f"{name}.x2",
    )
    neg = b.unary("Neg", x2, name=f"{name}.neg")
    return b.op("Concat", [neg, x1], xs, name=f"{name}.concat", axis=-1)


def _apply_rotary(b: _Graph, x: str, cos: str, sin: str, head_dim: int, *, name: str) -> str:
    """``x * cos + rotate_half(x) * sin``."""
    a = b.mul(x, cos, name=f"{name}.mul_cos")
    r = _rotate_half(b, x, head_dim, name=f"{name}.rotate_half")
    r = b.mul(r, sin, name=f"{name}.mul_sin")
    return b.add(a, r, name=f"{name}.add")


def llama_like(
    seed: int = 0,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    ffn: int = 48,
    vocab: int = 100,
    max_len: int = 64,
    fused_gate_up: bool = False,
    opset: int = 18,
) -> onnx.ModelProto:
    """LLaMA decoder: RMSNorm, rotary embeddings, causal mask and a SwiGLU MLP.

    * token embeddings only (no position table);
    * RMSNorm decomposed: ``Pow(2) -> ReduceMean(-1) -> Add(eps) -> Sqrt -> Reciprocal
      -> Mul(x, .) -> Mul(weight, .)``;
    * Q/K/V ``MatMul`` without bias; one ``Concat(batch, seq, [heads], [head_dim])``
      computed per layer from ``Shape`` of the normed input and shared by the three
      head ``Reshape`` nodes and (with ``[hidden]``) the merge ``Reshape``;
      ``Transpose(0, 2, 1, 3)``;
    * rotary embedding on q and k: constant ``cos``/``sin`` tables ``[max_len,
      head_dim]`` sliced once to ``[seq, head_dim]``; ``rotate_half`` as ``Slice`` of
      the last axis into halves (open end ``INT64_MAX``), ``Neg``, ``Concat``;
      ``x * cos + rotate_half(x) * sin``; K transposed by ``Transpose(0, 1, 3, 2)``
      after the rotation;
    * scores divided by ``sqrt(head_dim)``, plus an additive causal mask (a constant
      ``[1, 1, max_len, max_len]`` table of ``0`` and ``finfo(float32).min`` sliced once
      to ``[1, 1, seq, seq]`` and shared by all layers), ``Softmax``, output projection,
      residual;
    * SwiGLU MLP: ``gate * Sigmoid(gate) * up`` then ``down``; ``fused_gate_up``
      computes gate and up with one ``MatMul`` to ``2 * ffn`` followed by ``Split``;
    * final RMSNorm and an untied ``lm_head`` ``MatMul``.

    Args:
        seed: Seed for the weights.
        layers: Number of decoder blocks.
        hidden: Hidden size.
        heads: Number of attention heads (``hidden / heads`` must be even).
        ffn: MLP intermediate size.
        vocab: Vocabulary size.
        max_len: Longest supported sequence (rows of the rotary tables and mask size).
        fused_gate_up: One ``gate_up_proj`` ``MatMul`` + ``Split`` instead of two MatMuls.
        opset: Default-domain opset, 13 to 21 (``ReduceMean`` takes its axes as an
            input from 18 on).

    Returns:
        Model with input ``input_ids`` ``[batch, seq]`` and output ``logits``
        ``[batch, seq, vocab]``.
    """
    _check_sizes(layers=layers, hidden=hidden, heads=heads, ffn=ffn, vocab=vocab, max_len=max_len)
    head_dim = _head_dim(hidden, heads)
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head size, got {head_dim}")
    b = _Graph("llama_like", seed, opset=opset)
    ids = b.graph_input("input_ids", [BATCH, SEQ], TensorProto.INT64)
    x, _ = b.embedding(ids, vocab, hidden, name="model.embed_tokens")

    # Rotary tables and causal mask, sliced to the run-time length once for all layers.
    seq_len = b.dim_of(ids, 1, name="model.seq_len")
    cos_t, sin_t = _rotary_tables(max_len, head_dim)
    cos = b.slice_to_seq(
        b.initializer("model.rotary_emb.cos_cached", cos_t),
        seq_len,
        [0],
        name="model.rotary_emb.cos",
    )
    sin = b.slice_to_seq(
        b.initializer("model.rotary_emb.sin_cached", sin_t),
        seq_len,
        [0],
        name="model.rotary_emb.sin",
    )
    upper = np.triu(np.ones((max_len, max_len), dtype=bool), k=1)
    mask_t = np.where(upper, np.float32(_FLOAT32_MIN), np.float32(0.0))[None, None]
    causal = b.slice_to_seq(
        b.initializer("model.causal_mask_cached", mask_t.astype(np.float32)),
        seq_len,
        [2, 3],
        name="model.causal_mask",
    )

    split = (BATCH, SEQ, heads, head_dim)
    for i in range(layers):
        p = f"model.layers.{i}"
        att = f"{p}.self_attn"
        h = b.rms_norm(x, name=f"{p}.input_layernorm", eps=1e-6)
        bsz = b.dim_of(h, 0, name=f"{att}.bsz")
        q_len = b.dim_of(h, 1, name=f"{att}.q_len")
        heads_c = b.ints(f"{att}.num_heads", [heads])
        hd_c = b.ints(f"{att}.head_dim", [head_dim])
        view = b.op("Concat", [bsz, q_len, heads_c, hd_c], (4,), name=f"{att}.view_shape", axis=0)
        proj = {}
        for n in ("q", "k", "v"):
            t = b.linear(h, hidden, name=f"{att}.{n}_proj", bias=False)
            t = b.reshape_to(t, view, split, name=f"{att}.{n}_view")
            proj[n] = b.transpose(t, [0, 2, 1, 3], name=f"{att}.{n}_transpose")
        q = _apply_rotary(b, proj["q"], cos, sin, head_dim, name=f"{att}.q_rotary")
        k = _apply_rotary(b, proj["k"], cos, sin, head_dim, name=f"{att}.k_rotary")
        k = b.transpose(k, [0, 1, 3, 2], name=f"{att}.k_transpose_scores")
        s = b.matmul(q, k, name=f"{att}.scores")
        s = b.binary("Div", s, b.scalar(math.sqrt(head_dim)), name=f"{att}.scale")
        s = b.add(s, causal, name=f"{att}.add_causal_mask")
        s = b.softmax(s, name=f"{att}.softmax")
        ctx = b.matmul(s, proj["v"], name=f"{att}.context")
        ctx = b.transpose(ctx, [0, 2, 1, 3], name=f"{att}.context_transpose")
        hid_c = b.ints(f"{att}.hidden_size", [hidden])
        merge = b.op("Concat", [bsz, q_len, hid_c], (3,), name=f"{att}.merge_shape", axis=0)
        ctx = b.reshape_to(ctx, merge, (BATCH, SEQ, hidden), name=f"{att}.merge_view")
        y = b.linear(ctx, hidden, name=f"{att}.o_proj", bias=False)
        x = b.add(x, y, name=f"{p}.residual_attn")

        h = b.rms_norm(x, name=f"{p}.post_attention_layernorm", eps=1e-6)
        mlp = f"{p}.mlp"
        if fused_gate_up:
            gu = b.linear(h, 2 * ffn, name=f"{mlp}.gate_up_proj", bias=False)
            gate, up = b.split_last(gu, [ffn, ffn], name=f"{mlp}.chunk")
        else:
            gate = b.linear(h, ffn, name=f"{mlp}.gate_proj", bias=False)
            up = b.linear(h, ffn, name=f"{mlp}.up_proj", bias=False)
        act = b.silu(gate, name=f"{mlp}.act_fn")
        h = b.mul(act, up, name=f"{mlp}.mul")
        h = b.linear(h, hidden, name=f"{mlp}.down_proj", bias=False)
        x = b.add(x, h, name=f"{p}.residual_mlp")

    x = b.rms_norm(x, name="model.norm", eps=1e-6)
    b.output(b.linear(x, vocab, name="lm_head", bias=False), "logits")
    return b.build("LLaMA decoder: RMSNorm, rotary q/k, additive causal mask, SwiGLU MLP.")


def _tf_nchw(b: _Graph, x: str, *, name: str) -> str:
    """``Transpose(0, 3, 1, 2)`` tf2onnx puts in front of an NCHW-only op."""
    return b.transpose(x, [0, 3, 1, 2], name=f"{name}__transpose_in")


def _tf_nhwc(b: _Graph, x: str, *, name: str) -> str:
    """``Transpose(0, 2, 3, 1)`` tf2onnx puts after an NCHW-only op."""
    return b.transpose(x, [0, 2, 3, 1], name=f"{name}__transpose_out")


def keras_nhwc_cnn(
    seed: int = 0,
    *,
    widths: Sequence[int] = (16, 32, 32),
    dense: int = 64,
    image_size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
) -> onnx.ModelProto:
    """Keras ``Sequential`` CNN on NHWC input, written as tf2onnx writes it (opset 15).

    Every Conv and MaxPool is wrapped in ``Transpose(0, 3, 1, 2)`` /
    ``Transpose(0, 2, 3, 1)``; the Conv has no bias, which is added afterwards in NHWC
    by an ``Add`` of a ``[C]`` constant (``BiasAdd``); Relu runs in NHWC; inference
    batch norm is a ``Mul`` and an ``Add`` by ``[C]`` constants in NHWC; ``Flatten``
    is ``Reshape [-1, H*W*C]`` of the last NHWC tensor (so each channel owns every
    ``C``-th feature of the first Dense); Dense is ``MatMul + Add``.

    Layers: conv2d (3x3) -> bias -> Relu -> batch_normalization, conv2d_1 (3x3) ->
    bias -> Relu -> max_pooling2d, conv2d_2 (3x3) -> bias -> batch_normalization_1 ->
    Relu -> max_pooling2d_1, flatten, dense -> Relu, dense_1.

    Args:
        seed: Seed for the weights.
        widths: Output channels of the three convolutions.
        dense: Units of the hidden Dense layer.
        image_size: Height and width of the input (must be divisible by 4).
        channels: Input channels.
        num_classes: Classifier outputs.

    Returns:
        Model with input ``input_1`` ``[batch, image_size, image_size, channels]`` and
        output ``logits`` ``[batch, num_classes]``.
    """
    if len(widths) != 3:
        raise ValueError(f"widths must hold 3 channel counts, got {list(widths)}")
    w1, w2, w3 = (int(w) for w in widths)
    _check_sizes(
        w1=w1,
        w2=w2,
        w3=w3,
        dense=dense,
        image_size=image_size,
        channels=channels,
        num_classes=num_classes,
    )
    if image_size % 4:
        raise ValueError(f"image size {image_size} must be divisible by 4 (two 2x2 poolings)")
    b = _Graph("keras_nhwc_cnn", seed, opset=15, tf_style=True)
    x = b.graph_input("input_1", [BATCH, image_size, image_size, channels])

    def conv(x: str, cout: int, layer: str) -> str:
        name = f"model/{layer}/Conv2D"
        t = _tf_nchw(b, x, name=name)
        t = b.conv(t, cout, 3, bias=False, name=name)
        t = _tf_nhwc(b, t, name=name)
        bias = b.small_bias(f"model/{layer}/bias", cout)
        return b.add(t, bias, name=f"model/{layer}/BiasAdd")

    def batch_norm(x: str, layer: str) -> str:
        c = int(b.shape(x)[-1])
        scale = b.uniform_const(f"model/{layer}/batchnorm/mul/scale", (c,), 0.5, 1.5)
        shift = b.small_bias(f"model/{layer}/batchnorm/sub/shift", c, std=0.1)
        y = b.mul(x, scale, name=f"model/{layer}/batchnorm/mul_1")
        return b.add(y, shift, name=f"model/{layer}/batchnorm/add_1")

    def maxpool(x: str, layer: str) -> str:
        name = f"model/{layer}/MaxPool"
        t = _tf_nchw(b, x, name=name)
        t = b.maxpool(t, 2, name=name)
        return _tf_nhwc(b, t, name=name)

    x = conv(x, w1, "conv2d")
    x = b.relu(x, name="model/conv2d/Relu")
    x = batch_norm(x, "batch_normalization")
    x = conv(x, w2, "conv2d_1")
    x = b.relu(x, name="model/conv2d_1/Relu")
    x = maxpool(x, "max_pooling2d")
    x = conv(x, w3, "conv2d_2")
    x = batch_norm(x, "batch_normalization_1")
    x = b.relu(x, name="model/batch_normalization_1/Relu")
    x = maxpool(x, "max_pooling2d_1")
    _, hh, ww, cc = b.shape(x)
    features = int(hh) * int(ww) * int(cc)
    x = b.reshape_to(
        x,
        b.ints("model/flatten/Const", [-1, features]),
        (BATCH, features),
        name="model/flatten/Reshape",
    )
    x = b.linear(x, dense, name="model/dense", gain=2.0)
    x = b.relu(x, name="model/dense/Relu")
    b.output(b.linear(x, num_classes, name="model/dense_1"), "logits")
    return b.build(
        "Keras NHWC CNN as tf2onnx writes it: Transposes around Conv/MaxPool, NHWC bias/BN."
    )


def keras_transformer_block(
    seed: int = 0,
    *,
    layers: int = 1,
    hidden: int = 32,
    heads: int = 4,
    ffn: int = 64,
) -> onnx.ModelProto:
    """Keras transformer block (``MultiHeadAttention`` + Dense FFN) as tf2onnx writes it (opset 15).

    * query/key/value and attention-output projections as ``MatMul`` by ``[hidden,
      hidden]`` kernels + ``Add`` bias;
    * head split by ``Reshape`` to ``concat(tf.shape(x)[:1], [-1, heads, head_dim])``
      written ``Shape -> Cast(int32) -> Slice -> Concat -> Cast(int64)``; the query is
      scaled by ``Mul(1/sqrt(head_dim))`` before the scores; the einsums become
      ``Transpose`` + ``MatMul``; heads are merged by ``Reshape`` to
      ``concat(tf.shape(x)[:1], [-1, hidden])`` computed the same way;
    * residual ``Add`` then Keras LayerNormalization decomposed as
      ``ReduceMean / Sub / Mul / ReduceMean / Add / Sqrt / Reciprocal / Mul / Mul / Mul /
      Sub / Add``;
    * FFN ``MatMul + Add -> Relu -> MatMul + Add``, residual, LayerNormalization.

    Args:
        seed: Seed for the weights.
        layers: Number of stacked blocks.
        hidden: Model size.
        heads: Number of attention heads (must divide ``hidden``).
        ffn: FFN hidden size.

    Returns:
        Model with input ``input_1`` ``[batch, seq, hidden]`` and output ``output_1``
        ``[batch, seq, hidden]``.
    """
    _check_sizes(layers=layers, hidden=hidden, heads=heads, ffn=ffn)
    head_dim = _head_dim(hidden, heads)
    b = _Graph("keras_transformer_block", seed, opset=15, tf_style=True)
    x = b.graph_input("input_1", [BATCH, SEQ, hidden])
    split = (BATCH, SEQ, heads, head_dim)

    for i in range(layers):
        blk = "model/transformer_block" + (f"_{i}" if i else "")
        mha = f"{blk}/multi_head_attention"
        proj = {}
        for n in ("query", "key", "value"):
            t = b.linear(x, hidden, name=f"{mha}/{n}")
            target = b.tf_shape(t, 1, [-1, heads, head_dim], name=f"{mha}/{n}/Reshape")
            proj[n] = b.reshape_to(t, target, split, name=f"{mha}/{n}/Reshape")
        q = b.mul(proj["query"], b.scalar(1.0 / math.sqrt(head_dim)), name=f"{mha}/Mul")
        q = b.transpose(q, [0, 2, 1, 3], name=f"{mha}/einsum/transpose_query")
        k = b.transpose(proj["key"], [0, 2, 3, 1], name=f"{mha}/einsum/transpose_key")
        s = b.matmul(q, k, name=f"{mha}/einsum/MatMul")
        s = b.softmax(s, name=f"{mha}/softmax/Softmax")
        v = b.transpose(proj["value"], [0, 2, 1, 3], name=f"{mha}/einsum_1/transpose_value")
        ctx = b.matmul(s, v, name=f"{mha}/einsum_1/MatMul")
        ctx = b.transpose(ctx, [0, 2, 1, 3], name=f"{mha}/einsum_1/transpose_out")
        target = b.tf_shape(ctx, 1, [-1, hidden], name=f"{mha}/attention_output/Reshape")
        ctx = b.reshape_to(
            ctx, target, (BATCH, SEQ, hidden), name=f"{mha}/attention_output/Reshape"
        )
        y = b.linear(ctx, hidden, name=f"{mha}/attention_output")
        y = b.add(x, y, name=f"{blk}/add")
        x = b.layer_norm_tf(y, name=f"{blk}/layer_normalization", eps=1e-6)

        h = b.linear(x, ffn, name=f"{blk}/sequential/dense", gain=2.0)
        h = b.relu(h, name=f"{blk}/sequential/dense/Relu")
        h = b.linear(h, hidden, name=f"{blk}/sequential/dense_1")
        y = b.add(x, h, name=f"{blk}/add_1")
        x = b.layer_norm_tf(y, name=f"{blk}/layer_normalization_1", eps=1e-6)

    b.output(x, "output_1")
    return b.build(
        "Keras MultiHeadAttention block as tf2onnx writes it: int32 shape math, decomposed LN."
    )


TRANSFORMERS: dict[str, TransformerBuilder] = {
    "bert_like": bert_like,
    "vit_like": vit_like,
    "gpt_like": gpt_like,
    "llama_like": llama_like,
    "keras_nhwc_cnn": keras_nhwc_cnn,
    "keras_transformer_block": keras_transformer_block,
}
"""Builder for each transformer model, by name; sizes are keyword arguments with small defaults."""


def build(name: str, seed: int = 0, **sizes: Any) -> onnx.ModelProto:
    """Builds the transformer model called ``name``.

    Args:
        name: A key of :data:`TRANSFORMERS`.
        seed: Seed for the weights.
        **sizes: Keyword arguments of that builder (``layers``, ``hidden``, ...).

    Returns:
        The model.

    Raises:
        KeyError: If ``name`` is not in :data:`TRANSFORMERS`.
    """
    try:
        builder = TRANSFORMERS[name]
    except KeyError:
        raise KeyError(
            f"unknown transformer model {name!r}; available: {sorted(TRANSFORMERS)}"
        ) from None
    return builder(seed=seed, **sizes)
