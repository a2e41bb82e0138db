#!/usr/bin/env python
"""Export a small PaddlePaddle CNN and a small transformer encoder to ONNX with paddle2onnx.

This script needs PaddlePaddle and paddle2onnx, which must NOT be installed into
the interpreter that runs onnxprune and its tests (they pin their own onnx,
numpy and protobuf versions).  Run it from a separate virtual environment::

    python -m venv /tmp/venv-paddle
    /tmp/venv-paddle/bin/pip install paddlepaddle paddle2onnx onnxruntime onnx-graphsurgeon sympy
    /tmp/venv-paddle/bin/python tools/export_paddle.py       # from the repository root

(tested with paddlepaddle 3.3.1, paddle2onnx 2.1.0, onnx 1.17.0 and onnxruntime
1.32.0 in that environment).

Model ``paddle_cnn`` (weights from ``paddle.seed(seed)``), NCHW input
``[batch, 3, 32, 32]``:

    stem:  Conv2D(3->16, 3x3, pad 1) -> BatchNorm2D -> ReLU -> MaxPool2D(2)
    block: Conv2D(16->16, 3x3) -> BN -> ReLU -> Conv2D(16->16, 3x3) -> BN
           -> + identity shortcut -> ReLU
    down:  Conv2D(16->32, 3x3, stride 2) -> BN -> ReLU
    head:  AdaptiveAvgPool2D(1) -> flatten -> Linear(32 -> 10)

BatchNorm scale ~ U(0.5, 1.5), bias ~ N(0, 0.1^2), running statistics taken from
one training-mode pass over random data (momentum 0 for that pass); the Linear
head is re-drawn from N(0, 0.05^2).

The model is exported with ``paddle.onnx.export`` (which calls paddle2onnx) at
opset 13 with a dynamic batch dimension, renamed to input ``image`` / output
``logits`` (batch symbol ``batch``), checked with ``onnx.checker.check_model(full_check=True)`` and compared
with Paddle in onnxruntime (max abs diff < 1e-3) at batch sizes 1 and 3.

Model ``paddle_transformer`` (weights from ``paddle.seed(seed)``), input
``features`` float32 ``[batch, seq, 16]`` with dynamic batch and sequence:

    Linear(16 -> 32) -> nn.TransformerEncoder(2 x nn.TransformerEncoderLayer(
        d_model=32, nhead=4, dim_feedforward=64, dropout=0, activation="gelu"))
    -> Linear(32 -> 10)

(post-norm layers, as Paddle's default ``normalize_before=False``). LayerNorm weight
~ U(0.5, 1.5), bias ~ N(0, 0.1^2); every Linear bias (q/k/v/out projections
included) ~ N(0, 0.05^2). Output ``logits``: ``[batch, seq, 10]``. Exported at
opset 11 (``--transformer-opset``; Softmax keeps its pre-13 semantics there),
checked as above and compared with Paddle at batch sizes 1 and 3 and sequence
lengths 7 and 13.

Usage::

    /tmp/venv-paddle/bin/python tools/export_paddle.py [--out DIR] [--seed 0] [--opset 13]
        [--transformer-opset 11]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import paddle
import paddle2onnx
from paddle import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "models" / "exports"
DEFAULT_OPSET = 13
MAX_FILE_BYTES = 5 * 1024 * 1024
ATOL = 1e-3
CHECK_BATCHES = (1, 3)
IMAGE_SIZE = 32
NUM_CLASSES = 10
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
TRANSFORMER_OPSET = 11
CHECK_SEQ_LENS = (7, 13)
FEATURES = 16
HIDDEN = 32
HEADS = 4
FFN = 64
LAYERS = 2


class ConvBN(nn.Layer):
    def __init__(self, cin: int, cout: int, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False)
        self.bn = nn.BatchNorm2D(cout)
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class BasicBlock(nn.Layer):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBN(channels, channels)
        self.conv2 = ConvBN(channels, channels, act=False)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + x)


class PaddleCNN(nn.Layer):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = ConvBN(3, 16)
        self.pool = nn.MaxPool2D(2, 2)
        self.block = BasicBlock(16)
        self.down = ConvBN(16, 32, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = self.down(self.block(x))
        x = paddle.flatten(self.avgpool(x), 1)
        return self.fc(x)


@paddle.no_grad()
def condition_weights(model: PaddleCNN, rng: np.random.Generator) -> PaddleCNN:
    bns = [m for m in model.sublayers() if isinstance(m, nn.BatchNorm2D)]
    for bn in bns:
        n = bn.weight.shape[0]
        bn.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
        bn.bias.set_value(rng.normal(0.0, 0.1, n).astype("float32"))
        bn._momentum = 0.0  # running = momentum * running + (1 - momentum) * batch
    model.train()
    model(paddle.to_tensor(rng.standard_normal((64, 3, IMAGE_SIZE, IMAGE_SIZE)).astype("float32")))
    for bn in bns:
        bn._momentum = 0.9
    model.fc.weight.set_value(rng.normal(0.0, 0.05, model.fc.weight.shape).astype("float32"))
    model.fc.bias.set_value(rng.normal(0.0, 0.05, model.fc.bias.shape).astype("float32"))
    model.eval()
    return model


class PaddleTransformer(nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(FEATURES, HIDDEN)
        layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, FFN, dropout=0.0, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, LAYERS)
        self.head = nn.Linear(HIDDEN, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)))


@paddle.no_grad()
def condition_transformer(model: PaddleTransformer, rng: np.random.Generator) -> PaddleTransformer:
    for m in model.sublayers():
        if isinstance(m, nn.LayerNorm):
            n = m.weight.shape[0]
            m.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
            m.bias.set_value(rng.normal(0.0, 0.1, n).astype("float32"))
        elif isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.set_value(rng.normal(0.0, 0.05, m.bias.shape).astype("float32"))
    model.eval()
    return model


def _rename_io(proto: onnx.ModelProto, input_name: str = INPUT_NAME, dim_names: tuple[str, ...] = ("batch",)) -> onnx.ModelProto:
    """Stable input/output names and ``batch`` (``seq``) for paddle2onnx's ``DynamicDimension.N`` symbols."""
    renames = {proto.graph.input[0].name: input_name, proto.graph.output[0].name: OUTPUT_NAME}
    symbols = {
        d.dim_param: new for d, new in zip(proto.graph.input[0].type.tensor_type.shape.dim, dim_names) if d.dim_param
    }
    for value in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        value.name = renames.get(value.name, value.name)
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = symbols[dim.dim_param]
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)
    return proto


