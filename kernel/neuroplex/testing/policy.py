"""Conformance checks for Mechanic policies (:class:`~neuroplex.records.PolicyRecord`).

Every check builds the policy as a run does, ``factory(max_rounds=1, **example_config)``, and
applies it to the canonical context (:func:`canonical_context`): the canonical tiny classifier
of :mod:`neuroplex.testing.analyzer` (``(N, 8)`` inputs in [0, 1], 3 classes) with 24 seeded
samples split 12/6/6 into train/val/test, trained by 100 steps of full-batch SGD (lr 0.5) on
the train split, its test metrics (``loss``, ``accuracy``), no
analyses yet, a Mechanic without sinks, and kernel functions that need no other plugin:

* ``analyze(name, model, ...)`` builds the named analyzer from the registry and runs it on the
  test split (``split="val"``: the val split) of the torch model (the kit exports nothing:
  ``backend`` is ignored);
* ``retrain(model, (x, y), ...)`` runs plain full-batch SGD for ``epochs`` epochs at
  ``learning_rate``, on cross-entropy or through ``step.train_step`` when a ``step`` is given
  (``callbacks`` and other training changes are ignored), and returns ``None`` (no History);
* ``evaluate(model)`` gives ``loss`` and ``accuracy`` on the test split;
* ``export(model)`` returns ``None`` (export disabled, ``onnx_path`` is ``None``).

The checks:

* the factory builds an object with ``apply(context)`` and refuses an unknown option with a
  :class:`~neuroplex.ConfigError` naming it;
* ``apply`` returns a :class:`~neuroplex.PolicyOutcome` with at least one
  :class:`~neuroplex.PolicyDecision` of this policy, plain-JSON reasons, report sections with
  a ``type`` and a ``title``, a one-line ``rejection`` or ``None``, a ``torch.nn.Module`` or
  ``None`` as ``model``;
* a policy that returns no model leaves the context's model unchanged (weights and flags);
* the same context gives the same decisions (policies are deterministic; a reason's
  ``seconds``, its wall-clock time, is not compared).

torch is imported inside the functions: importing ``neuroplex`` never imports torch.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroplex.errors import ConfigError
from neuroplex.protocols import Policy, PolicyContext, PolicyDecision, PolicyOutcome
from neuroplex.records import DataSplits, ModelRecord, PolicyRecord

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "CHECKS",
    "canonical_context",
    "canonical_splits",
    "check_apply_returns_outcome",
    "check_builds_from_example_config",
    "check_decisions_are_deterministic",
    "check_model_unchanged_unless_returned",
    "check_unknown_option_is_config_error",
]

_BOGUS = "neuroplex_conformance_no_such_option"


def canonical_splits() -> DataSplits:
    """24 seeded samples of 8 features in [0, 1], labels 0..2 (each class in every split)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 8, generator=gen)
    y = torch.arange(24, dtype=torch.int64) % 3
    return DataSplits(
        train=(x[:12], y[:12]),
        val=(x[12:18], y[12:18]),
        test=(x[18:], y[18:]),
        input_shape=(8,),
        num_classes=3,
        input_range=(0.0, 1.0),
        name="canonical",
    )


def _sgd(
    model: torch.nn.Module, train: tuple[Any, Any], epochs: int, lr: float, step: Any = None
) -> None:
    import torch

    x, y = (torch.as_tensor(v) for v in train)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def optimize(group: str, loss: torch.Tensor) -> None:
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    model.train()
    for _ in range(int(epochs)):
        optimizer.zero_grad()
        if step is not None:
            step.train_step(model, (x, y), optimize)
        else:
            optimize("model", torch.nn.functional.cross_entropy(model(x), y))
    model.eval()


