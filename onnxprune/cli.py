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
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .api import analyze, prune
from .bench import interleaved_latency
from .calibration import ImageSpec, load_calibration
from .errors import OnnxPruneError, UsageError
from .evaluate import evaluate, load_labels
from .importance import ACTIVATION_CRITERIA, CRITERIA
from .io import load_proto, parse_input_shapes
from .report import analysis_dict, human, prune_dict
from .verify import compare, make_feeds, session

__all__ = ["main", "build_parser"]

log = logging.getLogger("onnxprune")

EPILOG = """\
examples:
  onnxprune demo                                   prune the bundled ResNet and show the gain
  onnxprune analyze model.onnx                     list channel groups, barriers and reasons
  onnxprune prune model.onnx -o small.onnx --ratio 0.5 --round-to 8 --check
  onnxprune prune model.onnx -o small.onnx --ratio 0.3 --ignore 'head.*' --input-shape input:1,3,224,224
  onnxprune prune model.onnx -o small.onnx --ratio 0.3 --criterion wanda --calib calib/ --reconstruct
  onnxprune eval model.onnx small.onnx --data test/ --labels labels.npy
"""


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="input .onnx file (external data is read from beside it; never modified)")
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME:D0,D1,...",
        help="fix the dimensions of a graph input with symbolic sizes, e.g. input:1,3,224,224 "
        "(repeatable; unspecified symbolic dimensions are taken as 1)",
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
        "result with the ONNX checker and onnxruntime, and writes it atomically.",
    )
    _add_model_options(pp)
    pp.add_argument("-o", "--output", help="output .onnx file (default: <model>-pruned.onnx beside the input)")
    pp.add_argument("--ratio", type=float, default=0.5, help="share of channels removed per layer, in [0, 1) (default 0.5)")
    pp.add_argument("--criterion", choices=CRITERIA, default="l1",
                    help="channel importance (default l1): l1/l2 weight magnitude, bn BatchNorm scale, "
                    "random; with --calib: wanda (|W| x input activation norm), fluct (input variance x "
                    "squared weights), apoz (share of non-zero activations)")
    pp.add_argument("--round-to", type=int, default=1, metavar="N", help="keep channel counts a multiple of N (8 or 16 suit real kernels)")
    pp.add_argument("--min-channels", type=int, default=1, metavar="N", help="never keep fewer than N channels in a layer (default 1)")
    pp.add_argument("--seed", type=int, default=0, help="seed for --criterion random")
    pp.add_argument("--check", action="store_true", help="compare outputs with the original on seeded inputs")
    pp.add_argument("--json", action="store_true", help="print the summary as JSON")
    pc = pp.add_argument_group(
        "calibration and reconstruction",
        "Activation-aware criteria (wanda, fluct, apoz) and --reconstruct run the model on "
        "calibration inputs in onnxruntime (a few hundred unlabeled samples suffice).",
    )
    pc.add_argument("--calib", metavar="PATH|random",
                    help="calibration data: a folder of .npy/.npz files (one sample or a stack along "
                    "the batch axis per file; .npz keys are input names), one .npz/.npy file, a folder "
                    "of images (see --image-size), or 'random' (exercises the graph, says nothing "
                    "about accuracy)")
    pc.add_argument("--calib-samples", type=int, default=256, metavar="N",
                    help="use at most N calibration samples (default 256)")
    pc.add_argument("--batch-size", type=int, default=32, metavar="N",
                    help="calibration samples per onnxruntime run (default 32)")
    pc.add_argument("--reconstruct", action="store_true",
                    help="refit every layer that lost input channels by ridge least squares so it "
                    "reproduces the original layer's output on the calibration data")
    pc.add_argument("--feedback-passes", type=int, default=0, metavar="N",
                    help="with --reconstruct: refit N more times on the inputs the layers receive in "
                    "the pruned model, so earlier layers' errors are absorbed; each pass runs both "
                    "models over the calibration data again (default 0: one-shot)")
    pc.add_argument("--bias-only", action="store_true",
                    help="with --reconstruct: only compensate biases for the removed channels' mean "
                    "contribution (no refit of weights)")
    pc.add_argument("--ridge", type=float, default=1e-3, metavar="ALPHA",
                    help="relative ridge of the refit, lambda = ALPHA * mean diagonal of the Gram "
                    "block (default 1e-3)")
    pc.add_argument("--global", dest="global_ranking", action="store_true",
                    help="rank channels across all layers (LAMP-normalized scores) and remove the "
                    "lowest --ratio of all prunable channels, instead of --ratio of every layer")
    _add_image_options(pc)

    pe = sub.add_parser(
        "eval",
        help="compare a pruned model with its original on real inputs",
        description="Runs both models on the same inputs (use data not used for calibration) "
        "and reports per output cosine similarity, relative L2 error and largest difference, "
        "top-1 agreement for classifier-like outputs ([batch, classes]), and with labels the "
        "accuracy of both models.",
    )
    pe.add_argument("original", help="the original .onnx model")
    pe.add_argument("pruned", help="the pruned .onnx model")
    pe.add_argument("--data", required=True, metavar="PATH",
                    help="inputs: a folder of .npy/.npz files, one .npz/.npy file, or a folder of images")
    pe.add_argument("--labels", metavar="FILE",
                    help="integer class per sample (.npy, .npz or text, one per line); by default a "
                    "'labels' array inside a --data .npz file is used")
    pe.add_argument("--samples", type=int, default=100000, metavar="N", help="use at most N samples")
    pe.add_argument("--batch-size", type=int, default=32, metavar="N", help="samples per run (default 32)")
    pe.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_image_options(pe)

    pd = sub.add_parser(
        "demo",
        help="prune the bundled model and show params, MACs, size, latency and agreement",
        description="Prunes a small ResNet that ships with onnxprune and prints a before/after "
        "table: parameters, MACs, file size, onnxruntime CPU latency (interleaved runs) and "
        "output agreement.",
    )
    pd.add_argument("--ratio", type=float, default=0.5, help="share of channels removed per layer (default 0.5)")
    pd.add_argument("-o", "--output", help="where to write the pruned model (default: a temporary folder)")
    pd.add_argument("--repeat", type=int, default=30, help="timed runs per model (default 30)")
    pd.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
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


