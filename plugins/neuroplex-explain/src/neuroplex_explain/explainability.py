"""``ModelExplainability``: the seed's explainability API over PyTorch or ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neuroplex.analysis.backend import ResolvedModel, resolve_model
from neuroplex.analysis.inputs import as_inputs
from neuroplex_explain import activations as _act
from neuroplex_explain import attributions as _attr
from neuroplex_explain.bias import BiasReport, bias_report

__all__ = ["ModelExplainability"]


class ModelExplainability:
    """Look inside a classifier: activations, dead units, prediction bias, attributions.

    Args:
        model: a ``torch.nn.Module`` returning logits ``(N, C)``, an ``OnnxModule`` or a path to
            a ``.onnx`` file. The model's training mode is restored after every call.

    Example::

        explainer = ModelExplainability(model)
        activations = explainer.get_activations(x)        # {layer: (N, ...)}
        stats = explainer.analyze_layer_activations(x)    # ActivationStats
        dead = explainer.detect_dead_neurons(x)           # DeadNeuronReport
        bias = explainer.detect_bias(x)                   # BiasReport
        ig = explainer.attribute(x, method="integrated_gradients")
    """

    def __init__(self, model: Any) -> None:
        self._resolved: ResolvedModel = resolve_model(model)

    @property
    def model(self) -> torch.nn.Module:
        return self._resolved.module

    @property
    def backend(self) -> str:
        """``"torch"`` or ``"onnx"``."""
        return self._resolved.backend

    @property
    def tier(self) -> str:
        """``"torch"``, ``"forward_only"`` or ``"gradients"``."""
        return self._resolved.tier

    def get_activations(
        self, x: Any, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Detached copies of every named layer's output for ``x`` (shape ``(N, ...)``).

        Returns ``{layer name: tensor (N, ...)}`` in execution order; see
        :func:`neuroplex_explain.activations.capture_activations`.
        """
        return _act.capture_activations(
            self._resolved, as_inputs(x, self._resolved.device, keep_dtype=True), layers
        )

    def analyze_layer_activations(
        self, x: Any, layers: Sequence[str] | None = None, unit_dim: int = 1
    ) -> _act.ActivationStats:
        """Per-layer mean, std, min, max, zero and negative fractions and per-unit maxima."""
        return _act.activation_stats(self._resolved, x, layers=layers, unit_dim=unit_dim)

    def detect_dead_neurons(
        self,
        x: Any,
        tol: float = 0.0,
        layers: Sequence[str] | None = None,
        unit_dim: int = 1,
    ) -> _act.DeadNeuronReport:
        """Units whose output is ``<= tol`` on every sample of ``x`` (batch-dependent)."""
        return _act.dead_neurons(self._resolved, x, tol=tol, layers=layers, unit_dim=unit_dim)

    def detect_bias(self, x: Any, y: Any = None, groups: Any = None) -> BiasReport:
        """Predicted-class skew, and group disparities with ``groups``; see
        :mod:`neuroplex_explain.bias` for the definition of every number."""
        return bias_report(self._resolved, x, y, groups)

    def attribute(
        self, x: Any, method: str = "integrated_gradients", target: Any = None, **kwargs: Any
    ) -> _attr.Attribution:
        """Attributions by ``method`` (``saliency``, ``input_x_gradient``,
        ``integrated_gradients``, ``occlusion``, ``feature_ablation``) for ``target`` (default:
        the predicted class); keyword arguments go to the method."""
        return _attr.attribute(self._resolved, x, target, method=method, **kwargs)
