"""The ``onnxprune`` console tool: a thin layer over :mod:`onnxprune.api`.

Every command reads a model, never modifies it, and writes outputs atomically. Errors print one
line and exit non-zero (2: bad input or options; 3: cannot write; 4: the result failed
validation); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from importlib import resources
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import __version__
from .api import analyze, prune
from .bench import BenchResult, batch_feeds, benchmark, interleaved_latency, resolve_eps, short_ep
from .calibration import ImageSpec, load_calibration
from .comparison import compare_models, file_size
from .console import Terminated
from .errors import OnnxPruneError, UsageError
from .evaluate import evaluate, load_labels
from .feeds import plan_feeds
from .graph import load
from .importance import ACTIVATION_CRITERIA, CRITERIA
from .io import check_destination, free_big_blocks_at_once, load_proto, parse_input_shapes
from .plan import DEFAULT_ROUND_TO, parse_target
from .profile import profile
from .report import (
    REPORT_EXTRA,
    analysis_dict,
    barrier_kinds,
    human,
    profile_dict,
    prune_dict,
    write_comparison_report,
    write_evaluation_report,
)
from .verify import compare, make_feeds, ort_message, session, user_session

__all__ = ["main", "build_parser"]

log = logging.getLogger("onnxprune")

EPILOG = """\
examples:
  onnxprune demo                                   prune, repair and heal a bundled trained CNN
  onnxprune analyze model.onnx                     list channel groups, barriers and reasons
  onnxprune prune model.onnx -o small.onnx --ratio 0.5 --round-to 8 --check
  onnxprune prune model.onnx -o small.onnx --ratio 0.3 --ignore 'head.*' --input-shape input:1,3,224,224
  onnxprune prune model.onnx -o small.onnx --ratio 0.3 --criterion wanda --calib calib/ --reconstruct
  onnxprune heal model.onnx small.onnx -o healed.onnx --calib calib/ --budget-minutes 10
  onnxprune eval model.onnx small.onnx --data test/ --labels labels.npy
  onnxprune profile model.onnx --by node           MACs and params per node (or --by op / --by group)
  onnxprune bench model.onnx --ep cpu,cuda --batch 1,8
  onnxprune compare model.onnx small.onnx --ep cpu --report report/
  onnxprune optimize model.onnx -o clean.onnx     fold constants, fuse BatchNorm, drop no-ops
  onnxprune optimize model.onnx -o small.onnx --passes cleanup,channel-pruning:ratio=0.4,cleanup,verify:min_cosine=0.9
  onnxprune run recipe.json                        optimize, verify and benchmark as a recipe file says
  onnxprune passes                                 list the passes --passes and recipes can name
  onnxprune search model.onnx -o fast.onnx --target-latency 0.5x --calib calib/ --budget-minutes 10