@contextmanager
def canonical_context(policy: str) -> Iterator[PolicyContext]:
    """The canonical context for a policy named ``policy`` (see the module doc); its
    Mechanic and run directory live until the ``with`` block ends."""
    from neuroplex.config import DataConfig, ExportConfig, ModelConfig, RunSpec, TrainingConfig
    from neuroplex.mechanic import Mechanic
    from neuroplex.registry import create_analyzer
    from neuroplex.testing.analyzer import canonical_model
    from neuroplex.training import evaluate

    data = canonical_splits()
    spec = RunSpec(
        data=DataConfig(name="canonical"),
        model=ModelConfig(name="canonical"),
        training=TrainingConfig(epochs=2, batch_size=12, learning_rate=0.1, device="cpu"),
        export=ExportConfig(enabled=False),
        name="conformance",
    )
    model = canonical_model()
    _sgd(model, data.train, 100, 0.5)  # a trained model, as a run's policies get one
    with tempfile.TemporaryDirectory() as tmp:
        mechanic = Mechanic([], run_id="conformance", spool_dir=Path(tmp) / "spool")

        def analyze(
            name: str,
            model: Any,
            *,
            options: Mapping[str, Any] | None = None,
            backend: str = "onnx",
            n_samples: int = 256,
            round: int = 0,
            split: str = "test",
        ) -> Any:
            config = {"input_range": data.input_range, **dict(options or {})}
            x, y = data.val if split == "val" else data.test
            result = create_analyzer(name, model, **config).analyze(x[:n_samples], y[:n_samples])
            mechanic.record_analysis(name, result, step=round)
            return result

        def retrain(
            model: Any,
            train: tuple[Any, Any],
            *,
            tag: str,
            run_subdir: str,
            step: Any = None,
            callbacks: Sequence[Any] = (),
            **changes: Any,
        ) -> Any:
            epochs = changes.get("epochs", spec.training.epochs)
            lr = changes.get("learning_rate", spec.training.learning_rate)
            _sgd(model, train, epochs, lr, step)
            return None

        def decide(decision: PolicyDecision) -> None:
            mechanic.record_decision(
                decision.policy, decision.action, decision.reason, round=decision.round
            )

        try:
            yield PolicyContext(
                policy=policy,
                spec=spec,
                run_dir=Path(tmp),
                data=data,
                model=model,
                model_record=ModelRecord(
                    name="canonical", factory=canonical_model, summary="the canonical classifier"
                ),
                test_metrics=evaluate(model, data.test),
                analyses={},
                mechanic=mechanic,
                onnx_path=None,
                analyze=analyze,
                retrain=retrain,
                evaluate=lambda m: evaluate(m, data.test),
                export=lambda m: None,
                decide=decide,
            )
        finally:
            mechanic.close()


def _who(record: PolicyRecord) -> str:
    factory = record.factory if isinstance(record.factory, str) else "callable factory"
    return f"policy {record.name!r} ({factory})"


def _build(record: PolicyRecord, **extra: Any) -> Any:
    return record.load()(max_rounds=1, **record.example_config, **extra)


def _apply(record: PolicyRecord) -> tuple[PolicyOutcome, list[Any], list[Any]]:
    """The outcome, and the model's state before and after ``apply``."""
    policy = _build(record)
    with canonical_context(record.name) as context:
        before = _state(context.model)
        try:
            outcome = policy.apply(context)
        except Exception as exc:
            raise AssertionError(
                f"{_who(record)}.apply failed on the canonical context: {type(exc).__name__}: {exc}"
            ) from exc
        return outcome, before, _state(context.model)


def _state(model: torch.nn.Module) -> list[Any]:
    return [[m.training for m in model.modules()]] + [
        p.detach().clone() for p in model.parameters()
    ]


def check_builds_from_example_config(record: PolicyRecord) -> None:
    """``factory(max_rounds=1, **example_config)`` builds an object with ``apply(context)``."""
    try:
        policy = _build(record)
    except Exception as exc:
        raise AssertionError(
            f"{_who(record)} cannot be built from example_config {record.example_config!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    assert isinstance(policy, Policy), (
        f"{_who(record)} built a {type(policy).__name__} without an apply(context) method"
    )


