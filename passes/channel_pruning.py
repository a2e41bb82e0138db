"""Channel pruning as a pass: the same options as ``onnxprune prune``.

With ``calibration`` and ``reconstruct=True`` the pass also refits the layers that lost input
channels (:mod:`onnxprune.reconstruct`), so an export script can prune and reconstruct in one step.
"""

from __future__ import annotations

from typing import Any

from onnxprune.api import prune
from onnxprune.graph import Model, fold_small_constants, untie_uniform_constants
from onnxprune.importance import CRITERIA
from onnxprune.plan import DEFAULT_ROUND_TO

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
        round_to: int = DEFAULT_ROUND_TO,
        min_channels: int = 1,
        ignore: list[str] | None = None,
        prune_hidden: bool = False,
        seed: int = 0,
        calibration: Any = None,
        reconstruct: bool = False,
        global_ranking: bool = False,
        calib_samples: int | None = None,
    ) -> None:
        """
        Args:
            ratio: share of channels removed per layer, in [0, 1).
            criterion: channel importance: ``l1``, ``l2``, ``bn``, ``random``, or with
                calibration data ``wanda``, ``fluct``, ``apoz``, ``obs``.
            round_to: keep channel counts a multiple of this (default 8, the kernels' block width).
            min_channels: never keep fewer channels than this in a layer.
            ignore: node or tensor name globs whose channels are kept.
            prune_hidden: also prune a transformer's residual width (lossy; opt-in).
            seed: for the ``random`` criterion.
            calibration: calibration data (folder or file of .npy/.npz, iterable of feed
                dicts, or ``"random"``) for activation-aware criteria and reconstruction.
            reconstruct: refit each pruned layer's consumers by least squares on the
                calibration data (bias compensation where a refit is impossible).
            global_ranking: rank channels across groups (normalized scores) instead of a
                uniform ratio per layer.
            calib_samples: calibration samples to use (default 1024 real ones, 256 random).
        """
        self.ratio = ratio
        self.criterion = criterion
        self.round_to = round_to
        self.min_channels = min_channels
        self.ignore = ignore
        self.prune_hidden = prune_hidden
        self.seed = seed
        self.calibration = calibration
        self.reconstruct = reconstruct
        self.global_ranking = global_ranking
        self.calib_samples = calib_samples
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
            calibration=self.calibration,
            reconstruct=self.reconstruct,
            global_ranking=self.global_ranking,
            calib_samples=self.calib_samples,
        )
        self._removed = res.plan.n_removed
        return PassResult(res.model, res.plan.n_removed > 0)
