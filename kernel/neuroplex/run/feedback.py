"""Stage 6, feedback: the Mechanic's policies (e.g. ``adversarial``: while the model is
vulnerable, retrain on adversarial examples, re-export, re-verify, re-test), then every
analyzer once more on the final model when a policy acted."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.config import AnalyzerSpec, PolicyConfig, RunSpec
from neuroplex.errors import ConfigError
from neuroplex.mechanic import Mechanic, to_plain
from neuroplex.protocols import AdversarialCrafter
from neuroplex.records import DataSplits, ModelRecord
from neuroplex.registry import create_analyzer
from neuroplex.run.analyze import Analyzed, run_analyses
from neuroplex.run.data import _xy
from neuroplex.run.export import export_model
from neuroplex.run.train import _training_config, evaluate, train_model

__all__ = ["FedBack", "apply_policies", "feedback"]


@attrs.frozen(kw_only=True)
class FedBack:
    """The feedback stage's result: the analyze stage's, plus the policies' rounds and what
    they changed (final test metrics, verification report and analyses)."""

    analyzed: Analyzed
    rounds: list[dict[str, Any]]
    test_metrics: dict[str, float]
    verification: Any
    analyses: dict[str, Any]


def feedback(analyzed: Analyzed, mechanic: Mechanic) -> FedBack:
    exported = analyzed.exported
    built = exported.tested.trained.built
    spec = built.loaded.spec
    ctx = _Context(
        spec=spec,
        run_dir=built.loaded.run_dir,
        data=built.loaded.data,
        model=built.model,
        record=built.record,
        mechanic=mechanic,
        onnx_path=exported.onnx_path,
        verification=exported.verification,
    )
    test_metrics = exported.tested.test_metrics
    analyses = dict(analyzed.analyses)
    rounds = apply_policies(spec.feedback.policies, ctx)
    if ctx.history_rounds:
        test_metrics = ctx.history_rounds[-1]
        mechanic.record_performance(spec.model.name, test_metrics, step=len(rounds))
    if rounds:
        analyses.update(
            run_analyses(
                spec.analysis.analyzers,
                built.model,
                exported.onnx_path,
                built.loaded.data,
                mechanic,
                round_=len(rounds),
            )
        )
    return FedBack(
        analyzed=analyzed,
        rounds=rounds,
        test_metrics=test_metrics,
        verification=ctx.verification,
        analyses=analyses,
    )


# ----------------------------------------------------------------------------- policies
def apply_policies(
    policies: Sequence[PolicyConfig],
    context: _Context,
) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    for policy in policies:
        if policy.name != "adversarial":
            raise ConfigError(
                f"unknown policy {policy.name!r}; policies: adversarial",
                path="feedback.policies",
            )
        rounds.extend(adversarial_policy(policy, context))
    return rounds


def adversarial_policy(policy: PolicyConfig, ctx: _Context) -> list[dict[str, Any]]:
    """While the model is vulnerable and under budget: build an adversarial dataset, fine-tune,
    re-export, re-verify and re-test. Every round becomes a ``decision`` event.

    Options: ``attack`` (analyzer name, default ``fgsm``), ``epsilon``, ``train_attack``
    (analyzer used to craft training examples, default ``attack``), ``train_epsilon``
    (default ``epsilon``), ``ratio`` (adversarial share of the new training set), ``epochs``
    (fine-tuning epochs per round), ``learning_rate`` (default: the training one),
    ``attack_options`` (extra options of the test attack, e.g. ``vulnerability_threshold``),
    ``train_attack_options`` (extra options of the crafting attack, e.g. ``steps``),
    ``backend`` (``onnx`` or ``torch`` for the test) and ``n_samples`` (test samples).
    """
    opts = dict(policy.options)
    known = {
        "attack",
        "epsilon",
        "train_attack",
        "train_epsilon",
        "ratio",
        "epochs",
        "learning_rate",
        "backend",
        "n_samples",
        "attack_options",
        "train_attack_options",
    }
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r}; options: {', '.join(sorted(known))}",
            path=f"feedback.policies.{policy.name}.options",
        )
    attack = str(opts.get("attack", "fgsm"))
    epsilon = float(opts.get("epsilon", 0.1))
    train_attack = str(opts.get("train_attack", attack))
    train_epsilon = float(opts.get("train_epsilon", epsilon))
    ratio = float(opts.get("ratio", 0.5))
    epochs = int(opts.get("epochs", max(1, ctx.spec.training.epochs // 2)))
    backend = str(opts.get("backend", "onnx"))
    n_samples = int(opts.get("n_samples", 512))
    test_spec = AnalyzerSpec(
        name=attack,
        options={**dict(opts.get("attack_options", {})), "epsilon": epsilon},
        backend=backend,  # type: ignore[arg-type]
        n_samples=n_samples,
    )
    rounds: list[dict[str, Any]] = []
    for round_ in range(policy.max_rounds + 1):
        result = run_analyses(
            [test_spec], ctx.model, ctx.onnx_path, ctx.data, ctx.mechanic, round_=round_ + 1
        )
        robustness = next(iter(result.values()))
        rec = _numbers(robustness)
        vulnerable = bool(_get(robustness, "is_vulnerable"))
        entry = {
            "round": round_,
            "attack": attack,
            "epsilon": epsilon,
            "clean_accuracy": rec.get("clean_accuracy"),
            "robust_accuracy": rec.get("robust_accuracy"),
            "is_vulnerable": vulnerable,
        }
        if not vulnerable or round_ == policy.max_rounds:
            action = "stop: robust" if not vulnerable else "stop: budget exhausted"
            ctx.mechanic.record_decision(policy.name, action, entry, round=round_)
            entry["action"] = action
            rounds.append(entry)
            break
        ctx.mechanic.record_decision(policy.name, "retrain", entry, round=round_)
        entry["action"] = "retrain"
        rounds.append(entry)
        _adversarial_finetune(ctx, train_attack, train_epsilon, ratio, epochs, opts, round_)
        ctx.mechanic.flush()
    return rounds


def _adversarial_finetune(
    ctx: _Context,
    attack: str,
    epsilon: float,
    ratio: float,
    epochs: int,
    opts: Mapping[str, Any],
    round_: int,
) -> None:
    x_train, y_train = _xy(ctx.data.train)
    if y_train is None:
        raise ConfigError(
            "the adversarial policy needs labelled training data", path="feedback.policies"
        )
    ctx.model.eval()
    crafter = create_analyzer(
        attack,
        ctx.model,
        epsilon=epsilon,
        input_range=tuple(ctx.data.input_range),
        **dict(opts.get("train_attack_options", {})),
    )
    if not isinstance(crafter, AdversarialCrafter):
        raise ConfigError(
            f"analyzer {attack!r} cannot craft adversarial examples (it has no "
            "adversarial_examples(x, y) method); choose an attack such as fgsm or pgd",
            path="feedback.policies.options.train_attack",
        )
    gen = torch.Generator().manual_seed(ctx.spec.training.seed + 1000 + round_)
    n_adv = round(ratio * len(x_train))
    idx = torch.randperm(len(x_train), generator=gen)[:n_adv]
    x_adv = crafter.adversarial_examples(x_train[idx], y_train[idx])
    x_mix = torch.cat([x_train, torch.as_tensor(x_adv).to(x_train.dtype)])
    y_mix = torch.cat([y_train, y_train[idx]])
    lr = float(opts.get("learning_rate", ctx.spec.training.learning_rate))
    config = _training_config(
        ctx.spec,
        ctx.run_dir / f"round{round_ + 1}",
        epochs=epochs,
        learning_rate=lr,
        early_stopping_patience=None,
    )
    train_model(
        ctx.model,
        ctx.record,
        config,
        (x_mix, y_mix),
        ctx.data.val,
        resume=False,
        mechanic=ctx.mechanic,
        tag=f"adversarial-round{round_ + 1}",
    )
    ctx.history_rounds.append(evaluate(ctx.model, ctx.record, ctx.data.test))
    if ctx.onnx_path is not None:
        ctx.verification = export_model(ctx.model, ctx.record, ctx.spec, ctx.data, ctx.onnx_path)


def _get(result: Any, key: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(key)
    try:
        return result[key]
    except (KeyError, TypeError, IndexError):
        return getattr(result, key, None)


def _numbers(result: Any, prefix: str = "") -> dict[str, float]:
    """Numeric scalar leaves of a result, flattened with dotted keys."""
    plain = to_plain(result)
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            if math.isfinite(float(value)):
                out[key] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))

    walk(plain, prefix)
    return out


@attrs.define
class _Context:
    spec: RunSpec
    run_dir: Path
    data: DataSplits
    model: torch.nn.Module
    record: ModelRecord
    mechanic: Mechanic
    onnx_path: Path | None
    verification: Any = None
    history_rounds: list[dict[str, float]] = attrs.field(factory=list)