"""


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="input .onnx file (external data is read from beside it; never modified)")
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME:D0,D1,...",
        help="fix the dimensions of a graph input with symbolic sizes, e.g. input:1,3,224,224 "
        "(repeatable; sizes not given are chosen so the original model runs: its metadata, its "
        "strides, then a ladder of sizes, each tried in onnxruntime)",
    )
    p.add_argument(
        "--prune-hidden",
        action="store_true",
        help="also prune a transformer's residual (hidden) width through LayerNorm/RMSNorm; "
        "changes normalization statistics, so outputs move more",
    )
    p.add_argument(
        "--ignore",
        action="append",
        metavar="GLOB",
        help="node or tensor name (shell glob) whose channels must be kept (repeatable)",
    )


def _add_output_options(p: argparse.ArgumentParser, suffix: str) -> None:
    p.add_argument("output_file", nargs="?", metavar="OUTPUT",
                   help="output .onnx file, as a second argument (`in.onnx out.onnx`) or with -o")
    p.add_argument("-o", "--output", help=f"output .onnx file (default: <model>-{suffix}.onnx beside the input)")


def _settle_output(args: argparse.Namespace) -> None:
    """``tool in.onnx out.onnx`` (as onnxsim and onnxslim take it) means ``-o out.onnx``."""
    pos = getattr(args, "output_file", None)
    if pos is None:
        return
    if args.output and args.output != pos:
        raise UsageError(f"two outputs given ('{pos}' and -o '{args.output}'); give one")
    args.output = pos


def _add_timing_options(p: argparse.ArgumentParser, repeat: int, warmup: int) -> None:
    p.add_argument("--ep", default="cpu", metavar="EP1,EP2",
                   help="execution providers: cpu, cuda, tensorrt, ... (default cpu)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--warmup", type=int, default=warmup, metavar="N", help=f"untimed runs first (default {warmup})")
    p.add_argument("--repeat", type=int, default=repeat, metavar="N", help=f"timed runs (default {repeat})")
    p.add_argument("--input-shape", action="append", metavar="NAME:D0,D1,...",
                   help="fix a graph input's symbolic dimensions, e.g. input_ids:1,128 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxprune",
        description="Structured pruning of ONNX models: removes whole channels consistently across "
        "every layer they touch, and checks the result in onnxruntime.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors (and --json output): no tables, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    pa = sub.add_parser(
        "analyze",
        help="show channel groups, what is prunable, and why the rest is not",
        description="Builds the channel dependency graph and lists every group: its channels, "
        "the share of Conv/Gemm/MatMul MACs and params it touches, and the barriers that freeze "
        "it, with reasons.",
    )
    _add_model_options(pa)
    pa.add_argument("--json", action="store_true", help="print the analysis as JSON")

    pp = sub.add_parser(
        "prune",
        help="remove a share of channels from every prunable group",
        description="Removes --ratio of the channels of every layer (per group, consistently "
        "across residual adds, concats, splits, grouped convs and flatten heads), validates the "
        "result with the ONNX checker and onnxruntime, and writes it atomically. MODEL may also be a "
        "folder as `optimum-cli export onnx` writes it: its model.onnx is pruned into a copy of the "
        "folder (-o OUT_DIR, default <folder>-pruned), the config and tokenizer files copied as they are.",
    )
    _add_model_options(pp)
    _add_output_options(pp, "pruned")
    pp.add_argument("--ratio", type=float, default=None,
                    help="share of channels removed per layer, in [0, 1) (default 0.5 unless a target is given)")
    pp.add_argument("--target-macs", metavar="T",
                    help="size by cost instead: the smallest ratio whose model has at most T MACs, as a share "
                    "of the original's (0.7x) or a count (1.2G); with --global the ranking is global")
    pp.add_argument("--target-params", metavar="T", help="the same for parameters (0.5x, 3M); both may be given")
    pp.add_argument("--criterion", choices=CRITERIA, default="l1",
                    help="channel importance (default l1): l1/l2 weight magnitude, bn BatchNorm scale, "
                    "random; with --calib: wanda (|W| x input activation norm), fluct (input variance x "
                    "squared weights), apoz (share of non-zero activations), obs (what each channel's loss "
                    "costs once the next layer is refit, chosen greedily from the layers' input covariance; "
                    "best with --reconstruct)")
    pp.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO, metavar="N",
                    help=f"keep channel counts a multiple of N (default {DEFAULT_ROUND_TO}): onnxruntime's CPU "
                    "kernels work in blocks of 16 on AVX-512 (8 on AVX2) and CUDA's in tiles of 8, so a width "
                    "like 45 runs as slowly as 48 and an unrounded model can be slower than the original; "
                    "kept counts round up, so a 16-wide layer at --ratio 0.3 stays 16 (an attention head "
                    "counts as its width); --round-to 8 prunes finer for AVX2 or GPU targets, --round-to 1 "
                    "removes exactly --ratio, --target-macs reaches a size")
    pp.add_argument("--min-channels", type=int, default=1, metavar="N", help="never keep fewer than N channels in a layer (default 1)")
    pp.add_argument("--seed", type=int, default=0, help="seed for --criterion random")
    pp.add_argument("--check", action="store_true", help="compare outputs with the original on seeded inputs")
    pp.add_argument("--measure", action="store_true",
                    help="time the original and the pruned model in turns (A B A B ... in one process) and "
                    "report the latency ratio next to the MACs ratio; warns when the pruned model is slower "
                    "than its MACs promise")
    pp.add_argument("--ep", default="cpu", metavar="EP",
                    help="with --measure: the execution provider timed: cpu, cuda, tensorrt (default cpu)")
    pp.add_argument("--threads", type=int, default=2, metavar="N",
                    help="with --measure: onnxruntime intra-op threads (default 2)")
    pp.add_argument("--measure-batch", type=int, default=1, metavar="N",
                    help="with --measure: batch size of the timed inputs where the batch is free (default 1)")
    pp.add_argument("--repeat", type=int, default=30, metavar="N",
                    help="with --measure: timed turns (default 30)")
    pp.add_argument("--json", action="store_true", help="print the summary as JSON")
    pc = pp.add_argument_group(
        "calibration and reconstruction",
        "Activation-aware criteria (wanda, fluct, apoz, obs) and --reconstruct run the model on "
        "calibration inputs in onnxruntime (a few hundred unlabeled samples suffice).",
    )
    pc.add_argument("--calib", metavar="PATH|random",
                    help="calibration data: a folder of .npy/.npz files (one sample or a stack along "
                    "the batch axis per file; .npz keys are input names), one .npz/.npy file, a folder "
                    "of images (see --image-size), or 'random' (exercises the graph, says nothing "
                    "about accuracy)")
    pc.add_argument("--calib-samples", type=int, default=None, metavar="N",
                    help="use at most N calibration samples (default 1024, 256 with --calib random): refits "
                    "generalize with more (MiniLM at 30%% of MACs removed: held-out cosine 0.878 from 256 "
                    "sentences, 0.919 from 1536)")
    pc.add_argument("--batch-size", type=int, default=32, metavar="N",
                    help="calibration samples per onnxruntime run (default 32)")
    pc.add_argument("--reconstruct", action="store_true",
                    help="refit every layer that lost input channels by ridge least squares so it "
                    "reproduces the original layer's output on the calibration data")
    pc.add_argument("--feedback-passes", type=int, default=0, metavar="N",
                    help="with --reconstruct: refit N more times on the inputs the layers receive in "
                    "the pruned model, so earlier layers' errors are absorbed; each pass runs both "
                    "models over the calibration data again (default 0: one-shot)")
    pc.add_argument("--match-stats", action="store_true",
                    help="last, give every pruned layer's kept output channels the mean and variance "
                    "they have in the original on 256 calibration samples (a per-channel scale and "
                    "shift folded into the layer); runs the pruned model over them once per "
                    "dependency stage")
    pc.add_argument("--bias-only", action="store_true",
                    help="with --reconstruct: only compensate biases for the removed channels' mean "
                    "contribution (no refit of weights)")
    pc.add_argument("--ridge", type=float, default=1e-3, metavar="ALPHA",
                    help="relative ridge of the refit, lambda = ALPHA * mean diagonal of the Gram "
                    "block (default 1e-3)")
    pc.add_argument("--global", dest="global_ranking", action="store_true",
                    help="rank channels across all layers (LAMP-normalized scores) and remove the "
                    "lowest --ratio of all prunable channels, instead of --ratio of every layer")
    pc.add_argument("--heal", action="store_true",
                    help="then distil the pruned model towards the original on the calibration data "
                    "(as `onnxprune heal`; needs torch: pip install 'onnxprune[heal]')")
    pc.add_argument("--heal-minutes", type=float, default=10.0, metavar="N",
                    help="with --heal: training budget in minutes (default 10)")
    _add_image_options(pc)

    ph = sub.add_parser(
        "heal",
        help="recover accuracy by distilling a pruned model towards its original (needs torch)",
        description="Trains the pruned model's weights to reproduce the original's outputs (and its "
        "intermediate features where both graphs share a tensor of equal shape) on unlabeled "
        "calibration inputs, with mixup and noise on float inputs. A held-out share of the data "
        "decides when to stop and which weights to keep; if healing does not improve it, the weights "
        "stay as they were. Only initializer values change: nodes, names, opset and metadata stay as "
        "they are. Needs PyTorch: pip install 'onnxprune[heal]'.",
        epilog="examples:\n"
        "  onnxprune prune model.onnx -o small.onnx --target-macs 0.7x --criterion wanda --calib calib/ --reconstruct\n"
        "  onnxprune heal model.onnx small.onnx -o healed.onnx --calib calib/ --budget-minutes 10\n"
        "  onnxprune eval model.onnx healed.onnx --data test/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ph.add_argument("original", help="the model before pruning (the teacher)")
    ph.add_argument("pruned", help="the pruned model (the student; never modified)")
    ph.add_argument("-o", "--output", help="output .onnx file (default: <pruned>-healed.onnx beside it)")
    ph.add_argument("--calib", required=True, metavar="PATH",
                    help="unlabeled inputs: a folder of .npy/.npz files, one .npz/.npy file, or a folder of "
                    "images (see --image-size); more samples heal better (default: up to 1024 used)")
    ph.add_argument("--calib-samples", type=int, default=1024, metavar="N", help="use at most N samples (default 1024)")
    ph.add_argument("--budget-minutes", type=float, default=10.0, metavar="N",
                    help="training budget in minutes, held-out checks included (default 10)")
    ph.add_argument("--epochs", type=int, default=None, metavar="N", help="stop after N passes over the data")
    ph.add_argument("--lr", type=float, default=None,
                    help="Adam learning rate, halved on plateaus (default: 1e-4 for models with attention, "
                         "whose pretrained weights take smaller steps; 3e-4 otherwise)")
    ph.add_argument("--batch-size", type=int, default=16, metavar="N", help="samples per step (default 16)")
    ph.add_argument("--holdout", type=float, default=0.15, metavar="F",
                    help="share of the samples never trained on, for early stopping and the reported "
                    "agreement (default 0.15)")
    ph.add_argument("--features", type=int, default=8, metavar="N",
                    help="intermediate tensors matched besides the outputs (default 8; 0: outputs only)")
    ph.add_argument("--no-augment", action="store_true", help="train on the samples as they are (no mixup, no noise)")
    ph.add_argument("--seed", type=int, default=0, help="seed for the split, the order and the augmentations")
    ph.add_argument("--threads", type=int, default=0, metavar="N", help="torch and onnxruntime threads (default: theirs)")
    ph.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_image_options(ph)

    pe = sub.add_parser(
        "eval",
        help="compare pruned (and healed) models with their original on real inputs",
        description="Runs both models on the same inputs (use data not used for calibration) "
        "and reports per output cosine similarity, relative L2 error and largest difference, "
        "top-1 agreement for classifier-like outputs ([batch, classes]), and with labels the "
        "accuracy of both models.",
    )
    pe.add_argument("original", help="the original .onnx model")
    pe.add_argument("pruned", nargs="+",
                    help="one or more models derived from it (pruned, reconstructed, healed): with several, a "
                    "table side by side")
    pe.add_argument("--data", required=True, metavar="PATH",
                    help="inputs: a folder of .npy/.npz files, one .npz/.npy file, or a folder of images")
    pe.add_argument("--labels", metavar="FILE",
                    help="integer class per sample (.npy, .npz or text, one per line); by default a "
                    "'labels' array inside a --data .npz file is used")
    pe.add_argument("--samples", type=int, default=100000, metavar="N", help="use at most N samples")
    pe.add_argument("--batch-size", type=int, default=32, metavar="N", help="samples per run (default 32)")
    pe.add_argument("--json", action="store_true", help="print the results as JSON")
    pe.add_argument("--report", metavar="DIR",
                    help="write DIR/report.md and a self-contained DIR/report.html (side-by-side table, accuracy "
                    f"plot, with --measure accuracy against latency and its Pareto front; {REPORT_EXTRA} for the "
                    "plots and the page)")
    pe.add_argument("--measure", action="store_true",
                    help="also time the original and every model in turns (one process, the order rotating "
                    "every turn) and show each one's latency relative to the original")
    pe.add_argument("--ep", default="cpu", metavar="EP", help="with --measure: the execution provider timed (default cpu)")
    pe.add_argument("--threads", type=int, default=2, metavar="N",
                    help="with --measure: onnxruntime intra-op threads (default 2)")
    pe.add_argument("--measure-batch", type=int, default=1, metavar="N",
                    help="with --measure: batch size of the timed inputs where the batch is free (default 1)")
    pe.add_argument("--repeat", type=int, default=30, metavar="N", help="with --measure: timed turns (default 30)")
    _add_image_options(pe)

    pf = sub.add_parser(
        "profile",
        help="MACs and parameters per node, per op type and per pruning group",
        description="Counts multiply-accumulates and parameters from static shapes (Conv, "
        "ConvTranspose, Gemm, MatMul including activation x activation products, pools and norms). "
        "Symbolic input dimensions take sizes the model runs on (batch 1, image sides from "
        "its metadata or strides, lengths from a ladder, each tried in onnxruntime) unless "
        "fixed with --input-shape.",
    )
    pf.add_argument("model", help="input .onnx file")
    pf.add_argument("--input-shape", action="append", metavar="NAME:D0,D1,...",
                    help="fix a graph input's symbolic dimensions, e.g. input_ids:1,128 (repeatable)")
    pf.add_argument("--by", choices=("op", "node", "group"), default="op",
                    help="table rows: totals per op type (default), the heaviest nodes, or the "
                    "Conv/Gemm/MatMul MACs touching each pruning group")
    pf.add_argument("--top", type=int, default=25, metavar="N", help="rows shown for --by node/group (default 25)")
    pf.add_argument("--json", action="store_true", help="print every node, op type and group as JSON")

    pb = sub.add_parser(
        "bench",
        help="latency percentiles, throughput, session time and peak memory on CPU/CUDA/TensorRT",
        description="Times one model in onnxruntime with full graph optimizations: p50/p90/p99 "
        "latency, throughput, session-creation time and the peak memory the session adds (host RSS "
        "on CPU; device memory on CUDA/TensorRT when NVML is available). On CUDA and TensorRT inputs "
        "are bound on the device once (IO binding), so transfers are not what is timed.",
    )
    pb.add_argument("model", help="input .onnx file")
    _add_timing_options(pb, repeat=100, warmup=10)
    pb.add_argument("--batch", default="1", metavar="B1,B2,...",
                    help="batch sizes to time, for models with a dynamic first axis (default 1)")
    pb.add_argument("--json", action="store_true", help="print the results as JSON")

    pc = sub.add_parser(
        "compare",
        help="original against pruned: size, params, MACs, interleaved latency, agreement",
        description="Profiles both models, times them in turns (A B A B ... in one process, so "
        "machine drift cancels) on each execution provider, and compares their outputs on seeded "
        "inputs. Efficiency = measured speedup / MACs reduction.",
    )
    pc.add_argument("original", help="the model before pruning")
    pc.add_argument("pruned", help="the model after pruning")
    _add_timing_options(pc, repeat=50, warmup=5)
    pc.add_argument("--batch", type=int, default=1, help="batch size for timing (default 1)")
    pc.add_argument("--report", metavar="DIR",
                    help="write DIR/report.md with PNG plots (per-layer MACs, latency vs MACs); "
                    "plots need matplotlib: pip install 'onnxprune[report]'")
    pc.add_argument("--json", action="store_true", help="print the comparison as JSON")

    pd = sub.add_parser(
        "demo",
        help="prune a bundled trained CNN (or your model) and show accuracy, MACs, size and latency",
        description="The whole job on a model that ships with onnxprune, a CNN trained on "
        "scikit-learn's digits with its calibration and test split: prune to --target-macs with "
        "activation-aware ranking and least-squares repair on the calibration images, heal by "
        "distillation when torch is installed, then show test accuracy before and after, MACs, "
        "size and interleaved CPU latency. --model/--calib/--data do the same on yours.",
    )
    pd.add_argument("--target-macs", default="0.5x", metavar="T", help="MACs to keep (default 0.5x)")
    pd.add_argument("--model", help="your .onnx model instead of the bundled one (needs --calib)")
    pd.add_argument("--calib", metavar="PATH", help="with --model: unlabeled calibration inputs")
    pd.add_argument("--data", metavar="PATH", help="with --model: held-out test inputs (.npz with 'labels' for accuracy)")
    pd.add_argument("--no-heal", action="store_true", help="skip healing even when torch is installed")
    pd.add_argument("--heal-minutes", type=float, default=0.5, metavar="N", help="healing budget (default 0.5)")
    pd.add_argument("-o", "--output", help="where to write the pruned model (default: a temporary folder)")
    pd.add_argument("--batch", type=int, default=256, metavar="N",
                    help="batch of the timed runs (default 256: where compute, not per-run overhead, dominates)")
    pd.add_argument("--repeat", type=int, default=30, help="timed turns per model (default 30)")
    pd.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    _add_image_options(pd)

    po = sub.add_parser(
        "optimize",
        help="run graph passes (cleanup, BatchNorm fusion, pruning, verification) over a model",
        description="Runs a list of passes over a model to a fixed point and writes the result\n"
        "atomically, with a before/after table of node counts. Passes are named as\n"
        "`onnxprune passes` lists them; options follow the name after colons, values read\n"
        "as JSON: channel-pruning:ratio=0.4:round_to=8. Graph inputs and outputs keep their\n"
        "names, types and shapes (except with fix-input-shapes, which fixes symbolic sizes).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  onnxprune optimize model.onnx -o clean.onnx\n"
        "  onnxprune optimize model.onnx -o out.onnx --passes fuse-bn,eliminate-identity,remove-dead\n"
        "  onnxprune optimize model.onnx -o small.onnx --passes cleanup,channel-pruning:ratio=0.4,cleanup,verify:min_cosine=0.9\n"
        "  onnxprune optimize bert.onnx -o bert-1x128.onnx --input-shape input_ids:1,128 --passes fix-input-shapes,cleanup\n",
    )
    po.add_argument("model", help="input .onnx file (never modified)")
    _add_output_options(po, "optimized")
    po.add_argument(
        "--passes",
        default="cleanup",
        metavar="P1,P2,...",
        help="comma-separated passes, each NAME or NAME:key=value:... (default: cleanup)",
    )
    po.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME:D0,D1,...",
        help="sizes of symbolic input dimensions, for passes that analyse shapes (repeatable)",
    )
    po.add_argument("--max-rounds", type=int, default=8, metavar="N", help="fixed-point step bound (default 8)")
    po.add_argument("--check", action="store_true", help="append a 'verify' pass: compare outputs with the input model")
    po.add_argument("--json", action="store_true", help="print the summary as JSON")

    pr = sub.add_parser(
        "run",
        help="optimize a model as a recipe file (JSON, or YAML with pyyaml) says",
        description="Reads a recipe (model, output, passes with options, optional calibration data\n"
        "and benchmark settings), runs the passes, writes the output atomically and, if asked,\n"
        "times input and output in turns and reports the latency ratio. Relative paths in the\n"
        "recipe are relative to the recipe file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="recipe (JSON):\n"
        '  {"model": "model.onnx", "output": "small.onnx",\n'
        '   "passes": ["cleanup", {"name": "channel-pruning", "ratio": 0.4}, "cleanup",\n'
        '              {"name": "verify", "min_cosine": 0.9}],\n'
        '   "calibration": "calib.npz", "benchmark": {"repeat": 30, "threads": 2}}\n',
    )
    pr.add_argument("recipe", help="recipe file (.json, or .yaml/.yml with pyyaml installed)")
    pr.add_argument("--json", action="store_true", help="print the summary as JSON")

    pl = sub.add_parser(
        "passes",
        help="list the registered passes with one-line descriptions",
        description="Lists the built-in passes and those third-party packages register in the "
        "'onnxprune.passes' entry-point group, with their options.",
    )
    pl.add_argument("--json", action="store_true", help="print the list as JSON")
    _add_search_parser(sub)
    for verb in sub.choices.values():  # -q works before or after the command
        verb.add_argument("-q", "--quiet", dest="quiet_here", action="store_true",
                          help="print nothing but errors (and --json output)")
    return parser


def _add_image_options(p: Any) -> None:
    p.add_argument("--image-size", metavar="H,W", help="resize images to H,W (default: the model input size)")
    p.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW", help="image input layout (default NCHW)")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean subtracted after scaling pixels to [0, 1]")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std divided by after subtracting --mean")
    p.add_argument("--bgr", action="store_true", help="feed channels in BGR order")


def _floats(text: str | None, default: tuple[float, ...], what: str) -> tuple[float, ...]:
    if not text:
        return default
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise UsageError(f"{what}: expected comma-separated numbers, got '{text}'") from exc


def _image_spec(args: argparse.Namespace) -> ImageSpec:
    size = None
    if args.image_size:
        vals = _floats(args.image_size, (), "--image-size")
        if len(vals) != 2 or min(vals) < 1:
            raise UsageError(f"--image-size: expected H,W, got '{args.image_size}'")
        size = (int(vals[0]), int(vals[1]))
    return ImageSpec(size=size, layout=args.layout, mean=_floats(args.mean, (0.0,), "--mean"),
                     std=_floats(args.std, (1.0,), "--std"), bgr=args.bgr)


class _Count(MofNCompleteColumn):
    """done/total, and nothing for a step without a count (instead of "0/?")."""

    def render(self, task: Any) -> Any:
        return "" if task.total is None else super().render(task)


class _ProgressBar:
    """A rich progress bar driven by ``progress(done, total)`` callbacks (one task per stage)."""

    def __init__(self, console: Console, label: str, enabled: bool) -> None:
        self.enabled = enabled
        self.label = label
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), _Count(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) if enabled else None
        self.task: Any = None
        self.stage = 0
        self.step: Any = None

    def on_stage(self, text: str) -> None:
        """One line naming the step under way, with its elapsed time (steps without a count)."""
        if self.bar is None:
            return
        if self.step is None:
            self.step = self.bar.add_task(text, total=None)
        else:
            self.bar.reset(self.step, description=text, total=None)

    def __enter__(self) -> _ProgressBar:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None or done == 1:
            self.stage += 1
            self.task = self.bar.add_task(f"{self.label} (pass {self.stage})", total=total)
        self.bar.update(self.task, completed=done, total=total)


def _add_search_parser(sub: Any) -> None:
    ps = sub.add_parser(
        "search",
        help="choose per-group pruning ratios against latency measured on the target provider",
        description="Pruning as architecture search: measures each layer's latency on the target "
        "execution provider (lookup tables fitted to whole-model timings), each group's sensitivity "
        "(output fidelity when pruned alone; cached), then searches per-group ratios that meet the "
        "targets with the least fidelity loss. Writes the chosen model, and with --report the Pareto "
        "front (latency and MACs vs fidelity) as JSON and PNG plus the per-group ratios. Exit code 1 "
        "when no candidate met the targets (the closest one is written).",
        epilog="examples:\n"
        "  onnxprune search model.onnx -o fast.onnx --target-latency 0.5x --calib calib/\n"
        "  onnxprune search model.onnx -o fast.onnx --target-latency 12ms --ep cuda --budget-minutes 10\n"
        "  onnxprune search model.onnx -o small.onnx --target-macs 0.4x --strategy evolution --report rep/\n"
        "  onnxprune search model.onnx -o fast.onnx --target-latency 0.4x --batch 64 --calib calib.npz "
        "--criterion wanda --reconstruct",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(ps)
    ps.add_argument("-o", "--output", required=True, help="where to write the chosen model")
    ps.add_argument("--target-latency", metavar="0.5x|12ms",
                    help="latency target: a share of the original's measured latency (0.5x) or a time (12ms)")
    ps.add_argument("--target-macs", metavar="0.5x|1.2G", help="MACs target: a share (0.5x) or a count (1.2G)")
    ps.add_argument("--target-params", metavar="0.5x|3M", help="parameter target: a share (0.5x) or a count (3M)")
    ps.add_argument("--ep", default="cpu", help="execution provider timed: cpu, cuda or tensorrt (default cpu)")
    ps.add_argument("--threads", type=int, default=0, metavar="N",
                    help="onnxruntime intra-op threads when timing (default: onnxruntime's choice)")
    ps.add_argument("--batch", type=int, metavar="N",
                    help="batch size the latency is measured at, for inputs with a dynamic first axis "
                    "(default 1); small models are mostly per-op overhead at batch 1")
    ps.add_argument("--calib", metavar="DIR|FILE",
                    help="folder or .npy/.npz file of inputs (arrays named after the graph inputs; 'labels' "
                    "for accuracy), or 'random'; without it, seeded random inputs (a warning says so)")
    ps.add_argument("--labels", metavar="FILE.npy", help="labels for the calibration samples (adds accuracy)")
    ps.add_argument("--calib-samples", type=int, default=16, metavar="N",
                    help="calibration samples used (default 16)")
    ps.add_argument("--holdout", type=float, default=0.25, metavar="SHARE",
                    help="share of the calibration samples kept out of the statistics and reconstruction, "
                    "on which candidates are ranked (default 0.25; the written model uses every sample)")
    ps.add_argument("--budget-minutes", type=float, metavar="N",
                    help="stop after N minutes and return the best candidate so far")
    ps.add_argument("--strategy", choices=("greedy", "evolution"), default="greedy",
                    help="greedy: NetAdapt-style steps; evolution: seeded genetic search (default greedy)")
    ps.add_argument("--seed", type=int, default=0, help="seed of the search and of random inputs (default 0)")
    ps.add_argument("--criterion", choices=CRITERIA, default="l1",
                    help="which channels a group loses first (default l1); wanda, fluct, apoz and obs rank by "
                    "activations on the --calib data")
    ps.add_argument("--reconstruct", action="store_true",
                    help="refit the layers that lose input channels in every candidate (as prune "
                    "--reconstruct), so the search compares what will be written; needs --calib; each "
                    "worker holds every layer's input Gram matrix (about 3 GB for a ResNet-50)")
    ps.add_argument("--bias-only", action="store_true",
                    help="with --reconstruct: only compensate biases (cheap on large models)")
    ps.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO, metavar="N",
                    help=f"keep channel counts a multiple of N (default {DEFAULT_ROUND_TO}, the width kernels run fast)")
    ps.add_argument("--min-channels", type=int, default=1, metavar="N", help="never keep fewer than N channels")
    ps.add_argument("--max-ratio", type=float, default=0.75, metavar="R",
                    help="largest share of a group's channels the search may remove (default 0.75)")
    ps.add_argument("--sensitivity-ratios", default="0.25,0.5,0.75", metavar="R1,R2",
                    help="ratios at which each group's sensitivity is measured (default 0.25,0.5,0.75)")
    ps.add_argument("--workers", type=int, default=1, metavar="N", help="parallel fidelity evaluations (default 1)")
    ps.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local process pool, or a Ray cluster (pip install 'onnxprune[search-ray]')")
    ps.add_argument("--address", help="Ray cluster address for --executor ray (default: start a local one)")
    ps.add_argument("--cache-dir", metavar="DIR", help="where sensitivity tables are cached (default ~/.cache/onnxprune)")
    ps.add_argument("--report", metavar="DIR", help="write search.json (Pareto fronts, per-group ratios, latency "
                    "model, prediction errors) and pareto.png (needs matplotlib) into DIR")
    ps.add_argument("--json", action="store_true", help="print the result as JSON")


# ---------------------------------------------------------------------------- helpers
def _input_shapes(args: argparse.Namespace) -> dict[str, list[int]]:
    return parse_input_shapes(args.input_shape)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------- commands
def cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    t0 = time.perf_counter()
    with console.status("analyzing…", spinner="dots") if not args.json else _null():
        an = analyze(args.model, _input_shapes(args), args.ignore, args.prune_hidden)
    data = analysis_dict(an)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    table = Table(title=f"channel groups of {args.model}", show_lines=False)
    for col, just in (("group", "right"), ("channels", "right"), ("prunable", "right"), ("layers", "right"),
                      ("MACs", "right"), ("params", "right"), ("members", "left"), ("status / reason", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for g in data["groups"]:
        members = ", ".join(g["members"][:3]) + (f" +{len(g['members']) - 3}" if len(g["members"]) > 3 else "")
        why = g["status"] if g["status"] == "prunable" else f"{g['status']}: {g['reasons'][0] if g['reasons'] else ''}"
        style = "green" if g["status"] == "prunable" else ("red" if g["status"] == "barrier" else "yellow")
        table.add_row(str(g["id"]), str(g["channels"]), str(g["prunable_channels"]), str(g["layers"]),
                      _pct(g["macs_share"]), _pct(g["params_share"]), members, f"[{style}]{why}[/{style}]")
    console.print(table)
    reasons: dict[str, int] = {}
    for b in data["barriers"]:
        reasons[b["reason"]] = reasons.get(b["reason"], 0) + 1
    if reasons:
        console.print("[bold]barriers[/bold] (what freezes channels, and why):")
        for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            console.print(f"  {r}" + (f"  (x{n})" if n > 1 else ""), markup=False, highlight=False)
    kinds = [k for k in data["barrier_kinds"] if k["macs"] > 0]
    if kinds:
        console.print("[bold]MACs behind frozen channels, by kind of barrier[/bold] (largest first; a layer "
                      "counts for each group it touches, so shares overlap):")
        for k in kinds[:8]:
            console.print(f"  {_pct(k['macs_share']):>6}  {k['kind']}  ({k['groups']} group"
                          f"{'s' if k['groups'] > 1 else ''})", markup=False, highlight=False)
    console.print(
        f"prunable: {_pct(data['prunable_macs_share'])} of Conv/Gemm/MatMul MACs "
        f"({human(data['prunable_macs'])} of {human(data['linear_macs'])}), "
        f"{_pct(data['prunable_params_share'])} of their params; "
        f"{data['prunable_channels']} of {data['channels']} channels in {len(data['groups'])} groups "
        f"[dim]({time.perf_counter() - t0:.2f}s)[/dim]"
    )
    return 0


#: --measure warns when the latency ratio exceeds the MACs ratio by more than this factor.
SLOWER_THAN_MACS = 1.25


def _measure(args: argparse.Namespace, res: Any, out: str, provider: str, console: Console) -> dict[str, Any]:
    """Interleaved latency of the original and the pruned model, and whether it kept its promise."""
    plan = res.model.feeds or plan_feeds(load_proto(args.model), _input_shapes(args), runnable=args.model)
    feeds = plan.require().make(seed=1, batch=args.measure_batch if plan.batch_free else None)
    with console.status("timing original and pruned in turns…", spinner="dots") if not args.json else _null():
        try:
            lat = interleaved_latency([args.model, out], feeds, threads=args.threads, repeat=args.repeat,
                                      provider=provider, min_turn_ms=20.0)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise UsageError(f"--measure: {provider} cannot run the models: {ort_message(exc)}; "
                             f"{out} was written") from exc
    m = lat.medians_ms
    ratio = m[1] / m[0] if m[0] > 0 else float("nan")
    macs = res.after.macs / res.before.macs if res.before.macs else 1.0
    warning = None
    if res.plan.n_removed and ratio > 1.0:
        warning = (f"the pruned model is slower than the original ({ratio:.2f}x its latency for {macs:.2f}x its "
                   f"MACs); try --round-to 16, a larger --measure-batch, or `onnxprune search`")
    elif res.plan.n_removed and ratio > SLOWER_THAN_MACS * macs:
        warning = (f"the pruned model runs at {ratio:.2f}x the original's latency for {macs:.2f}x its MACs: "
                   "fixed per-layer costs or kernel widths eat the saving (try --round-to 16, a larger "
                   "--measure-batch, or `onnxprune search --target-latency`)")
    return {"provider": provider, "batch": args.measure_batch if plan.batch_free else None,
            "threads": args.threads, "repeat": args.repeat, "original_ms": m[0], "pruned_ms": m[1],
            "ratio": ratio, "macs_ratio": macs, "warning": warning}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _default_output(model: str) -> str:
    p = Path(model)
    return str(p.with_name(p.stem + "-pruned.onnx"))


def _prune_folder(args: argparse.Namespace, console: Console) -> int:
    """A model folder (as ``optimum-cli export onnx`` writes it: model.onnx beside config and tokenizer
    files) is pruned into a copy, so the copy still loads wherever the original folder did."""
    import copy
    import shutil

    from .io import model_files

    src = Path(args.model)
    found = sorted(src.glob("*.onnx"))
    model = src / "model.onnx" if (src / "model.onnx").is_file() else (found[0] if len(found) == 1 else None)
    if model is None:
        names = ", ".join(p.name for p in found) or "none"
        raise UsageError(f"{src}: a folder is pruned through its model.onnx (or its only .onnx file); found {names}; "
                         "name the file to prune instead")
    dest = Path(args.output) if args.output else src.with_name(src.name + "-pruned")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: exists; the pruned copy of a folder goes to a new (or empty) folder, -o OUT_DIR")
    if not dest.resolve().parent.is_dir():
        raise UsageError(f"{dest}: folder {dest.resolve().parent} does not exist")
    skip = {p.resolve() for p in model_files(model)}
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.resolve().parent))
    try:
        staging = tmp / "folder"
        shutil.copytree(src, staging, ignore=lambda d, names: [n for n in names if (Path(d) / n).resolve() in skip])
        inner = copy.copy(args)
        inner.model, inner.output = str(model), str(staging / model.name)
        rc = cmd_prune(inner, console)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.json:
        console.print(f"wrote folder {dest}: {model.name} pruned, the other files copied as they are")
    return rc


def cmd_prune(args: argparse.Namespace, console: Console) -> int:
    if Path(args.model).is_dir():
        return _prune_folder(args, console)
    out = args.output or _default_output(args.model)
    check_destination(out, (args.model,))
    if (args.reconstruct or args.match_stats or args.criterion in ACTIVATION_CRITERIA) and not args.calib:
        need = "--reconstruct" if args.reconstruct else "--match-stats" if args.match_stats else \
            f"--criterion {args.criterion}"
        raise UsageError(f"{need} needs calibration data: --calib DIR|FILE|random")
    if args.feedback_passes < 0:
        raise UsageError(f"--feedback-passes must be >= 0, got {args.feedback_passes}")
    if args.bias_only and not args.reconstruct:
        raise UsageError("--bias-only only applies with --reconstruct")
    if args.heal:
        if not args.calib or args.calib == "random":
            raise UsageError("--heal needs real calibration data: --calib DIR|FILE")
        if args.heal_minutes <= 0:
            raise UsageError(f"--heal-minutes must be > 0, got {args.heal_minutes}")
        from .torchrun import require_torch

        require_torch()
    targeted = args.target_macs is not None or args.target_params is not None
    if targeted and args.ratio is not None:
        raise UsageError("give --ratio or --target-macs/--target-params, not both: a target chooses the ratio")
    if targeted:
        for what, text in (("macs", args.target_macs), ("params", args.target_params)):
            parse_target(text, what)  # a bad target is refused before any work
    ratio = 0.5 if args.ratio is None else args.ratio
    if args.measure:
        if args.repeat < 3 or args.threads < 0 or args.measure_batch < 1:
            raise UsageError("--repeat must be >= 3, --threads >= 0 and --measure-batch >= 1")
        provider = resolve_eps(args.ep)[0]
    t0 = time.perf_counter()
    bar = _ProgressBar(console, "calibrating", enabled=not args.json)
    with bar:
        res = prune(
            args.model,
            ratio=ratio,
            target_macs=args.target_macs,
            target_params=args.target_params,
            criterion=args.criterion,
            round_to=args.round_to,
            min_channels=args.min_channels,
            ignore=args.ignore,
            input_shapes=_input_shapes(args),
            seed=args.seed,
            prune_hidden=args.prune_hidden,
            calibration=args.calib,
            reconstruct=args.reconstruct,
            global_ranking=args.global_ranking,
            calib_samples=args.calib_samples,
            batch_size=args.batch_size,
            image_spec=_image_spec(args),
            refit=not args.bias_only,
            ridge=args.ridge,
            progress=bar,
            correction_passes=args.feedback_passes,
            on_stage=bar.on_stage,
            match_stats=args.match_stats,
        )
        if not args.heal:
            bar.on_stage(f"writing {out}")
            res.save(out, protect=(args.model,))
    healed = None
    if args.heal:  # the pruned model is the student; only the healed one is written to -o
        with tempfile.TemporaryDirectory(prefix=".onnxprune-", dir=Path(out).resolve().parent) as tmp, \
                _HealBar(console, enabled=not args.json) as hbar:
            student = os.path.join(tmp, "pruned.onnx")
            res.save(student, protect=(args.model,))
            healed = _heal(args.model, student, out, args, hbar, minutes=args.heal_minutes)
    elapsed = time.perf_counter() - t0
    data = prune_dict(res)
    data.update(output=out, size_before=file_size(args.model), size_after=file_size(out), seconds=elapsed)
    if res.reconstruction:
        data["reconstruction"] = [{"node": r.node, "mode": r.mode, "kept": r.kept, "total": r.total,
                                   "reason": r.reason} for r in res.reconstruction]
    agreement = []
    if args.check:
        with console.status("comparing outputs…", spinner="dots") if not args.json else _null():
            try:
                sess = user_session(args.model)
            except UsageError as exc:
                raise UsageError(f"{exc}; {out} was written, but --check cannot compare it with the "
                                 "original") from exc
            plan = res.model.feeds or plan_feeds(load_proto(args.model), _input_shapes(args), runnable=args.model)
            feeds = plan.require().make(seed=0, batch=2 if plan.batch_free else None)
            agreement = compare(sess, out, feeds)
        data["check"] = [{"output": a.name, "max_abs_diff": a.max_abs, "cosine": a.cosine} for a in agreement]
    if args.measure:
        data["latency"] = _measure(args, res, out, provider, console)
    if healed is not None:
        data["heal"] = healed.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if res.plan.n_removed == 0:
        rounding = (f" or keeps every layer whole once counts are rounded up to a multiple of "
                    f"--round-to {args.round_to} (--round-to 1 removes exactly the ratio)"
                    if args.round_to > 1 else "")
        console.print("[yellow]nothing was pruned:[/yellow] every group is a barrier or the ratio removes no "
                      f"channel{rounding}; run `onnxprune analyze` to see why")
    table = Table(title=f"{args.model} → {out}")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("after/before", justify="right")
    for label, b, a, unit in (("params", data["params_before"], data["params_after"], ""),
                              ("MACs", data["macs_before"], data["macs_after"], ""),
                              ("file size", data["size_before"], data["size_after"], "B")):
        table.add_row(label, human(b, unit), human(a, unit), f"{a / b:.3f}" if b else "-")
    console.print(table)
    console.print(f"removed {data['channels_removed']} channels in {len(data['groups'])} groups "
                  f"[dim]({elapsed:.2f}s)[/dim]")
    for what, label, before, after in (("macs", "MACs", data["macs_before"], data["macs_after"]),
                                       ("params", "params", data["params_before"], data["params_after"])):
        if what in res.targets:
            t = res.targets[what]
            verdict = "met" if after <= t else "[yellow]not met[/yellow] (barriers freeze the rest)"
            console.print(f"target {label} ≤ {human(t)} ({t / before:.3f}x): {human(after)} ({after / before:.3f}x), "
                          f"{verdict}; ratio {res.ratio:.3f} per layer")
    if args.measure:
        lat = data["latency"]
        console.print(f"latency ({short_ep(lat['provider'])}, batch {lat['batch']}, {lat['threads']} threads, "
                      f"median of {lat['repeat']} interleaved turns): {lat['original_ms']:.3f} ms → "
                      f"{lat['pruned_ms']:.3f} ms, ratio {lat['ratio']:.3f} for a MACs ratio of "
                      f"{lat['macs_ratio']:.3f}")
        if lat["warning"]:
            console.print(f"[yellow]warning:[/yellow] {lat['warning']}", highlight=False)
    if res.reconstruction:
        modes = {m: sum(r.mode == m for r in res.reconstruction) for m in ("refit", "bias", "skip")}
        console.print(f"reconstruction on {res.calib_samples} calibration samples: {modes['refit']} layers "
                      f"refit, {modes['bias']} bias-compensated, {modes['skip']} skipped")
    for a in agreement:
        console.print(f"check '{a.name}': largest |difference| {a.max_abs:.3g}, cosine similarity {a.cosine:.6f}")
    if healed is not None:
        _print_heal(console, healed)
    return 0


class _HealBar:
    """A rich progress bar over the training budget, showing the loss and the held-out loss."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.bar = Progress(TextColumn("healing"), BarColumn(), TextColumn("{task.fields[state]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) if enabled else None
        self.task: Any = None

    def __enter__(self) -> _HealBar:
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task("healing", total=1.0, state="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, fraction: float, state: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=fraction, state=state)


def _heal(original: str, pruned: str, out: str, args: argparse.Namespace, bar: _HealBar,
          calib: str | None = None, **options: Any) -> Any:
    """:func:`onnxprune.heal.heal` with the command's seed and image options; ``options`` override
    heal's own defaults (only the ``heal`` verb exposes them all)."""
    from .heal import heal

    _, result = heal(original, pruned, calib or args.calib, out, seed=getattr(args, "seed", 0) or 0,
                     image_spec=_image_spec(args), progress=bar, **options)
    return result


def _print_heal(console: Console, r: Any) -> None:
    cos = ", ".join(f"'{k}' {r.cosine_before[k]:.4f} → {r.cosine_after[k]:.4f}" for k in r.cosine_after)
    console.print(f"healing: {r.steps} steps ({r.epochs} epochs, {r.seconds:.0f}s, stopped: {r.stopped}) on "
                  f"{r.train_samples} samples, {r.tensors_trained} weight tensors, {len(r.features)} shared "
                  f"features matched")
    console.print(f"held-out ({r.heldout_samples} samples): loss {r.loss_before:.4g} → {r.loss_after:.4g}; "
                  f"cosine to the original {cos}")
    if r.kept_pruned_weights:
        console.print("[yellow]healing did not improve the held-out loss; the pruned weights were kept[/yellow]")


def cmd_heal(args: argparse.Namespace, console: Console) -> int:
    for path in (args.original, args.pruned):
        if not Path(path).is_file():
            raise UsageError(f"model '{path}' does not exist")
    out = args.output or str(Path(args.pruned).with_name(Path(args.pruned).stem + "-healed.onnx"))
    check_destination(out, (args.original, args.pruned))
    if args.budget_minutes <= 0 or args.batch_size < 1 or args.calib_samples < 2 or not 0 <= args.holdout < 1:
        raise UsageError("heal needs --budget-minutes > 0, --batch-size >= 1, --calib-samples >= 2 and "
                         "0 <= --holdout < 1")
    from .torchrun import require_torch

    require_torch()  # one line saying what to install, before any work
    with _HealBar(console, enabled=not args.json) as bar:
        r = _heal(args.original, args.pruned, out, args, bar, minutes=args.budget_minutes, epochs=args.epochs,
                  lr=args.lr, batch_size=args.batch_size, n_samples=args.calib_samples, holdout=args.holdout,
                  features=args.features, augment="none" if args.no_augment else "auto",
                  threads=args.threads or None)
    if args.json:
        print(json.dumps({"output": out, **r.to_dict()}, indent=2))
        return 0
    _print_heal(console, r)
    console.print(f"wrote {out}")
    return 0


def _demo_files(args: argparse.Namespace, stack: Any) -> tuple[str, str, str | None, str]:
    """(model, calibration, test data or None, description) for the demo: the bundled trained CNN
    or the user's own files."""
    if args.model:
        if not args.calib:
            raise UsageError("demo --model needs --calib PATH (unlabeled inputs for calibration and repair)")
        for path in (args.model, args.calib, args.data):
            if path and not Path(path).exists():
                raise UsageError(f"'{path}' does not exist")
        return args.model, args.calib, args.data, f"your model {args.model}"
    data = resources.files("onnxprune.data")
    model, calib, test = (str(stack.enter_context(resources.as_file(data.joinpath(n))))
                          for n in ("digits_cnn.onnx", "digits_calib.npz", "digits_test.npz"))
    return model, calib, test, ("the bundled digits_cnn.onnx: a CNN trained on scikit-learn's 8x8 digits "
                                "(256 calibration images, 360 labelled test images it never saw)")


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    import contextlib

    heal_available = importlib_util.find_spec("torch") is not None and not args.no_heal
    with contextlib.ExitStack() as stack:
        model, calib, test, what = _demo_files(args, stack)
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        out = args.output or os.path.join(tmp, "demo-pruned.onnx")
        check_destination(out, (model,))
        console.print(f"model: {what}")
        bar = _ProgressBar(console, "calibrating", enabled=True)
        with bar:
            res = prune(model, target_macs=args.target_macs, criterion="wanda", calibration=calib,
                        reconstruct=True, calib_samples=256, batch_size=32, progress=bar)
        repaired = os.path.join(tmp, "demo-repaired.onnx")
        res.save(repaired, protect=(model,))
        final, stages = repaired, [("pruned + repaired", repaired)]
        if heal_available:
            with _HealBar(console, enabled=True) as hbar:
                _heal(model, repaired, out, args, hbar, calib=calib, minutes=args.heal_minutes)
            final = out
            stages.append(("+ healed", out))
        elif args.output:
            res.save(out, protect=(model,))
            final = out
        proto = load_proto(model)
        data = load_calibration(test or calib, proto, n_samples=100_000, batch_size=64)
        labels = None
        if test and Path(test).suffix == ".npz":
            with np.load(test) as z:
                labels = np.asarray(z["labels"]).astype(np.int64).reshape(-1) if "labels" in z.files else None
        evals = [evaluate(proto, path, data, labels) for _, path in stages]
        sess_a = session(model)
        feeds = make_feeds(sess_a, seed=1, batch=args.batch)
        with console.status(f"timing original and pruned in turns at batch {args.batch}…", spinner="dots"):
            lat = interleaved_latency([model, final], feeds, threads=args.threads, repeat=args.repeat)
        m = lat.medians_ms
        table = Table(title="onnxprune demo: before / after")
        table.add_column("")
        table.add_column("original", justify="right")
        for label, _ in stages:
            table.add_column(label, justify="right")
        n = len(stages)
        for label, b, a, unit in (("params", res.before.params, res.after.params, ""),
                                  ("MACs", res.before.macs, res.after.macs, "")):
            table.add_row(label, human(b, unit), *[f"{human(a, unit)} ({a / b:.2f}x)"] * n)
        table.add_row("file size", human(file_size(model), "B"),
                      *[f"{human(file_size(p), 'B')} ({file_size(p) / file_size(model):.2f}x)" for _, p in stages])
        if labels is not None:
            table.add_row(f"test accuracy ({evals[0].samples} samples)", _pct(evals[0].accuracy_original),
                          *[f"{_pct(e.accuracy_pruned)} ({100 * (e.accuracy_pruned - e.accuracy_original):+.2f})"
                            for e in evals])
        table.add_row("agreement with the original (cosine)", "1.0000",
                      *[f"{np.mean([o.cosine for o in e.outputs]):.4f}" for e in evals])
        tops = [[o.top1_agreement for o in e.outputs if o.top1_agreement is not None] for e in evals]
        if all(tops):
            table.add_row("same top-1 class", "100%", *[_pct(min(t)) for t in tops])
        table.add_row(f"CPU latency, batch {args.batch} ({args.threads} threads, median of {args.repeat} turns)",
                      f"{m[0]:.2f} ms", *([""] * (n - 1)), f"{m[1]:.2f} ms ({m[1] / m[0]:.2f}x)")
        console.print(table)
        if not heal_available and not args.no_heal:
            console.print("[dim]pip install 'onnxprune\\[heal]' adds a healing column (distillation towards the "
                          "original on the same unlabeled data).[/dim]")
        if args.output:
            console.print(f"pruned model written to {out}")
    console.print("\nthe same on your model:\n"
                  "  onnxprune analyze model.onnx\n"
                  "  onnxprune prune model.onnx -o small.onnx --target-macs 0.5x --criterion wanda --calib calib/ "
                  "--reconstruct --heal --measure\n"
                  "  onnxprune eval model.onnx small.onnx --data test/\n"
                  "or: onnxprune demo --model model.onnx --calib calib/ --data test/", highlight=False)
    return 0


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    with console.status("profiling…", spinner="dots") if not args.json else _null():
        if args.by == "group" or args.json:
            an = analyze(args.model, _input_shapes(args))
            prof, groups = an.profile, analysis_dict(an)["groups"]
        else:
            prof, groups = profile(load(args.model, _input_shapes(args))), []
    data = profile_dict(prof, groups)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    table = Table(title=f"{args.model}: {human(prof.macs)} MACs, {human(prof.params)} params")
    if args.by == "op":
        for col in ("op type", "nodes", "MACs", "share", "params"):
            table.add_column(col, justify="left" if col == "op type" else "right")
        for op, row in data["by_op"].items():
            if row["macs"] or row["params"]:
                table.add_row(op, str(row["count"]), human(row["macs"]), _pct(row["macs"] / prof.macs if prof.macs else 0),
                              human(row["params"]))
    elif args.by == "node":
        for col in ("node", "op", "output shape", "MACs", "share", "params"):
            table.add_column(col, justify="right" if col in ("MACs", "share", "params") else "left")
        for n in sorted(prof.nodes, key=lambda n: (-n.macs, -n.params))[: args.top]:
            table.add_row(n.name, n.op, str(list(n.shape)) if n.shape is not None else "?", human(n.macs),
                          _pct(n.macs / prof.macs if prof.macs else 0), human(n.params))
    else:
        for col in ("group", "channels", "status", "MACs touched", "params touched", "members"):
            table.add_column(col, justify="left" if col in ("status", "members") else "right")
        for g in sorted(groups, key=lambda g: -g["macs"])[: args.top]:
            members = g["members"][0] + (f" +{len(g['members']) - 1}" if len(g["members"]) > 1 else "")
            table.add_row(str(g["id"]), str(g["channels"]), g["status"], human(g["macs"]), human(g["params"]), members)
    console.print(table)
    if args.by == "group":
        console.print("[dim]MACs touched: Conv/Gemm/MatMul layers reading or writing the group's channels "
                      "(a layer between two groups counts in both)[/dim]")
    if prof.unknown:
        console.print(f"[yellow]{len(prof.unknown)} node(s) have unknown shapes and count 0 MACs[/yellow] "
                      f"(first: {prof.unknown[0]}); fix symbolic inputs with --input-shape")
    return 0


def _batches(text: str) -> list[int]:
    try:
        out = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--batch '{text}': expected positive integers such as 1,8") from None
    if not out or any(b < 1 for b in out):
        raise UsageError(f"--batch '{text}': expected positive integers such as 1,8")
    return out


def _check_timing(args: argparse.Namespace) -> None:
    if args.repeat < 1 or args.warmup < 0 or args.threads < 0:
        raise UsageError("--repeat must be at least 1, --warmup and --threads at least 0")


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=quiet)


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    _check_timing(args)
    eps, batches = resolve_eps(args.ep), _batches(args.batch)
    _require_model(args.model)
    results: list[BenchResult] = []
    with _progress(console, args.json) as bar:
        for ep in eps:
            for b in batches:
                task = bar.add_task(f"{short_ep(ep)} batch {b}", total=args.repeat)
                results.append(benchmark(args.model, ep, b, args.threads, args.warmup, args.repeat, _input_shapes(args),
                                         progress=lambda i, n, t=task: bar.update(t, completed=i)))
                bar.remove_task(task)
    rows = [r.as_dict() for r in results]
    if args.json:
        print(json.dumps({"model": args.model, "onnxruntime": ort.__version__, "results": rows}, indent=2))
        return 0
    table = Table(title=f"{args.model} in onnxruntime {ort.__version__}")
    for col in ("EP", "batch", "p50 ms", "p90 ms", "p99 ms", "throughput/s", "session s", "peak memory"):
        table.add_column(col, justify="left" if col == "EP" else "right")
    for r in rows:
        mem = human(r["peak_mem_bytes"], "B") + f" ({r['mem_kind']})" if r["peak_mem_bytes"] is not None else "n/a"
        table.add_row(r["ep"], str(r["batch"]), f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                      f"{r['throughput_per_s']:.1f}", f"{r['session_s']:.2f}", mem)
    console.print(table)
    console.print(f"[dim]{args.repeat} timed runs after {args.warmup} warm-up runs; threads: "
                  f"{args.threads or 'onnxruntime default'}[/dim]")
    return 0


