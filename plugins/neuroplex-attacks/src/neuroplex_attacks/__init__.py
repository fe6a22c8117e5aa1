"""neuroplex-attacks: adversarial robustness of classifiers, on PyTorch or ONNX Runtime.

``AdversarialTester(model, device)`` is the seed's API (``test_robustness``,
``test_noise_robustness``, ``generate_adversarial_dataset``) plus ``robustness_curve`` and
``attack``. The attacks (:mod:`neuroplex_attacks.attacks`: fgsm, pgd, pgd_l2, square,
gaussian_noise, uniform_noise) are plain batched functions usable on their own.
"""

from __future__ import annotations

from neuroplex_attacks.attacks import (
    ATTACK_NORMS,
    ATTACKS,
    GRADIENT_ATTACKS,
    fgsm,
    gaussian_noise,
    pgd,
    pgd_l2,
    square,
    uniform_noise,
)
from neuroplex_attacks.results import (
    VULNERABILITY_RULE,
    AdversarialDataset,
    NoiseRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
)
from neuroplex_attacks.tester import AdversarialTester

__all__ = [
    "ATTACKS",
    "ATTACK_NORMS",
    "GRADIENT_ATTACKS",
    "VULNERABILITY_RULE",
    "AdversarialDataset",
    "AdversarialTester",
    "NoiseRobustnessResult",
    "RobustnessCurve",
    "RobustnessResult",
    "fgsm",
    "gaussian_noise",
    "pgd",
    "pgd_l2",
    "square",
    "uniform_noise",
]

__version__ = "0.1.0"
