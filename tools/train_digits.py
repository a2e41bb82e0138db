#!/usr/bin/env python
"""Train two small classifiers on scikit-learn's digits and export them to ONNX.

The 1797 8x8 grey images of scikit-learn's ``load_digits`` ship inside the package, so training
needs no network. The images are scaled to [0, 1] and split once with a fixed seed into

* ``train`` (1181 images): used for training only;
* ``calib`` (256 images): an unlabeled calibration split for pruning (never trained on);
* ``test`` (360 images): held out, with labels, for the accuracy reported below.

Two models (float32 input ``input`` of shape ``[batch, 1, 8, 8]``, output ``logits``
``[batch, 10]``):

* ``digits_cnn``: Conv3x3(32)-BN-ReLU, Conv3x3(64)-BN-ReLU, MaxPool2, Conv3x3(64)-BN-ReLU,
  Conv3x3(64)-BN-ReLU with a residual add, Flatten(64x4x4) -> Linear(128)-ReLU -> Linear(10);
* ``digits_vit``: a ViT (2x2 patches as 16 tokens + class token, hidden 64, 4 heads, MLP 128,
  2 pre-norm blocks), the ``TinyViT`` of ``tools/export_transformers.py``.

Both are exported with the TorchScript exporter (opset 17, dynamic batch), checked with the
full ONNX checker and against torch in onnxruntime. Written to ``models/trained/``:
``digits_cnn.onnx``, ``digits_vit.onnx``, ``digits_calib.npz`` (``input``),
``digits_test.npz`` (``input``, ``labels``), and the accuracy table in ``README.md``; the CNN and
its two splits are also copied to ``onnxprune/data/`` for ``onnxprune demo``.

Usage (from the repository root; needs ``pip install scikit-learn`` and torch; CPU, a few minutes)::

    python tools/train_digits.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "models" / "trained"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_transformers import TinyViT, ViTConfig  # noqa: E402


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = nn.Sequential(block(1, 32), block(32, 64), nn.MaxPool2d(2))
        self.res1 = block(64, 64)
        self.res2 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.res2(self.res1(x)))
        return self.head(x)


def load_splits(seed: int) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    test, calib, train = order[:360], order[360:616], order[616:]
    return {
        "x_train": x[train], "y_train": y[train],
        "x_calib": x[calib],
        "x_test": x[test], "y_test": y[test],
    }


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(x) + 63) // 64))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            xb = xt[idx]
            # small random shifts: a one-pixel translation, as augmentation
            dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def accuracy_torch(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(-1).numpy() == y).mean())


def export(model: nn.Module, path: Path, x: np.ndarray) -> None:
    sample = torch.from_numpy(x[:2])
    torch.onnx.export(
        model, (sample,), str(path), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {"input": x})[0]
    diff = float(np.abs(got - ref).max())
    assert diff < 1e-3, f"{path.name}: onnxruntime differs from torch by {diff}"
    size = path.stat().st_size
    assert size <= 5 * 1024 * 1024, f"{path.name} is {size} bytes (> 5 MB)"


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float((sess.run(None, {"input": x})[0].argmax(-1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    s = load_splits(args.seed)
    np.savez_compressed(args.out / "digits_calib.npz", input=s["x_calib"])
    np.savez_compressed(args.out / "digits_test.npz", input=s["x_test"], labels=s["y_test"])
    rows = []
    specs = [
        ("digits_cnn", lambda: DigitsCNN(), 40, 3e-3),
        ("digits_vit", lambda: TinyViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, embed_dim=64,
                                                 depth=2, num_heads=4, mlp_hidden=128)), 120, 2e-3),
    ]
    for name, make, epochs, lr in specs:
        torch.manual_seed(args.seed)
        model = make()
        t0 = time.perf_counter()
        train(model, s["x_train"], s["y_train"], epochs, lr, args.seed)
        secs = time.perf_counter() - t0
        path = args.out / f"{name}.onnx"
        export(model, path, s["x_test"])
        acc = onnx_accuracy(path, s["x_test"], s["y_test"])
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: test accuracy {acc:.4f} (torch {accuracy_torch(model, s['x_test'], s['y_test']):.4f}), "
              f"{params} params, trained {epochs} epochs in {secs:.1f}s, {path.stat().st_size} bytes")
        rows.append((name, acc, params, epochs, path.stat().st_size))
    readme = [
        "# Models trained here",
        "",
        "Trained and exported by `python tools/train_digits.py` (scikit-learn's digits, 8x8 grey",
        "images scaled to [0, 1]; seed 0; splits: 1181 train, 256 calibration, 360 test). Input",
        "`input` float32 `[batch, 1, 8, 8]`, output `logits` `[batch, 10]`.",
        "",
        "- `digits_calib.npz`: key `input`, the 256 calibration images (never trained on).",
        "- `digits_test.npz`: keys `input` and `labels`, the 360 held-out test images.",
        "",
        "| model | test accuracy (360 images, onnxruntime) | parameters | epochs | file size |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, acc, params, epochs, size in rows:
        readme.append(f"| `{name}.onnx` | {100 * acc:.2f}% | {params:,} | {epochs} | {size / 1024:.0f} KiB |")
    readme += [
        "",
        "`digits_cnn`: Conv3x3(32)-BN-ReLU, Conv3x3(64)-BN-ReLU, MaxPool2, a residual pair of",
        "Conv3x3(64)-BN, Flatten(64x4x4) -> Linear(128)-ReLU -> Linear(10).",
        "`digits_vit`: 2x2 patches (16 tokens) + class token, hidden 64, 4 heads, MLP 128, 2 pre-norm",
        "blocks (the `TinyViT` of `tools/export_transformers.py`).",
        "",
    ]
    (args.out / "README.md").write_text("\n".join(readme))
    # `onnxprune demo` runs on the CNN with its own calibration and test split
    package_data = Path(__file__).resolve().parent.parent / "onnxprune" / "data"
    for name in ("digits_cnn.onnx", "digits_calib.npz", "digits_test.npz"):
        shutil.copyfile(args.out / name, package_data / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
