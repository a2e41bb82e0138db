#!/usr/bin/env python
"""Export a small Keras CNN and a small Keras transformer block to ONNX with tf2onnx.

This script needs TensorFlow and tf2onnx, which must NOT be installed into the
interpreter that runs onnxprune and its tests (they pull in their own numpy,
protobuf and onnx versions).  Run it from a separate virtual environment::

    python -m venv /tmp/venv-tf
    /tmp/venv-tf/bin/pip install tensorflow-cpu tf2onnx onnxruntime
    /tmp/venv-tf/bin/python tools/export_keras.py          # from the repository root

(tested with tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0, onnx 1.23.2,
onnxruntime 1.32.0).

Models (weights from ``keras.utils.set_random_seed(seed)``):

* ``keras_cnn``: ``Input(32, 32, 3)`` (NHWC, as Keras uses it) ->
  [Conv2D(8, 3, same) -> BatchNormalization -> ReLU] -> MaxPooling2D ->
  [Conv2D(16) -> BN -> ReLU] -> [Conv2D(16) -> BN -> ReLU] -> MaxPooling2D ->
  Flatten -> Dense(10).  BatchNorm gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1^2), moving
  statistics calibrated on random data; Dense re-drawn from N(0, 0.05^2).
  ONNX input ``image``: float32 ``[batch, 32, 32, 3]``; output ``logits``:
  ``[batch, 10]``.
* ``keras_transformer``: one post-norm transformer encoder block on
  ``[batch, seq, 64]``: ``MultiHeadAttention(num_heads=4, key_dim=16)`` (self
  attention) -> residual Add -> LayerNormalization -> Dense(128, relu) ->
  Dense(64) -> residual Add -> LayerNormalization.  LayerNorm gamma ~ U(0.5, 1.5),
  beta ~ N(0, 0.1^2); every bias (Dense and the query/key/value/output
  projections of the attention layer) ~ N(0, 0.05^2).  ONNX input ``tokens``: float32 ``[batch, seq, 64]`` with
  dynamic batch and sequence; output ``hidden``: ``[batch, seq, 64]``.

Both are converted with ``tf2onnx.convert.from_function`` (a ``tf.function``
around the Keras model, with an input signature whose batch / sequence
dimensions are ``None``) at opset 17 (tf2onnx 1.17 supports opsets up to 18), with the symbolic
input/output dimensions renamed from tf2onnx's ``unk__N`` to ``batch`` / ``seq``, then checked with
``onnx.checker.check_model(full_check=True)`` and compared with Keras in
onnxruntime (max abs diff < 1e-3) at batch sizes 1 and 3, and for the
transformer at sequence lengths 7 and 13.

Usage::

    /tmp/venv-tf/bin/python tools/export_keras.py [--out DIR] [--seed 0] [--opset 17]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "models" / "exports"
DEFAULT_OPSET = 17
MAX_FILE_BYTES = 5 * 1024 * 1024
ATOL = 1e-3
CHECK_BATCHES = (1, 3)
CHECK_SEQ_LENS = (7, 13)

IMAGE_SIZE = 32
NUM_CLASSES = 10
HIDDEN = 64
HEADS = 4
KEY_DIM = 16
FFN = 128


# --------------------------------------------------------------------- models


def build_cnn() -> keras.Model:
    def block(x, filters: int, name: str):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x)

    inp = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = block(inp, 8, "block1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = block(x, 16, "block2")
    x = block(x, 16, "block3")
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inp, out, name="keras_cnn")


def build_transformer() -> keras.Model:
    inp = keras.Input((None, HIDDEN), name="tokens")
    attn = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=KEY_DIM, name="mha")(inp, inp)
    x = keras.layers.Add(name="attn_residual")([inp, attn])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="ln1")(x)
    h = keras.layers.Dense(FFN, activation="relu", name="ffn1")(x)
    h = keras.layers.Dense(HIDDEN, name="ffn2")(h)
    x = keras.layers.Add(name="ffn_residual")([x, h])
    out = keras.layers.LayerNormalization(epsilon=1e-6, name="ln2")(x)
    return keras.Model(inp, out, name="keras_transformer")


def condition_cnn(model: keras.Model, rng: np.random.Generator) -> None:
    """Random BN affines, BN moving statistics from random data, small Dense head."""
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        n = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        bn.beta.assign(rng.normal(0.0, 0.1, n).astype("float32"))
        bn.momentum = 0.0  # one training-mode pass stores that batch's statistics
    calib = rng.standard_normal((64, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    model(calib, training=True)
    for bn in bns:
        bn.momentum = 0.99
    dense = model.get_layer("logits")
    dense.kernel.assign(rng.normal(0.0, 0.05, dense.kernel.shape).astype("float32"))
    dense.bias.assign(rng.normal(0.0, 0.05, dense.bias.shape).astype("float32"))


def condition_transformer(model: keras.Model, rng: np.random.Generator) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.LayerNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, n).astype("float32"))
    # non-zero biases everywhere (Dense layers and the four EinsumDense projections inside
    # MultiHeadAttention), as in a trained model; all-zero bias adds would be folded away
    for weight in model.weights:
        if weight.path.endswith("bias"):
            weight.assign(rng.normal(0.0, 0.05, weight.shape).astype("float32"))


# --------------------------------------------------------------------- export


def _name_dynamic_dims(proto: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Rename tf2onnx's ``unk__N`` symbols of the leading graph input/output dims to ``names``."""
    mapping = {}
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, names):
            if dim.dim_param:
                mapping[dim.dim_param] = name
    for value in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def convert(
    model: keras.Model,
    spec: tf.TensorSpec,
    output_name: str,
    dim_names: tuple[str, ...],
    opset: int,
    path: Path,
) -> onnx.ModelProto:
    fn = tf.function(lambda x: {output_name: model(x, training=False)})
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=opset)
    _name_dynamic_dims(proto, dim_names)
    onnx.save(proto, str(path))
    return proto


