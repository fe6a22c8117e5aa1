"""The ``adversarial`` Mechanic policy: "vulnerable under an attack at ε → adversarial training →
re-export → re-test", at most ``max_rounds`` times, keeping the most robust model.

Every number it decides on comes from the **validation** split (the test split stays unseen
until the final check): each round tests the model with ``attack`` (default ``apgd_ce``) at
``epsilon`` on the validation split; while it is vulnerable (robust accuracy below
``vulnerability_threshold`` × clean accuracy, or below ``target`` when given) and rounds are
left, it retrains the model adversarially — ``training = "pgd"`` (PGD adversarial training,
every batch attacked against the current weights), ``"trades"`` (TRADES with ``beta``) or
``"static"`` (examples crafted once by ``train_attack``, mixed into the clean set by ``ratio``)
— measuring validation robust accuracy after every ``select_every``-th epoch and keeping the
best checkpoint (of every round, the starting model included), then re-exports and re-verifies
it. The final check runs ``final_attack`` (default ``autoattack``) on the test split once. Every
test is a decision (``retrain``, ``stop: robust``, ``stop: budget exhausted``, ``final check``)
sent to the sinks and a row of the report's "Mechanic: adversarial rounds" table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from neuroplex import ConfigError, PolicyContext, PolicyDecision, PolicyOutcome, create_analyzer
from neuroplex.protocols import AdversarialCrafter
from neuroplex_attacks.training import METHODS, AdversarialStep, BestRobustCheckpoint

__all__ = ["OPTIONS", "AdversarialPolicy"]

#: the options of ``[feedback.policies.options]`` and what they mean
OPTIONS: dict[str, str] = {
    "attack": "analyzer that tests the model on the validation split (default apgd_ce)",
    "epsilon": "budget of the test attack (default 0.1)",
    "attack_options": "extra options of the test attack, e.g. n_iter",
    "vulnerability_threshold": "vulnerable while robust < threshold x clean (default 0.85)",
    "target": "vulnerable while robust accuracy < target (replaces the threshold rule)",
    "training": "pgd (PGD adversarial training, default), trades, or static",
    "train_epsilon": "budget of the training attack (default: epsilon)",
    "train_steps": "attack steps per training batch (default 7)",
    "step_size": "training attack step, a fraction of train_epsilon (default 0.25)",
    "beta": "TRADES weight of the robust KL term (default 6)",
    "ramp_epochs": "epochs over which the training budget ramps up to train_epsilon (default 0)",
    "shift": "augment training images by random translations of up to N pixels (default 0)",
    "image_shape": "[H, W] of flat image inputs, for shift",
    "train_attack": "static: analyzer that crafts the training examples (default pgd)",
    "train_attack_options": "static: extra options of the training attack, e.g. steps",
    "ratio": "static: adversarial examples per training example (default 0.5)",
    "epochs": "adversarial training epochs per round (default: the training epochs)",
    "learning_rate": "learning rate of the retraining (default: the training one)",
    "select_every": "measure validation robust accuracy every N epochs (default 1)",
    "select_options": "options of the attack for the per-epoch selection (apgd: n_iter 20)",
    "min_clean_accuracy": "checkpoints below this validation clean accuracy are not kept",
    "final_attack": "analyzer of the final check on the test split (default autoattack; "
    "false: none)",
    "final_options": "extra options of the final attack",
    "backend": "onnx (the exported model, default) or torch, for the tests",
    "n_samples": "validation and test points (default: all)",
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
        self.attack = _option(options, "attack", str, "apgd_ce")
        self.epsilon = _option(options, "epsilon", float, 0.1)
        if not self.epsilon > 0:
            raise ConfigError(f"option epsilon={self.epsilon!r} is invalid: it must be > 0")
        self.attack_options = _option(options, "attack_options", dict, {})
        self.threshold = _option(
            options,
            "vulnerability_threshold",
            float,
            self.attack_options.pop("vulnerability_threshold", 0.85),
        )
        self.target: float | None = _option(options, "target", float, None)
        self.training = _option(options, "training", str, "pgd")
        if self.training not in (*METHODS, "static"):
            raise ConfigError(
                f"option training={self.training!r} is invalid: use pgd, trades or static"
            )
        self.train_epsilon = _option(options, "train_epsilon", float, self.epsilon)
        self.train_steps = _option(options, "train_steps", int, 7)
        self.step_size = _option(options, "step_size", float, 0.25)
        self.beta = _option(options, "beta", float, 6.0)
        if self.beta < 0 or self.train_steps < 1 or self.step_size <= 0:
            raise ConfigError(
                "options beta >= 0, train_steps >= 1 and step_size > 0 are required, got "
                f"{self.beta}, {self.train_steps}, {self.step_size}"
            )
        self.ramp_epochs = _option(options, "ramp_epochs", int, 0)
        self.shift = _option(options, "shift", int, 0)
        if self.shift < 0 or self.ramp_epochs < 0:
            raise ConfigError(
                f"options shift and ramp_epochs must be >= 0, got {self.shift}, {self.ramp_epochs}"
            )
        shape = options.get("image_shape")
        if shape is not None and (
            not isinstance(shape, list | tuple)
            or len(shape) != 2
            or not all(isinstance(v, int) and v > 0 for v in shape)
        ):
            raise ConfigError(f"option image_shape={shape!r} is invalid: give [H, W], e.g. [8, 8]")
        self.image_shape: tuple[int, int] | None = None if shape is None else (shape[0], shape[1])
        self.train_attack = _option(options, "train_attack", str, "pgd")
        self.train_attack_options = _option(options, "train_attack_options", dict, {})
        self.ratio = _option(options, "ratio", float, 0.5)
        self.epochs: int | None = _option(options, "epochs", int, None)
        self.learning_rate: float | None = _option(options, "learning_rate", float, None)
        self.select_every = _option(options, "select_every", int, 1)
        default_select = {"n_iter": 20} if self.attack.startswith("apgd") else {}
        self.select_options = _option(options, "select_options", dict, default_select)
        self.min_clean = _option(options, "min_clean_accuracy", float, 0.0)
        final = options.get("final_attack", "autoattack")
        self.final_attack: str | None = None if final is False else _option(
            options, "final_attack", str, "autoattack"
        )  # fmt: skip
        self.final_options = _option(options, "final_options", dict, {})
        self.backend = _option(options, "backend", str, "onnx")
        if self.backend not in ("onnx", "torch"):
            raise ConfigError(f"option backend={self.backend!r} is invalid: use onnx or torch")
        self.n_samples: int | None = _option(options, "n_samples", int, None)

    def apply(self, context: PolicyContext) -> PolicyOutcome:
        model = context.model
        decisions: list[PolicyDecision] = []
        keeper = BestRobustCheckpoint(
            self._selection(context), every=self.select_every, min_clean=self.min_clean
        )
        if self.training != "static":
            keeper.offer(model, "start")
        retrained = False
        for round_ in range(self.max_rounds + 1):
            started = time.perf_counter()
            entry = self._test(context, model, round_, "val", self.attack, self.attack_options)
            vulnerable = self._vulnerable(entry)
            entry["is_vulnerable"] = vulnerable
            entry["seconds"] = round(time.perf_counter() - started, 3)
            if not vulnerable or round_ == self.max_rounds:
                action = "stop: robust" if not vulnerable else "stop: budget exhausted"
            else:
                action = "retrain"
            decisions.append(self._decide(context, action, round_, entry))
            if action != "retrain":
                break
            started = time.perf_counter()
            keeper.tag = f"round {round_ + 1} "
            self._retrain(context, model, round_, keeper)
            retrained = True
            context.mechanic.flush()
        if self.final_attack is not None:
            started = time.perf_counter()
            entry = self._test(
                context, model, len(decisions), "test", self.final_attack, self.final_options
            )
            entry["kept"] = keeper.best_tag or "last"
            entry["seconds"] = round(time.perf_counter() - started, 3)
            decisions.append(self._decide(context, "final check", len(decisions), entry))
        return PolicyOutcome(
            decisions=decisions,
            model=model if retrained else None,
            sections=_sections([d.row() for d in decisions], keeper.history),
        )

    # ------------------------------------------------------------------ steps
    def _test(
        self,
        context: PolicyContext,
        model: torch.nn.Module,
        round_: int,
        split: str,
        attack: str,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        n = self.n_samples if self.n_samples is not None else 1 << 30
        numbers = context.analyze(
            attack,
            model,
            options={**options, "epsilon": self.epsilon},
            backend=self.backend,
            n_samples=n,
            round=round_ + 1,
            split=split,
        ).to_dict()
        return {
            "round": round_,
            "split": split,
            "attack": attack,
            "epsilon": self.epsilon,
            "n": numbers.get("n_samples"),
            "clean_accuracy": _number(numbers.get("clean_accuracy")),
            "robust_accuracy": _number(numbers.get("robust_accuracy")),
        }

    def _vulnerable(self, entry: Mapping[str, Any]) -> bool:
        clean, robust = entry["clean_accuracy"], entry["robust_accuracy"]
        if clean is None or robust is None:
            return False
        if self.target is not None:
            return bool(robust < self.target)
        return bool(clean > 0 and robust < self.threshold * clean)

    @staticmethod
    def _decide(
        context: PolicyContext, action: str, round_: int, entry: dict[str, Any]
    ) -> PolicyDecision:
        decision = PolicyDecision(policy=context.policy, action=action, round=round_, reason=entry)
        context.decide(decision)
        return decision

    def _selection(self, context: PolicyContext) -> Any:
        """``measure(model) -> (clean, robust)`` on the validation split (the torch model)."""
        x_val, y_val = (None if v is None else torch.as_tensor(v) for v in context.data.val)
        if self.n_samples is not None and x_val is not None:
            x_val = x_val[: self.n_samples]
            y_val = None if y_val is None else y_val[: self.n_samples]

        def measure(model: torch.nn.Module) -> tuple[float, float]:
            if x_val is None or y_val is None or len(x_val) == 0:
                return 0.0, 0.0
            analyzer = create_analyzer(
                self.attack,
                model,
                epsilon=self.epsilon,
                input_range=tuple(context.data.input_range),
                **{**self.attack_options, **self.select_options},
            )
            numbers = analyzer.analyze(x_val, y_val).to_dict()
            return float(numbers["clean_accuracy"]), float(numbers["robust_accuracy"])

        return measure

    def _retrain(
        self,
        context: PolicyContext,
        model: torch.nn.Module,
        round_: int,
        keeper: BestRobustCheckpoint,
    ) -> None:
        """One round of adversarial training, then re-export and re-verify."""
        x_train, y_train = (None if v is None else torch.as_tensor(v) for v in context.data.train)
        assert x_train is not None
        if y_train is None:
            raise ConfigError(
                "the adversarial policy needs labelled training data", path="feedback.policies"
            )
        training = context.spec.training
        epochs = self.epochs if self.epochs is not None else training.epochs
        lr = self.learning_rate if self.learning_rate is not None else training.learning_rate
        tag, subdir = f"adversarial-round{round_ + 1}", f"round{round_ + 1}"
        if self.training == "static":
            x_mix, y_mix = self._static_set(context, model, x_train, y_train, round_)
            context.retrain(
                model, (x_mix, y_mix), tag=tag, run_subdir=subdir, epochs=epochs,
                learning_rate=lr, early_stopping_patience=None,
            )  # fmt: skip
        else:
            batches = math.ceil(len(x_train) / max(1, training.batch_size))
            lo, hi = context.data.input_range
            step = AdversarialStep(
                method=self.training,
                epsilon=self.train_epsilon,
                input_range=(float(lo), float(hi)),
                steps=self.train_steps,
                step_size=self.step_size,
                beta=self.beta,
                ramp_steps=self.ramp_epochs * batches,
                shift=self.shift,
                image_shape=self.image_shape,
                seed=training.seed + 1000 + round_,
            )
            context.retrain(
                model, (x_train, y_train), tag=tag, run_subdir=subdir, step=step,
                callbacks=[keeper], epochs=epochs, learning_rate=lr,
                early_stopping_patience=None,
            )  # fmt: skip
            keeper.restore(model)  # the best validation checkpoint so far, of any round
        context.export(model)

    def _static_set(
        self,
        context: PolicyContext,
        model: torch.nn.Module,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        round_: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean set plus ``ratio × len(train)`` examples of a seeded random subset
        crafted once by ``train_attack``."""
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
        gen = torch.Generator().manual_seed(context.spec.training.seed + 1000 + round_)
        n_adv = round(self.ratio * len(x_train))
        idx = torch.randperm(len(x_train), generator=gen)[:n_adv]
        x_adv = crafter.adversarial_examples(x_train[idx], y_train[idx])
        x_mix = torch.cat([x_train, torch.as_tensor(x_adv).to(x_train.dtype)])
        return x_mix, torch.cat([y_train, y_train[idx]])