class _ProgressBar:
    """A rich progress bar driven by ``progress(done, total)`` callbacks (one task per stage)."""

    def __init__(self, console: Console, label: str, enabled: bool) -> None:
        self.enabled = enabled
        self.label = label
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True) if enabled else None
        self.task: Any = None
        self.stage = 0

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


# ---------------------------------------------------------------------------- helpers
def _file_size(path: str | os.PathLike[str]) -> int:
    p = Path(path)
    size = p.stat().st_size
    data = p.with_name(p.name + ".data")
    return size + (data.stat().st_size if data.exists() else 0)


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
    console.print(
        f"prunable: {_pct(data['prunable_macs_share'])} of Conv/Gemm/MatMul MACs "
        f"({human(data['prunable_macs'])} of {human(data['linear_macs'])}), "
        f"{_pct(data['prunable_params_share'])} of their params; "
        f"{data['prunable_channels']} of {data['channels']} channels in {len(data['groups'])} groups "
        f"[dim]({time.perf_counter() - t0:.2f}s)[/dim]"
    )
    return 0


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _default_output(model: str) -> str:
    p = Path(model)
    return str(p.with_name(p.stem + "-pruned.onnx"))


def cmd_prune(args: argparse.Namespace, console: Console) -> int:
    out = args.output or _default_output(args.model)
    if Path(out).resolve() == Path(args.model).resolve():
        raise UsageError(f"{out}: refusing to overwrite the input model; choose another -o")
    if (args.reconstruct or args.criterion in ACTIVATION_CRITERIA) and not args.calib:
        need = "--reconstruct" if args.reconstruct else f"--criterion {args.criterion}"
        raise UsageError(f"{need} needs calibration data: --calib DIR|FILE|random")
    if args.feedback_passes < 0:
        raise UsageError(f"--feedback-passes must be >= 0, got {args.feedback_passes}")
    if args.bias_only and not args.reconstruct:
        raise UsageError("--bias-only only applies with --reconstruct")
    t0 = time.perf_counter()
    bar = _ProgressBar(console, "calibrating", enabled=bool(args.calib) and not args.json)
    with bar, (console.status("pruning…", spinner="dots") if not args.json and not args.calib else _null()):
        res = prune(
            args.model,
            ratio=args.ratio,
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
        )
        res.save(out, protect=(args.model,))
    elapsed = time.perf_counter() - t0
    data = prune_dict(res)
    data.update(output=out, size_before=_file_size(args.model), size_after=_file_size(out), seconds=elapsed)
    if res.reconstruction:
        data["reconstruction"] = [{"node": r.node, "mode": r.mode, "kept": r.kept, "total": r.total,
                                   "reason": r.reason} for r in res.reconstruction]
    agreement = []
    if args.check:
        with console.status("comparing outputs…", spinner="dots") if not args.json else _null():
            sess = session(args.model)
            feeds = make_feeds(sess, _input_shapes(args) or None, seed=0, batch=2 if _batch_symbolic(sess) else 1)
            agreement = compare(sess, out, feeds)
        data["check"] = [{"output": a.name, "max_abs_diff": a.max_abs, "cosine": a.cosine} for a in agreement]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if res.plan.n_removed == 0:
        console.print("[yellow]nothing was pruned:[/yellow] every group is a barrier or the ratio removes no "
                      "channel; run `onnxprune analyze` to see why")
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
    if res.reconstruction:
        modes = {m: sum(r.mode == m for r in res.reconstruction) for m in ("refit", "bias", "skip")}
        console.print(f"reconstruction on {res.calib_samples} calibration samples: {modes['refit']} layers "
                      f"refit, {modes['bias']} bias-compensated, {modes['skip']} skipped")
    for a in agreement:
        console.print(f"check '{a.name}': largest |difference| {a.max_abs:.3g}, cosine similarity {a.cosine:.6f}")
    return 0