def _require_model(path: str) -> None:
    # a clear one-line refusal before any session starts (load checks the file thoroughly)
    load(path, None)


def _check_report_dir(report: str | None) -> None:
    """``--report DIR`` must be a folder (or a path where one can be made), checked before any work."""
    if not report:
        return
    d = Path(report)
    if d.exists() and not d.is_dir():
        raise UsageError(f"--report {report}: is a file; give a folder to write the report into")
    if not d.exists() and not d.parent.resolve().is_dir():
        raise UsageError(f"--report {report}: folder {d.parent} does not exist")


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    _check_report_dir(args.report)
    _check_timing(args)
    eps = resolve_eps(args.ep)
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    with _progress(console, args.json) as bar:
        task = bar.add_task("profiling", total=None)

        def step(ep: str, i: int, n: int) -> None:
            bar.update(task, description=f"{ep}: original/pruned in turns", completed=i, total=n)

        cmp = compare_models(args.original, args.pruned, eps, args.batch, args.threads, args.warmup, args.repeat,
                             _input_shapes(args), progress=step)
    report_md = None
    if args.report:
        report_md, plotted = write_comparison_report(cmp, args.report, _barriers(args.original, _input_shapes(args)))
        if not args.json:
            _report_extras(console, plotted, report_md.with_suffix(".html").is_file())
    if args.json:
        data = cmp.as_dict()
        data["report"] = str(report_md) if report_md else None
        print(json.dumps(data, indent=2))
        return 0
    o, p = cmp.original, cmp.pruned
    table = Table(title=f"{args.original} vs {args.pruned}")
    for col in ("", "original", "pruned", "pruned/original"):
        table.add_column(col, justify="left" if not col else "right")
    for label, a, b, unit in (("file size", o.size, p.size, "B"), ("params", o.params, p.params, ""),
                              ("MACs", o.macs, p.macs, ""), ("nodes", o.nodes, p.nodes, "")):
        table.add_row(label, human(a, unit), human(b, unit), f"{b / a:.3f}" if a else "-")
    for lat in cmp.latency:
        lo, hi = lat.pair_iqr()
        table.add_row(f"{short_ep(lat.provider)} latency p50 (batch {lat.batch}, {lat.original_ms.size} turns)",
                      f"{float(np.median(lat.original_ms)):.3f} ms", f"{float(np.median(lat.pruned_ms)):.3f} ms",
                      f"{1 / lat.speedup:.3f}")
        table.add_row(f"{short_ep(lat.provider)} speedup · efficiency", "", f"{lat.speedup:.2f}x ({lo:.2f}-{hi:.2f})",
                      f"{cmp.efficiency(lat):.2f}")
    for out in cmp.outputs:
        extra = f", top-1 same {out.top1:.0%}" if out.top1 is not None else ""
        table.add_row(f"output '{out.name}'", "", f"cosine {out.cosine:.5f}", f"rel L2 {out.rel_l2:.3g}{extra}")
    console.print(table)
    console.print("[dim]efficiency = speedup / MACs reduction; the range after a speedup is the IQR of "
                  "per-turn ratios[/dim]")
    if report_md:
        html = report_md.with_suffix(".html")
        console.print(f"report written to {report_md}" + (f" and {html}" if html.is_file() else ""))
    return 0


