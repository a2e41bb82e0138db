"""What every benchmark script in ``tools/`` shares: the machine, timed child runs, doc sections.

A benchmark script is the experiment; this module is the bench it stands on:

- :func:`machine_info` — CPU, cores, package versions and date, for the header of a result;
- :func:`run_child` — runs a command (e.g. the ``onnxprune`` console tool, as a user would) and
  returns its exit code, wall time and **peak resident memory** (from ``wait4``'s rusage, so it
  is that process alone, not the benchmark's own);
- :func:`cli` — the command line of this checkout's console tool;
- :func:`write_section` — replaces ``<!-- NAME:begin -->`` … ``<!-- NAME:end -->`` in a doc.

Latency is always measured with :func:`onnxprune.bench.interleaved_latency` (A B A B … in one
process, order rotated every turn), never as absolute times taken apart.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> dict[str, str | int]:
    from importlib import metadata

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.lower().startswith("model name")),
        "unknown CPU",
    )
    info: dict[str, str | int] = {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
                                  "python": platform.python_version()}
    for dist in ("onnxruntime", "onnx", "torch"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "n/a"
    info["date"] = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return info


def describe_machine(info: dict[str, str | int]) -> str:
    return (f"{info['cpu']}, {info['nproc']} cores, Python {info['python']}, onnxruntime {info['onnxruntime']}, "
            f"onnx {info['onnx']}, {info['date']}")


@dataclass
class ChildRun:
    returncode: int
    seconds: float
    peak_rss: int  # bytes
    stdout: str
    stderr: str


def cli() -> list[str]:
    """This checkout's console tool, run with the interpreter running the benchmark."""
    return [sys.executable, "-m", "onnxprune"]


#: Runs argv[2:] and writes its peak RSS (KiB) to the file descriptor argv[1]. A process keeps,
#: across exec, the high-water mark of the memory it was forked from, so the benchmark (hundreds
#: of MB of torch and models) must not be the measured command's direct parent: this small one is.
_MEASURE = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run_child(cmd: list[str], timeout: float = 1800.0) -> ChildRun:
    """Runs ``cmd`` with this checkout first on ``PYTHONPATH``; its wall time and its own peak RSS.

    The peak is that process's alone (``wait4`` in a small intermediate process, see
    ``_MEASURE``), not inherited from the benchmark that started it.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    read, write = os.pipe()
    t0 = time.perf_counter()
    with os.fdopen(read) as fh:
        try:
            proc = subprocess.Popen([sys.executable, "-c", _MEASURE, str(write), *cmd], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, pass_fds=(write,))
        finally:
            os.close(write)  # the child holds its copy; ours would keep the pipe open
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        kib = fh.read().strip()
    return ChildRun(proc.returncode, time.perf_counter() - t0, int(kib or 0) * 1024, out, err)


def write_section(doc: Path, name: str, body: str, title: str = "# Benchmarks\n") -> None:
    """Replaces (or appends) the section ``name`` of ``doc``."""
    from onnxprune.report import replace_section

    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    replace_section(doc, begin, end, f"{begin}\n{body}{end}", title=title)


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def docstring_sentences(modules: tuple[str, ...], limit: int, exclude: frozenset[str] | set[str] = frozenset()
                        ) -> list[str]:
    """Up to ``limit`` distinct sentences (30-200 characters) from the docstrings of the standard
    library's ``modules`` and their public members: real English that ships with Python. Sentences in
    ``exclude`` (say, a calibration set) are skipped, since modules re-export each other's docs."""
    import importlib
    import re

    out: list[str] = []
    seen: set[str] = set()
    for mod in modules:
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for o in [m] + [getattr(m, n) for n in dir(m) if not n.startswith("_")]:
            doc = getattr(o, "__doc__", None)
            if not isinstance(doc, str):
                continue
            for sent in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 30 <= len(sent) <= 200 and sent not in seen and sent not in exclude:
                    seen.add(sent)
                    out.append(sent)
        if len(out) >= limit:
            break
    return out[:limit]