def _number(value: Any) -> float | None:
    if isinstance(value, bool | int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _sections(
    rows: list[dict[str, Any]], checkpoints: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The report's rounds table, its robustness-per-round plot and the checkpoints table."""
    columns = [
        "round", "split", "attack", "epsilon", "n", "clean_accuracy", "robust_accuracy",
        "seconds", "action",
    ]  # fmt: skip
    tests = [r for r in rows if r.get("split") == "val"]
    sections: list[dict[str, Any]] = [
        {
            "type": "table",
            "title": "Mechanic: adversarial rounds",
            "columns": columns,
            "rows": [[r.get(c) for c in columns] for r in rows],
        },
        {
            "type": "lines",
            "title": "Validation robustness before and after retraining",
            "x": [r["round"] for r in tests],
            "series": {
                "robust_accuracy": [r.get("robust_accuracy") for r in tests],
                "clean_accuracy": [r.get("clean_accuracy") for r in tests],
            },
            "xlabel": "Mechanic round",
        },
    ]
    if checkpoints:
        sections.append(
            {
                "type": "table",
                "title": "Mechanic: checkpoint selection (validation split)",
                "columns": ["checkpoint", "val_clean", "val_robust"],
                "rows": [[c["checkpoint"], c["val_clean"], c["val_robust"]] for c in checkpoints],
            }
        )
    return sections
