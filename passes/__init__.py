"""Built-in passes, installed as ``onnxprune.passes``.

A pass is an object; calling it on a :class:`~onnxprune.graph.Model` returns a
:class:`PassResult` saying whether it changed anything. Pruning itself is a pass, so an export
script can do::

    from onnxprune.passes import ChannelPruning
    model = ChannelPruning(ratio=0.4)(onnxprune.load(proto)).model
"""

from __future__ import annotations

from .base import Pass, PassResult
from .channel_pruning import ChannelPruning

__all__ = ["Pass", "PassResult", "ChannelPruning"]
