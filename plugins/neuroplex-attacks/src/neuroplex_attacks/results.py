"""Frozen result records of the adversarial tester (each also readable as ``result["key"]``)."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch.utils.data import TensorDataset

from neuroplex.ranges import InputRange

__all__ = [
    "AdversarialDataset",
    "AutoAttackResult",
    "NoiseRobustnessResult",
    "RobustnessCurve",
    "RobustnessResult",
]

VULNERABILITY_RULE = "robust_accuracy < vulnerability_threshold * clean_accuracy"


class _Keyed:
    """``record["key"]``, ``"key" in record``, ``record.keys()`` over ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        data = self.to_dict()
        if key not in data:
            raise KeyError(f"{key!r}; keys: {', '.join(data)}")
        return data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@attrs.frozen(kw_only=True)
class RobustnessResult(_Keyed):
    """Accuracy of a classifier under one attack at one ``epsilon``.

    Attributes:
        attack_type: the attack (``fgsm``, ``pgd``, ``pgd_l2``, ``square``, ``gaussian_noise``,
            ``uniform_noise``).
        norm: ``"linf"``, ``"l2"`` or ``"gaussian"`` (noise std, no bound); see
            :data:`~neuroplex_attacks.attacks.ATTACK_NORMS`.
        epsilon: the perturbation budget in input units (checked: every perturbation is
            within it, and every adversarial input inside ``input_range``).
        clean_accuracy: fraction of all samples classified correctly without attack.
        robust_accuracy: fraction of all samples classified correctly under attack.
        attack_success_rate: among the ``n_correct`` clean-correct samples, the fraction the
            attack makes misclassified (``0.0`` when ``n_correct == 0``).
        mean_linf, mean_l2: mean over samples of ``‖x_adv − x‖∞`` and ``‖x_adv − x‖₂``
            (per-sample norms over all features).
        n_samples, n_correct: batch size and clean-correct count.
        is_vulnerable: ``robust_accuracy < vulnerability_threshold × clean_accuracy`` (the
            attack removes more than ``1 − threshold`` of the clean accuracy); never true when
            ``clean_accuracy == 0``.
        vulnerability_threshold, vulnerability_rule: the threshold and the rule above.
        input_range: ``(min, max)`` the adversarial inputs are clipped to, or per channel
            ``((min_0, ...), (max_0, ...))`` (:mod:`neuroplex.ranges`).
        params: the attack's settings (``steps``, ``alpha``, ``seed``, ...).
        backend, tier: the engine (``"torch"``/``"torch"``; ``"onnx"``/``"gradients"`` or
            ``"forward_only"``).
    """

    attack_type: str
    norm: str
    epsilon: float
    clean_accuracy: float
    robust_accuracy: float
    attack_success_rate: float
    mean_linf: float
    mean_l2: float
    n_samples: int
    n_correct: int
    is_vulnerable: bool
    vulnerability_threshold: float
    vulnerability_rule: str = VULNERABILITY_RULE
    input_range: InputRange = (0.0, 1.0)
    params: dict[str, Any] = attrs.field(factory=dict)
    backend: str = "torch"
    tier: str = "torch"

    def robustness_rows(self) -> list[dict[str, Any]]:
        """The run's robustness-table row (``neuroplex.protocols.RobustnessReporter``): a
        single attack is ``weaker`` than AutoAttack; noise (no adversary) gives no row."""
        if self.norm not in ("linf", "l2"):
            return []
        return [
            {
                "attack": self.attack_type,
                "epsilon": self.epsilon,
                "norm": self.norm,
                "n": self.n_samples,
                "backend": f"{self.backend}/{self.tier}",
                "clean_accuracy": self.clean_accuracy,
                "robust_accuracy": self.robust_accuracy,
                "strength": "weaker",
            }
        ]

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html`` (see :mod:`neuroplex.report`)."""
        keys = (
            "clean_accuracy",
            "robust_accuracy",
            "attack_success_rate",
            "mean_linf",
            "mean_l2",
            "is_vulnerable",
            "vulnerability_threshold",
            "n_samples",
        )
        rows = [[k, getattr(self, k)] for k in keys]
        rows.append(["engine", f"{self.backend}/{self.tier}"])
        return [
            {
                "type": "table",
                "title": f"{self.attack_type} at epsilon {self.epsilon:g}",
                "columns": ["quantity", "value"],
                "rows": rows,
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["input_range"] = [list(v) if isinstance(v, tuple) else v for v in self.input_range]
        data["params"] = _plain(self.params)
        return data


@attrs.frozen(kw_only=True)
class RobustnessCurve(_Keyed):
    """Robust accuracy over increasing budgets.

    Attributes:
        attack_type, norm: as in :class:`RobustnessResult`.
        epsilons: the budgets, ascending.
        robust_accuracy: per budget ``ε_k``, the fraction of samples classified correctly
            under the attacks at *every* budget ``ε_j ≤ ε_k`` (a perturbation found within
            ``ε_j`` also lies within ``ε_k``), hence non-increasing by construction.
        per_epsilon_accuracy: per budget, the accuracy under that budget's attack alone.
        clean_accuracy: without attack.
        results: one :class:`RobustnessResult` per budget.
    """

    attack_type: str
    norm: str
    epsilons: tuple[float, ...]
    robust_accuracy: tuple[float, ...]
    per_epsilon_accuracy: tuple[float, ...]
    clean_accuracy: float
    results: tuple[RobustnessResult, ...]
    backend: str = "torch"
    tier: str = "torch"

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html`` (see :mod:`neuroplex.report`)."""
        return [
            {
                "type": "lines",
                "title": f"robust accuracy under {self.attack_type}",
                "x": list(self.epsilons),
                "xlabel": "epsilon",
                "ylabel": "accuracy",
                "series": {
                    "robust_accuracy": list(self.robust_accuracy),
                    "per_epsilon_accuracy": list(self.per_epsilon_accuracy),
                },
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack_type": self.attack_type,
            "norm": self.norm,
            "epsilons": list(self.epsilons),
            "robust_accuracy": list(self.robust_accuracy),
            "per_epsilon_accuracy": list(self.per_epsilon_accuracy),
            "clean_accuracy": self.clean_accuracy,
            "results": [r.to_dict() for r in self.results],
            "backend": self.backend,
            "tier": self.tier,
        }


@attrs.frozen(kw_only=True)
class NoiseRobustnessResult(_Keyed):
    """Accuracy under random input noise per noise level.

    Attributes:
        noise: ``"gaussian"`` (level = standard deviation) or ``"uniform"`` (level = half-width).
        noise_levels: the levels, as given.
        accuracy: per level, accuracy averaged over ``n_trials`` noise draws.
        accuracy_drop: per level, ``clean_accuracy − accuracy``.
        clean_accuracy: without noise.
        n_trials, seed: trial ``t`` draws its noise from ``seed + t`` (the same draw scaled
            across levels, so levels are compared on common random numbers).
        n_samples, input_range, backend, tier: as in :class:`RobustnessResult`.
    """

    noise: str
    noise_levels: tuple[float, ...]
    accuracy: tuple[float, ...]
    accuracy_drop: tuple[float, ...]
    clean_accuracy: float
    n_trials: int
    seed: int
    n_samples: int
    input_range: InputRange = (0.0, 1.0)
    backend: str = "torch"
    tier: str = "torch"

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html`` (see :mod:`neuroplex.report`)."""
        return [
            {
                "type": "lines",
                "title": f"accuracy under {self.noise} noise",
                "x": list(self.noise_levels),
                "xlabel": "noise level",
                "ylabel": "accuracy",
                "series": {"accuracy": list(self.accuracy)},
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in attrs.asdict(self, recurse=False).items()}

    def by_level(self) -> dict[float, float]:
        """``{noise_level: accuracy}``."""
        return dict(zip(self.noise_levels, self.accuracy, strict=True))


@attrs.frozen(kw_only=True)
class AutoAttackResult(_Keyed):
    """Robust accuracy under AutoAttack (or any sequence of attacks), with per-sample detail.

    Each attack runs on the points every earlier one left classified correctly, so the robust
    accuracy is the fraction of all ``n_samples`` points that are classified correctly and that
    no attack within ``epsilon`` (in ``norm``) misclassifies. It is an upper bound on the true
    robust accuracy; the stronger the attacks, the tighter (read it next to weaker attacks' as
    "those overstate robustness by the difference").

    Attributes:
        attack: ``"autoattack"`` or the single attack evaluated (``apgd_ce``, ...).
        version: ``"standard"``, ``"rand"`` or ``"custom"``.
        attacks: the attacks run, in order; ``skipped``: ``{attack: why}`` for attacks of the
            version that could not run (the gradient attacks on a forward-only ONNX file).
        norm, epsilon: the threat model (``"linf"`` or ``"l2"`` ball of radius ``epsilon`` in
            input units, intersected with ``input_range``).
        n_samples, n_correct: points evaluated and points classified correctly without attack.
        clean_accuracy, robust_accuracy: fractions of ``n_samples``.
        robust_accuracy_after: ``{attack: robust accuracy once it and all earlier ones ran}``
            (non-increasing in run order).
        clean_correct, robust: per-sample flags (tuples of bool, input order).
        broken_by: per sample, ``""`` if robust, ``"clean"`` if misclassified without attack,
            else the attack that found its adversarial example.
        linf, l2: per-sample ``‖x_adv − x‖∞`` and ``‖x_adv − x‖₂`` (0 where nothing was
            found); ``max_perturbation`` is the largest in ``norm`` (checked ≤ ``epsilon``).
        params: ``{attack: its parameters}``; ``seed``: batch ``b`` ran with ``seed + b``.
        seconds: total wall time; ``attack_seconds``: ``{attack: wall time}``.
        input_range, backend, tier: as in :class:`RobustnessResult`.
    """

    attack: str
    version: str
    attacks: tuple[str, ...]
    norm: str
    epsilon: float
    n_samples: int
    n_correct: int
    clean_accuracy: float
    robust_accuracy: float
    robust_accuracy_after: dict[str, float]
    clean_correct: tuple[bool, ...]
    robust: tuple[bool, ...]
    broken_by: tuple[str, ...]
    linf: tuple[float, ...]
    l2: tuple[float, ...]
    max_perturbation: float
    params: dict[str, dict[str, Any]]
    seed: int
    seconds: float
    attack_seconds: dict[str, float]
    skipped: dict[str, str] = attrs.field(factory=dict)
    batch_size: int = 0
    input_range: InputRange = (0.0, 1.0)
    backend: str = "torch"
    tier: str = "torch"

    @property
    def is_reference(self) -> bool:
        """AutoAttack's standard version with every attack run: the figure the field reports."""
        return self.attack == "autoattack" and self.version == "standard" and not self.skipped

    def robustness_rows(self) -> list[dict[str, Any]]:
        """The run's robustness-table row (``neuroplex.protocols.RobustnessReporter``):
        ``reference`` for the complete standard AutoAttack, else ``weaker`` (one attack of
        the ensemble, another version, or attacks skipped on a forward-only model)."""
        attack = self.attack if self.attack != "autoattack" else f"autoattack ({self.version})"
        if self.skipped:
            attack += f", skipped {', '.join(self.skipped)}"
        return [
            {
                "attack": attack,
                "epsilon": self.epsilon,
                "norm": self.norm,
                "n": self.n_samples,
                "backend": f"{self.backend}/{self.tier}",
                "clean_accuracy": self.clean_accuracy,
                "robust_accuracy": self.robust_accuracy,
                "strength": "reference" if self.is_reference else "weaker",
            }
        ]

    def broken_counts(self) -> dict[str, int]:
        """``{attack: points it broke}`` in run order (points robust to the earlier ones)."""
        return {a: sum(1 for b in self.broken_by if b == a) for a in self.attacks}

    def summary(self) -> str:
        """One line: attack, threat model, n, backend and the two accuracies."""
        return (
            f"{self.attack} ({self.version}) {self.norm} eps={self.epsilon:g} "
            f"n={self.n_samples} [{self.backend}/{self.tier}]: clean {self.clean_accuracy:.4f}, "
            f"robust {self.robust_accuracy:.4f}"
        )

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html`` (see :mod:`neuroplex.report`)."""
        counts = self.broken_counts()
        rows: list[list[Any]] = [
            ["clean", "", self.clean_accuracy, self.n_samples - self.n_correct, ""]
        ]
        for name in self.attacks:
            rows.append(
                [
                    name,
                    "",
                    self.robust_accuracy_after[name],
                    counts[name],
                    round(self.attack_seconds[name], 3),
                ]
            )
        for name, why in self.skipped.items():
            rows.append([name, f"skipped: {why}", "", "", ""])
        title = (
            f"{self.attack} ({self.version}), {self.norm} epsilon {self.epsilon:g}, "
            f"n={self.n_samples}, {self.backend}/{self.tier}: robust accuracy "
            f"{self.robust_accuracy:.4f}"
        )
        return [
            {
                "type": "table",
                "title": title,
                "columns": ["attack", "note", "accuracy after", "points broken", "seconds"],
                "rows": rows,
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in attrs.asdict(self, recurse=False).items()}


class AdversarialDataset(TensorDataset):
    """A ``TensorDataset`` of ``(x, y)`` pairs mixing clean and adversarial inputs.

    Items are ``(x_i, y_i)`` exactly like the clean dataset (labels are the true labels), so it
    drops into any ``DataLoader`` and training loop. ``is_adversarial`` (bool, ``(N,)``) marks
    the replaced samples; ``attack`` and ``epsilon`` say how they were made.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        is_adversarial: torch.Tensor,
        *,
        attack: str,
        epsilon: float,
    ) -> None:
        super().__init__(x, y)
        self.is_adversarial = is_adversarial
        self.attack = attack
        self.epsilon = epsilon

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1]

    @property
    def adversarial_fraction(self) -> float:
        return float(self.is_adversarial.float().mean())

    def __repr__(self) -> str:
        return (
            f"AdversarialDataset(n={len(self)}, attack={self.attack!r}, epsilon={self.epsilon}, "
            f"adversarial_fraction={self.adversarial_fraction:.3f})"
        )
