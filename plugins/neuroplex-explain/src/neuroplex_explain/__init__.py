"""neuroplex-explain: look inside classifiers, on PyTorch or ONNX Runtime.

``ModelExplainability(model)`` is the seed's API (``get_activations``,
``analyze_layer_activations``, ``detect_dead_neurons``, ``detect_bias``) plus attributions
(saliency, input × gradient, integrated gradients, occlusion, feature ablation). ``model`` is a
``torch.nn.Module``, an ``OnnxModule`` or a path to a ``.onnx`` file; every result names the
``backend`` and ``tier`` that produced it.

Names load on first access (PEP 562): importing the package, or its entry module
``neuroplex_explain.plugin``, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "ResolvedModel": "neuroplex.analysis.backend",
    "resolve_model": "neuroplex.analysis.backend",
    "ActivationStats": "neuroplex_explain.activations",
    "DeadNeuronReport": "neuroplex_explain.activations",
    "LayerDeadNeurons": "neuroplex_explain.activations",
    "LayerStats": "neuroplex_explain.activations",
    "ATTRIBUTION_METHODS": "neuroplex_explain.attributions",
    "Attribution": "neuroplex_explain.attributions",
    "feature_ablation": "neuroplex_explain.attributions",
    "input_x_gradient": "neuroplex_explain.attributions",
    "integrated_gradients": "neuroplex_explain.attributions",
    "occlusion": "neuroplex_explain.attributions",
    "saliency": "neuroplex_explain.attributions",
    "BiasReport": "neuroplex_explain.bias",
    "ModelExplainability": "neuroplex_explain.explainability",
}

__all__ = [
    "ATTRIBUTION_METHODS",
    "ActivationStats",
    "Attribution",
    "BiasReport",
    "DeadNeuronReport",
    "LayerDeadNeurons",
    "LayerStats",
    "ModelExplainability",
    "ResolvedModel",
    "feature_ablation",
    "input_x_gradient",
    "integrated_gradients",
    "occlusion",
    "resolve_model",
    "saliency",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroplex_explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


if TYPE_CHECKING:  # pragma: no cover
    from neuroplex.analysis.backend import ResolvedModel, resolve_model
    from neuroplex_explain.activations import (
        ActivationStats,
        DeadNeuronReport,
        LayerDeadNeurons,
        LayerStats,
    )
    from neuroplex_explain.attributions import (
        ATTRIBUTION_METHODS,
        Attribution,
        feature_ablation,
        input_x_gradient,
        integrated_gradients,
        occlusion,
        saliency,
    )
    from neuroplex_explain.bias import BiasReport
    from neuroplex_explain.explainability import ModelExplainability
