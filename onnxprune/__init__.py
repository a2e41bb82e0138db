"""onnxprune: structured pruning of ONNX models over a channel dependency graph."""

from __future__ import annotations

from .depgraph import DepGraph, Group, build_depgraph
from .errors import OnnxPruneError
from .graph import Model, load
from .pipeline import optimize

__version__ = "0.1.0"

__all__ = [
    "DepGraph",
    "Group",
    "Model",
    "OnnxPruneError",
    "build_depgraph",
    "load",
    "optimize",
    "__version__",
]
