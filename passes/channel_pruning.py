"""Channel pruning as a pass: the same options as ``onnxprune prune``."""

from __future__ import annotations

from onnxprune.api import prune
from onnxprune.graph import Model, fold_small_constants, untie_uniform_constants
from onnxprune.importance import CRITERIA

from .base import InPlacePass, PassResult
from .registry import register

__all__ = ["ChannelPruning"]


@register
class ChannelPruning(InPlacePass):
    """Remove a share of the channels of every prunable group (structured pruning); validates."""

    name = "channel-pruning"
    repeatable = False

    def __init__(
        self,
        ratio: float = 0.5,
        criterion: str = "l1",
        round_to: int = 1,
        min_channels: int = 1,
        ignore: list[str] | None = None,
        prune_hidden: bool = False,
        seed: int = 0,
    ) -> None:
        """
        Args:
            ratio: share of channels removed per layer, in [0, 1).
            criterion: channel importance: one of ``l1``, ``l2``, ``bn``, ``random``.
            round_to: keep channel counts a multiple of this.
            min_channels: never keep fewer channels than this in a layer.
            ignore: node or tensor name globs whose channels are kept.
            prune_hidden: also prune a transformer's residual width (lossy; opt-in).
            seed: for the ``random`` criterion.
        """
        self.ratio = ratio
        self.criterion = criterion
        self.round_to = round_to
        self.min_channels = min_channels
        self.ignore = ignore
        self.prune_hidden = prune_hidden
        self.seed = seed
        #: Channels removed by the last run.
        self._removed = 0

    def requires(self, model: Model) -> str | None:
        if not 0 <= self.ratio < 1:
            return f"ratio must be in [0, 1), got {self.ratio}"
        if self.criterion not in CRITERIA:
            return f"unknown criterion '{self.criterion}' (choose from {', '.join(CRITERIA)})"
        return None

    def run(self, model: Model) -> PassResult:
        # Other passes may have rewritten the graph since it was loaded: analyse it afresh.
        untie_uniform_constants(model.graph)
        fold_small_constants(model.graph)
        model.refresh_shapes()
        res = prune(
            model,
            ratio=self.ratio,
            criterion=self.criterion,
            round_to=self.round_to,
            min_channels=self.min_channels,
            ignore=self.ignore,
            input_shapes=model.input_shapes,
            seed=self.seed,
            prune_hidden=self.prune_hidden,
        )
        self._removed = res.plan.n_removed
        return PassResult(res.model, res.plan.n_removed > 0)