def op_histogram(proto: onnx.ModelProto) -> Counter:
    return Counter(
        (f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
        for n in proto.graph.node
    )


def verify(path: Path, model: keras.Model, input_shape, seq_lens, opset: int, seed: int) -> float:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    got_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if got_opset != opset:
        raise AssertionError(f"{path.name}: opset {got_opset}, expected {opset}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for seq in seq_lens:
        for batch in CHECK_BATCHES:
            shape = [batch] + [seq if d is None else d for d in input_shape]
            x = rng.standard_normal(shape).astype("float32")
            want = np.asarray(model(x, training=False))
            (got,) = session.run(None, {inp.name: x})
            if got.shape != want.shape:
                raise AssertionError(f"{path.name}: shape {got.shape} != {want.shape}")
            diff = float(np.max(np.abs(got - want)))
            if not diff < ATOL:
                raise AssertionError(f"{path.name}: max abs diff {diff:.3g} at {shape}")
            worst = max(worst, diff)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    jobs = [
        (
            "keras_cnn",
            build_cnn,
            condition_cnn,
            tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="image"),
            "logits",
            ("batch",),
            (IMAGE_SIZE, IMAGE_SIZE, 3),
            (None,),
        ),
        (
            "keras_transformer",
            build_transformer,
            condition_transformer,
            tf.TensorSpec([None, None, HIDDEN], tf.float32, name="tokens"),
            "hidden",
            ("batch", "seq"),
            (None, HIDDEN),
            CHECK_SEQ_LENS,
        ),
    ]
    rows = []
    for name, build, condition, spec, output_name, dim_names, input_shape, seq_lens in jobs:
        keras.utils.set_random_seed(args.seed)
        model = build()
        condition(model, np.random.default_rng(args.seed))
        path = out / f"{name}.onnx"
        convert(model, spec, output_name, dim_names, args.opset, path)
        diff = verify(path, model, input_shape, seq_lens, args.opset, args.seed)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AssertionError(f"{path.name} is {size} bytes (> {MAX_FILE_BYTES})")
        hist = op_histogram(onnx.load(str(path)))
        rows.append((path.name, size, diff, hist))
        print(f"exported {path} ({size / 1024:.1f} KiB, max |diff| {diff:.2e})", flush=True)

    print()
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, tf2onnx {tf2onnx.__version__}, "
        f"opset {args.opset}"
    )
    for fname, size, diff, hist in rows:
        ops = ", ".join(f"{op} {count}" for op, count in sorted(hist.items()))
        print(f"{fname}: {size} bytes, max |diff| {diff:.2e}, {sum(hist.values())} nodes: {ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
