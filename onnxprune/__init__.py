"""onnxprune: structured pruning of ONNX models over a channel dependency graph.

The names below are imported on first use, so ``import onnxprune`` (and the console tool's
start, which must be able to handle Ctrl-C from its first instant) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "DepGraph": ".depgraph",
    "Group": ".depgraph",
    "build_depgraph": ".depgraph",
    "OnnxPruneError": ".errors",
    "Model": ".graph",
    "load": ".graph",
    "optimize": ".pipeline",
}

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

if TYPE_CHECKING:  # pragma: no cover
    from .depgraph import DepGraph, Group, build_depgraph
    from .errors import OnnxPruneError
    from .graph import Model, load
    from .pipeline import optimize


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'onnxprune' has no attribute {name!r}")
