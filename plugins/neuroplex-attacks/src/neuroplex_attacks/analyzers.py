"""Analyzer objects for the registry: ``factory(model, **config)`` with ``analyze(x, y=None)``.

``y`` defaults to the model's predictions (then ``clean_accuracy`` is 1 by definition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neuroplex_attacks.results import (
    AutoAttackResult,
    NoiseRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
)
from neuroplex_attacks.tester import (
    AdversarialTester,
    AttackShard,
    EvaluationShard,
    _attack_name,
    _autoattack_plan,
    _check_epsilon,
    _check_params,
    _check_positive,
)

__all__ = [
    "APGDCEAnalyzer",
    "APGDDLRAnalyzer",
    "APGDTAnalyzer",
    "AttackAnalyzer",
    "AutoAttackAnalyzer",
    "FABTAnalyzer",
    "FGSMAnalyzer",
    "GaussianNoiseAnalyzer",
    "NoiseRobustnessAnalyzer",
    "PGDAnalyzer",
    "PGDL2Analyzer",
    "RobustnessCurveAnalyzer",
    "SquareAnalyzer",
    "UniformNoiseAnalyzer",
]

_TESTER_KEYS = (
    "device",
    "input_range",
    "vulnerability_threshold",
    "batch_size",
    "seed",
    "progress",
)


def _split(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    tester = {k: config.pop(k) for k in _TESTER_KEYS if k in config}
    return tester, config


class AttackAnalyzer:
    """``test_robustness`` with one attack at ``epsilon``; other keys are the tester's
    (``device``, ``input_range``, ``vulnerability_threshold``, ``batch_size``, ``seed``) or the
    attack's options (``steps``, ``alpha``, ``n_queries``, ...)."""

    attack: str = ""

    def __init__(self, model: Any, *, epsilon: float = 0.1, **config: Any) -> None:
        tester_kw, self.params = _split(dict(config))
        self.epsilon = _check_epsilon(epsilon)
        _check_params(_attack_name(self.attack), self.params)
        self.tester = AdversarialTester(model, **tester_kw)

    def analyze(self, x: Any, y: Any = None) -> RobustnessResult:
        return self.tester.test_robustness(x, y, self.attack, self.epsilon, **self.params)

    @property
    def shard_size(self) -> int:
        """Points per seeded batch: a shard holds whole batches (``ShardableAnalyzer``)."""
        return self.tester.batch_size

    def analyze_shard(self, x: Any, y: Any = None, *, first_batch: int = 0) -> AttackShard:
        """``analyze`` on whole batches starting at global batch ``first_batch``."""
        part = self.tester.attack_shard(
            x, y, self.attack, self.epsilon, first_batch=first_batch, **self.params
        )
        return part.cpu()

    def merge_shards(self, parts: Sequence[Any]) -> RobustnessResult:
        """The result of the whole evaluation from its shards, in input order."""
        return self.tester.merge_robustness(self.attack, self.epsilon, parts)

    def adversarial_examples(self, x: Any, y: Any = None) -> torch.Tensor:
        """The attacked inputs (shape of ``x``), e.g. for adversarial retraining."""
        return self.tester.attack(x, y, self.attack, self.epsilon, **self.params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon}, backend={self.tester.backend!r})"


class FGSMAnalyzer(AttackAnalyzer):
    attack = "fgsm"


class PGDAnalyzer(AttackAnalyzer):
    attack = "pgd"


class PGDL2Analyzer(AttackAnalyzer):
    attack = "pgd_l2"


class SquareAnalyzer(AttackAnalyzer):
    attack = "square"


class GaussianNoiseAnalyzer(AttackAnalyzer):
    attack = "gaussian_noise"


class UniformNoiseAnalyzer(AttackAnalyzer):
    attack = "uniform_noise"