def _batch_symbolic(sess: Any) -> bool:
    return all(inp.shape and not isinstance(inp.shape[0], int) for inp in sess.get_inputs())


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    src = resources.files("onnxprune.data").joinpath("demo.onnx")
    with resources.as_file(src) as demo_path, tempfile.TemporaryDirectory() as tmp:
        out = args.output or os.path.join(tmp, "demo-pruned.onnx")
        console.print(f"bundled model: {demo_path.name} (a small ResNet exported from PyTorch, 10 classes, 1x3x64x64)")
        with console.status(f"pruning {args.ratio:.0%} of channels per layer…", spinner="dots"):
            res = prune(str(demo_path), ratio=args.ratio)
            res.save(out, protect=(str(demo_path),))
        sess_a = session(str(demo_path))
        feeds = make_feeds(sess_a, seed=0, batch=16)
        agreement = compare(sess_a, res.proto, feeds)
        a_out = sess_a.run(None, feeds)[0]
        b_out = session(res.proto).run(None, feeds)[0]
        top1 = float(np.mean(a_out.argmax(-1) == b_out.argmax(-1)))
        # batch 8: at batch 1 this small model's run is mostly fixed per-op overhead
        feeds1 = make_feeds(sess_a, seed=1, batch=8)
        with console.status("timing original and pruned in turns…", spinner="dots"):
            lat = interleaved_latency([str(demo_path), out], feeds1, threads=args.threads, repeat=args.repeat)
        m = lat.medians_ms
        table = Table(title="onnxprune demo: before / after")
        table.add_column("")
        table.add_column("original", justify="right")
        table.add_column("pruned", justify="right")
        table.add_column("pruned/original", justify="right")
        rows = (("params", res.before.params, res.after.params, ""),
                ("MACs", res.before.macs, res.after.macs, ""),
                ("file size", _file_size(demo_path), _file_size(out), "B"))
        for label, b, a, unit in rows:
            table.add_row(label, human(b, unit), human(a, unit), f"{a / b:.3f}")
        table.add_row(f"CPU latency, batch 8 (median of {args.repeat}, {args.threads} threads)",
                      f"{m[0]:.3f} ms", f"{m[1]:.3f} ms", f"{m[1] / m[0]:.3f}")
        ag = agreement[0]
        table.add_row("output agreement (16 random inputs)", "", f"cosine {ag.cosine:.4f}",
                      f"top-1 same {top1:.0%}")
        console.print(table)
        console.print("[dim]Random-weight demo model and random inputs: agreement shows how much the "
                      "pruned network drifts without calibration or fine-tuning.[/dim]")
        if args.output:
            console.print(f"pruned model written to {out}")
    return 0


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    for path in (args.original, args.pruned):
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
    bar = _ProgressBar(console, "evaluating", enabled=not args.json)
    with bar:
        res = evaluate(proto, args.pruned, data, labels, progress=bar)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    table = Table(title=f"{args.pruned} vs {args.original} on {res.samples} samples")
    for col in ("output", "cosine", "relative L2", "max |diff|", "top-1 agreement"):
        table.add_column(col, justify="left" if col == "output" else "right")
    for o in res.outputs:
        table.add_row(o.name, f"{o.cosine:.6f}", f"{o.rel_l2:.4g}", f"{o.max_abs:.4g}",
                      "-" if o.top1_agreement is None else _pct(o.top1_agreement))
    console.print(table)
    if res.accuracy_original is not None:
        console.print(f"accuracy: original {_pct(res.accuracy_original)}, pruned {_pct(res.accuracy_pruned)} "
                      f"({100 * (res.accuracy_pruned - res.accuracy_original):+.2f} points)")
    return 0


COMMANDS = {"analyze": cmd_analyze, "prune": cmd_prune, "demo": cmd_demo, "eval": cmd_eval}


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
    console = Console(stderr=False, highlight=False)

    def fail(message: str) -> None:  # plain, unwrapped: one line for people and scripts
        print(f"onnxprune: {message}", file=sys.stderr)
    try:
        return COMMANDS[args.command](args, console)
    except OnnxPruneError as exc:
        if args.debug:
            raise
        fail(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        fail("interrupted; nothing was written")
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback
        if args.debug:
            raise
        fail(f"internal error ({type(exc).__name__}): {exc} (rerun with --debug for details)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
