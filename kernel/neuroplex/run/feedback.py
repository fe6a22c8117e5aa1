"""Stage 6, feedback: the spec's Mechanic policies (plugins, built by the build stage), each
applied in turn to the run so far (see :mod:`neuroplex.protocols`). A policy that returns a new
model has it evaluated on the test split and the spec's analyses re-run on it before the next
policy; a rejection stops the policies (the run fails once its report is written). Analyses
marked ``models = "final"`` run once, after the policies, on the model the run ends with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.config import AnalyzerSpec, RunSpec
from neuroplex.errors import ConfigError
from neuroplex.mechanic import Mechanic
from neuroplex.protocols import Policy, PolicyContext, PolicyDecision, PolicyOutcome
from neuroplex.records import DataSplits, ModelRecord
from neuroplex.run.analyze import Analyzed, final_analyzers, now_analyzers, run_analyses
from neuroplex.run.build import plugin_errors
from neuroplex.run.export import export_model
from neuroplex.run.train import _training_config, test_metrics, train_model

__all__ = ["FedBack", "apply_policies", "feedback", "run_final_analyses"]


@attrs.frozen(kw_only=True)
class FedBack:
    """The feedback stage's result: the analyze stage's, plus the policies' decisions (one row
    each), report sections and rejection, and what they changed (the model, its test metrics,
    verification report and analyses)."""

    analyzed: Analyzed
    rounds: list[dict[str, Any]]
    sections: tuple[dict[str, Any], ...]
    rejection: str | None
    model: torch.nn.Module
    test_metrics: dict[str, float]
    verification: Any
    analyses: dict[str, Any]
    evaluations: dict[str, dict[str, Any]] = attrs.field(factory=dict)


def feedback(analyzed: Analyzed, mechanic: Mechanic) -> FedBack:
    exported = analyzed.exported
    built = exported.tested.trained.built
    ctx = _Context(
        spec=built.loaded.spec,
        run_dir=built.loaded.run_dir,
        data=built.loaded.data,
        model=built.model,
        record=built.record,
        mechanic=mechanic,
        onnx_path=exported.onnx_path,
        test_metrics=dict(exported.tested.test_metrics),
        analyses=dict(analyzed.analyses),
        evaluations=dict(analyzed.evaluations),
        verification=exported.verification,
    )
    apply_policies(built.policies, ctx)
    if built.policies:
        run_final_analyses(ctx)
    return FedBack(
        analyzed=analyzed,
        rounds=ctx.rows,
        sections=tuple(ctx.sections),
        rejection=ctx.rejection,
        model=ctx.model,
        test_metrics=ctx.test_metrics,
        verification=ctx.verification,
        analyses=ctx.analyses,
        evaluations=ctx.evaluations,
    )


@attrs.define
class _Context:
    """The run so far, as the policies change it."""

    spec: RunSpec
    run_dir: Path
    data: DataSplits
    model: torch.nn.Module
    record: ModelRecord
    mechanic: Mechanic
    onnx_path: Path | None
    test_metrics: dict[str, float]
    analyses: dict[str, Any]
    evaluations: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    verification: Any = None
    rows: list[dict[str, Any]] = attrs.field(factory=list)
    sections: list[dict[str, Any]] = attrs.field(factory=list)
    rejection: str | None = None
    #: the step of the current model's evaluation: 0 the trained model, N after N decisions
    model_round: int = 0


def apply_policies(policies: Sequence[tuple[str, Policy]], ctx: _Context) -> None:
    """Apply each policy in turn to the run so far.

    A policy that returns a new model has it evaluated on the test split and the spec's
    analyses re-run on it (keyed ``<id>@roundN``, N the number of decisions so far) before the
    next policy; a rejection stops the policies."""
    for name, policy in policies:
        sent: list[PolicyDecision] = []
        with plugin_errors(policy, "policy", name, "deciding"):
            outcome = policy.apply(_policy_context(name, ctx, sent))
            if not isinstance(outcome, PolicyOutcome):
                raise TypeError(f"apply() returned a {type(outcome).__name__}, not a PolicyOutcome")
        for decision in outcome.decisions:
            if decision not in sent:
                _decide(ctx.mechanic, decision, sent)
        ctx.rows.extend(d.row() for d in outcome.decisions)
        ctx.sections.extend(outcome.sections)
        if outcome.model is not None:
            ctx.model = outcome.model
            ctx.model_round = len(ctx.rows)
            ctx.test_metrics = test_metrics(ctx.model, ctx.record, ctx.data.test)
            ctx.mechanic.record_performance(
                ctx.spec.model.name, ctx.test_metrics, step=len(ctx.rows)
            )
            ctx.analyses.update(
                run_analyses(
                    now_analyzers(ctx.spec.analysis.analyzers, has_policies=True),
                    ctx.model,
                    ctx.onnx_path,
                    ctx.data,
                    ctx.mechanic,
                    round_=len(ctx.rows),
                    evaluations=ctx.evaluations,
                )
            )
        if outcome.rejection is not None:
            ctx.rejection = f"policy {name!r} rejected the run: {outcome.rejection}"
            return


def run_final_analyses(ctx: _Context) -> None:
    """The spec's ``models = "final"`` analyses, once, on the model the run ends with (keyed
    ``<id>`` for the trained model, ``<id>@roundN`` for one a policy returned after N
    decisions, like the other analyses of that model)."""
    final = final_analyzers(ctx.spec.analysis.analyzers)
    if final:
        ctx.analyses.update(
            run_analyses(
                final,
                ctx.model,
                ctx.onnx_path,
                ctx.data,
                ctx.mechanic,
                round_=ctx.model_round,
                evaluations=ctx.evaluations,
            )
        )


def _decide(mechanic: Mechanic, decision: PolicyDecision, sent: list[PolicyDecision]) -> None:
    mechanic.record_decision(
        decision.policy, decision.action, decision.reason, round=decision.round
    )
    sent.append(decision)


def latest_analyses(analyses: Mapping[str, Any]) -> dict[str, Any]:
    """The newest result of each analysis entry, keyed by its id (``AnalyzerSpec.key``): a
    re-run after a policy is filed as ``<id>@roundN`` and replaces the earlier one."""
    return {key.split("@round")[0]: value for key, value in analyses.items()}


def _policy_context(policy: str, ctx: _Context, sent: list[PolicyDecision]) -> PolicyContext:
    """The run so far and the kernel functions a policy acts with, bound to ``ctx``."""

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
        if backend not in ("onnx", "torch"):
            raise ConfigError(f"analyze: backend must be 'onnx' or 'torch', got {backend!r}")
        spec = AnalyzerSpec(
            name=name,
            options=dict(options or {}),
            backend=backend,  # type: ignore[arg-type]
            n_samples=n_samples,
        )
        results = run_analyses(
            [spec], model, ctx.onnx_path, ctx.data, ctx.mechanic, round_=round, split=split
        )
        return next(iter(results.values()))

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
        config = _training_config(ctx.spec, ctx.run_dir / run_subdir, **changes)
        return train_model(
            model,
            ctx.record,
            config,
            train,
            ctx.data.val,
            resume=False,
            mechanic=ctx.mechanic,
            tag=tag,
            step=step,
            callbacks=callbacks,
        )

    def export(model: Any) -> Any:
        if ctx.onnx_path is None:
            return None
        ctx.verification = export_model(model, ctx.record, ctx.spec, ctx.data, ctx.onnx_path)
        return ctx.verification

    return PolicyContext(
        policy=policy,
        spec=ctx.spec,
        run_dir=ctx.run_dir,
        data=ctx.data,
        model=ctx.model,
        model_record=ctx.record,
        test_metrics=dict(ctx.test_metrics),
        analyses=latest_analyses(ctx.analyses),
        mechanic=ctx.mechanic,
        onnx_path=ctx.onnx_path,
        analyze=analyze,
        retrain=retrain,
        evaluate=lambda model: test_metrics(model, ctx.record, ctx.data.test),
        export=export,
        decide=lambda decision: _decide(ctx.mechanic, decision, sent),
    )
