#!/usr/bin/env python
"""Export a tiny BERT encoder and a tiny ViT to ONNX with both torch exporters.

Both models are written in plain torch, following the module structure and the
tensor manipulations of the reference implementations, so that their ONNX graphs
have the shape of real exports:

* ``TinyBert``: a BERT encoder in the style of Hugging Face ``BertModel`` +
  ``BertForSequenceClassification`` (vocab 100, 32 positions, hidden 64, 4 heads,
  FFN 128, 2 layers, post-norm, exact GELU, 2 labels).  Self-attention is written
  like ``BertSelfAttention``: ``x.view(x.size()[:-1] + (heads, head_dim))``,
  ``permute(0, 2, 1, 3)``, ``q @ k^T / sqrt(head_dim)`` plus the extended additive
  mask ``(1 - attention_mask[:, None, None, :]) * finfo.min``, softmax,
  ``@ v``, ``permute(0, 2, 1, 3)`` and ``view(*ctx.size()[:-2], hidden)``.  The
  classifier reads the first token through a tanh pooler.
  Inputs ``input_ids`` and ``attention_mask``: int64 ``[batch, seq]`` (seq <= 32);
  output ``logits``: float32 ``[batch, 2]``.
* ``TinyViT``: a ViT in the style of timm ``VisionTransformer`` (32x32 RGB
  images, 8x8 patches, hidden 64, 4 heads, MLP 128, 2 pre-norm blocks, class
  token + learned position embedding, 10 classes).  Attention is written like
  timm's ``Attention``: one ``qkv`` Linear, ``reshape(B, N, 3, heads, head_dim)``,
  ``permute(2, 0, 3, 1, 4)``, ``unbind(0)``, ``q @ k.transpose(-2, -1) * scale``,
  softmax, ``@ v``, ``transpose(1, 2).reshape(B, N, C)``, ``proj``.
  Input ``pixel_values``: float32 ``[batch, 3, 32, 32]``; output ``logits``:
  float32 ``[batch, 10]``.

Weights come from ``torch.manual_seed(seed)`` with the default initialisers,
then every LayerNorm gets weight ~ U(0.5, 1.5) and bias ~ N(0, 0.1^2) (so it is not
the identity affine map) and the classifier is re-drawn from N(0, 0.05^2).

Each model is exported twice:

* ``{name}_legacy.onnx``: TorchScript exporter, ``dynamo=False``, opset 17,
  ``dynamic_axes`` for batch (and sequence for BERT);
* ``{name}_dynamo.onnx``: ``torch.export`` based exporter, ``dynamo=True``,
  ``external_data=False``, opset 18, ``dynamic_shapes`` built from
  ``torch.export.Dim`` (batch, and sequence for BERT).

Every file is checked with ``onnx.checker.check_model(full_check=True)`` and
compared with torch in onnxruntime (max abs diff < 1e-3) at batch sizes 1 and 3
and, for BERT, sequence lengths 7 and 13 with padded attention masks.  The
op-type histogram of each file is printed.

Usage (from the repository root)::

    python tools/export_transformers.py                 # writes models/exports/
    python tools/export_transformers.py --out DIR --seed 0 --models bert_tiny

Requires torch and onnxscript (no ``transformers`` / ``timm`` package).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "models" / "exports"

LEGACY_OPSET = 17
DYNAMO_OPSET = 18
MAX_FILE_BYTES = 5 * 1024 * 1024
ATOL = 1e-3
CHECK_BATCHES = (1, 3)
CHECK_SEQ_LENS = (7, 13)


# ------------------------------------------------------------------------ BERT


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 100
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 32
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    num_labels: int = 2


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.register_buffer(
            "position_ids",
            torch.arange(config.max_position_embeddings).expand((1, -1)),
            persistent=False,
        )
        self.register_buffer(
            "token_type_ids",
            torch.zeros((1, config.max_position_embeddings), dtype=torch.long),
            persistent=False,
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq_length = input_ids.size(1)
        position_ids = self.position_ids[:, :seq_length]
        token_type_ids = self.token_type_ids[:, :seq_length].expand(input_ids.size(0), seq_length)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        return self.LayerNorm(embeddings)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)

    def transpose_for_scores(self, x: torch.Tensor) -> torch.Tensor:
        new_x_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        x = x.view(new_x_shape)
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        attention_scores = attention_scores + attention_mask
        attention_probs = nn.functional.softmax(attention_scores, dim=-1)
        context_layer = torch.matmul(attention_probs, value_layer)
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_context_layer_shape = context_layer.size()[:-2] + (self.all_head_size,)
        return context_layer.view(new_context_layer_shape)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        attention_output = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attention_output), attention_output)


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class TinyBert(nn.Module):
    """BERT encoder + pooler + sequence-classification head."""

    def __init__(self, config: BertConfig | None = None):
        super().__init__()
        self.config = config = config or BertConfig()
        self.embeddings = BertEmbeddings(config)
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = self.embeddings(input_ids)
        dtype = hidden_states.dtype
        extended_attention_mask = attention_mask[:, None, None, :].to(dtype=dtype)
        extended_attention_mask = (1.0 - extended_attention_mask) * torch.finfo(dtype).min
        for layer in self.layer:
            hidden_states = layer(hidden_states, extended_attention_mask)
        return self.classifier(self.pooler(hidden_states))


# ------------------------------------------------------------------------- ViT


@dataclass(frozen=True)
class ViTConfig:
    img_size: int = 32
    patch_size: int = 8
    in_chans: int = 3
    embed_dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_hidden: int = 128
    num_classes: int = 10
    eps: float = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(
            config.in_chans, config.embed_dim, config.patch_size, stride=config.patch_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, N, C


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.eps)
        self.attn = Attention(config.embed_dim, config.num_heads)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.eps)
        self.mlp = Mlp(config.embed_dim, config.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Pre-norm ViT with class token and learned position embedding."""

    def __init__(self, config: ViTConfig | None = None):
        super().__init__()
        self.config = config = config or ViTConfig()
        num_patches = (config.img_size // config.patch_size) ** 2
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, config.embed_dim))
        self.blocks = nn.Sequential(*(Block(config) for _ in range(config.depth)))
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.eps)
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x[:, 0])


