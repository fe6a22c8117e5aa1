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
        ModelConfig as ModelConfig,
    )
    from neuroplex.config import (
        RunSpec as RunSpec,
    )
    from neuroplex.config import (
        TrainingConfig as TrainingConfig,
    )
    from neuroplex.config import (
        load_spec as load_spec,
    )
    from neuroplex.config import (
        structure as structure,
    )
    from neuroplex.config import (
        unstructure as unstructure,
    )
    from neuroplex.mechanic import Mechanic as Mechanic
    from neuroplex.onnx import (
        OnnxModule as OnnxModule,
    )
    from neuroplex.onnx import (
        export_onnx as export_onnx,
    )
    from neuroplex.onnx import (
        verify_onnx as verify_onnx,
    )
    from neuroplex.plugins import (
        PluginManager as PluginManager,
    )
    from neuroplex.plugins import (
        get_plugin_manager as get_plugin_manager,
    )
    from neuroplex.protocols import (
        Policy as Policy,
    )
    from neuroplex.protocols import (
        PolicyContext as PolicyContext,
    )
    from neuroplex.protocols import (
        PolicyDecision as PolicyDecision,
    )
    from neuroplex.protocols import (
        PolicyOutcome as PolicyOutcome,
    )
    from neuroplex.registry import (
        create_analyzer as create_analyzer,
    )
    from neuroplex.registry import (
        create_dataset as create_dataset,
    )
    from neuroplex.registry import (
        create_device as create_device,
    )
    from neuroplex.registry import (
        create_layer as create_layer,
    )
    from neuroplex.registry import (
        create_model as create_model,
    )
    from neuroplex.registry import (
        create_optimizer as create_optimizer,
    )
    from neuroplex.registry import (
        create_policy as create_policy,
    )
    from neuroplex.registry import (
        create_scheduler as create_scheduler,
    )
    from neuroplex.registry import (
        create_sink as create_sink,
    )
    from neuroplex.registry import (
        get_record as get_record,
    )
    from neuroplex.registry import (
        list_analyzers as list_analyzers,
    )
    from neuroplex.registry import (
        list_components as list_components,
    )
    from neuroplex.registry import (
        list_datasets as list_datasets,
    )
    from neuroplex.registry import (
        list_devices as list_devices,
    )
    from neuroplex.registry import (
        list_layers as list_layers,
    )
    from neuroplex.registry import (
        list_models as list_models,
    )
    from neuroplex.registry import (
        list_optimizers as list_optimizers,
    )
    from neuroplex.registry import (
        list_policies as list_policies,
    )
    from neuroplex.registry import (
        list_sinks as list_sinks,
    )
    from neuroplex.training import (
        EpochRecord as EpochRecord,
    )
    from neuroplex.training import (
        History as History,
    )
    from neuroplex.training import (
        Trainer as Trainer,
    )
