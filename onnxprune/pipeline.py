"""``optimize``: run passes over a model from an export script, a file, or the command line.

Export scripts hand over the ``ModelProto`` they just made (torch.onnx, tf2onnx, paddle2onnx)
and get one back; nothing is written unless ``output`` is given, and then atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .errors import UsageError
from .graph import Model, load
from .io import save_proto

__all__ = ["optimize", "run_passes", "OptimizeResult", "PassSpec", "resolve_passes", "DEFAULT_PASSES"]

log = logging.getLogger(__name__)

#: What ``optimize`` runs when no passes are given: every lossless simplification.
DEFAULT_PASSES: tuple[str, ...] = ("cleanup",)

#: A pass object, a registered name (``"fuse-bn"``, ``"channel-pruning:ratio=0.4"``), or a
#: mapping ``{"name": ..., **options}`` as recipes write it.
PassSpec = object


def resolve_passes(passes: Sequence[PassSpec] | str | None) -> list:
    """Turns names, ``name:key=value`` strings and option mappings into pass objects."""
    from onnxprune.passes import Pass, create, parse_spec

    if passes is None:
        passes = list(DEFAULT_PASSES)
    elif isinstance(passes, str):
        passes = [p for p in passes.split(",") if p.strip()]
    out = []
    for p in passes:
        if isinstance(p, Pass):
            out.append(p)
        elif isinstance(p, str):
            out.append(parse_spec(p))
        elif isinstance(p, dict):
            opts = dict(p)
            name = opts.pop("name", None)
            if not isinstance(name, str):
                raise UsageError(f"pass entry {p!r} has no 'name'")
            out.append(create(name, **{k.replace("-", "_"): v for k, v in opts.items()}))
        elif isinstance(p, type) and issubclass(p, Pass):
            out.append(p())
        else:
            raise UsageError(f"{p!r} is not a pass, a pass name or a {{'name': ...}} mapping")
    if not out:
        raise UsageError("no passes given")
    return out


def _as_model_source(obj: object) -> object:
    """Accepts what exporters return: a ModelProto, or an object holding one (torch's
    ``ONNXProgram.model_proto``), besides paths and loaded models."""
    if isinstance(obj, onnx.ModelProto | Model | str | os.PathLike):
        return obj
    proto = getattr(obj, "model_proto", None)
    if isinstance(proto, onnx.ModelProto):
        return proto
    raise UsageError(f"cannot optimize a {type(obj).__name__}: give a ModelProto, a path or a Model")


@dataclass
class OptimizeResult:
    """The optimized model and what ran."""

    model: Model
    proto: onnx.ModelProto
    trace: list[str] = field(default_factory=list)
    modified: bool = False
    nodes_before: int = 0
    nodes_after: int = 0
    converged: bool = True


def run_passes(
    model_or_path: str | os.PathLike[str] | onnx.ModelProto | Model,
    passes: Sequence[PassSpec] | str | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    max_rounds: int = 8,
    on_pass: Callable[..., None] | None = None,
) -> OptimizeResult:
    """Runs ``passes`` (to a fixed point) and returns the model with a record of what ran.

    A ``ModelProto`` argument is not modified; a :class:`Model` is edited in place.
    """
    from onnxprune.passes import PassManager

    pass_list = resolve_passes(passes)
    model_or_path = _as_model_source(model_or_path)
    if isinstance(model_or_path, Model):
        model = model_or_path
        nodes_before = len(model.graph.nodes)
    else:
        model = load(model_or_path, input_shapes, prepare=False)
        if isinstance(model_or_path, onnx.ModelProto):
            model.original = model_or_path
        nodes_before = len(model.graph.nodes)
    manager = PassManager(pass_list, max_rounds=max_rounds, on_pass=on_pass)
    result = manager(model)
    proto = result.model.to_proto()
    return OptimizeResult(
        model=result.model,
        proto=proto,
        trace=list(manager.trace),
        modified=result.modified,
        nodes_before=nodes_before,
        nodes_after=len(proto.graph.node),
        converged=manager.converged,
    )


def optimize(
    model_or_path: str | os.PathLike[str] | onnx.ModelProto | Model,
    passes: Sequence[PassSpec] | str | None = None,
    output: str | os.PathLike[str] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
) -> onnx.ModelProto:
    """Runs passes over a model and returns the result as a ``ModelProto``.

    Args:
        model_or_path: a ``ModelProto`` (straight from torch.onnx.export, tf2onnx,
            paddle2onnx; it is not modified), torch's ``ONNXProgram``, a path to an ``.onnx``
            file, or a loaded Model.
        passes: pass objects, registered names (``"fuse-bn"``, ``"channel-pruning:ratio=0.4"``)
            or a comma-separated string of names; default ``["cleanup"]``. The list runs to a
            fixed point; passes that must run once (pruning) run once.
        output: also write the result here, atomically (never over the input file).
        input_shapes: sizes for symbolic input dimensions, for passes that analyse shapes.

    Example:
        >>> proto = torch.onnx.export(net, x, dynamo=True).model_proto      # doctest: +SKIP
        >>> proto = onnxprune.optimize(proto, ["cleanup", ChannelPruning(ratio=0.4)])  # doctest: +SKIP
    """
    res = run_passes(model_or_path, passes, input_shapes)
    if output is not None:
        protect: tuple[str | os.PathLike[str], ...] = ()
        if isinstance(model_or_path, str | os.PathLike):
            protect = (model_or_path,)
        elif isinstance(model_or_path, Model) and model_or_path.source:
            protect = (model_or_path.source,)
        save_proto(res.proto, Path(output), protect=protect)
    return res.proto