def _barriers(model: str, input_shapes: dict[str, list[int]]) -> list[dict[str, Any]] | None:
    """What keeps the original's channels frozen, for a report; ``None`` where it cannot be analysed."""
    try:
        return barrier_kinds(analyze(model, input_shapes or None))
    except OnnxPruneError as e:
        log.warning("report without the barrier table: %s", e)
        return None


def _report_extras(console: Console, plotted: bool, html: bool) -> None:
    missing = [what for what, ok in (("plots (matplotlib)", plotted), ("the HTML page (markdown)", html)) if not ok]
    if missing:
        console.print(f"[yellow]report written without {' and '.join(missing)}[/yellow]: "
                      f"{REPORT_EXTRA.replace('[', chr(92) + '[')}")


def _node_table(console: Console, title: str, before: dict[str, int], after: dict[str, int]) -> None:
    table = Table(title=title)
    table.add_column("op")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for op in sorted(set(before) | set(after), key=lambda o: (-before.get(o, 0), o)):
        b, a = before.get(op, 0), after.get(op, 0)
        style = "green" if a < b else ("red" if a > b else "")
        table.add_row(op, str(b), f"[{style}]{a}[/{style}]" if style else str(a))
    table.add_row("[bold]total[/bold]", str(sum(before.values())), f"[bold]{sum(after.values())}[/bold]")
    console.print(table)


