"""What plugin factories return: the typed contracts between the kernel and its plugins.

Each registration hook in :mod:`neuroplex.hookspecs` names the protocol its factory's product
satisfies; ``neuroplex.create_*`` return these types, and the conformance kit
(:mod:`neuroplex.testing`) checks every registered component against them. The kernel never
probes a component for an undeclared attribute: an optional behaviour is either a record field
or capability flag (:mod:`neuroplex.records`) or one of the ``runtime_checkable`` protocols
below, tested with ``isinstance``.

* ``Device`` — a ``DeviceRecord`` factory builds it; the Trainer and ONNX Runtime use it.
* ``Analyzer`` — an ``AnalyzerRecord`` factory builds it; ``analyze`` returns an
  ``AnalysisResult`` (sinks, ``results.json``), optionally ``Reportable`` (HTML report).
* ``AdversarialCrafter`` — an attack analyzer that returns its adversarial inputs (optional).
* ``ShardableAnalyzer`` — an analyzer evaluated over several processes (optional).
* ``FeedbackSink`` — a ``FeedbackSinkRecord`` factory builds it; the Mechanic feeds it.
* ``Scheduler`` — an ``OptimizerRecord`` of role ``"scheduler"`` builds it; the Trainer steps it.
* ``TrainingStep`` — ``ModelRecord.training_step`` builds it; ``HasTrainingStep`` is a model
  that carries its own (optional); ``ForwardWrappableStep`` and ``SubnetworkStep`` let the
  ``ddp`` strategy wrap the model or its sub-networks in DistributedDataParallel (optional).
* ``Exportable``, ``Configurable``, ``SampleReporter`` — optional model behaviours used by the
  ONNX export (example inputs per sub-graph, the ``config`` metadata) and by the report.

This module never imports torch (tensor types appear in annotations only).
* ``Policy`` — a ``PolicyRecord`` factory builds it; the Mechanic applies it (below).

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

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    import torch

    from neuroplex.config import RunSpec
    from neuroplex.mechanic import Mechanic
    from neuroplex.records import DataSplits, ModelRecord

__all__ = [
    "ROBUSTNESS_KEYS",
    "AdversarialCrafter",
    "AnalysisResult",
    "AnalyzeFunction",
    "Analyzer",
    "Batch",
    "Configurable",
    "Device",
    "Exportable",
    "ForwardWrappableStep",
    "FeedbackSink",
    "HasTrainingStep",
    "Optimize",
    "Policy",
    "PolicyContext",
    "PolicyDecision",
    "PolicyOutcome",
    "Reportable",
    "RetrainFunction",
    "RobustnessReporter",
    "SampleReporter",
    "Scheduler",
    "ShardableAnalyzer",
    "ShardingPolicy",
    "SubnetworkStep",
    "TorchPlacement",
    "TrainingStep",
]

#: One batch as the data loader yields it (a tensor, or a tuple ``(x, y)``).
Batch = Any
#: ``optimize(group, loss)``: backpropagate ``loss`` and step the optimizer of ``group``.
Optimize = Callable[[str, "torch.Tensor"], None]


# --------------------------------------------------------------------------- devices
@runtime_checkable
class TorchPlacement(Protocol):
    """Anything that names a torch device: a :class:`Device`, or a light stand-in that
    analysis code accepts wherever it takes a device."""

    def torch_device(self) -> torch.device | str:
        """The ``torch.device`` (or its name) to put tensors on."""
        ...


@runtime_checkable
class Device(TorchPlacement, Protocol):
    """What a ``DeviceRecord`` factory builds: ``factory(**config) -> Device``."""

    def is_available(self) -> bool:
        """Whether this device can be used here; never raises."""
        ...

    def ort_providers(self) -> list[Any]:
        """ONNX Runtime execution providers, best first, ending with ``"CPUExecutionProvider"``."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-friendly facts about the device; has a ``"name"`` key."""
        ...


