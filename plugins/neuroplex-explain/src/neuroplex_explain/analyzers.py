"""Analyzer objects for the registry: ``factory(model, **config)`` with ``analyze(x, y=None)``.

Each wraps one analysis of :class:`~neuroplex_explain.ModelExplainability` and returns its
frozen record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neuroplex.analysis.backend import ResolvedModel, resolve_model
from neuroplex_explain import activations as _act
from neuroplex_explain import attributions as _attr
from neuroplex_explain.bias import BiasReport, bias_report

__all__ = [
    "ActivationsAnalyzer",
    "AttributionAnalyzer",
    "BiasAnalyzer",
    "DeadNeuronsAnalyzer",
    "FeatureAblationAnalyzer",
    "InputXGradientAnalyzer",
    "IntegratedGradientsAnalyzer",
    "OcclusionAnalyzer",
    "SaliencyAnalyzer",
]


class _Analyzer:
    def __init__(self, model: Any) -> None:
        self.resolved: ResolvedModel = resolve_model(model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.resolved.provenance!r})"


class ActivationsAnalyzer(_Analyzer):
    """Per-layer activation statistics (:class:`~neuroplex_explain.ActivationStats`)."""

    def __init__(
        self, model: Any, *, layers: Sequence[str] | None = None, unit_dim: int = 1
    ) -> None:
        super().__init__(model)
        self.layers, self.unit_dim = layers, unit_dim

    def analyze(self, x: Any, y: Any = None) -> _act.ActivationStats:
        return _act.activation_stats(self.resolved, x, layers=self.layers, unit_dim=self.unit_dim)


class DeadNeuronsAnalyzer(_Analyzer):
    """Dead units per layer (:class:`~neuroplex_explain.DeadNeuronReport`)."""

    def __init__(
        self,
        model: Any,
        *,
        tol: float = 0.0,
        layers: Sequence[str] | None = None,
        unit_dim: int = 1,
    ) -> None:
        super().__init__(model)
        self.tol, self.layers, self.unit_dim = tol, layers, unit_dim

    def analyze(self, x: Any, y: Any = None) -> _act.DeadNeuronReport:
        return _act.dead_neurons(
            self.resolved, x, tol=self.tol, layers=self.layers, unit_dim=self.unit_dim
        )


class BiasAnalyzer(_Analyzer):
    """Prediction bias (:class:`~neuroplex_explain.BiasReport`); ``groups`` per sample."""

    def analyze(self, x: Any, y: Any = None, groups: Any = None) -> BiasReport:
        return bias_report(self.resolved, x, y, groups)


class AttributionAnalyzer(_Analyzer):
    """Attributions by one method; ``analyze(x, y)`` explains class ``y`` (default: predicted)."""

    method: str = ""

    def __init__(self, model: Any, **config: Any) -> None:
        super().__init__(model)
        _attr.check_options(self.method, config)
        self.config = config

    def analyze(self, x: Any, y: Any = None) -> _attr.Attribution:
        return _attr.attribute(self.resolved, x, y, method=self.method, **self.config)


class SaliencyAnalyzer(AttributionAnalyzer):
    method = "saliency"


class InputXGradientAnalyzer(AttributionAnalyzer):
    method = "input_x_gradient"


class IntegratedGradientsAnalyzer(AttributionAnalyzer):
    method = "integrated_gradients"


class OcclusionAnalyzer(AttributionAnalyzer):
    method = "occlusion"


class FeatureAblationAnalyzer(AttributionAnalyzer):
    method = "feature_ablation"