def _pass_progress(console: Console, quiet: bool) -> Any:
    if quiet:
        return None

    def on_pass(p: Any, result: Any) -> None:
        if result.modified:
            console.print(f"[dim]  {p.name}: {len(result.model.graph.nodes)} nodes[/dim]")
    return on_pass


def cmd_optimize(args: argparse.Namespace, console: Console) -> int:
    from .io import load_proto, save_proto
    from .pipeline import run_passes
    from .recipe import op_counts

    out = args.output or str(Path(args.model).with_name(Path(args.model).stem + "-optimized.onnx"))
    check_destination(out, (args.model,))
    from .pipeline import resolve_passes

    passes = resolve_passes([p for p in args.passes.split(",") if p.strip()] + (["verify"] if args.check else []))
    original = load_proto(args.model)
    before = op_counts(original)
    t0 = time.perf_counter()
    with console.status("optimizing…", spinner="dots") if not args.json else _null():
        res = run_passes(args.model, passes, _input_shapes(args), max_rounds=args.max_rounds,
                         on_pass=_pass_progress(console, args.json))
        _keep_declared_value_info(res.proto, original)
        _validate_optimized(res.proto, original, _input_shapes(args), args.model)
        save_proto(res.proto, out, protect=(args.model,))
    after = op_counts(res.proto)
    elapsed = time.perf_counter() - t0
    data = {
        "model": args.model, "output": out, "passes": res.trace, "converged": res.converged,
        "nodes_before": sum(before.values()), "nodes_after": sum(after.values()),
        "op_counts_before": before, "op_counts_after": after,
        "size_before": file_size(args.model), "size_after": file_size(out), "seconds": elapsed,
    }
    checks = _verify_results(passes)
    if checks:
        data["check"] = checks
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _node_table(console, f"{args.model} → {out}", before, after)
    console.print(f"{data['nodes_before']} → {data['nodes_after']} nodes, file size "
                  f"{human(data['size_before'], 'B')} → {human(data['size_after'], 'B')}; "
                  f"{len(res.trace)} pass runs [dim]({elapsed:.2f}s)[/dim]")
    for name, diff in checks.items():
        console.print(f"check '{name}': largest |difference| from the input model {diff:.3g}")
    if not res.converged:
        console.print(f"[yellow]passes still changed the model after {args.max_rounds} rounds[/yellow]")
    return 0


