"""Random valid ONNX graphs for property testing, and the properties every pruning must keep.

:func:`random_model` draws one model from a seed: a stem convolution, then a random sequence of
blocks over an NCHW tensor, then one or two heads. The blocks are the structures a channel
pruner has to get right:

- plain ``Conv -> BatchNormalization -> activation`` of a random width (bias or not, 1x1/3x3);
- grouped convolutions (group 2..4) and depthwise convolutions with a channel multiplier;
- residual ``Add`` over a two-conv branch;
- ``Concat`` of two or three branches (one may be the block input itself);
- ``Split`` and ``Slice`` at random offsets, the parts processed apart and joined again;
- squeeze-excitation gates (``GlobalAveragePool -> Conv -> Relu -> Conv -> Sigmoid -> Mul``);
- multi-head self-attention over the H·W tokens (``Reshape/Transpose/MatMul/Softmax``) with a
  residual ``Add`` and the way back to NCHW;
- shared initializers: one convolution weight applied twice (tied), one per-channel bias added
  in two places;
- pooling, and side branches that end in extra graph outputs;
- channel shuffles (``Reshape -> Transpose -> Reshape``), U-Net style down/up paths (``Resize``
  or ``ConvTranspose``) concatenated with their skip, ``Pad`` before a valid convolution,
  channels-last ``Transpose -> MatMul -> Transpose`` as tf2onnx writes it, and weights that come
  from ``Constant`` nodes as paddle2onnx writes them;
- heads: ``GlobalAveragePool -> Flatten -> Gemm``, ``Flatten`` of C·H·W into ``Gemm``,
  ``ReduceMean -> MatMul``, or a 1x1 ``Conv`` dense prediction.

:func:`check_properties` prunes a model at several ratios and checks what must always hold: the
result passes ``onnx.checker.check_model(full_check=True)`` and runs in onnxruntime with the
same output names, shapes and dtypes; and pruning exactly-dead channels (every weight that
follows them zeroed) leaves the outputs equal. ``tests/test_random_graphs.py`` runs a fixed-seed
sample with hypothesis; ``tools/fuzz_graphs.py`` runs thousands.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from models.zoo import _GraphBuilder

__all__ = ["BLOCKS", "GraphFacts", "random_model", "check_properties"]


class _Gen:
    """One random graph under construction: the builder, the generator and a name counter."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        opset = int(self.rng.choice([17, 18, 21]))
        self.b = _GraphBuilder(f"random_{seed}", seed=seed + 1, opset=opset)
        self.k = 0
        self.n_outputs = 0
        self.used: list[str] = []

    def name(self, tag: str) -> str:
        self.k += 1
        return f"b{self.k}.{tag}"

    def width(self, lo: int = 2, hi: int = 24) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def act(self, x: str, name: str) -> str:
        kind = self.rng.choice(["relu", "relu6", "silu", "hardswish", "leaky", "prelu", "none"])
        b = self.b
        if kind == "leaky":
            return b.leaky_relu(x, name=name)
        if kind == "prelu":
            return b.prelu(x, name=name)
        return b._act(x, None if kind == "none" else str(kind), name=name)

    def conv_bn_act(self, x: str, cout: int, k: int = 1, group: int = 1, tag: str = "conv") -> str:
        b, n = self.b, self.name(tag)
        if self.coin(0.7):
            y = b.conv(x, cout, k, 1, group, bias=self.coin(0.3), name=f"{n}.conv")
            y = b.bn(y, name=f"{n}.bn")
        else:
            y = b.conv(x, cout, k, 1, group, bias=True, name=f"{n}.conv")
        return self.act(y, f"{n}.act")


# -------------------------------------------------------------------------------- blocks
def _plain(g: _Gen, x: str) -> str:
    return g.conv_bn_act(x, g.width(), int(g.rng.choice([1, 3])))


def _grouped(g: _Gen, x: str) -> str:
    groups = int(g.rng.choice([2, 3, 4]))
    if g.b.channels(x) % groups:
        x = g.conv_bn_act(x, groups * g.width(1, 6), 1, tag="pre")
    return g.conv_bn_act(x, groups * g.width(1, 6), 3, group=groups, tag="grouped")


