#!/usr/bin/env python
"""Renders the HTML reports in a headless browser, to look at them as a user would.

Makes a pruned copy of the trained digits CNN, writes ``compare --report`` and ``eval --report``
(with ``--measure``: accuracy against latency) and ``search --report`` for it into a temporary
folder, opens each ``report.html`` in headless Chromium and saves a full-page screenshot to
``docs/figures/report-compare.png``, ``report-eval.png`` and ``report-search.png``.
It fails when a page is missing, holds a link to anything outside itself, or renders blank.

Usage (needs Debian's chromium: ``apt-get install chromium``; and ``pip install '.[report]'``)::

    python tools/render_reports.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from onnxprune import api  # noqa: E402
from onnxprune.cli import main as cli  # noqa: E402

FIGURES = REPO / "docs" / "figures"
TRAINED = REPO / "models" / "trained"


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 2600) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars",
                        f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=120)


def check(page: Path) -> None:
    text = page.read_text()
    outside = re.findall(r'(?:src|href)="(?!data:|#)([^"]+)"', text)
    if outside:
        raise SystemExit(f"{page}: links outside the page: {outside}")
    if "<table>" not in text:
        raise SystemExit(f"{page}: no table")
    if "data:image/png;base64," not in text:
        raise SystemExit(f"{page}: no embedded plot")


def not_blank(png: Path) -> None:
    import numpy as np
    from PIL import Image

    px = np.asarray(Image.open(png).convert("L"))
    if (px < 200).mean() < 0.01:
        raise SystemExit(f"{png}: renders (nearly) blank")


def main() -> int:
    FIGURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        src = str(TRAINED / "digits_cnn.onnx")
        res = api.prune(src, target_macs="0.5x", criterion="wanda", reconstruct=True,
                        calibration=str(TRAINED / "digits_calib.npz"))
        res.save(t / "small.onnx")
        plain = api.prune(src, target_macs="0.5x")
        plain.save(t / "magnitude.onnx")
        assert cli(["compare", src, str(t / "small.onnx"), "--repeat", "10", "--batch", "64",
                    "--report", str(t / "compare")]) == 0
        assert cli(["eval", src, str(t / "magnitude.onnx"), str(t / "small.onnx"), "--data",
                    str(TRAINED / "digits_test.npz"), "--measure", "--report", str(t / "eval")]) == 0
        assert cli(["search", src, "-o", str(t / "searched.onnx"), "--target-macs", "0.5x", "--calib",
                    str(TRAINED / "digits_calib.npz"), "--budget-minutes", "1", "--report", str(t / "search")]) == 0
        for name in ("compare", "eval", "search"):
            page = t / name / "report.html"
            check(page)
            png = FIGURES / f"report-{name}.png"
            screenshot(page, png)
            not_blank(png)
            print(f"rendered {page.name} of {name} -> {png.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