# --------------------------------------------------------------------------- analysis
@runtime_checkable
class AnalysisResult(Protocol):
    """What ``Analyzer.analyze`` returns: a frozen attrs record with a JSON-friendly view."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (numbers, strings, lists, dicts) for sinks and ``results.json``."""
        ...


@runtime_checkable
class Analyzer(Protocol):
    """What an ``AnalyzerRecord`` factory builds: ``factory(model, **config) -> Analyzer``;
    ``model`` is a ``torch.nn.Module``, an ``OnnxModule`` or a path to a ``.onnx`` file."""

    def analyze(self, x: Any, y: Any = None) -> AnalysisResult:
        """Analyse inputs ``x`` (labels ``y`` when the analysis needs them)."""
        ...


@runtime_checkable
class ShardableAnalyzer(Protocol):
    """An :class:`Analyzer` whose evaluation is a sequence of independent, seeded batches of
    ``shard_size`` points (batch ``b`` seeded with ``seed + b``), so that any split of the
    input at batch boundaries gives the result of one call. Its record declares the
    :data:`~neuroplex.records.SHARDS` capability.

    ``neuroplex analyze --nproc N`` (and a run's analyze stage under ``--nproc N``) give each
    ``torchrun`` process a contiguous run of whole batches, call
    ``analyze_shard(x_part, y_part, first_batch=b)`` (``b``: the global index of the part's
    first batch), gather the parts in input order and call ``merge_shards(parts)``, which
    returns what ``analyze(x, y)`` returns. A part crosses processes pickled: keep its tensors
    on the CPU.
    """

    @property
    def shard_size(self) -> int: ...

    def analyze_shard(self, x: Any, y: Any = None, *, first_batch: int = 0) -> Any: ...

    def merge_shards(self, parts: Sequence[Any]) -> AnalysisResult: ...


@runtime_checkable
class Reportable(Protocol):
    """An :class:`AnalysisResult` that draws its own report sections (else the report shows
    its numbers as a table).

    Each section is a dict with ``"type"`` (``"table"``, ``"lines"``, ``"bars"``, ``"images"``)
    and ``"title"``; an ``"images"`` section carries its pixels in ``"data"`` (an array).
    """

    def report_sections(self) -> list[dict[str, Any]]: ...


#: the keys of one :meth:`RobustnessReporter.robustness_rows` row
ROBUSTNESS_KEYS = (
    "attack",
    "epsilon",
    "norm",
    "n",
    "backend",
    "clean_accuracy",
    "robust_accuracy",
    "strength",
)


@runtime_checkable
class RobustnessReporter(Protocol):
    """An :class:`AnalysisResult` that measured robust accuracy under an attack.

    ``robustness_rows()`` returns one dict per threat model with the keys of
    :data:`ROBUSTNESS_KEYS`: ``attack`` (its name), ``epsilon`` (budget in input units),
    ``norm``, ``n`` (points evaluated), ``backend`` (engine, e.g. ``onnx/gradients``),
    ``clean_accuracy``, ``robust_accuracy`` and ``strength`` (``"reference"`` for an
    evaluation the field reports, such as AutoAttack; ``"weaker"`` for attacks known to
    overstate robustness). The run adds the data split and writes the rows to
    ``results.json``'s ``robustness`` and the report's robustness table.
    """

    def robustness_rows(self) -> list[dict[str, Any]]: ...


@runtime_checkable
class AdversarialCrafter(Protocol):
    """An attack :class:`Analyzer` that can return the adversarial inputs it finds, for
    adversarial training (the ``adversarial`` policy)."""

    def adversarial_examples(self, x: Any, y: Any = None) -> torch.Tensor:
        """Adversarial versions of ``x`` (same shape and dtype, inside the input range)."""
        ...


