"""Entry module of neuroplex-attacks: registers its analyzers and the ``adversarial`` policy
(imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import AnalyzerRecord, PolicyRecord, hookimpl
from neuroplex.records import SHARDS

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_MOD = "neuroplex_attacks.analyzers"


@hookimpl
def neuroplex_register_analyzers() -> Iterator[AnalyzerRecord]:
    yield AnalyzerRecord(
        name="fgsm",
        factory=f"{_MOD}:FGSMAnalyzer",
        summary="fast gradient sign method (L-inf): weak, overstates robustness (use autoattack)",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.1},
    )
    yield AnalyzerRecord(
        name="pgd",
        factory=f"{_MOD}:PGDAnalyzer",
        summary="projected gradient descent (L-inf, random start): weaker than autoattack",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.1, "steps": 3},
    )
    yield AnalyzerRecord(
        name="pgd_l2",
        factory=f"{_MOD}:PGDL2Analyzer",
        summary="projected gradient descent in the L2 ball, robust accuracy",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.5, "steps": 3},
    )
    yield AnalyzerRecord(
        name="autoattack",
        factory=f"{_MOD}:AutoAttackAnalyzer",
        summary="AutoAttack (APGD-CE, APGD-T, FAB-T, Square; L-inf or L2): the reference "
        "robust accuracy, per-sample",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={
            "epsilon": 0.1,
            "options": {
                "apgd_ce": {"n_iter": 5},
                "apgd_t": {"n_iter": 5, "n_target_classes": 2},
                "fab_t": {"n_iter": 5, "n_target_classes": 2},
                "square": {"n_queries": 20},
            },
        },
        aliases=("auto_attack",),
    )
    yield AnalyzerRecord(
        name="apgd_ce",
        factory=f"{_MOD}:APGDCEAnalyzer",
        summary="Auto-PGD on the cross-entropy (L-inf or L2, step-size free), per-sample",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.1, "n_iter": 5},
    )
    yield AnalyzerRecord(
        name="apgd_dlr",
        factory=f"{_MOD}:APGDDLRAnalyzer",
        summary="Auto-PGD on the DLR loss (L-inf or L2), per-sample",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.1, "n_iter": 5},
    )
    yield AnalyzerRecord(
        name="apgd_t",
        factory=f"{_MOD}:APGDTAnalyzer",
        summary="Auto-PGD on the targeted DLR loss over the top-9 classes (L-inf or L2)",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.1, "n_iter": 5, "n_target_classes": 2},
    )
    yield AnalyzerRecord(
        name="fab_t",
        factory=f"{_MOD}:FABTAnalyzer",
        summary="targeted FAB, minimal-norm adversarial examples (L-inf or L2), per-sample",
        capabilities={SHARDS, "attack", "gradients"},
        example_config={"epsilon": 0.1, "n_iter": 5, "n_target_classes": 2},
    )
    yield AnalyzerRecord(
        name="square",
        factory=f"{_MOD}:SquareAnalyzer",
        summary="square attack (L-inf or L2, black-box random search: forward passes only)",
        capabilities={SHARDS, "attack", "black_box"},
        example_config={"epsilon": 0.1, "n_queries": 20},
    )
    yield AnalyzerRecord(
        name="gaussian_noise",
        factory=f"{_MOD}:GaussianNoiseAnalyzer",
        summary="accuracy under seeded Gaussian input noise (epsilon = std)",
        capabilities={SHARDS, "attack", "noise", "black_box"},
        example_config={"epsilon": 0.05},
    )
    yield AnalyzerRecord(
        name="uniform_noise",
        factory=f"{_MOD}:UniformNoiseAnalyzer",
        summary="accuracy under seeded uniform input noise in [-epsilon, epsilon]",
        capabilities={SHARDS, "attack", "noise", "black_box"},
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


@hookimpl
def neuroplex_register_policies() -> Iterator[PolicyRecord]:
    yield PolicyRecord(
        name="adversarial",
        factory="neuroplex_attacks.policy:AdversarialPolicy",
        summary="while vulnerable (validation split, apgd_ce at epsilon): PGD or TRADES "
        "adversarial training keeping the best validation checkpoint, re-export, re-test; "
        "final check autoattack on the test split",
        capabilities={"retrains"},
        example_config={
            "attack": "apgd_ce",
            "epsilon": 0.1,
            "attack_options": {"n_iter": 3},
            "vulnerability_threshold": 0.99,
            "training": "trades",
            "train_steps": 2,
            "select_options": {"n_iter": 2},
            "final_attack": "fgsm",
            "backend": "torch",
            "n_samples": 6,
            "epochs": 1,
        },
        component_options={
            "attack": "analyzer",
            "train_attack": "analyzer",
            "final_attack": "analyzer",
        },
    )
