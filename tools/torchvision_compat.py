"""Import torchvision when its compiled operator library cannot be loaded.

The torchvision wheel that matches the installed torch (0.28.0, installed with
``pip install --no-deps torchvision==0.28.0``) ships ``torchvision/_C.so`` built
against CUDA. On a CPU-only torch that library fails to load, which torchvision
tolerates (``torchvision.extension._has_ops()`` then returns False) -- except that
``torchvision/_meta_registrations.py`` unconditionally calls
``torch.library.register_fake("torchvision::nms")`` and ``("torchvision::qnms")``
at import time.  Registering a fake kernel requires the operator schema to exist,
so ``import torchvision`` dies with::

    RuntimeError: operator torchvision::nms does not exist

All the other ``torchvision::*`` registrations (roi_align, roi_pool, ps_roi_*,
deform_conv2d, ...) are guarded by ``_has_ops()`` and need nothing.

``import_torchvision()`` first tries to load torchvision's compiled library
itself (so that where it does load, nothing is redefined), then defines whichever
of the two schemas are still missing (exactly as the C++ library declares them)
with ``torch.library``, and finally imports torchvision.  The schemas get no kernels: the detection ops themselves stay
unavailable (they raise torchvision's usual "Couldn't load custom C++ ops"
error), while the model classes in ``torchvision.models`` work normally.

torchvision itself also needs Pillow (``torchvision.datasets`` imports PIL).
"""

from __future__ import annotations

from types import ModuleType

# Operator schemas that torchvision's import-time code expects to exist even
# when its compiled library is unavailable.
_REQUIRED_SCHEMAS: dict[str, str] = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _op_defined(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _try_load_compiled_ops() -> bool:
    """Load torchvision's ``_C`` library if it is loadable here; never raise."""
    import importlib.util
    from pathlib import Path

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        for lib in sorted(Path(location).glob("_C.*")):
            if lib.suffix not in (".so", ".pyd", ".dylib"):
                continue
            try:
                torch.ops.load_library(str(lib))
                return True
            except Exception:  # noqa: BLE001 - any load failure means "no compiled ops"
                return False
    return False


def define_missing_ops() -> list[str]:
    """Define the torchvision operator schemas that are missing; return their names."""
    import torch

    _try_load_compiled_ops()
    defined = []
    for name, schema in _REQUIRED_SCHEMAS.items():
        if not _op_defined(name):
            torch.library.define(f"torchvision::{name}", schema)
            defined.append(name)
    return defined


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, defining missing operator schemas first."""
    import sys

    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "models"):
        return sys.modules["torchvision"]
    define_missing_ops()
    import torchvision

    return torchvision


__all__ = ["define_missing_ops", "import_torchvision"]
