"""The cleanup pipeline: every lossless simplification, run to a fixed point.

Order within a round: annotate shapes, fold constants (shape subgraphs included), drop Identity
and Dropout, drop no-op shape/type ops, make computed Reshape targets constant, fuse BatchNorm,
constant affine ops and zero Pads into Conv/Gemm, merge identical initializers and then identical
nodes, remove what became dead, sort. The round repeats while anything
changes (each rewrite can enable another), bounded by ``max_rounds``.
"""

from __future__ import annotations

from .cse import EliminateCommonSubexpressions
from .dead_code import RemoveDeadNodes
from .dedup_initializers import DeduplicateInitializers
from .eliminate import EliminateIdentity, EliminateNoOps
from .fold_constants import FoldConstants
from .fuse_affine import FuseAffine
from .fuse_batchnorm import FuseBatchNorm
from .fuse_pad import FusePad
from .manager import PassManager
from .registry import register
from .shape_inference import InferShapes
from .simplify_reshape import SimplifyReshape
from .toposort import SortTopologically

__all__ = ["Cleanup"]


@register
class Cleanup(PassManager):
    """Fold constants, remove no-ops and dead code, fuse BatchNorm/affine ops; to a fixed point."""

    name = "cleanup"

    def __init__(self, max_rounds: int = 8, fold: bool = True, fuse: bool = True) -> None:
        """
        Args:
            max_rounds: the step bound of the fixed-point loop.
            fold: include constant folding.
            fuse: include BatchNorm and affine fusion into Conv/Gemm.
        """
        passes = [InferShapes()]
        if fold:
            passes.append(FoldConstants(infer=False))
        passes += [EliminateIdentity(), EliminateNoOps(), SimplifyReshape()]
        if fuse:
            passes += [FuseBatchNorm(), FuseAffine(), FusePad()]
        passes += [
            DeduplicateInitializers(),
            EliminateCommonSubexpressions(),
            RemoveDeadNodes(),
            SortTopologically(),
        ]
        super().__init__(passes, max_rounds=max_rounds)
        self.fold = fold
        self.fuse = fuse

    def options(self) -> dict[str, object]:
        return {"max_rounds": self.max_rounds, "fold": self.fold, "fuse": self.fuse}
