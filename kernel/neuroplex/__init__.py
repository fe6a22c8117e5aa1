"""neuroplex: a plugin-based microkernel framework for deep learning.

``import neuroplex`` is cheap: it never imports torch. Heavy parts (the Trainer, the ONNX
bridge, the Mechanic) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from neuroplex.errors import (
    CheckpointError,
    ComponentNotFoundError,
    ConfigError,
    DataError,
    ExportError,
    NeuroplexError,
    PluginError,
    RunRejected,
    SinkError,
    TrainingError,
)
from neuroplex.hookspecs import HOOK_API_VERSION, hookimpl
from neuroplex.records import (
    KINDS,
    AnalyzerRecord,
    ComponentRecord,
    DatasetRecord,
    DataSplits,
    DeviceRecord,
    Event,
    FeedbackSinkRecord,
    LayerRecord,
    ModelRecord,
    OptimizerRecord,
    PolicyRecord,
)

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562)
_LAZY: dict[str, str] = {
    "ModelConfig": "neuroplex.config",
    "TrainingConfig": "neuroplex.config",
    "RunSpec": "neuroplex.config",
    "load_spec": "neuroplex.config",
    "structure": "neuroplex.config",
    "unstructure": "neuroplex.config",
    "get_plugin_manager": "neuroplex.plugins",
    "PluginManager": "neuroplex.plugins",
    "create_layer": "neuroplex.registry",
    "create_model": "neuroplex.registry",
    "create_optimizer": "neuroplex.registry",
    "create_scheduler": "neuroplex.registry",
    "create_device": "neuroplex.registry",
    "create_analyzer": "neuroplex.registry",
    "create_sink": "neuroplex.registry",
    "create_dataset": "neuroplex.registry",
    "create_policy": "neuroplex.registry",
    "list_layers": "neuroplex.registry",
    "list_models": "neuroplex.registry",
    "list_optimizers": "neuroplex.registry",
    "list_devices": "neuroplex.registry",
    "list_analyzers": "neuroplex.registry",
    "list_sinks": "neuroplex.registry",
    "list_datasets": "neuroplex.registry",
    "list_policies": "neuroplex.registry",
    "get_record": "neuroplex.registry",
    "list_components": "neuroplex.registry",
    "Trainer": "neuroplex.training",
    "History": "neuroplex.training",
    "EpochRecord": "neuroplex.training",
    "Mechanic": "neuroplex.mechanic",
    "Policy": "neuroplex.protocols",
    "PolicyContext": "neuroplex.protocols",
    "PolicyDecision": "neuroplex.protocols",
    "PolicyOutcome": "neuroplex.protocols",
    "OnnxModule": "neuroplex.onnx",
    "export_onnx": "neuroplex.onnx",
    "verify_onnx": "neuroplex.onnx",
}

__all__ = [
    "HOOK_API_VERSION",
    "KINDS",
    "AnalyzerRecord",
    "CheckpointError",
    "ComponentNotFoundError",
    "ComponentRecord",
    "ConfigError",
    "DataError",
    "DataSplits",
    "DatasetRecord",
    "DeviceRecord",
    "Event",
    "ExportError",
    "FeedbackSinkRecord",
    "LayerRecord",
    "ModelRecord",
    "NeuroplexError",
    "OptimizerRecord",
    "PluginError",
    "PolicyRecord",
    "RunRejected",
    "SinkError",
    "TrainingError",
    "__version__",
    "hookimpl",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroplex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from neuroplex.config import (
        ModelConfig,
        RunSpec,
        TrainingConfig,
        load_spec,
        structure,
        unstructure,
    )
    from neuroplex.mechanic import Mechanic
    from neuroplex.onnx import OnnxModule, export_onnx, verify_onnx
    from neuroplex.plugins import PluginManager, get_plugin_manager
    from neuroplex.protocols import Policy, PolicyContext, PolicyDecision, PolicyOutcome
    from neuroplex.registry import (
        create_analyzer,
        create_dataset,
        create_device,
        create_layer,
        create_model,
        create_optimizer,
        create_policy,
        create_scheduler,
        create_sink,
        get_record,
        list_analyzers,
        list_components,
        list_datasets,
        list_devices,
        list_layers,
        list_models,
        list_optimizers,
        list_policies,
        list_sinks,
    )
    from neuroplex.training import EpochRecord, History, Trainer