def _keep_declared_value_info(proto: Any, original: Any) -> None:
    """Drops the shape annotations the passes added: the output is not larger for carrying them.

    Annotations the input model declared stay (with what the passes now know about them).
    """
    declared = {vi.name for vi in original.graph.value_info}
    keep = [vi for vi in proto.graph.value_info if vi.name in declared]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep)


def _validate_optimized(proto: Any, original: Any,
                        shapes: dict[str, list[int]] | None, path: str | None = None) -> None:
    """Nothing invalid or different is written: the checker, and a run next to the input model.

    Both models run on a feed the input model runs on and their outputs must agree up to
    rounding (:func:`~onnxprune.verify.disagreement`). A check the input model fails too is reported once, not held against the output;
    with no feed the input runs on, the checker alone decides.
    """
    from .errors import ApplyError
    from .feeds import plan_feeds
    from .verify import _check, computes_in_float16, disagreement, run, validate

    plan = plan_feeds(original, shapes)
    if plan.verified:
        feeds = plan.make(seed=0)
        got = validate(proto, feeds=feeds, reference=original, what="optimized model")
        if got:
            names = [o.name for o in original.graph.output]
            half = computes_in_float16(original)
            for name, a, b in zip(names, run(path or original, feeds), got, strict=False):
                why = disagreement(a, b, half)
                if why:
                    raise ApplyError(f"optimized model changes output '{name}': {why}; nothing was written")
        return
    problem = _check(proto)
    if problem and not _check(original):
        raise ApplyError(f"optimized model {problem}")


