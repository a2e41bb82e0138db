#!/usr/bin/env python
"""Searched against uniform pruning, side by side, at equal measured latency and at equal fidelity.

Run from the repository root (CPU, 2 threads)::

    PYTHONPATH=. python tools/bench_search.py --models resnet_bottleneck mobilenet_v2 tv_mobilenet_v2 \\
        --target 0.6x --budget-minutes 4
    PYTHONPATH=. python tools/bench_search.py --models resnet50 --target 0.6x --budget-minutes 10

Models are prepared as in ``tools/bench_suite.py`` (its ``prepare_models``: the zoo, torchvision
networks with random but conditioned weights, and ``models/trained/*.onnx`` when present). For
each model:

1. ``onnxprune.search.search`` (greedy unless ``--strategy``) with a latency target, fidelity on
   calibration inputs (seeded random images, or the first samples of a trained model's ``.npz``
   test split), progress printed with timestamps;
2. uniform pruning (``onnxprune.api.prune``, L1, the same ``round_to``) at the search's ratio
   levels;
3. fidelity of every model on **held-out** inputs (another seed, or the rest of the test split,
   with accuracy when it has labels), and the latency of the searched model and of every
   uniform model, each timed in turns with the original (one pair per loop);
4. from the uniform curve (latency share vs fidelity, linear between measured points): the
   uniform fidelity at the searched model's measured latency, and the uniform latency at the
   searched model's fidelity.

``--models reid`` and ``--models minilm`` take the pretrained networks and real inputs of
``tools/bench_heal.py`` (a MobileNetV2 re-id embedder on crops of photographs, a MiniLM sentence
encoder on docstring sentences): the search gets ``--calib-samples`` of their calibration inputs
(shuffled, so every source is in), held-out fidelity is their metric (embedding cosine, and
nearest-neighbour agreement) on their test inputs, which come from other photographs and
other modules, and latency is timed on a test input at ``--batch``.

Results go to ``--out-md`` (the section between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``,
``--section NAME``, default ``search``),
plots to ``docs/figures/search-<model>.png`` (``search-<model>-<strategy>.png`` for a strategy
other than greedy) and raw numbers to ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tools"))
sys.path.insert(0, str(REPO_ROOT))

from bench_suite import prepare_models  # noqa: E402


def _stamp(t0: float) -> str:
    return f"[{time.monotonic() - t0:6.1f}s]"


def _trained_split(path: Path) -> tuple[dict, dict] | None:
    """(calibration, held-out) feeds for a trained model, from the ``.npz`` files beside it.

    ``<family>_calib.npz`` and ``<family>_test.npz`` (``family`` = the name up to its first
    ``_``, e.g. ``digits`` for ``digits_cnn.onnx``) are used when present: the held-out split keeps
    its labels, so fidelity includes accuracy. Otherwise one ``<stem>*.npz`` is split in two.
    """
    import onnx

    name = onnx.load(str(path), load_external_data=False).graph.input[0].name

    def read(f: Path) -> tuple[np.ndarray, np.ndarray | None]:
        with np.load(f) as z:
            keys = list(z.files)
            xk = name if name in keys else next(k for k in keys if z[k].dtype.kind == "f")
            yk = next((k for k in keys if k in ("labels", "label", "y", "targets", "y_test")), None)
            return z[xk].astype(np.float32), (z[yk] if yk else None)

    family = path.stem.split("_")[0]
    calib, test = path.parent / f"{family}_calib.npz", path.parent / f"{family}_test.npz"
    if calib.exists() and test.exists():
        xc, _ = read(calib)
        xt, yt = read(test)
        return {"x": xc, "name": name}, {"x": xt, "y": yt, "name": name}
    npz = sorted(path.parent.glob(path.stem + "*.npz"))
    if not npz:
        return None
    x, y = read(npz[0])
    cal = {"x": x[:32], "name": name}
    held = {"x": x[32:544], "y": y[32:544] if y is not None else None, "name": name}
    return cal, held


def _task_entry(name: str, workdir: Path, samples: int) -> dict:
    """A real model and its real inputs from ``tools/bench_heal.py``: calibration and test disjoint.

    The calibration samples are shuffled (seed 0) before the first ``samples`` are written, so they
    come from every source (crops of every photograph, sentences of every module), not the first few.
    """
    import bench_heal

    task = bench_heal.TASKS[name]()
    calib = {k: np.concatenate([b[k] for b in task.calib]) for k in task.calib[0]}
    n = len(next(iter(calib.values())))
    order = np.random.default_rng(0).permutation(n)[:samples]
    folder = workdir / f"{name}-calib"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.np[yz]"):
        old.unlink()
    np.savez(folder / "calib.npz", **{k: v[order] for k, v in calib.items()})
    return {"path": str(task.model), "kind": "task", "task": task, "calib_dir": folder}


def run_model(name: str, entry: dict, args: argparse.Namespace, workdir: Path) -> dict:
    import onnx

    from onnxprune.api import prune
    from onnxprune.bench import interleaved_latency
    from onnxprune.search import SearchOptions, save_result, search
    from onnxprune.sensitivity import _fidelity
    from onnxprune.verify import make_feeds, session

    t0 = time.monotonic()
    path = Path(entry["path"])
    calib_dir = entry.get("calib_dir")
    task = entry.get("task")
    split = _trained_split(path) if entry["kind"] == "trained" else None
    if split is not None:
        calib_dir = workdir / f"{name}-calib"
        calib_dir.mkdir(exist_ok=True)
        np.save(calib_dir / f"{split[0]['name']}.npy", split[0]["x"])
    last = {"stage": None}

    def progress(stage: str, done: int, total: int, info: str) -> None:
        if stage != last["stage"] or done == total or done % 10 == 0:
            print(f"  {_stamp(t0)} {name}: {stage} {done}/{total} {info}", flush=True)
            last["stage"] = stage

    opts = SearchOptions(target_latency=args.target, strategy=args.strategy, budget_minutes=args.budget_minutes,
                         seed=0, round_to=args.round_to, workers=args.workers, threads=args.threads,
                         calib=str(calib_dir) if calib_dir else None, calib_samples=args.calib_samples,
                         sensitivity_ratios=tuple(args.sensitivity_ratios), repeat=args.repeat,
                         cache_dir=str(workdir / "cache"), criterion=args.criterion,
                         reconstruct=args.reconstruct != "off", refit=args.reconstruct == "refit",
                         batch=args.batch if args.batch > 1 else None)
    if opts.criterion != "l1" or opts.reconstruct:
        opts.calib = opts.calib or "random"
    if task is not None:  # timed at the sizes of the real inputs (e.g. the sentences' token count)
        opts.input_shapes = {k: [args.batch, *v.shape[1:]] for k, v in task.test[0].items()}
    res = search(str(path), opts, progress=progress)
    searched = workdir / f"{name}-searched.onnx"
    save_result(res, searched, workdir / f"{name}-report", protect=(str(path),))
    search_s = time.monotonic() - t0
    print(f"  {_stamp(t0)} {name}: search done in {search_s:.1f}s (budget "
          f"{args.budget_minutes} min), stopped early: {res.stopped_early}", flush=True)

    levels = [lv for lv in res.space.levels if lv > 0]
    uniform = {}
    # uniform pruning with the same ranking, reconstruction and calibration data as the search
    uni_kw: dict = {}
    if args.criterion != "l1" or args.reconstruct != "off":
        from onnxprune.sensitivity import load_calibration as search_calibration
        from onnxprune.sensitivity import random_calibration

        cal = (search_calibration(str(calib_dir), [i.name for i in onnx.load(str(path), load_external_data=False)
                                                  .graph.input], args.calib_samples) if calib_dir else
               random_calibration(onnx.load(str(path)), None, args.calib_samples, 0))
        uni_kw = dict(criterion=args.criterion, calibration=[cal.feeds], calib_samples=args.calib_samples,
                      reconstruct=args.reconstruct != "off", refit=args.reconstruct == "refit")
    for r in levels:
        out = workdir / f"{name}-uniform-{r:g}.onnx"
        prune(str(path), ratio=r, round_to=args.round_to, **uni_kw).save(out)
        uniform[r] = out
    # held-out fidelity
    sess = session(str(path))
    labels = None
    if task is not None:
        from onnxprune.sensitivity import Fidelity

        t_refs = [session(str(path)).run(None, f) for f in task.test]

        def task_fid(p: Path) -> Fidelity:
            s2 = session(str(p))
            m = task.metrics(t_refs, [s2.run(None, f) for f in task.test])
            return Fidelity(1.0 - m["cosine"], m["cosine"], 0.0, m.get("NN agreement"))
    if task is not None:
        feeds = task.test[0]
    elif split is not None and len(split[1]["x"]):
        feeds = {split[1]["name"]: split[1]["x"]}
        labels = split[1]["y"]
    else:
        batch_dyn = not isinstance(sess.get_inputs()[0].shape[0], int)
        feeds = make_feeds(sess, seed=1234, batch=args.holdout if batch_dyn else 1)
    refs = [np.asarray(o) for o in sess.run(None, feeds)]

    def fid(p: Path):
        outs = [np.asarray(o) for o in session(str(p)).run(None, feeds)]
        return _fidelity(refs, outs, labels)

    if task is not None:
        fid = task_fid  # noqa: F811 - the task's own metrics on its held-out inputs
    f_s = fid(searched)
    f_u = {r: fid(p) for r, p in uniform.items()}
    base_acc = _fidelity(refs, refs, labels).accuracy
    batch_dyn = not isinstance(sess.get_inputs()[0].shape[0], int)
    if task is not None:  # real inputs at the serving batch size
        lat_feeds = {k: v[: args.batch] for k, v in task.test[0].items()}
    else:
        lat_feeds = make_feeds(sess, seed=7, batch=args.batch if batch_dyn else 1)
    print(f"  {_stamp(t0)} {name}: timing searched and {len(uniform)} uniform models, each in turns with the "
          "original", flush=True)
    # one pair (original, model) per loop, as `onnxprune compare` does: which models share a loop
    # changes how warm each runs on a small cache
    shares, base = [], []
    for q in [searched, *uniform.values()]:
        lat = interleaved_latency([str(path), str(q)], lat_feeds, threads=args.threads or 2, warmup=5,
                                  repeat=args.repeat_e2e, min_turn_ms=10.0)
        shares.append(lat.medians_ms[1] / lat.medians_ms[0])
        base.append(lat.medians_ms[0])
    med = [float(np.median(base))]
    share_s = shares[0]
    shares_u = {r: shares[1 + i] for i, r in enumerate(uniform)}
    # uniform curve: latency share -> loss, and loss -> latency share (sorted, linear in between)
    pts = sorted((shares_u[r], f_u[r].loss, f_u[r].cosine, r) for r in uniform)
    xs, cs = [p[0] for p in pts], [p[2] for p in pts]
    # outside the measured uniform range there is nothing to compare with (no extrapolation)
    u_cos_at_lat = float(np.interp(share_s, xs, cs)) if xs[0] <= share_s <= xs[-1] else None
    by_loss = sorted((f_u[r].loss, shares_u[r]) for r in uniform)
    ls = [b[0] for b in by_loss]
    u_lat_at_fid = (float(np.interp(f_s.loss, ls, [b[1] for b in by_loss])) if ls[0] <= f_s.loss <= ls[-1]
                    else None)
    # the searched model keeps more fidelity than every uniform point: uniform needs more than its mildest
    beyond = f_s.loss < ls[0]
    # the same on accuracy, where the held-out split has labels
    u_acc_at_lat = u_lat_at_acc = None
    if f_s.accuracy is not None:
        accs = [f_u[p[3]].accuracy for p in pts]
        u_acc_at_lat = float(np.interp(share_s, xs, accs)) if xs[0] <= share_s <= xs[-1] else None
        by_acc = sorted((f_u[r].accuracy, shares_u[r]) for r in uniform)
        a_s = [b[0] for b in by_acc]
        u_lat_at_acc = (float(np.interp(f_s.accuracy, a_s, [b[1] for b in by_acc])) if a_s[0] <= f_s.accuracy <= a_s[-1]
                        else None)
    pe = res.as_dict()["prediction_error"]
    out = {
        "name": name, "kind": entry["kind"], "target": args.target, "strategy": args.strategy,
        "criterion": args.criterion, "reconstruct": args.reconstruct, "batch": args.batch,
        "original_ms": med[0], "searched_share": share_s, "searched_cosine": f_s.cosine, "searched_loss": f_s.loss,
        "searched_top1": f_s.top1, "searched_accuracy": f_s.accuracy, "original_accuracy": base_acc,
        "searched_macs_share": res.best.macs / res.baseline_macs,
        "uniform": {str(r): {"share": shares_u[r], "cosine": f_u[r].cosine, "top1": f_u[r].top1,
                             "accuracy": f_u[r].accuracy} for r in uniform},
        "uniform_cosine_at_equal_latency": u_cos_at_lat,
        "uniform_share_at_equal_fidelity": u_lat_at_fid,
        "uniform_share_above": max(shares_u.values()) if beyond else None,
        "uniform_accuracy_at_equal_latency": u_acc_at_lat, "uniform_share_at_equal_accuracy": u_lat_at_acc,
        "uniform_range": [min(xs), max(xs)],
        "prediction_error_max": pe["max"], "prediction_checked": pe["checked"], "prediction_error_chosen": pe["chosen"],
        "latency_fit": res.latency_model["fit"], "search_seconds": search_s, "stages": res.stages,
        "stopped_early": res.stopped_early, "met": res.met, "groups": res.group_rows,
        "calibration": res.calibration, "sensitivity_from_cache": res.sensitivity["from_cache"],
    }
    out["figure"] = f"docs/figures/search-{name}{'' if args.strategy == 'greedy' else '-' + args.strategy}.png"
    draw(out, res, REPO_ROOT / out["figure"])
    print(f"  {_stamp(t0)} {name}: searched {share_s:.3f}x latency, cosine {f_s.cosine:.4f}; uniform at that "
          f"latency {_f(u_cos_at_lat, '.4f')}; uniform latency at equal fidelity {_f(u_lat_at_fid, '.3f')}x; "
          f"prediction error max {_f(pe['max'], '.1%')}", flush=True)
    del onnx
    return out


def _eqfid(r: dict) -> str:
    if r.get("uniform_share_above") is not None:
        return f"> {r['uniform_share_above']:.3f}x (no uniform point is as faithful)"
    return _f(r["uniform_share_at_equal_fidelity"], ".3f") + "x"


def _f(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "—"


def draw(r: dict, res, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    u = sorted(r["uniform"].items(), key=lambda kv: kv[1]["share"])
    ax = axes[0]
    acc = r.get("searched_accuracy") is not None
    key, ylabel = ("accuracy", "accuracy (held-out, labelled)") if acc else ("cosine", "output cosine similarity (held-out inputs)")
    ax.plot([v["share"] for _, v in u], [v[key] for _, v in u], "s-", color="tab:gray", label="uniform (measured)")
    for k, v in u:
        ax.annotate(k, (v["share"], v[key]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.scatter([r["searched_share"]], [r[f"searched_{key}"]], s=90, color="tab:red", zorder=3,
               label="searched (measured)")
    ax.set_xlabel(f"latency / original (interleaved, CPU, batch {r.get('batch', 1)})")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{r['name']}: held-out fidelity vs measured latency", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    cands = [c for c in res.candidates if c.fidelity is not None]
    for src, color in (("uniform", "tab:gray"), ("greedy", "tab:blue"), ("evolution", "tab:orange")):
        pts = [c for c in cands if c.source == src]
        if pts:
            ax.scatter([c.predicted_ms / res.baseline_ms for c in pts], [c.fidelity.cosine for c in pts], s=14,
                       alpha=0.6, color=color, label=f"{src} (predicted latency)")
    front = res.pareto()
    ax.plot([c.predicted_ms / res.baseline_ms for c in front], [c.fidelity.cosine for c in front], "k--", lw=1,
            label="Pareto front")
    ax.set_xlabel("predicted latency / original")
    ax.set_ylabel("output cosine similarity (calibration)")
    ax.set_title("search candidates", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: list[dict], command: str, info: dict, section: str = "search") -> str:
    lines = [
        f"<!-- {section}:begin -->",
        f"Command: `{command}`  ",
        f"Machine: {info['machine']}; onnxruntime {info['ort']}, CPU provider, {info['threads']} threads, "
        f"batch {info.get('batch', 1)}; channel ranking {info.get('criterion', 'l1')}, reconstruction "
        f"{info.get('reconstruct', 'off')} (search candidates and uniform pruning alike); {info['date']}.",
        "",
        "Latency is relative to the original: each model timed in turns with the original (A B A B ...). Fidelity is the mean "
        "per-sample cosine similarity of the outputs to the original's on held-out inputs (not those the search "
        "saw). *Uniform @ equal latency*: the uniform curve's fidelity at the searched model's measured latency "
        "(linear between the measured uniform ratios); *uniform latency @ equal fidelity*: the uniform curve's "
        "latency at the searched model's fidelity. *Pred. err.*: |predicted − measured| / measured "
        "latency share of the chosen model, and the largest over every candidate checked end to end during the "
        "search (Pareto extremes included).",
        "",
        "| model | searched latency | searched cosine | uniform cosine @ equal latency | uniform latency @ equal "
        "fidelity | MACs searched | pred. err. chosen (max) | search time | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error']} | | | | | | | |")
            continue
        acc = ""
        if r.get("searched_accuracy") is not None:
            acc = f" (acc {r['searched_accuracy']:.1%} of {r['original_accuracy']:.1%})"
        lines.append(
            f"| {r['name']} | {r['searched_share']:.3f}x | {r['searched_cosine']:.4f}{acc} | "
            f"{_f(r['uniform_cosine_at_equal_latency'], '.4f')} | {_eqfid(r)} | "
            f"{r['searched_macs_share']:.3f}x | {_f(r.get('prediction_error_chosen'), '.1%')} "
            f"({_f(r['prediction_error_max'], '.1%')}) | {r['search_seconds']:.0f} s"
            f"{' (budget stop)' if r['stopped_early'] else ''} | {'yes' if r['met'] else 'no'} |")
    labelled = [r for r in results if "error" not in r and r.get("searched_accuracy") is not None]
    if labelled:
        lines += ["", "Accuracy on the labelled held-out split:", "",
                  "| model | original | searched (latency) | uniform accuracy @ equal latency | uniform latency @ "
                  "equal accuracy |", "|---|---|---|---|---|"]
        for r in labelled:
            lines.append(f"| {r['name']} | {r['original_accuracy']:.2%} | {r['searched_accuracy']:.2%} "
                         f"({r['searched_share']:.3f}x) | {_f(r['uniform_accuracy_at_equal_latency'], '.2%')} | "
                         f"{_f(r['uniform_share_at_equal_accuracy'], '.3f')}x |")
    lines += ["", "Uniform points (ratio: latency share, cosine; each timed in turns with the original):", ""]
    for r in results:
        if "error" in r:
            continue
        pts = ", ".join(f"{k}: {v['share']:.3f}x / {v['cosine']:.4f}"
                        + (f" / acc {v['accuracy']:.2%}" if v.get("accuracy") is not None else "")
                        for k, v in r["uniform"].items())
        fig = r.get("figure") or f"docs/figures/search-{r['name']}.png"
        lines.append(f"- **{r['name']}** — {pts}; plot `{fig}`")
    lines += ["", "Latency-model check (predicted vs measured latency share of the checked candidates):", ""]
    for r in results:
        if "error" in r:
            continue
        pts = ", ".join(f"{c['predicted_ratio']:.3f}/{c['measured_ratio']:.3f}" for c in r["prediction_checked"])
        lines.append(f"- **{r['name']}** — {pts}")
    lines.append(f"<!-- {section}:end -->")
    return "\n".join(lines)


def write_doc(path: Path, section: str, name: str = "search") -> None:
    from onnxprune.report import replace_section

    replace_section(path, f"<!-- {name}:begin -->", f"<!-- {name}:end -->", section,
                    title="# Pruning as search\n")


def main(argv: list[str] | None = None) -> int:
    import datetime as dt

    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["digits_cnn", "tv_mobilenet_v2", "resnet50"],
                   help="zoo or torchvision names, or a trained model's stem from models/trained")
    p.add_argument("--target", default="0.6x")
    p.add_argument("--strategy", default="greedy", choices=("greedy", "evolution"))
    p.add_argument("--budget-minutes", type=float, default=4.0)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-samples", type=int, default=8)
    p.add_argument("--criterion", default="l1", help="channel ranking of the search and of uniform pruning")
    p.add_argument("--reconstruct", choices=("off", "bias", "refit"), default="off",
                   help="reconstruction in the search's candidates and in uniform pruning")
    p.add_argument("--batch", type=int, default=1, help="batch size of every latency measurement")
    p.add_argument("--holdout", type=int, default=32)
    p.add_argument("--sensitivity-ratios", type=float, nargs="+", default=[0.375, 0.75])
    p.add_argument("--repeat", type=int, default=50, help="timed runs per model in the search's measurements")
    p.add_argument("--repeat-e2e", type=int, default=60, help="timed runs per model in the final comparison")
    p.add_argument("--workdir", default="/tmp/onnxprune-search-bench")
    p.add_argument("--out-md", default=str(REPO_ROOT / "docs" / "search.md"))
    p.add_argument("--section", default="search", help="name of the section of --out-md to replace")
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    names = list(args.models)
    tasks = [n for n in names if n in ("reid", "minilm")]
    entries = prepare_models([n for n in names if n not in tasks], workdir) if len(tasks) < len(names) else {}
    for n in tasks:
        entries[n] = _task_entry(n, workdir, args.calib_samples)
    results = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            results.append(run_model(name, entries[name], args, workdir))
        except Exception as exc:  # noqa: BLE001 - one model's failure is a result
            results.append({"name": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
            print(f"  {name}: {results[-1]['error']}", flush=True)
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    info = {"machine": f"{platform.processor() or platform.machine()}, 2 cores (shared)", "ort": ort.__version__,
            "threads": args.threads, "date": dt.date.today().isoformat(), "batch": args.batch,
            "criterion": args.criterion, "reconstruct": args.reconstruct}
    command = "PYTHONPATH=. python tools/bench_search.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    section = render(results, command, info, args.section)
    print(section)
    write_doc(Path(args.out_md), section, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
