"""What plugin factories return, declared: the kernel calls only what these protocols name.

This module never imports torch; model and tensor types appear as ``Any``.

Policies (:func:`~neuroplex.hookspecs.neuroplex_register_policies`)
--------------------------------------------------------------------
A policy is built once per ``[[feedback.policies]]`` entry of a spec, as
``factory(max_rounds=int, **options)``, and applied once, after the run has trained, exported
and analysed its model::

    outcome = policy.apply(context)        # PolicyContext -> PolicyOutcome

The :class:`PolicyContext` holds the run so far and the kernel functions a policy acts with;
the :class:`PolicyOutcome` holds what it decided (:class:`PolicyDecision` records, each sent to
the feedback sinks as a ``decision`` event), the new model when it acted (the kernel then
evaluates it on the test split and re-runs the spec's analyses on it before the next policy),
report sections, and a ``rejection`` that fails the run (``neuroplex run`` exits non-zero with
that one line, after writing ``results.json`` and the report).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from neuroplex.config import RunSpec
    from neuroplex.mechanic import Mechanic
    from neuroplex.records import DataSplits, ModelRecord

__all__ = [
    "AnalyzeFunction",
    "Policy",
    "PolicyContext",
    "PolicyDecision",
    "PolicyOutcome",
    "RetrainFunction",
]


def _plain_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class PolicyDecision:
    """One decision of a policy.

    Attributes:
        policy: the policy's name.
        action: what it decided, e.g. ``"retrain"``, ``"stop: robust"``, ``"pass"``,
            ``"reject"``.
        round: the policy's own round counter (0 for a policy that decides once).
        reason: the numbers behind the decision (plain JSON values).
    """

    policy: str
    action: str
    round: int = 0
    reason: dict[str, Any] = attrs.field(factory=dict, converter=_plain_dict)

    def row(self) -> dict[str, Any]:
        """The decision's row in ``results.json``'s ``rounds``: its round, reason and action."""
        return {"round": self.round, **self.reason, "action": self.action}

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "action": self.action,
            "round": self.round,
            "reason": dict(self.reason),
        }


@attrs.frozen(kw_only=True)
class PolicyOutcome:
    """What :meth:`Policy.apply` returns.

    Attributes:
        decisions: every decision, in order (the kernel sends to the sinks those the policy
            did not already send through :attr:`PolicyContext.decide`).
        model: the new model when the policy acted (retrained, replaced), else ``None``.
        sections: report sections (the ``report_sections()`` format: dicts with ``type``,
            ``title`` and the type's keys) for ``results.json`` and ``report.html``.
        rejection: a one-line reason to fail the run, else ``None``. Policies after a
            rejection do not run.
    """

    decisions: tuple[PolicyDecision, ...] = attrs.field(default=(), converter=tuple)
    model: Any = None
    sections: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=tuple)
    rejection: str | None = None


class AnalyzeFunction(Protocol):
    """``context.analyze``: run one analyzer on ``model`` over the test split.

    The result is sent to the sinks (an ``analysis`` event at step ``round``) and returned; it
    is not added to the run's analyses. ``backend="onnx"`` analyses the exported model file
    (call ``context.export(model)`` first after changing the model).
    """

    def __call__(
        self,
        name: str,
        model: Any,
        *,
        options: Mapping[str, Any] | None = None,
        backend: str = "onnx",
        n_samples: int = 256,
        round: int = 0,
    ) -> Any: ...


class RetrainFunction(Protocol):
    """``context.retrain``: train ``model`` in place on ``train`` (an ``(x, y)`` pair) with
    the spec's training config changed by ``changes`` (e.g. ``epochs=2``), validating on the
    run's validation split, checkpointing into ``run_dir / run_subdir``; epochs are sent to
    the sinks under ``tag``. Returns the Trainer's ``History``."""

    def __call__(
        self, model: Any, train: tuple[Any, Any], *, tag: str, run_subdir: str, **changes: Any
    ) -> Any: ...


@attrs.frozen(kw_only=True)
class PolicyContext:
    """What a policy receives: the run so far and the kernel functions it acts with.

    Attributes:
        policy: the policy's name as the spec gives it.
        spec: the run's :class:`~neuroplex.RunSpec`.
        run_dir: the run directory (a policy may write files under it).
        data: the run's :class:`~neuroplex.DataSplits` (train, val, test).
        model: the current model (a ``torch.nn.Module``).
        model_record: the model family's :class:`~neuroplex.ModelRecord`.
        test_metrics: the current model's test metrics (e.g. ``accuracy``, ``loss``).
        analyses: the latest result of each of the spec's analyses, keyed like the spec's
            entries (``AnalyzerSpec.key``: the entry's ``id``, else its analyzer name).
        mechanic: the run's :class:`~neuroplex.Mechanic` (to record extra events).
        onnx_path: the exported model file, or ``None`` when export is disabled.
        analyze: see :class:`AnalyzeFunction`.
        retrain: see :class:`RetrainFunction`.
        evaluate: ``evaluate(model) -> dict[str, float]``, test metrics of ``model``.
        export: ``export(model)`` re-exports ``model`` to ``onnx_path`` and verifies it;
            returns the verification report (``None`` when export is disabled).
        decide: ``decide(decision)`` sends a decision to the sinks now (return it in the
            outcome too); decisions returned but never decided are sent after ``apply``.
    """

    policy: str
    spec: RunSpec
    run_dir: Path
    data: DataSplits
    model: Any
    model_record: ModelRecord
    test_metrics: dict[str, float]
    analyses: dict[str, Any]
    mechanic: Mechanic
    onnx_path: Path | None
    analyze: AnalyzeFunction
    retrain: RetrainFunction
    evaluate: Callable[[Any], dict[str, float]]
    export: Callable[[Any], Any]
    decide: Callable[[PolicyDecision], None]


@runtime_checkable
class Policy(Protocol):
    """What a policy factory returns."""

    def apply(self, context: PolicyContext) -> PolicyOutcome:
        """Look at the run, act or not, and say what was decided (see the module doc)."""
        ...
