"""Channel pruning as a pass: the same options as ``onnxprune prune``.

With ``calibration`` and ``reconstruct=True`` the pass also refits the layers that lost input
channels (:mod:`onnxprune.reconstruct`), so an export script can prune and reconstruct in one step.
"""

from __future__ import annotations

from typing import Any

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
        calibration: Any = None,
        reconstruct: bool = False,
        global_ranking: bool = False,
        calib_samples: int = 256,
    ) -> None:
        self.ratio = ratio
        self.criterion = criterion
        self.round_to = round_to
        self.min_channels = min_channels
        self.ignore = ignore
        self.calibration = calibration
        self.reconstruct = reconstruct
        self.global_ranking = global_ranking
        self.calib_samples = calib_samples

    def run(self, model: Model) -> PassResult:
        res = prune(
            model,
            ratio=self.ratio,
            criterion=self.criterion,
            round_to=self.round_to,
            min_channels=self.min_channels,
            ignore=self.ignore,
            input_shapes=model.input_shapes,
            calibration=self.calibration,
            reconstruct=self.reconstruct,
            global_ranking=self.global_ranking,
            calib_samples=self.calib_samples,
        )
        return PassResult(res.model, res.plan.n_removed > 0)
