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
* ``FeedbackSink`` — a ``FeedbackSinkRecord`` factory builds it; the Mechanic feeds it.
* ``Scheduler`` — an ``OptimizerRecord`` of role ``"scheduler"`` builds it; the Trainer steps it.
* ``TrainingStep`` — ``ModelRecord.training_step`` builds it; ``HasTrainingStep`` is a model
  that carries its own (optional).
* ``Exportable``, ``Configurable``, ``SampleReporter`` — optional model behaviours used by the
  ONNX export (example inputs per sub-graph, the ``config`` metadata) and by the report.

This module never imports torch (tensor types appear in annotations only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = [
    "AdversarialCrafter",
    "AnalysisResult",
    "Analyzer",
    "Batch",
    "Configurable",
    "Device",
    "Exportable",
    "FeedbackSink",
    "HasTrainingStep",
    "Optimize",
    "Reportable",
    "SampleReporter",
    "Scheduler",
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
class Reportable(Protocol):
    """An :class:`AnalysisResult` that draws its own report sections (else the report shows
    its numbers as a table).

    Each section is a dict with ``"type"`` (``"table"``, ``"lines"``, ``"bars"``, ``"images"``)
    and ``"title"``; an ``"images"`` section carries its pixels in ``"data"`` (an array).
    """

    def report_sections(self) -> list[dict[str, Any]]: ...


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