class AutoAttackAnalyzer:
    """AutoAttack (:meth:`AdversarialTester.evaluate`): ``epsilon``, ``norm`` (linf or l2),
    ``version`` (standard, rand, custom), ``attacks`` (for custom), ``options`` (per attack,
    e.g. ``{"square": {"n_queries": 1000}}``); other keys are the tester's (``device``,
    ``input_range``, ``batch_size``, ``seed``, ...). Returns an :class:`AutoAttackResult`."""

    def __init__(
        self,
        model: Any,
        *,
        epsilon: float = 0.1,
        norm: str = "linf",
        version: str = "standard",
        attacks: Sequence[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        **config: Any,
    ) -> None:
        tester_kw, rest = _split(dict(config))
        if rest:
            raise_unknown(
                rest,
                "autoattack",
                ("epsilon", "norm", "version", "attacks", "options", *_TESTER_KEYS),
            )
        self.epsilon = _check_positive(_check_epsilon(epsilon), "autoattack")
        self.norm, self.version = norm, version
        self.attacks = [attacks] if isinstance(attacks, str) else attacks
        self.options = options
        params = {"norm": norm, "version": version, "attacks": self.attacks, "options": options}
        _check_params("autoattack", params)
        self.tester = AdversarialTester(model, **tester_kw)
        _autoattack_plan(params, gradients=self.tester._resolved.has_gradients)

    def analyze(self, x: Any, y: Any = None) -> AutoAttackResult:
        return self.tester.evaluate(
            x,
            y,
            self.epsilon,
            norm=self.norm,
            version=self.version,
            attacks=self.attacks,
            options=self.options,
        )

    @property
    def shard_size(self) -> int:
        """Points per seeded batch: a shard holds whole batches (``ShardableAnalyzer``)."""
        return self.tester.batch_size

    def analyze_shard(self, x: Any, y: Any = None, *, first_batch: int = 0) -> EvaluationShard:
        """``analyze`` on whole batches starting at global batch ``first_batch``."""
        part = self.tester.evaluate_shard(
            x,
            y,
            self.epsilon,
            norm=self.norm,
            version=self.version,
            attacks=self.attacks,
            options=self.options,
            first_batch=first_batch,
        )
        return part.cpu()

    def merge_shards(self, parts: Sequence[Any]) -> AutoAttackResult:
        """The result of the whole evaluation from its shards, in input order."""
        return self.tester.merge_evaluation(parts)

    def adversarial_examples(self, x: Any, y: Any = None) -> torch.Tensor:
        """The attacked inputs (shape of ``x``); ``x`` where every attack failed."""
        params = {"norm": self.norm, "version": self.version, "attacks": self.attacks}
        return self.tester.attack(x, y, "autoattack", self.epsilon, options=self.options, **params)

    def __repr__(self) -> str:
        return (
            f"AutoAttackAnalyzer(version={self.version!r}, norm={self.norm!r}, "
            f"epsilon={self.epsilon}, backend={self.tester.backend!r})"
        )


class _SingleAttackAnalyzer(AutoAttackAnalyzer):
    """One attack of the AutoAttack ensemble, with the same per-sample result record: ``epsilon``,
    ``norm`` and the attack's options (``n_iter``, ``n_restarts``, ...) as keyword arguments."""

    attack: str = ""

    def __init__(
        self, model: Any, *, epsilon: float = 0.1, norm: str = "linf", **config: Any
    ) -> None:
        tester_kw, params = _split(dict(config))
        _check_params(self.attack, {**params, "norm": norm})
        super().__init__(
            model,
            epsilon=epsilon,
            norm=norm,
            version="custom",
            attacks=[self.attack],
            options={self.attack: params} if params else None,
            **tester_kw,
        )


class APGDCEAnalyzer(_SingleAttackAnalyzer):
    attack = "apgd_ce"


class APGDDLRAnalyzer(_SingleAttackAnalyzer):
    attack = "apgd_dlr"


class APGDTAnalyzer(_SingleAttackAnalyzer):
    attack = "apgd_t"


class FABTAnalyzer(_SingleAttackAnalyzer):
    attack = "fab_t"


class NoiseRobustnessAnalyzer:
    """``test_noise_robustness`` over ``noise_levels`` (``noise``: gaussian or uniform)."""

    def __init__(
        self,
        model: Any,
        *,
        noise_levels: Sequence[float] = (0.01, 0.05, 0.1),
        noise: str = "gaussian",
        n_trials: int = 1,
        **config: Any,
    ) -> None:
        tester_kw, rest = _split(dict(config))
        if rest:
            raise_unknown(rest, "noise", ("noise_levels", "noise", "n_trials", *_TESTER_KEYS))
        self.noise_levels, self.noise, self.n_trials = tuple(noise_levels), noise, n_trials
        self.tester = AdversarialTester(model, **tester_kw)

    def analyze(self, x: Any, y: Any = None) -> NoiseRobustnessResult:
        return self.tester.test_noise_robustness(
            x, y, self.noise_levels, noise=self.noise, n_trials=self.n_trials
        )


class RobustnessCurveAnalyzer:
    """``robustness_curve`` of ``attack`` over ``epsilons``."""

    def __init__(
        self,
        model: Any,
        *,
        epsilons: Sequence[float] = (0.0, 0.05, 0.1, 0.2),
        attack: str = "pgd",
        **config: Any,
    ) -> None:
        tester_kw, self.params = _split(dict(config))
        self.attack = _attack_name(attack)
        _check_params(self.attack, self.params)
        self.epsilons = tuple(epsilons)
        self.tester = AdversarialTester(model, **tester_kw)

    def analyze(self, x: Any, y: Any = None) -> RobustnessCurve:
        return self.tester.robustness_curve(x, y, self.epsilons, self.attack, **self.params)


def raise_unknown(extra: dict[str, Any], name: str, valid: Sequence[str]) -> None:
    from neuroplex.errors import ConfigError

    raise ConfigError(
        f"{name} does not take {sorted(extra)}; its options are {', '.join(valid)}",
        path=name,
    )
