"""The benchmarks' own measures: test inputs disjoint from calibration, and the detector's F1."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_heal  # noqa: E402
from harness import docstring_sentences  # noqa: E402


def test_test_sentences_never_repeat_a_calibration_sentence():
    calib = docstring_sentences(bench_heal._MODULES_A, 1536)
    plain = docstring_sentences(bench_heal._MODULES_B, 256)
    assert set(plain) & set(calib), "the modules share docstrings (this is why exclude exists)"
    test = docstring_sentences(bench_heal._MODULES_B, 256, exclude=set(calib))
    assert len(test) == 256 and not set(test) & set(calib)


def test_text_lines_never_repeat_a_calibration_line():
    calib = bench_heal._text_lines(bench_heal._MODULES_A, 1024, 0)
    test = bench_heal._text_lines(bench_heal._MODULES_B, 200, 1, exclude=set(calib))
    assert len(test) == 200 and not set(test) & set(calib)


def _yolox_raw(cells: list[tuple[int, float, float]], size: int = 416) -> np.ndarray:
    """A raw YOLOX output with confident boxes at stride-8 ``cells`` (index, width, height)."""
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    pred = np.zeros((n, 6), np.float32)
    pred[:, 2:4] = -5.0
    for idx, w, h in cells:
        pred[idx] = (0.5, 0.5, np.log(w / 8), np.log(h / 8), 0.9, 0.9)
    return pred


def test_yolox_decoding_keeps_distinct_boxes_and_suppresses_duplicates():
    boxes = bench_heal._yolox_boxes(_yolox_raw([(52 * 10 + 10, 40, 40), (52 * 30 + 30, 40, 40)]))
    assert len(boxes) == 2
    np.testing.assert_allclose(sorted(boxes[:, 0]), [84 - 20, 244 - 20])  # centre (idx + 0.5) * 8
    dup = bench_heal._yolox_boxes(_yolox_raw([(52 * 10 + 10, 40, 40), (52 * 10 + 11, 40, 40)]))
    assert len(dup) == 1  # IoU 0.67 > 0.45


def test_detection_f1_counts_misses_and_extras():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    assert bench_heal._detection_f1([a], [a])["F1"] == 1.0
    moved = a.copy()
    moved[1] += 8  # IoU 4/196: a miss and an extra
    m = bench_heal._detection_f1([a], [moved])
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["F1"] == 0.5
    m = bench_heal._detection_f1([a], [a[:1]])
    assert m["precision"] == 1.0 and m["recall"] == 0.5