def _depthwise(g: _Gen, x: str) -> str:
    c = g.b.channels(x)
    mult = int(g.rng.choice([1, 1, 2]))
    return g.conv_bn_act(x, c * mult, 3, group=c, tag="dw")


def _residual(g: _Gen, x: str) -> str:
    b, c = g.b, g.b.channels(x)
    y = g.conv_bn_act(x, g.width(), int(g.rng.choice([1, 3])), tag="res1")
    n = g.name("res2")
    y = b.bn(b.conv(y, c, 3, name=f"{n}.conv"), name=f"{n}.bn", gamma=(0.2, 0.5))
    y = b.add(x, y, name=f"{n}.add") if g.coin() else b.add(y, x, name=f"{n}.add")
    return b.relu(y, name=f"{n}.relu")


def _concat(g: _Gen, x: str) -> str:
    parts = [g.conv_bn_act(x, g.width(1, 12), int(g.rng.choice([1, 3])), tag="cat")
             for _ in range(int(g.rng.integers(2, 4)))]
    if g.coin(0.4):
        parts.insert(int(g.rng.integers(0, len(parts) + 1)), x)
    y = g.b.concat(parts, name=g.name("concat"))
    return g.conv_bn_act(y, g.width(), 1, tag="fuse") if g.coin() else y


def _split(g: _Gen, x: str) -> str:
    b = g.b
    if b.channels(x) < 3:
        x = g.conv_bn_act(x, g.width(3, 16), 1, tag="pre")
    c = b.channels(x)
    n_cuts = int(g.rng.integers(1, min(3, c - 1) + 1))
    cuts = sorted(int(v) for v in g.rng.choice(np.arange(1, c), size=n_cuts, replace=False))
    sizes = [e - s for s, e in zip([0, *cuts], [*cuts, c])]
    parts = b.split(x, sizes, name=g.name("split"))
    parts = [g.conv_bn_act(p, g.width(1, 12), 3, tag="part") if g.coin(0.6) else p for p in parts]
    if g.coin(0.3):  # keep only some parts: the rest of the tensor is read by nobody
        keep = sorted(g.rng.choice(len(parts), size=max(1, len(parts) - 1), replace=False))
        parts = [parts[i] for i in keep]
    if len(parts) == 1:
        return parts[0]
    order = g.rng.permutation(len(parts))
    return b.concat([parts[i] for i in order], name=g.name("join"))


def _slice(g: _Gen, x: str) -> str:
    b = g.b
    if b.channels(x) < 2:
        x = g.conv_bn_act(x, g.width(2, 16), 1, tag="pre")
    c = b.channels(x)
    start = int(g.rng.integers(0, c - 1))
    end = int(g.rng.integers(start + 1, c + 1))
    y = b.slice(x, start, end, name=g.name("slice"))
    return g.conv_bn_act(y, g.width(), 1, tag="after") if g.coin() else y


