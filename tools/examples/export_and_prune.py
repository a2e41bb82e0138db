"""Export a PyTorch model and prune it in the same script, with onnxprune as a pass pipeline.

    python tools/examples/export_and_prune.py -o small.onnx [--ratio 0.5] [--dynamo]

The three lines that matter are marked below: export to a ModelProto, hand it to
``onnxprune.optimize`` with a list of passes, and get a ModelProto back (written atomically when
``output`` is given). Needs PyTorch: ``pip install 'onnxprune[torch]'``.
"""

from __future__ import annotations

import argparse
import io

import onnx
import torch
from onnxprune.passes import ChannelPruning, Cleanup
from torch import nn

import onnxprune


class SmallNet(nn.Module):
    """Conv-BN-ReLU stages with a residual add, global pooling and a linear head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
        )
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(self.down(x))


def export(model: nn.Module, dynamo: bool = False) -> onnx.ModelProto:
    """The model as a ModelProto with a dynamic batch dimension."""
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    if dynamo:
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},),
                                    external_data=False)
        return program.model_proto
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="where to write the pruned model")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of channels removed per layer")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    net = SmallNet()
    # ---- the three lines: export, optimize with passes, done ----
    proto = export(net, args.dynamo)
    passes = [Cleanup(), ChannelPruning(ratio=args.ratio, round_to=8), Cleanup()]
    small = onnxprune.optimize(proto, passes, output=args.output)
    # --------------------------------------------------------------
    print(f"{len(proto.graph.node)} nodes -> {len(small.graph.node)} nodes; written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