# --------------------------------------------------------------------------- feedback
@runtime_checkable
class FeedbackSink(Protocol):
    """What a ``FeedbackSinkRecord`` factory builds: ``factory(**config) -> FeedbackSink``.

    The Mechanic calls one sink from one worker thread at a time (a sink needs no lock of its
    own); ``send`` may be called again with an event of the same key after a resume and must
    then store it once. A sink whose record has the ``"run_dir"`` capability receives the run
    directory as ``factory(run_dir=..., **config)``.
    """

    def send(self, event: Any) -> None:
        """Record one :class:`~neuroplex.Event` (ignore event kinds and fields you do not know)."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- training
@runtime_checkable
class Scheduler(Protocol):
    """What an ``OptimizerRecord`` of role ``"scheduler"`` builds:
    ``factory(optimizer, **config)``. Stepped once per epoch; a record with the
    ``"needs_metric"`` capability is stepped as ``step(monitored_value)``."""

    def step(self, *args: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class TrainingStep(Protocol):
    """What ``ModelRecord.training_step`` builds (``factory()`` with no arguments).

    The kernel ``Trainer`` owns the loop (epochs, devices, AMP, accumulation, clipping,
    schedulers, checkpoints, events); a family's step only says how to turn a batch into
    losses. ``optimize(group, loss)`` is supplied by the Trainer: it backpropagates ``loss``
    (scaled for AMP and divided for gradient accumulation) and, at an accumulation boundary,
    unscales, clips, steps and zeroes the optimizer of parameter group ``group``. A GAN calls
    it twice per batch (``"discriminator"`` then ``"generator"``); a supervised model once
    (``"model"``).
    """

    def param_groups(self, model: torch.nn.Module) -> Mapping[str, Iterable[torch.nn.Parameter]]:
        """One optimizer per entry, named; a plain model returns ``{"model": params}``."""
        ...

    def train_step(
        self, model: torch.nn.Module, batch: Batch, optimize: Optimize
    ) -> Mapping[str, torch.Tensor]:
        """Run one training batch; call ``optimize`` per loss; return detached metrics
        (``"loss"`` required, summed-per-batch means; ``"n"`` optional: items in the batch)."""
        ...

    def eval_step(self, model: torch.nn.Module, batch: Batch) -> Mapping[str, torch.Tensor]:
        """Metrics of one validation batch (``"loss"`` required), under ``torch.no_grad``."""
        ...


@runtime_checkable
class ForwardWrappableStep(Protocol):
    """A :class:`TrainingStep` that declares whether it reaches the model only by calling it.

    ``forward_wrappable = True`` says ``train_step`` calls ``model(...)`` (one forward per
    ``optimize``) and touches no sub-network or attribute of it, so under the ``ddp`` strategy
    the Trainer may hand it the model wrapped in ``DistributedDataParallel`` (bucketed
    all-reduce overlapped with backward, ``no_sync`` on accumulation micro-steps). A step
    without the attribute, or with ``False``, gets the Trainer's explicit gradient averaging at
    each optimizer step instead, and cannot train under ``fsdp`` (whose root module must run
    every forward).
    """

    forward_wrappable: bool


@runtime_checkable
class SubnetworkStep(TrainingStep, Protocol):
    """A :class:`TrainingStep` that calls sub-networks of the model itself (a GAN's generator
    and discriminator) and lets the ``ddp`` strategy wrap each in ``DistributedDataParallel``.

    ``subnetworks(model)`` maps every parameter group of ``param_groups(model)`` to a module
    holding exactly that group's trainable parameters (a sub-network, or an adapter around
    one): the module the step runs forward **once per** ``optimize(group)``, with every use
    of the group's parameters whose gradient that ``optimize`` applies inside that one call.
    Under ``ddp`` with several processes the Trainer wraps each module in
    DistributedDataParallel (bucketed all-reduce overlapped with backward, ``no_sync`` on
    accumulation micro-steps) and calls ``bind(wrappers)`` before the first step and
    ``bind({})`` after the last; the step then makes those calls through ``wrappers[group]``.
    Any other call of the sub-network (a generator's loss through the discriminator) must
    leave no gradient on its parameters (e.g. with them frozen by ``requires_grad_(False)``):
    the wrapper would not expect it. With one process nothing is wrapped or bound, and the
    step calls its sub-networks directly.
    """

    def subnetworks(self, model: torch.nn.Module) -> Mapping[str, torch.nn.Module]: ...

    def bind(self, wrapped: Mapping[str, torch.nn.Module]) -> None: ...


@runtime_checkable
class ShardingPolicy(Protocol):
    """A model family's FSDP sharding policy (``ModelRecord.sharding`` names a factory that
    returns one; ``Trainer(..., sharding=policy)`` takes one directly).

    ``policy(model)`` gives the sub-modules of ``model`` that the ``fsdp`` strategy shards as
    units of their own, in forward order (e.g. each block of a stack): each unit's parameters
    are gathered for its forward and backward only and freed again, which is what bounds the
    peak memory. The Trainer shards the root module last, which takes every parameter no unit
    holds; an empty list shards the whole model as one unit.
    """

    def __call__(self, model: torch.nn.Module) -> Iterable[torch.nn.Module]: ...


@runtime_checkable
class HasTrainingStep(Protocol):
    """A model that carries its own :class:`TrainingStep` (used when a ``Trainer`` is built
    around the model directly, without its record's ``training_step``)."""

    def neuroplex_training_step(self) -> TrainingStep: ...


# --------------------------------------------------------------------------- models
@runtime_checkable
class Exportable(Protocol):
    """A model whose ``ModelRecord.export_graphs`` names sub-graphs that take other inputs
    than the model's own (a GAN's generator takes latent vectors): it gives one example input
    per graph for the ONNX export."""

    def export_examples(self, batch: torch.Tensor) -> Mapping[str, torch.Tensor]: ...


@runtime_checkable
class Configurable(Protocol):
    """A model that can describe how to rebuild itself; stored as ``config`` in the ONNX
    metadata (a ``ModelConfig`` or a JSON-friendly dict)."""

    def to_config(self) -> Any: ...


@runtime_checkable
class SampleReporter(Protocol):
    """A generative model that shows samples in the HTML report: ``{title: images}`` with
    images an array ``(N, H, W)`` or ``(N, C, H, W)`` in ``[0, 1]``."""

    def report_samples(self, x: torch.Tensor) -> Mapping[str, Any]: ...


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


def _decisions(value: Iterable[PolicyDecision]) -> tuple[PolicyDecision, ...]:
    return tuple(value)


def _sections(value: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(value)


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

    decisions: tuple[PolicyDecision, ...] = attrs.field(default=(), converter=_decisions)
    model: Any = None
    sections: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=_sections)
    rejection: str | None = None


class AnalyzeFunction(Protocol):
    """``context.analyze``: run one analyzer on ``model`` over the held-out ``split``
    (``"test"``, the default, or ``"val"``: a policy that selects or stops on a number uses the
    validation split, so the test split stays unseen).

    The result is sent to the sinks (an ``analysis`` event at step ``round``, its payload's
    ``evaluated_on`` naming the split, n and backend) and returned; it is not added to the
    run's analyses. ``backend="onnx"`` analyses the exported model file (call
    ``context.export(model)`` first after changing the model).
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
        split: str = "test",
    ) -> Any: ...


class RetrainFunction(Protocol):
    """``context.retrain``: train ``model`` in place on ``train`` (an ``(x, y)`` pair) with
    the spec's training config changed by ``changes`` (e.g. ``epochs=2``), validating on the
    run's validation split, checkpointing into ``run_dir / run_subdir``; epochs are sent to
    the sinks under ``tag``. ``step`` replaces the family's :class:`TrainingStep` (e.g. an
    adversarial-training step) and ``callbacks`` are extra Trainer callbacks (e.g. one that
    keeps the best checkpoint by a validation number). Returns the Trainer's ``History``."""

    def __call__(
        self,
        model: Any,
        train: tuple[Any, Any],
        *,
        tag: str,
        run_subdir: str,
        step: Any = None,
        callbacks: Sequence[Any] = (),
        **changes: Any,
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