class MhaBlock(nn.Module):
    """torchvision's ``EncoderBlock``: ``nn.MultiheadAttention`` (packed in-projection) between
    pre-norms; the TorchScript exporter writes its q/k/v unbind as ``Gather`` on a stacked axis,
    batch and heads merged as ``B * heads``, and the head width as ``hidden // heads``."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.eps)
        self.attn = nn.MultiheadAttention(config.embed_dim, config.num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.eps)
        self.mlp = Mlp(config.embed_dim, config.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyMhaViT(TinyViT):
    """The same ViT with torchvision's attention block (``vit_b_16`` in miniature)."""

    def __init__(self, config: ViTConfig | None = None):
        super().__init__(config)
        self.blocks = nn.Sequential(*(MhaBlock(self.config) for _ in range(self.config.depth)))


# --------------------------------------------------------------------- weights


@torch.no_grad()
def condition_weights(model: nn.Module, head: nn.Linear) -> nn.Module:
    """Perturb LayerNorm affines away from (1, 0) and re-draw ``head``; return eval model."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
    nn.init.normal_(head.weight, mean=0.0, std=0.05)
    nn.init.normal_(head.bias, mean=0.0, std=0.05)
    return model.eval()


# ------------------------------------------------------------------ specs


@dataclass
class Spec:
    """How to build, feed and export one model."""

    build: Callable[[], nn.Module]
    input_names: list[str]
    output_name: str
    num_outputs: int
    make_inputs: Callable[[int, int, torch.Generator], tuple[torch.Tensor, ...]]
    legacy_dynamic_axes: dict[str, dict[int, str]]
    dynamo_dynamic_shapes: Callable[[], dict[str, dict[int, torch.export.Dim]]]
    seq_lens: tuple[int | None, ...]


def _build_bert() -> nn.Module:
    model = TinyBert()
    return condition_weights(model, model.classifier)


def _build_vit() -> nn.Module:
    model = TinyViT()
    return condition_weights(model, model.head)


def _build_mha_vit() -> nn.Module:
    model = TinyMhaViT()
    return condition_weights(model, model.head)


def _bert_inputs(batch: int, seq: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    cfg = BertConfig()
    input_ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen)
    # right-padded masks of different lengths per sample (at least 2 real tokens)
    lengths = torch.randint(2, seq + 1, (batch,), generator=gen)
    lengths[0] = seq
    attention_mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.long)
    return input_ids, attention_mask


def _vit_inputs(batch: int, _seq: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    cfg = ViTConfig()
    return (torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, generator=gen),)


def _bert_dims():
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("seq", min=2, max=BertConfig().max_position_embeddings)
    return {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}


def _vit_dims():
    return {"pixel_values": {0: torch.export.Dim("batch", min=1, max=1024)}}


SPECS: dict[str, Spec] = {
    "bert_tiny": Spec(
        build=_build_bert,
        input_names=["input_ids", "attention_mask"],
        output_name="logits",
        num_outputs=BertConfig().num_labels,
        make_inputs=_bert_inputs,
        legacy_dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "logits": {0: "batch"},
        },
        dynamo_dynamic_shapes=_bert_dims,
        seq_lens=CHECK_SEQ_LENS,
    ),
    "vit_tiny": Spec(
        build=_build_vit,
        input_names=["pixel_values"],
        output_name="logits",
        num_outputs=ViTConfig().num_classes,
        make_inputs=_vit_inputs,
        legacy_dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        dynamo_dynamic_shapes=_vit_dims,
        seq_lens=(None,),
    ),
}
SPECS["vit_mha_tiny"] = dataclasses.replace(SPECS["vit_tiny"], build=_build_mha_vit)  # same inputs and axes


# ------------------------------------------------------------------- export


def export_legacy(model: nn.Module, spec: Spec, example: tuple, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=LEGACY_OPSET,
            input_names=spec.input_names,
            output_names=[spec.output_name],
            dynamic_axes=spec.legacy_dynamic_axes,
            do_constant_folding=True,
        )


def export_dynamo(model: nn.Module, spec: Spec, example: tuple, path: Path) -> None:
    torch.onnx.export(
        model,
        example,
        str(path),
        dynamo=True,
        external_data=False,
        opset_version=DYNAMO_OPSET,
        input_names=spec.input_names,
        output_names=[spec.output_name],
        dynamic_shapes=spec.dynamo_dynamic_shapes(),
    )


EXPORTERS: dict[str, tuple[Callable[[nn.Module, Spec, tuple, Path], None], int]] = {
    "legacy": (export_legacy, LEGACY_OPSET),
    "dynamo": (export_dynamo, DYNAMO_OPSET),
}


# ------------------------------------------------------------------- checks


def op_histogram(proto: onnx.ModelProto) -> Counter:
    """Op types of the main graph (custom domains prefixed with ``domain::``)."""
    return Counter(
        (f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
        for n in proto.graph.node
    )


def verify(path: Path, model: nn.Module, spec: Spec, expected_opset: int, seed: int) -> float:
    """Check ``path`` and compare it with ``model``; return the largest abs difference."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset != expected_opset:
        raise AssertionError(f"{path.name}: opset {opset}, expected {expected_opset}")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise AssertionError(f"{path.name}: has external data")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != spec.input_names:
        raise AssertionError(f"{path.name}: inputs {names}, expected {spec.input_names}")
    gen = torch.Generator().manual_seed(seed + 1)
    worst = 0.0
    for seq in spec.seq_lens:
        for batch in CHECK_BATCHES:
            inputs = spec.make_inputs(batch, seq or 0, gen)
            with torch.no_grad():
                want = model(*inputs).numpy()
            feeds = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
            (got,) = session.run(None, feeds)
            if got.shape != (batch, spec.num_outputs):
                raise AssertionError(f"{path.name}: output shape {got.shape} at batch {batch}")
            diff = float(np.max(np.abs(got - want)))
            if not diff < ATOL:
                raise AssertionError(
                    f"{path.name}: max abs diff {diff:.3g} at batch {batch}, seq {seq}"
                )
            worst = max(worst, diff)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: models/exports)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="torch.manual_seed for weights and data (default: 0)"
    )
    parser.add_argument(
        "--models", nargs="+", choices=sorted(SPECS), default=list(SPECS), help="models to export"
    )
    parser.add_argument(
        "--exporters",
        nargs="+",
        choices=sorted(EXPORTERS),
        default=list(EXPORTERS),
        help="exporters to use (default: both)",
    )
    args = parser.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        spec = SPECS[name]
        torch.manual_seed(args.seed)
        model = spec.build()
        # example with batch 2 and (for BERT) seq 11 so no dynamic dim is specialised to 1
        example = spec.make_inputs(2, 11, torch.Generator().manual_seed(args.seed))
        for exporter in args.exporters:
            export, opset = EXPORTERS[exporter]
            path = out / f"{name}_{exporter}.onnx"
            side = path.with_name(path.name + ".data")
            if side.exists():
                side.unlink()
            export(model, spec, example, path)
            if side.exists():
                raise AssertionError(f"{side} was written; exports must be single files")
            diff = verify(path, model, spec, opset, args.seed)
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise AssertionError(f"{path.name} is {size} bytes (> {MAX_FILE_BYTES})")
            hist = op_histogram(onnx.load(str(path), load_external_data=False))
            rows.append((path.name, exporter, opset, size, diff, hist))
            print(f"exported {path} ({size / 1024:.1f} KiB, max |diff| {diff:.2e})", flush=True)

    print()
    print(f"{'file':<24} {'exporter':<8} {'opset':>5} {'bytes':>9} {'KiB':>8} {'max|diff|':>10}")
    for fname, exporter, opset, size, diff, _ in rows:
        print(f"{fname:<24} {exporter:<8} {opset:>5} {size:>9} {size / 1024:>8.1f} {diff:>10.2e}")
    print()
    for fname, *_, hist in rows:
        ops = ", ".join(f"{op} {count}" for op, count in sorted(hist.items()))
        print(f"{fname}: {sum(hist.values())} nodes: {ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
