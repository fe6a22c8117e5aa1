"""Entry module of neuroplex-attacks: registers its analyzers (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import AnalyzerRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_MOD = "neuroplex_attacks.analyzers"


@hookimpl
def neuroplex_register_analyzers() -> Iterator[AnalyzerRecord]:
    yield AnalyzerRecord(
        name="fgsm",
        factory=f"{_MOD}:FGSMAnalyzer",
        summary="fast gradient sign method (L-inf), robust accuracy and vulnerability",
        capabilities={"attack", "gradients"},
        example_config={"epsilon": 0.1},
    )
    yield AnalyzerRecord(
        name="pgd",
        factory=f"{_MOD}:PGDAnalyzer",
        summary="projected gradient descent (L-inf, random start), robust accuracy",
        capabilities={"attack", "gradients"},
        example_config={"epsilon": 0.1, "steps": 3},
    )
    yield AnalyzerRecord(
        name="pgd_l2",
        factory=f"{_MOD}:PGDL2Analyzer",
        summary="projected gradient descent in the L2 ball, robust accuracy",
        capabilities={"attack", "gradients"},
        example_config={"epsilon": 0.5, "steps": 3},
    )
    yield AnalyzerRecord(
        name="square",
        factory=f"{_MOD}:SquareAnalyzer",
        summary="square attack (L-inf, black-box random search: forward passes only)",
        capabilities={"attack", "black_box"},
        example_config={"epsilon": 0.1, "n_queries": 20},
    )
    yield AnalyzerRecord(
        name="gaussian_noise",
        factory=f"{_MOD}:GaussianNoiseAnalyzer",
        summary="accuracy under seeded Gaussian input noise (epsilon = std)",
        capabilities={"attack", "noise", "black_box"},
        example_config={"epsilon": 0.05},
    )
    yield AnalyzerRecord(
        name="uniform_noise",
        factory=f"{_MOD}:UniformNoiseAnalyzer",
        summary="accuracy under seeded uniform input noise in [-epsilon, epsilon]",
        capabilities={"attack", "noise", "black_box"},
        example_config={"epsilon": 0.05},
    )
    yield AnalyzerRecord(
        name="noise",
        factory=f"{_MOD}:NoiseRobustnessAnalyzer",
        summary="accuracy per noise level (Gaussian or uniform), seeded",
        capabilities={"attack", "noise", "black_box"},
        example_config={"noise_levels": [0.01, 0.1]},
        aliases=("noise_robustness",),
    )
    yield AnalyzerRecord(
        name="robustness_curve",
        factory=f"{_MOD}:RobustnessCurveAnalyzer",
        summary="robust accuracy over increasing epsilons (non-increasing by construction)",
        capabilities={"attack", "gradients"},
        example_config={"epsilons": [0.0, 0.1], "attack": "pgd", "steps": 2},
    )