def export(model: PaddleCNN, path: Path, opset: int) -> None:
    spec = paddle.static.InputSpec([None, 3, IMAGE_SIZE, IMAGE_SIZE], "float32", INPUT_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "paddle_cnn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paddle.onnx.export(model, prefix, input_spec=[spec], opset_version=opset)
        proto = onnx.load(prefix + ".onnx")
    proto = _rename_io(proto)
    proto.producer_name = proto.producer_name or "paddle2onnx"
    onnx.save(proto, str(path))


def export_transformer(model: PaddleTransformer, path: Path, opset: int) -> None:
    # the spec's name must be the forward argument's; the graph input is renamed afterwards
    spec = paddle.static.InputSpec([None, None, FEATURES], "float32", "x")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "paddle_transformer")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paddle.onnx.export(model, prefix, input_spec=[spec], opset_version=opset)
        proto = onnx.load(prefix + ".onnx")
    proto = _rename_io(proto, "features", ("batch", "seq"))
    proto.producer_name = proto.producer_name or "paddle2onnx"
    onnx.save(proto, str(path))


def op_histogram(proto: onnx.ModelProto) -> Counter:
    return Counter(
        (f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
        for n in proto.graph.node
    )


def verify(path: Path, model: PaddleCNN, opset: int, seed: int) -> float:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    got_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if got_opset != opset:
        raise AssertionError(f"{path.name}: opset {got_opset}, expected {opset}")
    if not proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param:
        raise AssertionError(f"{path.name}: batch dimension is not dynamic")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for batch in CHECK_BATCHES:
        x = rng.standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE)).astype("float32")
        with paddle.no_grad():
            want = model(paddle.to_tensor(x)).numpy()
        (got,) = session.run(None, {INPUT_NAME: x})
        if got.shape != (batch, NUM_CLASSES):
            raise AssertionError(f"{path.name}: output shape {got.shape} at batch {batch}")
        diff = float(np.max(np.abs(got - want)))
        if not diff < ATOL:
            raise AssertionError(f"{path.name}: max abs diff {diff:.3g} at batch {batch}")
        worst = max(worst, diff)
    return worst


def verify_transformer(path: Path, model: PaddleTransformer, opset: int, seed: int) -> float:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    got_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if got_opset != opset:
        raise AssertionError(f"{path.name}: opset {got_opset}, expected {opset}")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if [d.dim_param for d in dims[:2]] != ["batch", "seq"]:
        raise AssertionError(f"{path.name}: batch and sequence are not dynamic")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for batch in CHECK_BATCHES:
        for seq in CHECK_SEQ_LENS:
            x = rng.standard_normal((batch, seq, FEATURES)).astype("float32")
            with paddle.no_grad():
                want = model(paddle.to_tensor(x)).numpy()
            (got,) = session.run(None, {"features": x})
            if got.shape != (batch, seq, NUM_CLASSES):
                raise AssertionError(f"{path.name}: output shape {got.shape} at batch {batch}, seq {seq}")
            diff = float(np.max(np.abs(got - want)))
            if not diff < ATOL:
                raise AssertionError(f"{path.name}: max abs diff {diff:.3g} at batch {batch}, seq {seq}")
            worst = max(worst, diff)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--transformer-opset", type=int, default=TRANSFORMER_OPSET)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    paddle.seed(args.seed)
    model = condition_weights(PaddleCNN(), np.random.default_rng(args.seed))
    path = out / "paddle_cnn.onnx"
    export(model, path, args.opset)
    diff = verify(path, model, args.opset, args.seed)
    _report(path, diff, args.opset)

    paddle.seed(args.seed)
    encoder = condition_transformer(PaddleTransformer(), np.random.default_rng(args.seed))
    path = out / "paddle_transformer.onnx"
    export_transformer(encoder, path, args.transformer_opset)
    diff = verify_transformer(path, encoder, args.transformer_opset, args.seed)
    _report(path, diff, args.transformer_opset)
    return 0


def _report(path: Path, diff: float, opset: int) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AssertionError(f"{path.name} is {size} bytes (> {MAX_FILE_BYTES})")
    hist = op_histogram(onnx.load(str(path)))
    ops = ", ".join(f"{op} {count}" for op, count in sorted(hist.items()))
    print(f"paddle {paddle.__version__}, paddle2onnx {paddle2onnx.__version__}, opset {opset}")
    print(f"exported {path} ({size} bytes, max |diff| {diff:.2e})")
    print(f"{path.name}: {sum(hist.values())} nodes: {ops}")


if __name__ == "__main__":
    sys.exit(main())
