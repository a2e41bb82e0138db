#!/usr/bin/env python
"""Export small torchvision networks to ONNX with both torch exporters.

Builds reduced-width versions of four torchvision architectures (ResNet,
MobileNetV2, EfficientNet-B0, DenseNet) with random but well-conditioned weights:

* random BatchNorm affine parameters (so per-channel scales differ, as in a
  trained network, instead of all being 1),
* random convolution biases where torchvision initialises them to zero (the
  squeeze-excitation convs of EfficientNet); identical all-zero tensors would be
  merged by the TorchScript exporter into one initializer plus ``Identity`` nodes,
* BatchNorm running statistics calibrated on random data (exact cumulative
  averages over a few train-mode forward passes),
* the final classifier re-drawn from N(0, 0.05**2) so the logits are O(1).

Each network is exported twice, with a dynamic batch dimension:

* ``{name}_legacy.onnx``: TorchScript exporter, ``dynamo=False``, opset 17;
* ``{name}_dynamo.onnx``: ``torch.export`` based exporter, ``dynamo=True``,
  opset 18, weights embedded in the file (no ``.onnx.data`` side file).

Every file is then checked with ``onnx.checker.check_model(full_check=True)`` and
run in onnxruntime at batch sizes 1 and 2 against the torch output.

Usage (from the repository root)::

    python tools/export_torch_models.py            # writes models/exports/
    python tools/export_torch_models.py --out DIR --seed 0

Requires torch, onnxscript and torchvision 0.28 (``pip install --no-deps
torchvision==0.28.0`` plus Pillow); see ``tools/torchvision_compat.py``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_compat import import_torchvision  # noqa: E402

torchvision = import_torchvision()
from torchvision.models.densenet import DenseNet  # noqa: E402
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf  # noqa: E402
from torchvision.models.mobilenetv2 import MobileNetV2  # noqa: E402
from torchvision.models.resnet import BasicBlock, ResNet  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "models" / "exports"

NUM_CLASSES = 10
IMAGE_SIZE = 64
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
LEGACY_OPSET = 17
DYNAMO_OPSET = 18
MAX_FILE_BYTES = 5 * 1024 * 1024
ATOL = 1e-3


# --------------------------------------------------------------------------- models


class SlimResNet(ResNet):
    """torchvision ``ResNet`` whose stage widths are ``width * (1, 2, 4, 8)``.

    torchvision hard-codes a stem of 64 channels and stage widths 64..512; this
    subclass scales them while keeping torchvision's blocks and ``forward``.
    """

    def __init__(self, block, layers, width: int = 16, num_classes: int = 1000, **kwargs):
        self._width_scale = width / 64
        self._stem_resized = False
        super().__init__(block, layers, num_classes=num_classes, **kwargs)
        norm_layer = self._norm_layer
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if not self._stem_resized:  # first stage: the stem feeds it width channels
            self.inplanes = int(self.inplanes * self._width_scale)
            self._stem_resized = True
        return super()._make_layer(block, int(planes * self._width_scale), blocks, stride, dilate)


def build_resnet() -> nn.Module:
    return SlimResNet(BasicBlock, [1, 1, 1, 1], width=16, num_classes=NUM_CLASSES)


def build_mobilenet_v2() -> nn.Module:
    return MobileNetV2(num_classes=NUM_CLASSES, width_mult=0.25)


def build_efficientnet() -> nn.Module:
    setting, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.34)
    return EfficientNet(setting, dropout=0.2, num_classes=NUM_CLASSES, last_channel=last_channel)


def build_densenet() -> nn.Module:
    return DenseNet(
        growth_rate=8,
        block_config=(2, 2, 2, 2),
        num_init_features=16,
        bn_size=2,
        num_classes=NUM_CLASSES,
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet": build_resnet,
    "mobilenet_v2": build_mobilenet_v2,
    "efficientnet": build_efficientnet,
    "densenet": build_densenet,
}


# ------------------------------------------------------------------- weights


def _classifier(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise RuntimeError(f"{type(model).__name__} has no Linear classifier")
    return linears[-1]


@torch.no_grad()
def condition_weights(model: nn.Module, batches: int = 8, batch_size: int = 16,
                      image_size: int = IMAGE_SIZE) -> nn.Module:
    """Give ``model`` random but meaningful weights (see module docstring); return it in eval mode."""
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d) and conv.bias is not None:
            conv.bias.normal_(0.0, 0.05)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.1)
        bn.reset_running_stats()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = None  # cumulative moving average: exact mean over the batches
    model.train()
    for _ in range(batches):
        model(torch.randn(batch_size, 3, image_size, image_size))
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    fc = _classifier(model)
    nn.init.normal_(fc.weight, mean=0.0, std=0.05)
    nn.init.normal_(fc.bias, mean=0.0, std=0.05)
    return model.eval()


# ------------------------------------------------------------------- export


def export_legacy(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=LEGACY_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def export_dynamo(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        external_data=False,
        opset_version=DYNAMO_OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
    )


EXPORTERS: dict[str, tuple[Callable[[nn.Module, torch.Tensor, Path], None], int]] = {
    "legacy": (export_legacy, LEGACY_OPSET),
    "dynamo": (export_dynamo, DYNAMO_OPSET),
}


# ------------------------------------------------------------------- checks


def verify(path: Path, model: nn.Module, expected_opset: int, seed: int) -> float:
    """Check ``path`` and compare it with ``model``; return the largest abs difference."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset != expected_opset:
        raise AssertionError(f"{path.name}: opset {opset}, expected {expected_opset}")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise AssertionError(f"{path.name}: has external data")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    gen = torch.Generator().manual_seed(seed + 1)
    worst = 0.0
    for batch in (1, 2):
        x = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
        with torch.no_grad():
            want = model(x).numpy()
        (got,) = session.run(None, {inp.name: x.numpy()})
        if got.shape != (batch, NUM_CLASSES):
            raise AssertionError(f"{path.name}: output shape {got.shape} at batch {batch}")
        diff = float(np.max(np.abs(got - want)))
        if not diff < ATOL:
            raise AssertionError(f"{path.name}: max abs diff {diff:.3g} at batch {batch}")
        worst = max(worst, diff)
    return worst


