"""neuroplex-attacks: adversarial robustness of classifiers, on PyTorch or ONNX Runtime.

``AdversarialTester(model, device)`` is the seed's API (``test_robustness``,
``test_noise_robustness``, ``generate_adversarial_dataset``) plus ``robustness_curve``,
``attack`` and ``evaluate`` (AutoAttack, the reference robust accuracy). The attacks
(:mod:`neuroplex_attacks.attacks`: apgd_ce, apgd_dlr, apgd_t, fab_t, square, autoattack, and
the weaker fgsm, pgd, pgd_l2; noise) are plain batched functions usable on their own.

Names load on first access (PEP 562): importing the package, or its entry module
``neuroplex_attacks.plugin``, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "ATTACKS": "neuroplex_attacks.attacks",
    "ATTACK_NORMS": "neuroplex_attacks.attacks",
    "GRADIENT_ATTACKS": "neuroplex_attacks.attacks",
    "fgsm": "neuroplex_attacks.attacks",
    "gaussian_noise": "neuroplex_attacks.attacks",
    "pgd": "neuroplex_attacks.attacks",
    "pgd_l2": "neuroplex_attacks.attacks",
    "square": "neuroplex_attacks.square",
    "uniform_noise": "neuroplex_attacks.attacks",
    "VULNERABILITY_RULE": "neuroplex_attacks.results",
    "AdversarialDataset": "neuroplex_attacks.results",
    "NoiseRobustnessResult": "neuroplex_attacks.results",
    "RobustnessCurve": "neuroplex_attacks.results",
    "RobustnessResult": "neuroplex_attacks.results",
    "AdversarialTester": "neuroplex_attacks.tester",
    "AutoAttackResult": "neuroplex_attacks.results",
    "apgd_ce": "neuroplex_attacks.apgd",
    "apgd_dlr": "neuroplex_attacks.apgd",
    "apgd_t": "neuroplex_attacks.apgd",
    "fab_t": "neuroplex_attacks.fab",
    "autoattack": "neuroplex_attacks.autoattack",
}

__all__ = [
    "ATTACKS",
    "ATTACK_NORMS",
    "AdversarialDataset",
    "AdversarialTester",
    "AutoAttackResult",
    "GRADIENT_ATTACKS",
    "NoiseRobustnessResult",
    "RobustnessCurve",
    "RobustnessResult",
    "VULNERABILITY_RULE",
    "apgd_ce",
    "apgd_dlr",
    "apgd_t",
    "autoattack",
    "fab_t",
    "fgsm",
    "gaussian_noise",
    "pgd",
    "pgd_l2",
    "square",
    "uniform_noise",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroplex_attacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


if TYPE_CHECKING:  # pragma: no cover
    from neuroplex_attacks.apgd import apgd_ce, apgd_dlr, apgd_t
    from neuroplex_attacks.attacks import (
        ATTACK_NORMS,
        ATTACKS,
        GRADIENT_ATTACKS,
        fgsm,
        gaussian_noise,
        pgd,
        pgd_l2,
        uniform_noise,
    )
    from neuroplex_attacks.autoattack import autoattack
    from neuroplex_attacks.fab import fab_t
    from neuroplex_attacks.results import (
        VULNERABILITY_RULE,
        AdversarialDataset,
        AutoAttackResult,
        NoiseRobustnessResult,
        RobustnessCurve,
        RobustnessResult,
    )
    from neuroplex_attacks.square import square
    from neuroplex_attacks.tester import AdversarialTester
