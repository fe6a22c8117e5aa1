"""The ``adversarial`` Mechanic policy: "vulnerable at ε → adversarial training → re-export →
re-test", at most ``max_rounds`` times.

While the model is vulnerable to the test attack and rounds are left, it crafts adversarial
examples of a share of the training set with the training attack, fine-tunes the model on the
clean plus adversarial set, re-exports and re-verifies it, and tests it again. Every test is a
decision (``retrain``, ``stop: robust`` or ``stop: budget exhausted``) sent to the sinks and a
row of the report's "Mechanic: adversarial rounds" table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from neuroplex import ConfigError, PolicyContext, PolicyDecision, PolicyOutcome, create_analyzer
from neuroplex.protocols import AdversarialCrafter

__all__ = ["OPTIONS", "AdversarialPolicy"]

#: the options of ``[feedback.policies.options]`` and what they mean
OPTIONS: dict[str, str] = {
    "attack": "analyzer that tests the model (default fgsm)",
    "epsilon": "budget of the test attack (default 0.1)",
    "train_attack": "analyzer that crafts the training examples (default: attack)",
    "train_epsilon": "budget of the training attack (default: epsilon)",
    "ratio": "adversarial examples per training example (default 0.5)",
    "epochs": "fine-tuning epochs per round (default: half the training epochs, at least 1)",
    "learning_rate": "fine-tuning learning rate (default: the training one)",
    "backend": "onnx (the exported model, default) or torch, for the test",
    "n_samples": "test samples (default 512)",
    "attack_options": "extra options of the test attack, e.g. vulnerability_threshold",
    "train_attack_options": "extra options of the training attack, e.g. steps",
}


def _option(options: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = options.get(key, default)
    if value is None:
        return None
    try:
        if kind is dict:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected a table, got {type(value).__name__}")
            return dict(value)
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {key}={value!r} is invalid: {exc}") from None


class AdversarialPolicy:
    """``factory(max_rounds=3, **options)``; see :data:`OPTIONS`."""

    def __init__(self, *, max_rounds: int = 3, **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown option {unknown[0]!r} of policy 'adversarial'; options: "
                f"{', '.join(sorted(OPTIONS))}"
            )
        self.max_rounds = int(max_rounds)
        self.attack = _option(options, "attack", str, "fgsm")
        self.epsilon = _option(options, "epsilon", float, 0.1)
        self.train_attack = _option(options, "train_attack", str, self.attack)
        self.train_epsilon = _option(options, "train_epsilon", float, self.epsilon)
        self.ratio = _option(options, "ratio", float, 0.5)
        self.epochs: int | None = _option(options, "epochs", int, None)
        self.learning_rate: float | None = _option(options, "learning_rate", float, None)
        self.backend = _option(options, "backend", str, "onnx")
        if self.backend not in ("onnx", "torch"):
            raise ConfigError(f"option backend={self.backend!r} is invalid: use onnx or torch")
        self.n_samples = _option(options, "n_samples", int, 512)
        self.attack_options = _option(options, "attack_options", dict, {})
        self.train_attack_options = _option(options, "train_attack_options", dict, {})

    def apply(self, context: PolicyContext) -> PolicyOutcome:
        model = context.model
        decisions: list[PolicyDecision] = []
        retrained = False
        for round_ in range(self.max_rounds + 1):
            robustness = context.analyze(
                self.attack,
                model,
                options={**self.attack_options, "epsilon": self.epsilon},
                backend=self.backend,
                n_samples=self.n_samples,
                round=round_ + 1,
            )
            numbers = robustness.to_dict()
            vulnerable = bool(numbers.get("is_vulnerable"))
            entry = {
                "round": round_,
                "attack": self.attack,
                "epsilon": self.epsilon,
                "clean_accuracy": _number(numbers.get("clean_accuracy")),
                "robust_accuracy": _number(numbers.get("robust_accuracy")),
                "is_vulnerable": vulnerable,
            }
            if not vulnerable or round_ == self.max_rounds:
                action = "stop: robust" if not vulnerable else "stop: budget exhausted"
            else:
                action = "retrain"
            decision = PolicyDecision(
                policy=context.policy, action=action, round=round_, reason=entry
            )
            context.decide(decision)
            decisions.append(decision)
            if action != "retrain":
                break
            self._finetune(context, model, round_)
            retrained = True
            context.mechanic.flush()
        return PolicyOutcome(
            decisions=decisions,
            model=model if retrained else None,
            sections=_sections([d.row() for d in decisions]),
        )

    def _finetune(self, context: PolicyContext, model: torch.nn.Module, round_: int) -> None:
        """One round: craft ``ratio * len(train)`` adversarial examples of a seeded random
        subset, fine-tune on the clean plus adversarial set, re-export and re-verify."""
        x_train, y_train = (None if v is None else torch.as_tensor(v) for v in context.data.train)
        assert x_train is not None
        if y_train is None:
            raise ConfigError(
                "the adversarial policy needs labelled training data", path="feedback.policies"
            )
        model.eval()
        crafter = create_analyzer(
            self.train_attack,
            model,
            epsilon=self.train_epsilon,
            input_range=tuple(context.data.input_range),
            **self.train_attack_options,
        )
        if not isinstance(crafter, AdversarialCrafter):
            raise ConfigError(
                f"analyzer {self.train_attack!r} cannot craft adversarial examples (it has no "
                "adversarial_examples(x, y) method); choose an attack such as fgsm or pgd",
                path="feedback.policies.options.train_attack",
            )
        training = context.spec.training
        gen = torch.Generator().manual_seed(training.seed + 1000 + round_)
        n_adv = round(self.ratio * len(x_train))
        idx = torch.randperm(len(x_train), generator=gen)[:n_adv]
        x_adv = crafter.adversarial_examples(x_train[idx], y_train[idx])
        x_mix = torch.cat([x_train, torch.as_tensor(x_adv).to(x_train.dtype)])
        y_mix = torch.cat([y_train, y_train[idx]])
        epochs = self.epochs if self.epochs is not None else max(1, training.epochs // 2)
        lr = self.learning_rate if self.learning_rate is not None else training.learning_rate
        context.retrain(
            model,
            (x_mix, y_mix),
            tag=f"adversarial-round{round_ + 1}",
            run_subdir=f"round{round_ + 1}",
            epochs=epochs,
            learning_rate=lr,
            early_stopping_patience=None,
        )
        context.export(model)


def _number(value: Any) -> float | None:
    if isinstance(value, bool | int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _sections(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's rounds table and its robustness-per-round plot."""
    columns = ["round", "attack", "epsilon", "clean_accuracy", "robust_accuracy", "action"]
    return [
        {
            "type": "table",
            "title": "Mechanic: adversarial rounds",
            "columns": columns,
            "rows": [[r.get(c) for c in columns] for r in rows],
        },
        {
            "type": "lines",
            "title": "Robustness before and after retraining",
            "x": [r["round"] for r in rows],
            "series": {
                "robust_accuracy": [r.get("robust_accuracy") for r in rows],
                "clean_accuracy": [r.get("clean_accuracy") for r in rows],
            },
            "xlabel": "Mechanic round",
        },
    ]