_ARCHITECTURES = {
    "resnet": "torchvision `ResNet` (BasicBlock, layers [1, 1, 1, 1], stage widths 16/32/64/128)",
    "mobilenet_v2": "torchvision `MobileNetV2(width_mult=0.25)`",
    "efficientnet": "torchvision `EfficientNet`, B0 config with width_mult 0.25, depth_mult 0.34",
    "densenet": "torchvision `DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2)`",
}


def write_readme(out: Path, seed: int) -> Path:
    """Describe every ``*.onnx`` in ``out`` in ``out/README.md``."""
    lines = [
        "# Exported torchvision models",
        "",
        "Small torchvision networks with random but calibrated weights (random BatchNorm",
        "affine parameters, BatchNorm running statistics computed on random data, classifier",
        "drawn from N(0, 0.05^2)), exported with both torch ONNX exporters. Input",
        f"`{INPUT_NAME}`: float32 `[batch, 3, {IMAGE_SIZE}, {IMAGE_SIZE}]` with a dynamic batch dimension;",
        f"output `{OUTPUT_NAME}`: `[batch, {NUM_CLASSES}]`. Each export matches the torch model",
        f"in onnxruntime to within {ATOL:g} (max abs diff) at batch sizes 1 and 2.",
        "",
        "Regenerate (from the repository root):",
        "",
        "```",
        "python tools/export_torch_models.py" + ("" if seed == 0 else f" --seed {seed}"),
        "```",
        "",
        "| file | model | exporter | opset | size (bytes) | size (KiB) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    exporter_desc = {
        "legacy": "TorchScript (`dynamo=False`)",
        "dynamo": "torch.export (`dynamo=True`, `external_data=False`)",
    }
    own = [p for p in sorted(out.glob("*.onnx")) if p.stem.rpartition("_")[0] in MODELS]
    for path in own:
        name, _, exporter = path.stem.rpartition("_")
        proto = onnx.load(str(path), load_external_data=False)
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        size = path.stat().st_size
        lines.append(
            f"| `{path.name}` | {name} | {exporter_desc.get(exporter, exporter)} | {opset} "
            f"| {size} | {size / 1024:.1f} |"
        )
    lines += ["", "Architectures:", ""]
    lines += [f"- `{name}`: {desc}" for name, desc in _ARCHITECTURES.items()]
    lines += [
        "",
        "Graph differences between the exporters (same weights, same outputs):",
        "",
        "- Both fold every BatchNorm that directly follows a convolution into that Conv;",
        "  only DenseNet's pre-activation BatchNorms remain as `BatchNormalization`.",
        "- Global pooling + flatten: legacy `GlobalAveragePool` -> `Flatten(axis=1)`;",
        "  dynamo `ReduceMean(axes=[-1, -2], keepdims=1)` -> `Reshape(shape=[-1, C], allowzero=1)`",
        "  with a constant shape initializer (no Shape/Gather/Concat in either).",
        "- Legacy MobileNetV2 feeds ReLU6's `Clip` bounds from `Constant` nodes; dynamo uses initializers.",
        "- Legacy DenseNet keeps single-input `Concat` nodes (first layer of each dense block).",
        "- Dynamo files carry per-node `metadata_props` (module path, FX node) and `value_info`,",
        "  which is why they are larger.",
    ]
    lines += [
        "",
        "Generated with torch "
        + torch.__version__.split("+")[0]
        + ", torchvision "
        + torchvision.__version__.split("+")[0]
        + f", seed {seed}.",
        "",
    ]
    readme = out / "README.md"
    # Other export scripts append their own "# Exported ..." sections; keep them.
    tail = ""
    if readme.exists():
        old = readme.read_text()
        cut = old.find("\n# Exported ", 1)
        tail = old[cut:] if cut >= 0 else ""
    readme.write_text("\n".join(lines) + tail)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: models/exports)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="torch.manual_seed for weights and data (default: 0)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted(MODELS),
        default=list(MODELS),
        help="subset of models to export",
    )
    args = parser.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        model = condition_weights(MODELS[name]())
        example = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
        for exporter, (export, opset) in EXPORTERS.items():
            path = out / f"{name}_{exporter}.onnx"
            side = path.with_name(path.name + ".data")
            if side.exists():
                side.unlink()
            export(model, example, path)
            if side.exists():
                raise AssertionError(f"{side} was written; exports must be single files")
            diff = verify(path, model, opset, args.seed)
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise AssertionError(f"{path.name} is {size} bytes (> {MAX_FILE_BYTES})")
            rows.append((path.name, exporter, opset, size, diff))
            print(f"exported {path} ({size / 1024:.1f} KiB, max |diff| {diff:.2e})", flush=True)

    print(f"wrote {write_readme(out, args.seed)}")
    print()
    print(f"{'file':<28} {'exporter':<8} {'opset':>5} {'bytes':>9} {'KiB':>8} {'max|diff|':>10}")
    for fname, exporter, opset, size, diff in rows:
        print(f"{fname:<28} {exporter:<8} {opset:>5} {size:>9} {size / 1024:>8.1f} {diff:>10.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
