"""neuroplex-explain: look inside classifiers, on PyTorch or ONNX Runtime.

``ModelExplainability(model)`` is the seed's API (``get_activations``,
``analyze_layer_activations``, ``detect_dead_neurons``, ``detect_bias``) plus attributions
(saliency, input × gradient, integrated gradients, occlusion, feature ablation). ``model`` is a
``torch.nn.Module``, an ``OnnxModule`` or a path to a ``.onnx`` file; every result names the
``backend`` and ``tier`` that produced it.
"""

from __future__ import annotations

from neuroplex_explain._backend import ResolvedModel, resolve_model
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

__version__ = "0.1.0"
