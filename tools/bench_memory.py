#!/usr/bin/env python
"""Peak memory and wall time of `analyze` and `prune` on large models, as a user runs them.

Run from the repository root (CPU, about 5 minutes on 2 cores; needs torch, torchvision and
transformers for the exports, which are cached in ``--workdir``)::

    python tools/bench_memory.py --workdir ~/.cache/onnxprune-bench

Each command runs in its own process (``tools/harness.py``: its own peak RSS from ``wait4``, not
the benchmark's). ``start-up`` is ``python -c "import onnxprune.cli"``, what every command pays
before it reads a model. Targets: peak RSS of
`prune` under 2x the model file on ResNet-50 and ViT-B/16; `analyze` of ViT-B/16 and BERT-base
under 3 s beyond start-up. Models: torchvision ``resnet50`` and ``vit_b_16`` (TorchScript
exporter, dynamic batch) and a BERT-base encoder (``transformers.BertModel(BertConfig())``,
sequence 128), all with random weights (memory and time do not depend on the values). The
section ``memory`` of ``docs/benchmarks.md`` is replaced.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

DOC = harness.ROOT / "docs" / "benchmarks.md"
MODELS = ("resnet50", "vit_b_16", "bert_base")


def export(name: str, workdir: Path) -> Path:
    dest = workdir / f"{name}.onnx"
    if dest.exists():
        return dest
    import torch
    from torchvision_compat import import_torchvision

    tv = import_torchvision()  # also lets transformers import
    torch.manual_seed(0)
    tmp = dest.with_suffix(".part.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "bert_base":
            from transformers import BertConfig, BertModel

            bert = BertModel(BertConfig()).eval()

            class Encoder(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.bert = bert

                def forward(self, input_ids, attention_mask):  # noqa: ANN001
                    return self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]

            ids = torch.randint(0, 1000, (1, 128))
            dyn = {0: "batch", 1: "sequence"}
            torch.onnx.export(Encoder(), (ids, torch.ones_like(ids)), str(tmp), dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "last_hidden_state": dyn})
        else:
            model = getattr(tv.models, name)(weights=None).eval()
            torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(tmp), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="exports are cached here")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing the doc")
    args = ap.parse_args(argv)
    work = Path(args.workdir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    starts = []
    rows = []
    for name in MODELS:
        src = export(name, work)
        size = src.stat().st_size
        # analyze three times, each after a bare start-up run (A B A B ...): the time beyond
        # start-up is the median of the paired differences, steadier on a shared machine
        pairs = []
        for _ in range(3):
            starts.append(harness.run_child([sys.executable, "-c", "import onnxprune.cli"]))
            pairs.append((starts[-1], harness.run_child(harness.cli() + ["analyze", str(src)])))
        an = sorted((a for _, a in pairs), key=lambda r: r.seconds)[1]
        beyond = statistics.median(a.seconds - s.seconds for s, a in pairs)
        out = work / f"{name}-pruned.onnx"
        pr = harness.run_child(harness.cli() + ["prune", str(src), "-o", str(out), "--ratio", "0.5"])
        for run, what in ((an, "analyze"), (pr, "prune")):
            if run.returncode != 0:
                raise RuntimeError(f"{what} {name}: exit {run.returncode}: {run.stderr.strip()[-300:]}")
        rows.append((name, size, an, pr, beyond))
        print(f"{name}: analyze {an.seconds:.1f} s ({beyond:.1f} s beyond start-up) {harness.mb(an.peak_rss)}, "
              f"prune {pr.seconds:.1f} s {harness.mb(pr.peak_rss)} ({pr.peak_rss / size:.2f}x file)", flush=True)
    start = sorted(starts, key=lambda r: r.seconds)[len(starts) // 2]
    command = "python tools/bench_memory.py" + (" " + shlex.join(argv) if argv else "")
    lines = [
        "## Peak memory and analysis time on large models",
        "",
        f"`{command}` — {harness.describe_machine(harness.machine_info())}. One process per command, "
        f"peak RSS of that process (`wait4`). Start-up (`import onnxprune.cli`, median of "
        f"{len(starts)}): {start.seconds:.2f} s, {harness.mb(start.peak_rss)}. `analyze`: median of 3 runs, "
        "each after a start-up run; *beyond start-up* is the median of those paired differences. "
        "`prune`: one run. On a shared machine times are indicative (±30 %).",
        "",
        "| model | file | analyze: wall (beyond start-up) | analyze: peak RSS | prune --ratio 0.5: wall "
        "| prune: peak RSS (÷ file) | prune: peak beyond start-up (÷ file) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, size, an, pr, beyond in rows:
        lines.append(f"| {name} | {harness.mb(size)} | {an.seconds:.1f} s ({beyond:.1f} s) "
                     f"| {harness.mb(an.peak_rss)} | {pr.seconds:.1f} s | {harness.mb(pr.peak_rss)} "
                     f"({pr.peak_rss / size:.2f}x) | {harness.mb(pr.peak_rss - start.peak_rss)} "
                     f"({(pr.peak_rss - start.peak_rss) / size:.2f}x) |")
    section = "\n".join(lines) + "\n\n"
    if args.no_write:
        print(section)
    else:
        harness.write_section(DOC, "memory", section)
        print(f"wrote the 'memory' section of {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