def _verify_results(passes: list[Any]) -> dict[str, float]:
    """Largest output differences found by the last verify pass of a pipeline."""
    from .passes import VerifyOutputs

    found = [p for p in passes if isinstance(p, VerifyOutputs) and p.max_abs]
    return dict(found[-1].max_abs) if found else {}


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .recipe import load_recipe, run_recipe

    recipe = load_recipe(args.recipe)
    t0 = time.perf_counter()
    with console.status(f"optimizing {recipe.model.name}…", spinner="dots") if not args.json else _null():
        summary = run_recipe(recipe, on_pass=_pass_progress(console, args.json))
    summary["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _node_table(console, f"{recipe.model.name} → {recipe.output}", summary["op_counts_before"],
                summary["op_counts_after"])
    console.print(f"passes: {', '.join(summary['passes'])}")
    b = summary.get("benchmark")
    if b:
        console.print(f"latency (median of {b['repeat']} interleaved runs, batch {b['batch']}, "
                      f"{b['threads']} threads): {b['median_ms_before']:.3f} ms → {b['median_ms_after']:.3f} ms, "
                      f"ratio {b['ratio']:.3f}")
    console.print(f"written to {recipe.output} [dim]({summary['seconds']:.2f}s)[/dim]")
    return 0


def cmd_passes(args: argparse.Namespace, console: Console) -> int:
    import inspect

    from .passes import available, builtin

    builtins = builtin()
    rows = []
    for name, cls in sorted(available().items()):
        params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        opts = {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params}
        rows.append({"name": name, "description": cls.description(), "options": opts,
                     "origin": "built-in" if name in builtins else f"plugin ({cls.__module__})"})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table(title="passes (use with --passes or in recipes; options as name:key=value)")
    table.add_column("name")
    table.add_column("what it does")
    table.add_column("options")
    for r in rows:
        opts = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
        origin = "" if r["origin"] == "built-in" else f" [dim]{r['origin']}[/dim]"
        table.add_row(r["name"], r["description"] + origin, opts)
    console.print(table)
    return 0


