"""Built-in passes, installed as ``onnxprune.passes``.

A pass is an object; calling it on a :class:`~onnxprune.graph.Model` returns a
:class:`PassResult` saying whether it changed anything. Pruning itself is a pass, so an export
script can do::

    import onnxprune
    from onnxprune.passes import ChannelPruning, Cleanup, FuseBatchNorm

    proto = onnxprune.optimize(proto, [FuseBatchNorm(), ChannelPruning(ratio=0.4), Cleanup()])

Passes are also known by name (``onnxprune passes`` lists them); third-party packages add
passes through the ``onnxprune.passes`` entry-point group (see :mod:`.registry`).
"""

from __future__ import annotations

from .base import FunctionalPass, InPlacePass, Pass, PassError, PassResult
from .channel_pruning import ChannelPruning
from .cleanup import Cleanup
from .cse import EliminateCommonSubexpressions
from .dead_code import RemoveDeadNodes
from .dedup_initializers import DeduplicateInitializers
from .eliminate import EliminateIdentity, EliminateNoOps
from .fix_input_shapes import FixInputShapes
from .fold_constants import FoldConstants
from .fuse_affine import FuseAffine
from .fuse_batchnorm import FoldBatchNorm, FuseBatchNorm
from .fuse_pad import FusePad
from .manager import PassManager
from .registry import ENTRY_POINT_GROUP, available, builtin, create, parse_spec, register
from .shape_inference import InferShapes
from .simplify_reshape import SimplifyReshape
from .toposort import SortTopologically
from .verify_outputs import VerifyOutputs

__all__ = [
    "ENTRY_POINT_GROUP",
    "ChannelPruning",
    "Cleanup",
    "DeduplicateInitializers",
    "EliminateCommonSubexpressions",
    "EliminateIdentity",
    "EliminateNoOps",
    "FixInputShapes",
    "FoldBatchNorm",
    "FoldConstants",
    "FunctionalPass",
    "FuseAffine",
    "FuseBatchNorm",
    "FusePad",
    "InPlacePass",
    "InferShapes",
    "Pass",
    "PassError",
    "PassManager",
    "PassResult",
    "RemoveDeadNodes",
    "SimplifyReshape",
    "SortTopologically",
    "VerifyOutputs",
    "available",
    "builtin",
    "create",
    "parse_spec",
    "register",
]
