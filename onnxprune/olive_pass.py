"""onnxprune as a pass of Microsoft Olive (``pip install 'onnxprune[olive]'``).

In an Olive workflow JSON the pass is ``"type": "OnnxStructuredPruning"`` with the options of
``onnxprune prune`` (``ratio`` or ``target_macs``/``target_params``, ``criterion``,
``calibration``, ``reconstruct``, ``round_to``, ``ignore``, ``input_shapes``, ...). Olive finds
passes through its package configuration, so the workflow runs with one that lists this pass
beside Olive's own::

    python -m onnxprune.olive_pass run workflow.json           # Olive's `olive run` with the pass known
    python -m onnxprune.olive_pass package-config -o pkg.json  # or: olive run --config workflow.json --package-config pkg.json

Relative ``calibration`` paths are read from the folder Olive runs in, like its ``model_path``.
The pass writes the pruned graph through Olive's own model saving (external data options
included), so later passes and Olive's evaluators see an ordinary ONNX model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import OnnxPruneError, UsageError

#: the pass's name in workflows and in the package configuration
PASS_TYPE = "OnnxStructuredPruning"
INSTALL = "pip install 'onnxprune[olive]'"


def _olive() -> Any:
    try:
        import olive  # noqa: F401
        from olive.package_config import OlivePackageConfig
    except ImportError as e:
        raise UsageError(f"the Olive pass needs olive-ai ({e}): {INSTALL}") from None
    return OlivePackageConfig


def package_config() -> dict[str, Any]:
    """Olive's default package configuration with :class:`OnnxStructuredPruning` added."""
    cfg = _olive()
    data = json.loads(Path(cfg.get_default_config_path()).read_text())
    data["passes"][PASS_TYPE] = {
        "module_path": f"onnxprune.olive_pass.{PASS_TYPE}",
        "supported_providers": ["*"],
        "supported_accelerators": ["*"],
        "supported_precisions": ["*"],
        "supported_algorithms": [],
        "supported_quantization_encodings": [],
        "dataset": "dataset_optional",
    }
    return data


def run(workflow: str | Path | dict[str, Any]) -> Any:
    """Runs an Olive workflow (path or dict) with the pass registered; returns Olive's output."""
    _olive()
    from olive.workflows import run as olive_run

    return olive_run(str(workflow) if isinstance(workflow, Path) else workflow, package_config=package_config())


def _define_pass() -> type:
    from olive.hardware import AcceleratorSpec
    from olive.model import ONNXModelHandler
    from olive.model.utils import resolve_onnx_path
    from olive.passes import Pass
    from olive.passes.onnx.common import get_external_data_config, model_proto_to_olive_model
    from olive.passes.pass_config import BasePassConfig, PassConfigParam

    from . import api
    from .plan import DEFAULT_ROUND_TO

    def param(type_: Any, default: Any, description: str) -> Any:
        return PassConfigParam(type_=type_, default_value=default, description=description)

    class OnnxStructuredPruning(Pass):
        """Structured pruning of whole channels, heads and FFN units over onnxprune's channel
        dependency graph, validated in onnxruntime (same options as ``onnxprune prune``)."""

        @classmethod
        def _default_config(cls, accelerator_spec: AcceleratorSpec) -> dict[str, Any]:
            config = {
                "ratio": param(float, 0.3, "share of the channels removed per group (ignored with a target)"),
                "target_macs": param(str, None, "size by cost: '0.7x' of the original's MACs or a count like '1.2G'"),
                "target_params": param(str, None, "size by parameters: '0.5x' or a count like '3M'"),
                "criterion": param(str, "l1", "l1, l2, bn, random, or with calibration wanda, fluct, apoz, obs"),
                "calibration": param(str, None, "calibration inputs (.npz/.npy file or folder, or images) for "
                                     "activation-aware criteria and reconstruct"),
                "calib_samples": param(int, 256, "calibration samples used"),
                "reconstruct": param(bool, False, "refit the next layers by least squares on the calibration data"),
                "global_ranking": param(bool, False, "rank channels across groups instead of the same ratio each"),
                "round_to": param(int, DEFAULT_ROUND_TO, "keep channel counts a multiple of this (kernels run fast)"),
                "min_channels": param(int, 1, "never keep fewer channels in a layer"),
                "ignore": param(list[str], None, "node or tensor name globs whose channels are kept"),
                "prune_hidden": param(bool, False, "transformers: narrow the residual width too"),
                "input_shapes": param(dict, None, "fix symbolic input sizes, e.g. {\"input\": [1, 3, 224, 224]}"),
            }
            config.update(get_external_data_config())
            return config

        def _run_for_config(self, model: ONNXModelHandler, config: type[BasePassConfig],
                            output_model_path: str) -> ONNXModelHandler:
            if config.calibration and not Path(config.calibration).exists():
                raise ValueError(f"{PASS_TYPE}: calibration '{config.calibration}' does not exist "
                                 f"(relative paths are read from {Path.cwd()})")
            try:
                res = api.prune(
                    model.model_path, ratio=config.ratio, criterion=config.criterion, round_to=config.round_to,
                    min_channels=config.min_channels, ignore=config.ignore, input_shapes=config.input_shapes,
                    prune_hidden=config.prune_hidden, calibration=config.calibration,
                    reconstruct=config.reconstruct, global_ranking=config.global_ranking,
                    calib_samples=config.calib_samples, target_macs=config.target_macs,
                    target_params=config.target_params)
            except OnnxPruneError as e:  # Olive shows the message; the reason names the node or option
                raise ValueError(f"{PASS_TYPE}: {e}") from None
            res.model.forget_auto_names(res.proto)
            return model_proto_to_olive_model(res.proto, resolve_onnx_path(output_model_path), config)

    OnnxStructuredPruning.__module__ = __name__
    return OnnxStructuredPruning


def __getattr__(name: str) -> Any:
    # Olive imports the class by name; it is defined on first use so that importing this module
    # (for package_config or the command line) does not need Olive
    if name == PASS_TYPE:
        _olive()
        cls = _define_pass()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> int:
    """``python -m onnxprune.olive_pass``: the command line lives with the others in :mod:`onnxprune.cli`."""
    from .cli import olive_main

    return olive_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