def _se(g: _Gen, x: str) -> str:
    b, c, n = g.b, g.b.channels(x), g.name("se")
    s = b.gap(x, name=f"{n}.pool")
    s = b.relu(b.conv(s, max(1, c // int(g.rng.choice([2, 4]))), 1, bias=True, name=f"{n}.reduce"), name=f"{n}.relu")
    s = b.conv(s, c, 1, bias=True, name=f"{n}.expand")
    s = b.sigmoid(s, name=f"{n}.gate") if g.coin() else b.hardsigmoid(s, name=f"{n}.gate")
    return b.mul(x, s, name=f"{n}.mul") if g.coin() else b.mul(s, x, name=f"{n}.mul")


def _attention(g: _Gen, x: str) -> str:
    b = g.b
    heads = int(g.rng.choice([1, 2, 4]))
    if b.channels(x) % heads:
        x = g.conv_bn_act(x, heads * g.width(1, 6), 1, tag="pre")
    _n, c, h, w = b.shape(x)
    d = c // heads
    n = g.name("attn")
    t = b.transpose(b.reshape(x, [0, c, -1], name=f"{n}.tokens"), [0, 2, 1], name=f"{n}.nlc")

    def proj(tag: str, perm: list[int]) -> str:
        y = b.dense(t, c, name=f"{n}.{tag}", gain=1.0)
        y = b.reshape(y, [0, 0, heads, d], name=f"{n}.{tag}.heads")
        return b.transpose(y, perm, name=f"{n}.{tag}.t")

    q, k, v = proj("q", [0, 2, 1, 3]), proj("k", [0, 2, 3, 1]), proj("v", [0, 2, 1, 3])
    sq = b.shape(q)
    s = b._op("MatMul", [q, k], f"{n}.scores", (*sq[:-1], b.shape(k)[-1]))
    s = b.mul(s, b.scalar(1.0 / float(np.sqrt(d))), name=f"{n}.scale")
    s = b._op("Softmax", [s], f"{n}.softmax", b.shape(s), axis=-1)
    o = b._op("MatMul", [s, v], f"{n}.ctx", b.shape(q))
    o = b.reshape(b.transpose(o, [0, 2, 1, 3], name=f"{n}.merge.t"), [0, 0, c], name=f"{n}.merge")
    o = b.add(t, b.dense(o, c, name=f"{n}.out", gain=0.5), name=f"{n}.residual")
    o = b.transpose(o, [0, 2, 1], name=f"{n}.ncl")
    return b.reshape(o, [0, c, h, w], name=f"{n}.image")


def _shared(g: _Gen, x: str) -> str:
    """A tied 3x3 weight applied twice, then one per-channel bias added in two places."""
    b, c, n = g.b, g.b.channels(x), g.name("tied")
    w = b.initializer(f"{n}.weight", b._he((c, c, 3, 3), 9 * c) * 0.7)
    shp = b.shape(x)
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y1 = b._op("Conv", [x, w], f"{n}.conv1", shp, **attrs)
    y1 = b.relu(y1, name=f"{n}.relu1")
    y2 = b._op("Conv", [y1, w], f"{n}.conv2", shp, **attrs)
    bias = b.channel_const(f"{n}.bias", x, -0.2, 0.2)
    y = b.add(b.add(y2, bias, name=f"{n}.bias1"), b.add(x, bias, name=f"{n}.bias2"), name=f"{n}.sum")
    return b.relu(y, name=f"{n}.relu2")


def _pool(g: _Gen, x: str) -> str:
    b = g.b
    if int(b.shape(x)[2]) < 4:
        return x
    n = g.name("pool")
    return b.maxpool(x, 2, name=n) if g.coin() else b.avgpool(x, 2, name=n)


def _side_output(g: _Gen, x: str) -> str:
    """An extra graph output branching off the main path (the main path keeps going)."""
    g.n_outputs += 1
    y = g.conv_bn_act(x, g.width(), 1, tag="side") if g.coin() else g.b.relu(x, name=g.name("side"))
    g.b.output(y, f"side{g.n_outputs}")
    return x


def _shuffle(g: _Gen, x: str) -> str:
    """ShuffleNet channel shuffle: Reshape [N, g, C/g, H, W] -> Transpose -> Reshape back."""
    b = g.b
    groups = int(g.rng.choice([2, 3, 4]))
    if b.channels(x) % groups:
        x = g.conv_bn_act(x, groups * g.width(1, 6), 1, tag="pre")
    _n, c, h, w = b.shape(x)
    n = g.name("shuffle")
    y = b.reshape(x, [0, groups, c // groups, h, w], name=f"{n}.split")
    y = b.transpose(y, [0, 2, 1, 3, 4], name=f"{n}.t")
    y = b.reshape(y, [0, c, h, w], name=f"{n}.merge")
    return g.conv_bn_act(y, g.width(), 1, tag="after")


def _upsample(g: _Gen, x: str) -> str:
    """Down, then up again (Resize or ConvTranspose), concatenated with the skip (U-Net)."""
    b = g.b
    if int(b.shape(x)[2]) < 4 or int(b.shape(x)[2]) % 2:
        return x
    n = g.name("up")
    d = b.maxpool(g.conv_bn_act(x, g.width(), 3, tag="down"), 2, name=f"{n}.pool")
    if g.coin():
        u = b.resize(d, [1.0, 1.0, 2.0, 2.0], name=f"{n}.resize")
    else:
        u = b.conv_transpose(d, g.width(), 2, 2, bias=g.coin(), name=f"{n}.deconv")
    parts = [x, u] if g.coin() else [u, x]
    return b.concat(parts, name=f"{n}.cat")


def _pad(g: _Gen, x: str) -> str:
    """Zero padding of the spatial axes, then a valid 3x3 convolution."""
    b, n = g.b, g.name("pad")
    y = b.pad(x, [0, 0, 1, 1, 0, 0, 1, 1], name=n)
    y = b.conv(y, g.width(), 3, pad=0, bias=True, name=f"{n}.conv")
    return b.relu(y, name=f"{n}.relu")


def _channels_last_dense(g: _Gen, x: str) -> str:
    """What tf2onnx writes: Transpose to NHWC, a Dense (MatMul + Add) on channels, and back."""
    b, n = g.b, g.name("nhwc")
    y = b.transpose(x, [0, 2, 3, 1], name=f"{n}.to")
    y = b.dense(y, g.width(), name=f"{n}.dense")
    y = b.relu(y, name=f"{n}.relu")
    return b.transpose(y, [0, 3, 1, 2], name=f"{n}.back")


def _constant_weights(g: _Gen, x: str) -> str:
    """A Conv whose weight and bias come from Constant nodes (paddle2onnx style)."""
    b, c, n = g.b, g.width(), g.name("constw")
    cin = b.channels(x)
    w = b._he((c, cin, 1, 1), cin)
    bias = b._bias(c)
    wt = b.node("Constant", [], f"{n}.w", [w.shape], value=onnx.numpy_helper.from_array(w))[0]
    bt = b.node("Constant", [], f"{n}.b", [bias.shape], value=onnx.numpy_helper.from_array(bias))[0]
    y = b._op("Conv", [x, wt, bt], f"{n}.conv", (b.shape(x)[0], c, *b.shape(x)[2:]), kernel_shape=[1, 1])
    return b.relu(y, name=f"{n}.relu")


BLOCKS: dict[str, Callable[[_Gen, str], str]] = {
    "plain": _plain,
    "grouped": _grouped,
    "depthwise": _depthwise,
    "residual": _residual,
    "concat": _concat,
    "split": _split,
    "slice": _slice,
    "se": _se,
    "attention": _attention,
    "shared": _shared,
    "pool": _pool,
    "side_output": _side_output,
    "shuffle": _shuffle,
    "upsample": _upsample,
    "pad": _pad,
    "channels_last_dense": _channels_last_dense,
    "constant_weights": _constant_weights,
}


# --------------------------------------------------------------------------------- heads
def _head(g: _Gen, x: str) -> str:
    b = g.b
    kind = g.rng.choice(["gap_gemm", "flatten_gemm", "reduce_matmul", "conv"])
    n = g.name("head")
    classes = g.width(2, 10)
    if kind == "gap_gemm":
        return b.gemm(b.flatten(b.gap(x, name=f"{n}.gap"), name=f"{n}.flatten"), classes, name=f"{n}.fc", gain=1.0)
    if kind == "flatten_gemm":
        while int(b.shape(x)[2]) > 4:
            x = b.maxpool(x, 2, name=g.name("headpool"))
        return b.gemm(b.flatten(x, name=f"{n}.flatten"), classes, name=f"{n}.fc", gain=1.0)
    if kind == "reduce_matmul":
        y = b.reduce("ReduceMean", x, [2, 3], keepdims=False, name=f"{n}.mean")
        return b.dense(y, classes, name=f"{n}.dense", gain=1.0)
    return b.conv(x, classes, 1, bias=True, name=f"{n}.conv")


def random_model(seed: int, max_blocks: int = 7) -> onnx.ModelProto:
    """A random, valid, seeded model (float32, input ``[N, C, H, W]``, symbolic batch)."""
    g = _Gen(seed)
    cin = int(g.rng.integers(1, 5))
    side = int(g.rng.choice([4, 6, 8]))
    x = g.b.input((cin, side, side))
    x = g.conv_bn_act(x, g.width(4, 16), 3, tag="stem")
    names = list(BLOCKS)
    weights = np.array([3, 1.5, 1.5, 2, 2, 2, 1, 1.5, 1, 1, 0.7, 0.7, 1, 1, 0.7, 1, 0.7])
    for _ in range(int(g.rng.integers(1, max_blocks + 1))):
        kind = names[int(g.rng.choice(len(names), p=weights / weights.sum()))]
        g.used.append(kind)
        x = BLOCKS[kind](g, x)
    g.b.output(_head(g, x), "output")
    if g.coin(0.25):
        g.b.output(_head(g, x), "output2")
    model = g.b.build(doc="blocks: " + ", ".join(g.used))
    return model


# ----------------------------------------------------------------------------- properties
@dataclass
class GraphFacts:
    """What one property check saw (for the fuzzing report)."""

    seed: int | None = None
    nodes: int = 0
    groups: int = 0
    channels: int = 0
    prunable: int = 0
    removed: dict[float, int] = field(default_factory=dict)
    lossless_removed: int = 0
    blocks: str = ""


def _io_signature(sess) -> list[tuple[str, str]]:
    return [(o.name, o.type) for o in sess.get_outputs()]


def check_properties(
    model: onnx.ModelProto,
    ratios: tuple[float, ...] = (0.3, 0.6),
    share: float = 0.4,
    seed: int = 0,
) -> GraphFacts:
    """Prunes ``model`` at each ratio and losslessly; raises ``AssertionError`` on a violation.

    Properties: (1) every pruned model passes the full checker and runs in onnxruntime at batch
    1 and 2 with finite outputs; (2) its output names, dtypes and shapes equal the original's;
    (3) pruning exactly-dead channels (``share`` of every stratum, zeroed first) leaves every
    output equal to the zeroed original (rtol 1e-4, atol 1e-5 relative to the output's scale).
    """
    from onnxprune import api, verify
    from onnxprune.depgraph import build_depgraph
    from onnxprune.graph import load
    from onnxprune.plan import plan_from_channels
    from onnxprune.testing import choose_channels, kill_channels

    facts = GraphFacts(nodes=len(model.graph.node), blocks=model.doc_string)
    onnx.checker.check_model(model, full_check=True)  # the generator itself must be right
    ref_sess = verify.session(model)
    feeds = [verify.make_feeds(ref_sess, seed=11 + b, batch=b) for b in (1, 2)]
    ref_out = [verify.run(ref_sess, f) for f in feeds]
    signature = _io_signature(ref_sess)

    def same_interface(proto: onnx.ModelProto, what: str) -> list[list[np.ndarray]]:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:
            raise AssertionError(f"{what}: invalid model: {str(exc).splitlines()[0]}") from exc
        sess = verify.session(proto)
        assert _io_signature(sess) == signature, f"{what}: outputs {_io_signature(sess)} != {signature}"
        outs = [verify.run(sess, f) for f in feeds]
        for o, r in zip(outs, ref_out):
            for a, e, (name, _t) in zip(o, r, signature):
                assert a.shape == e.shape and a.dtype == e.dtype, f"{what}: output '{name}' {a.shape} != {e.shape}"
                assert np.all(np.isfinite(a)), f"{what}: output '{name}' is not finite"
        return outs

    for ratio in ratios:
        res = api.prune(copy.deepcopy(model), ratio=ratio)
        facts.removed[ratio] = res.plan.n_removed
        same_interface(res.proto, f"ratio {ratio}")

    m = load(copy.deepcopy(model))
    dg = build_depgraph(m)
    facts.groups = len(dg.groups)
    facts.channels = dg.n_channels
    facts.prunable = int((~dg.channel_frozen).sum())
    chans = choose_channels(dg, share, seed=seed)
    if len(chans) == 0:
        return facts
    kill_channels(dg, chans)
    dead = m.to_proto()
    dead_sess = verify.session(dead)
    expected = [verify.run(dead_sess, f) for f in feeds]
    res = api.prune(m, plan=plan_from_channels(dg, chans), depgraph=dg)
    facts.lossless_removed = res.plan.n_removed
    got = same_interface(res.proto, "lossless")
    for o, e in zip(got, expected):
        for a, b, (name, _t) in zip(o, e, signature):
            scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f"lossless: output '{name}' moved")
    return facts
