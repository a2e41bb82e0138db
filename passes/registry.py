"""Passes by name: the built-ins, and third-party passes from the ``onnxprune.passes`` group.

A package adds passes by declaring entry points::

    [project.entry-points."onnxprune.passes"]
    fuse-my-op = "mypackage.passes:FuseMyOp"

Each entry point names a :class:`~onnxprune.passes.base.Pass` subclass; its entry-point name is
what recipes and ``--passes`` use. Entry points are read when a lookup needs them, not at import.
A built-in name cannot be taken over by a plugin (the plugin is skipped with a warning).
"""

from __future__ import annotations

import json
import logging
from importlib import metadata
from typing import Any, TypeVar

from onnxprune.errors import UsageError

from .base import Pass

__all__ = ["ENTRY_POINT_GROUP", "register", "available", "create", "parse_spec", "builtin"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "onnxprune.passes"

_BUILTIN: dict[str, type[Pass]] = {}

P = TypeVar("P", bound=type[Pass])


def register(cls: P) -> P:
    """Class decorator: makes a built-in pass available under ``cls.name``."""
    if cls.name in _BUILTIN and _BUILTIN[cls.name] is not cls:
        raise ValueError(f"two passes named '{cls.name}': {_BUILTIN[cls.name]} and {cls}")
    _BUILTIN[cls.name] = cls
    return cls


def builtin() -> dict[str, type[Pass]]:
    """The built-in passes by name."""
    return dict(_BUILTIN)


def _plugins() -> dict[str, type[Pass]]:
    found: dict[str, type[Pass]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTIN:
            log.warning("plugin pass '%s' (%s) skipped: a built-in pass has that name", ep.name, ep.value)
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the tool
            log.warning("plugin pass '%s' (%s) cannot be loaded: %s", ep.name, ep.value, exc)
            continue
        if not (isinstance(obj, type) and issubclass(obj, Pass)):
            log.warning("plugin pass '%s' (%s) is not a Pass subclass; skipped", ep.name, ep.value)
            continue
        found[ep.name] = obj
    return found


def available() -> dict[str, type[Pass]]:
    """Every pass by name: built-ins first, then plugins from the entry-point group."""
    out = builtin()
    out.update(_plugins())
    return out


def create(name: str, **options: Any) -> Pass:
    """Builds the pass called ``name`` with ``options``.

    Raises:
        UsageError: no such pass, or the options do not fit its constructor.
    """
    passes = available()
    cls = passes.get(name)
    if cls is None:
        raise UsageError(f"unknown pass '{name}' (available: {', '.join(sorted(passes))})")
    try:
        return cls(**options)
    except TypeError as exc:
        raise UsageError(f"pass '{name}': bad options {options}: {exc}") from None


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_spec(spec: str) -> Pass:
    """Builds a pass from ``name`` or ``name:key=value:key=value`` (values read as JSON).

    ``channel-pruning:ratio=0.4:round_to=8`` is ``ChannelPruning(ratio=0.4, round_to=8)``.
    """
    name, *opts = [s.strip() for s in spec.split(":")]
    options: dict[str, Any] = {}
    for o in opts:
        key, sep, val = o.partition("=")
        if not sep or not key:
            raise UsageError(f"bad pass option '{o}' in '{spec}': expected key=value")
        options[key.replace("-", "_")] = _value(val)
    return create(name, **options)