def check_unknown_option_is_config_error(record: PolicyRecord) -> None:
    """An unknown option is refused with a ConfigError that names it."""
    message = ""
    try:
        _build(record, **{_BOGUS: 1})
    except ConfigError as exc:
        message = str(exc)
    except Exception as exc:
        raise AssertionError(
            f"{_who(record)} refused an unknown option with {type(exc).__name__}: {exc}; "
            "raise neuroplex.ConfigError naming the option and the valid ones"
        ) from exc
    else:
        raise AssertionError(f"{_who(record)} accepted the unknown option {_BOGUS!r}")
    assert _BOGUS in message, f"{_who(record)}: the ConfigError does not name the option"


def check_apply_returns_outcome(record: PolicyRecord) -> None:
    """``apply`` returns a well-formed PolicyOutcome with at least one decision."""
    import torch

    outcome, _, _ = _apply(record)
    assert isinstance(outcome, PolicyOutcome), (
        f"{_who(record)}.apply returned a {type(outcome).__name__}, not a PolicyOutcome"
    )
    assert outcome.decisions, f"{_who(record)}.apply decided nothing: return its decisions"
    for decision in outcome.decisions:
        assert isinstance(decision, PolicyDecision), f"{_who(record)}: {decision!r}"
        assert decision.policy == record.name, (
            f"{_who(record)}: a decision names policy {decision.policy!r}; use context.policy"
        )
        assert decision.action, f"{_who(record)}: a decision without an action"
        try:
            json.dumps(decision.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"{_who(record)}: decision reason is not plain finite JSON: {exc}"
            ) from exc
    for section in outcome.sections:
        assert isinstance(section, Mapping) and "type" in section and "title" in section, (
            f"{_who(record)}: report section {section!r} needs a 'type' and a 'title'"
        )
    if outcome.rejection is not None:
        assert isinstance(outcome.rejection, str) and outcome.rejection.strip(), (
            f"{_who(record)}: rejection must be a non-empty string"
        )
        assert "\n" not in outcome.rejection, f"{_who(record)}: rejection must be one line"
    assert outcome.model is None or isinstance(outcome.model, torch.nn.Module), (
        f"{_who(record)}: outcome.model is a {type(outcome.model).__name__}, not a torch module"
    )


def check_model_unchanged_unless_returned(record: PolicyRecord) -> None:
    """A policy that returns no model has not changed the context's model."""
    import torch

    outcome, before, after = _apply(record)
    if outcome.model is not None:
        return
    assert before[0] == after[0], f"{_who(record)} changed the model's train/eval flags"
    assert all(torch.equal(a, b) for a, b in zip(before[1:], after[1:], strict=True)), (
        f"{_who(record)} changed the model's weights but returned no model: return it in "
        "PolicyOutcome.model so the run re-evaluates and re-analyses it"
    )


def _timeless(decision: PolicyDecision) -> dict[str, Any]:
    """``decision.to_dict()`` without its reason's wall-clock ``seconds``."""
    data = decision.to_dict()
    data["reason"] = {k: v for k, v in data["reason"].items() if k != "seconds"}
    return data


def check_decisions_are_deterministic(record: PolicyRecord) -> None:
    """The same context gives the same decisions (a reason's ``seconds``, wall-clock time,
    excepted)."""
    first = [_timeless(d) for d in _apply(record)[0].decisions]
    second = [_timeless(d) for d in _apply(record)[0].decisions]
    assert first == second, f"{_who(record)}: two applications decided differently"


CHECKS: list[Callable[[PolicyRecord], None]] = [
    check_builds_from_example_config,
    check_unknown_option_is_config_error,
    check_apply_returns_outcome,
    check_model_unchanged_unless_returned,
    check_decisions_are_deterministic,
]
