"""Channel pruning as a pass: the same options as ``onnxprune prune``."""

from __future__ import annotations

from onnxprune.api import prune
from onnxprune.graph import Model

from .base import Pass, PassResult

__all__ = ["ChannelPruning"]


class ChannelPruning(Pass):
    """Removes ``ratio`` of the channels of every prunable group; validates the result."""

    name = "channel-pruning"

    def __init__(
        self,
        ratio: float = 0.5,
        criterion: str = "l1",
        round_to: int = 1,
        min_channels: int = 1,
        ignore: list[str] | None = None,
    ) -> None:
        self.ratio = ratio
        self.criterion = criterion
        self.round_to = round_to
        self.min_channels = min_channels
        self.ignore = ignore

    def run(self, model: Model) -> PassResult:
        res = prune(
            model,
            ratio=self.ratio,
            criterion=self.criterion,
            round_to=self.round_to,
            min_channels=self.min_channels,
            ignore=self.ignore,
            input_shapes=model.input_shapes,
        )
        return PassResult(res.model, res.plan.n_removed > 0)