def _eval_latency(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """``eval --measure``: the original and every model timed in rotating turns in one process."""
    provider = resolve_eps(args.ep)[0]
    feeds = batch_feeds(args.original, args.measure_batch, seed=2)
    bar = _ProgressBar(console, f"timing {len(args.pruned) + 1} models in turns", enabled=not args.json)
    with bar:
        res = interleaved_latency([args.original, *args.pruned], feeds, threads=args.threads, repeat=args.repeat,
                                  progress=bar, provider=provider, min_turn_ms=5.0)
    meds = res.medians_ms
    return {"provider": provider, "batch": args.measure_batch, "threads": args.threads, "turns": args.repeat,
            "original_ms": meds[0], "ms": dict(zip(args.pruned, meds[1:])),
            "ratios": {p: float(np.median(res.pair_ratios(i + 1))) for i, p in enumerate(args.pruned)}}


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    _check_report_dir(args.report)
    for path in (args.original, *args.pruned):
        if not Path(path).is_file():
            raise UsageError(f"model '{path}' does not exist")
    proto = load_proto(args.original)
    data = load_calibration(args.data, proto, n_samples=args.samples, batch_size=args.batch_size,
                            image_spec=_image_spec(args))
    labels = None
    if args.labels:
        labels = load_labels(args.labels)
    elif Path(args.data).is_file() and Path(args.data).suffix == ".npz":
        with np.load(args.data) as z:
            labels = np.asarray(z["labels"]).astype(np.int64).reshape(-1) if "labels" in z.files else None
    if args.measure and (args.repeat < 3 or args.threads < 0 or args.measure_batch < 1):
        raise UsageError("--repeat must be >= 3, --threads >= 0 and --measure-batch >= 1")
    results = []
    for path in args.pruned:
        bar = _ProgressBar(console, f"evaluating {Path(path).name}", enabled=not args.json)
        with bar:
            results.append(evaluate(proto, path, data, labels, progress=bar))
    latency = _eval_latency(args, console) if args.measure else None
    if args.report:
        md, html, plotted = write_evaluation_report(args.original, list(zip(args.pruned, results)), args.report,
                                                    latency)
        if not args.json:
            _report_extras(console, plotted, html is not None)
            console.print(f"report written to {md}" + (f" and {html}" if html else ""))
    if args.json:
        dicts = [{"model": p, **r.to_dict()} for p, r in zip(args.pruned, results)]
        if latency:
            for d in dicts:
                d["latency"] = {"ms": latency["ms"][d["model"]], "ratio": latency["ratios"][d["model"]],
                                "original_ms": latency["original_ms"], "provider": latency["provider"],
                                "batch": latency["batch"]}
        print(json.dumps(dicts[0] if len(dicts) == 1 else {"original": args.original, "models": dicts}, indent=2))
        return 0
    for path, res in zip(args.pruned, results):
        table = Table(title=f"{path} vs {args.original} on {res.samples} samples")
        for col in ("output", "cosine", "relative L2", "max |diff|", "top-1 agreement"):
            table.add_column(col, justify="left" if col == "output" else "right")
        for o in res.outputs:
            table.add_row(o.name, f"{o.cosine:.6f}", f"{o.rel_l2:.4g}", f"{o.max_abs:.4g}",
                          "-" if o.top1_agreement is None else _pct(o.top1_agreement))
        console.print(table)
    if len(results) > 1:  # side by side: before pruning, after pruning, after repair, after healing ...
        table = Table(title=f"against {args.original} (mean cosine over outputs)")
        table.add_column("model")
        table.add_column("cosine", justify="right")
        table.add_column("top-1 agreement", justify="right")
        if results[0].accuracy_original is not None:
            table.add_column("accuracy", justify="right")
            table.add_row(f"{args.original} (original)", "1.000000", "100%", _pct(results[0].accuracy_original))
        for path, res in zip(args.pruned, results):
            tops = [o.top1_agreement for o in res.outputs if o.top1_agreement is not None]
            row = [path, f"{np.mean([o.cosine for o in res.outputs]):.6f}", _pct(min(tops)) if tops else "-"]
            if res.accuracy_pruned is not None:
                row.append(f"{_pct(res.accuracy_pruned)} ({100 * (res.accuracy_pruned - res.accuracy_original):+.2f})")
            table.add_row(*row)
        console.print(table)
    elif results[0].accuracy_original is not None:
        res = results[0]
        console.print(f"accuracy: original {_pct(res.accuracy_original)}, pruned {_pct(res.accuracy_pruned)} "
                      f"({100 * (res.accuracy_pruned - res.accuracy_original):+.2f} points)")
    if latency:
        console.print(f"latency ({short_ep(latency['provider'])}, batch {latency['batch']}, {latency['turns']} turns "
                      f"in rotating order): original {latency['original_ms']:.3f} ms; "
                      + "; ".join(f"{Path(p).name} {latency['ms'][p]:.3f} ms ({latency['ratios'][p]:.3f}x)"
                                  for p in args.pruned))
    return 0


def _ratio_list(text: str, flag: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag} '{text}': expected numbers such as 0.25,0.5") from None
    if not vals or any(not 0 < v < 1 for v in vals):
        raise UsageError(f"{flag} '{text}': ratios must be in (0, 1)")
    return vals


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from .search import SearchOptions, save_result, search

    check_destination(args.output, (args.model,))
    _check_report_dir(args.report)
    if not 0 < args.max_ratio < 1:
        raise UsageError(f"--max-ratio {args.max_ratio}: must be in (0, 1)")
    if args.threads < 0:
        raise UsageError("--threads must be at least 0")
    if args.address and args.executor != "ray":
        raise UsageError("--address needs --executor ray")
    n_levels = 7
    levels = tuple(round(args.max_ratio * i / (n_levels - 1), 6) for i in range(n_levels))
    opts = SearchOptions(
        target_latency=args.target_latency, target_macs=args.target_macs, target_params=args.target_params,
        provider=args.ep, strategy=args.strategy, calib=args.calib, labels=args.labels,
        calib_samples=args.calib_samples, holdout=args.holdout, budget_minutes=args.budget_minutes, seed=args.seed,
        round_to=args.round_to, min_channels=args.min_channels, ignore=args.ignore,
        input_shapes=_input_shapes(args) or None, prune_hidden=args.prune_hidden, levels=levels,
        sensitivity_ratios=_ratio_list(args.sensitivity_ratios, "--sensitivity-ratios"), workers=args.workers,
        executor=args.executor, address=args.address, threads=args.threads, cache_dir=args.cache_dir,
        criterion=args.criterion, reconstruct=args.reconstruct, refit=not args.bias_only, batch=args.batch,
    )
    if args.bias_only and not args.reconstruct:
        raise UsageError("--bias-only needs --reconstruct")
    _require_model(args.model)
    t0 = time.perf_counter()
    with _progress(console, args.json) as bar:
        tasks: dict[str, Any] = {}

        def step(stage: str, done: int, total: int, info: str) -> None:
            if stage not in tasks:
                for t in tasks.values():  # one stage at a time on screen
                    bar.update(t, visible=False)
                tasks[stage] = bar.add_task(stage, total=total or None)
            desc = f"{stage} [dim]{info}[/dim]" if info else stage
            bar.update(tasks[stage], completed=done, total=total or None, description=desc)

        res = search(args.model, opts, progress=step)
    written = save_result(res, args.output, args.report, protect=(args.model,),
                          barriers=_barriers(args.model, _input_shapes(args)) if args.report else None)
    elapsed = time.perf_counter() - t0
    data = res.as_dict()
    data["written"] = written
    if args.json:
        print(json.dumps(data, indent=2))
        return 0 if res.met else 1
    b = res.best
    table = Table(title=f"{args.model} → {args.output} ({args.strategy}, {short_ep(resolve_eps(args.ep)[0])})")
    for col in ("", "original", "chosen", "chosen/original"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("MACs", human(res.baseline_macs), human(b.macs), f"{b.macs / res.baseline_macs:.3f}")
    table.add_row("params", human(res.baseline_params), human(b.params), f"{b.params / res.baseline_params:.3f}")
    table.add_row("latency predicted", f"{res.baseline_ms:.3f} ms", f"{b.predicted_ms:.3f} ms",
                  f"{b.predicted_ms / res.baseline_ms:.3f}")
    if b.measured_ratio is not None:
        table.add_row("latency measured (in turns)", "", "", f"{b.measured_ratio:.3f}")
    if b.fidelity is not None:
        f = b.fidelity
        extra = f", top-1 same {f.top1:.0%}" if f.top1 is not None else ""
        extra += f", accuracy {f.accuracy:.1%}" if f.accuracy is not None else ""
        table.add_row("output agreement", "", f"cosine {f.cosine:.4f}", f"rel L2 {f.rel_l2:.3g}{extra}")
    console.print(table)
    gt = Table(title="per-group ratios chosen")
    for col in ("group", "channels", "kept", "ratio", "members"):
        gt.add_column(col, justify="left" if col == "members" else "right")
    for row in data["groups"]:
        gt.add_row(str(row["group"]), str(row["channels"]), str(row["kept"]), f"{row['ratio']:.3f}",
                   ", ".join(row["members"]))
    console.print(gt)
    err, chosen = data["prediction_error"]["max"], data["prediction_error"]["chosen"]
    if err is not None:
        console.print("latency model: " + (f"prediction error {chosen:.1%} on the chosen model, " if chosen is not None
                                           else "") + f"largest {err:.1%} over "
                      f"{len(data['prediction_error']['checked'])} candidates timed end to end")
    if not res.met:
        console.print("[yellow]the targets were not met[/yellow]; the closest candidate was written")
    if res.stopped_early:
        console.print("[yellow]stopped at the time budget[/yellow]; the best candidate so far was written")
    console.print(f"sensitivity {'reused from cache' if res.sensitivity['from_cache'] else 'measured and cached'}; "
                  f"calibration: {res.calibration}; written {written['model']}"
                  + (f", report {written.get('html') or written['report']} and {written['json']}"
                     if written.get("json") else "")
                  + (" (no plot: pip install 'onnxprune\\[report]')" if args.report and not written.get("plot") else "")
                  + f" [dim]({elapsed:.1f}s)[/dim]")
    return 0 if res.met else 1


COMMANDS = {"analyze": cmd_analyze, "prune": cmd_prune, "demo": cmd_demo, "eval": cmd_eval, "heal": cmd_heal,
            "profile": cmd_profile, "bench": cmd_bench, "compare": cmd_compare, "search": cmd_search,
            "optimize": cmd_optimize, "run": cmd_run, "passes": cmd_passes}


#: onnxruntime's exceptions that mean "this model (or its input) is not one I accept".
_ORT_MODEL_ERRORS = frozenset({"InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented",
                               "InvalidArgument"})


def _model_refused_by_onnxruntime(exc: BaseException) -> bool:
    if not type(exc).__module__.startswith("onnxruntime"):
        return False
    return type(exc).__name__ in _ORT_MODEL_ERRORS or (type(exc).__name__ == "Fail" and "Load model from" in str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    console = Console(stderr=False, highlight=False, quiet=args.quiet or getattr(args, "quiet_here", False))
    free_big_blocks_at_once()  # freed weights leave the process at once (peak memory)

    def fail(message: str) -> None:  # plain, unwrapped: one line for people and scripts
        print(f"onnxprune: {message}", file=sys.stderr)
    try:
        _settle_output(args)
        return COMMANDS[args.command](args, console)
    except OnnxPruneError as exc:
        if args.debug:
            raise
        fail(f"error: {exc}")
        return exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:
        from .io import WRITTEN

        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        done = [str(p) for p in WRITTEN if p.exists()]
        fail(f"{what}; " + (f"already written: {', '.join(done)}; nothing else" if done else "nothing was written"))
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    except Exception as exc:  # the last line of defence: one line, no traceback
        if args.debug:
            raise
        if _model_refused_by_onnxruntime(exc):
            fail(f"error: onnxruntime cannot load or run this model: {ort_message(exc)}")
            return 2
        fail(f"internal error ({type(exc).__name__}): {exc} (rerun with --debug for details)")
        return 1


def olive_main(argv: list[str] | None = None) -> int:
    """``python -m onnxprune.olive_pass run WORKFLOW.json | package-config -o PKG.json``."""
    from .olive_pass import PASS_TYPE, package_config, run

    p = argparse.ArgumentParser(
        prog="python -m onnxprune.olive_pass",
        description=f"Run Olive workflows that use the '{PASS_TYPE}' pass, or write the package "
        "configuration that makes `olive run` know it.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run an Olive workflow JSON with the pass registered")
    r.add_argument("workflow", help="the workflow .json (Olive's run config)")
    c = sub.add_parser("package-config", help="write Olive's package configuration plus this pass")
    c.add_argument("-o", "--output", required=True, help="where to write the JSON")
    args = p.parse_args(argv)
    try:
        if args.cmd == "package-config":
            from .io import save_text

            save_text(args.output, json.dumps(package_config(), indent=2))
            print(f"wrote {args.output}: olive run --config WORKFLOW.json --package-config {args.output}")
            return 0
        if not Path(args.workflow).is_file():
            raise UsageError(f"workflow '{args.workflow}' does not exist")
        run(Path(args.workflow))
        return 0
    except OnnxPruneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
