"""Entry module of neuroplex-explain: registers its analyzers (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import AnalyzerRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_MOD = "neuroplex_explain.analyzers"


@hookimpl
def neuroplex_register_analyzers() -> Iterator[AnalyzerRecord]:
    yield AnalyzerRecord(
        name="activations",
        factory=f"{_MOD}:ActivationsAnalyzer",
        summary="per-layer activation statistics (mean, std, range, zero/negative fractions)",
        capabilities={"explain", "activations"},
        aliases=("activation_stats",),
    )
    yield AnalyzerRecord(
        name="dead_neurons",
        factory=f"{_MOD}:DeadNeuronsAnalyzer",
        summary="units that never exceed tol on a batch, per layer",
        capabilities={"explain", "activations"},
        example_config={"tol": 0.0},
    )
    yield AnalyzerRecord(
        name="bias",
        factory=f"{_MOD}:BiasAnalyzer",
        summary="predicted-class skew (KL, total variation), demographic parity, equalized odds",
        capabilities={"explain"},
    )
    yield AnalyzerRecord(
        name="saliency",
        factory=f"{_MOD}:SaliencyAnalyzer",
        summary="absolute gradient of the target score w.r.t. the input",
        capabilities={"explain", "attribution", "gradients"},
    )
    yield AnalyzerRecord(
        name="input_x_gradient",
        factory=f"{_MOD}:InputXGradientAnalyzer",
        summary="input times the gradient of the target score",
        capabilities={"explain", "attribution", "gradients"},
    )
    yield AnalyzerRecord(
        name="integrated_gradients",
        factory=f"{_MOD}:IntegratedGradientsAnalyzer",
        summary="integrated gradients from a baseline, batched integration points",
        capabilities={"explain", "attribution", "gradients"},
        example_config={"n_steps": 8},
        aliases=("ig",),
    )
    yield AnalyzerRecord(
        name="occlusion",
        factory=f"{_MOD}:OcclusionAnalyzer",
        summary="score change under a sliding occluding window (Captum; forward passes only)",
        capabilities={"explain", "attribution", "perturbation"},
    )
    yield AnalyzerRecord(
        name="feature_ablation",
        factory=f"{_MOD}:FeatureAblationAnalyzer",
        summary="score change when each feature is ablated (Captum; forward passes only)",
        capabilities={"explain", "attribution", "perturbation"},
    )
