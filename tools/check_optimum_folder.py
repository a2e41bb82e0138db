#!/usr/bin/env python
"""A folder written by Optimum's ONNX exporter, pruned by ``onnxprune prune DIR -o OUT/``, still loads
with Optimum's onnxruntime classes.

Builds a small BERT encoder from a config (seeded random weights: the check is about the folder,
not accuracy, and nothing is downloaded), exports it with Optimum's exporter (what
``optimum-cli export onnx --task feature-extraction`` runs), prunes the folder with the onnxprune
command line, loads original and pruned folders with ``ORTModelForFeatureExtraction`` and compares
their ``last_hidden_state`` on seeded token ids. Results go to ``docs/integrations.md``.

Optimum's exporter needs transformers 4.x, and this repository's main environment has 5.x, so it
runs in its own virtual environment::

    python -m venv /tmp/opt && . /tmp/opt/bin/activate
    pip install torch==2.13.0 && pip install 'optimum[onnxruntime]==1.26.1' 'transformers>=4.45,<4.53' onnxscript
    pip install -e . && python tools/check_optimum_folder.py

With torch >= 2.9 Optimum 1.26's exporter calls ``torch.onnx.export`` with its new default
(``dynamo=True``) and then fails deleting an external-data file it did not expect; the script runs
the exporter with ``dynamo=False``, the exporter Optimum 1.26 was written for.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from onnxprune.report import replace_section  # noqa: E402

DOC = REPO / "docs" / "integrations.md"
BEGIN, END = "<!-- optimum-folder:begin -->", "<!-- optimum-folder:end -->"


def main() -> int:
    import optimum.version
    import torch
    import transformers
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=512, max_position_embeddings=128)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        BertModel(cfg).eval().save_pretrained(t / "bert")
        torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)  # see the module docstring
        main_export(str(t / "bert"), output=t / "exported", task="feature-extraction")
        exported = sorted(p.name for p in (t / "exported").iterdir())
        rng = np.random.default_rng(0)
        ids = torch.from_numpy(rng.integers(0, cfg.vocab_size, size=(4, 32)))
        feeds = dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
        original = ORTModelForFeatureExtraction.from_pretrained(t / "exported")
        ref = original(**feeds).last_hidden_state.numpy()
        for ratio in (0.25, 0.5):
            out = t / f"pruned-{ratio}"
            cp = subprocess.run([sys.executable, "-m", "onnxprune", "prune", str(t / "exported"), "-o", str(out),
                                 "--ratio", str(ratio), "--json"], capture_output=True, text=True)
            if cp.returncode != 0:
                raise SystemExit(f"prune of the folder failed: {cp.stderr.strip()}")
            summary = json.loads(cp.stdout)
            pruned = ORTModelForFeatureExtraction.from_pretrained(out)  # the check: Optimum loads it
            got = pruned(**feeds).last_hidden_state.numpy()
            cos = float(np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got)))
            rows.append({"ratio": ratio, "macs": summary["macs_after"] / summary["macs_before"],
                         "params": summary["params_after"] / summary["params_before"], "shape": list(got.shape),
                         "cosine": cos, "files": sorted(p.name for p in out.iterdir())})
            print(f"ratio {ratio}: loads with ORTModelForFeatureExtraction, output {list(got.shape)}, "
                  f"MACs {rows[-1]['macs']:.3f}x, cosine {cos:.4f}")
    lines = [BEGIN, "## Folders from Optimum's ONNX exporter", "",
             f"`python tools/check_optimum_folder.py` (optimum {optimum.version.__version__}, transformers "
             f"{transformers.__version__}, torch {torch.__version__}): a 2-layer BERT encoder (hidden 128, 4 heads, "
             "FFN 512, seeded random weights) exported for `feature-extraction` into a folder holding "
             f"{', '.join(f'`{n}`' for n in exported)}; `onnxprune prune exported/ -o pruned/ --ratio R` writes a "
             "copy of the folder with `model.onnx` pruned, and `ORTModelForFeatureExtraction.from_pretrained"
             "(pruned)` loads and runs it.", "",
             "| ratio | MACs after/before | params after/before | last_hidden_state | cosine to the original | files |",
             "|---:|---:|---:|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['ratio']} | {r['macs']:.3f} | {r['params']:.3f} | {r['shape']} | {r['cosine']:.4f} | "
                     + ", ".join(f"`{n}`" for n in r["files"]) + " |")
    lines += ["", "Random weights, so the cosine says only that the pruned folder computes the same kind of "
              "output; accuracy on pretrained encoders is in `docs/accuracy.md`.", END]
    replace_section(DOC, BEGIN, END, "\n".join(lines) + "\n", title="# Integrations\n")
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
