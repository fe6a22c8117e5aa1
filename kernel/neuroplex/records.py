"""Frozen records that plugins return from registration hooks, and that flow between parts.

Plugins import only :data:`neuroplex.hookimpl` and these records. A record says what a
component is (name, summary, capability flags, an example config the conformance kit builds)
and how to make it (a lazy ``factory``: a ``"module:attr"`` string, imported on first use, or
a callable). Only the kernel calls factories, through ``neuroplex.create_*``.

This module never imports torch: plugin entry modules that import it stay import-light.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

import attrs

from neuroplex.errors import PluginError

__all__ = [
    "KINDS",
    "NEEDS_METRIC",
    "RUN_DIR",
    "SHARDS",
    "WELL_KNOWN_CAPABILITIES",
    "AnalyzerRecord",
    "ComponentRecord",
    "DataSplits",
    "DatasetRecord",
    "DeviceRecord",
    "Event",
    "Factory",
    "FeedbackSinkRecord",
    "FrozenDict",
    "LayerRecord",
    "ModelRecord",
    "OptimizerRecord",
    "PolicyRecord",
    "normalize_name",
    "resolve_factory",
]

#: A lazy factory: ``"package.module:attribute"`` (imported on first use) or a callable.
Factory = str | Callable[..., Any]

#: The eight component kinds, in the order the CLI lists them.
KINDS: tuple[str, ...] = (
    "layer",
    "model",
    "optimizer",
    "device",
    "analyzer",
    "feedback_sink",
    "dataset",
    "policy",
)

#: Capability flag of a scheduler (``OptimizerRecord``, role ``"scheduler"``): the Trainer
#: steps it as ``step(monitored_value)`` once per epoch.
NEEDS_METRIC = "needs_metric"
#: Capability flag of a feedback sink: ``neuroplex run`` passes the run directory as
#: ``factory(run_dir=..., **options)`` unless the spec sets ``run_dir`` itself.
RUN_DIR = "run_dir"
#: Capability flag of an analyzer: it is a :class:`~neuroplex.protocols.ShardableAnalyzer`,
#: so ``neuroplex analyze --nproc N`` and the analyze stage of a run under ``--nproc N``
#: evaluate it over the ``torchrun`` processes (whole seeded batches per process), with the
#: result of one process.
SHARDS = "shards"

#: The capability flags the kernel acts on, per kind, with what they make it do. Any other
#: flag is free-form: listed by ``neuroplex list`` and used by plugins among themselves.
WELL_KNOWN_CAPABILITIES: Mapping[str, Mapping[str, str]] = {
    "optimizer": {NEEDS_METRIC: "stepped as step(monitored_value)"},
    "feedback_sink": {RUN_DIR: "built with run_dir=<the run directory>"},
    "analyzer": {SHARDS: "evaluated over the torchrun processes under --nproc N"},
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")


def normalize_name(name: str) -> str:
    """Canonical lookup key of a component name: case-insensitive, ``-`` equals ``_``."""
    return name.strip().lower().replace("-", "_")


def _check_name(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value.lower()):
        raise ValueError(
            f"{attribute.name} {value!r} is not a valid component name: use letters, digits, "
            "'_', '-' or '.', starting with a letter (e.g. 'my_layer')"
        )


def _check_factory(_inst: object, _attribute: attrs.Attribute[Factory], value: Factory) -> None:
    if isinstance(value, str):
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"factory {value!r} must look like 'package.module:attribute'")
    elif not callable(value):
        raise TypeError(f"factory must be a 'module:attr' string or a callable, got {value!r}")


def resolve_factory(factory: Factory, *, component: str = "") -> Callable[..., Any]:
    """Import a ``"module:attr"`` factory (or return a callable as is).

    Raises :class:`PluginError` naming the component when the import fails.
    """
    if not isinstance(factory, str):
        return factory
    module_name, _, attr_path = factory.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time failure of plugin code is the plugin's
        what = f"component {component!r}: " if component else ""
        raise PluginError(
            f"{what}cannot load factory {factory!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(obj):
        raise PluginError(f"factory {factory!r} of {component!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _hashable(value: Any) -> Any:
    """A hashable stand-in for plain data (lists as tuples, mappings as sorted items)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(_hashable(v) for v in value)
    return value


class FrozenDict(dict[str, Any]):
    """A read-only, hashable ``dict``: what records hold where they hold a mapping.

    It is a ``dict`` (``json.dumps``, ``**kwargs`` and ``isinstance(x, dict)`` work) whose
    mutating methods raise :class:`TypeError`; its hash is that of its items, nested lists and
    dicts included. Values are not copied: keep them plain data (numbers, strings, lists).
    """

    __slots__ = ("_hash",)
    _hash: int

    def _read_only(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} is read-only; build a new record instead")

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only
    clear = _read_only
    pop = _read_only
    popitem = _read_only
    setdefault = _read_only
    update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            h = hash(_hashable(self))
            object.__setattr__(self, "_hash", h)
            return h

    def __reduce__(self) -> tuple[Any, ...]:  # pickle/deepcopy without __setitem__
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def _frozen_mapping(value: Mapping[str, Any] | None) -> FrozenDict:
    return value if isinstance(value, FrozenDict) else FrozenDict(value or {})


def _flags(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _dims(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _shape(value: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen(kw_only=True, eq=True)
class ComponentRecord:
    """What every registration hook returns, one record per component.

    Attributes:
        name: the registry name (lookups ignore case and treat ``-`` as ``_``).
        factory: ``"module:attr"`` or a callable that builds the component; see each kind
            for its call signature.
        summary: one line for ``neuroplex list``.
        capabilities: flags (e.g. ``"activation"``, ``"gradients"``); the kernel acts on
            those in :data:`WELL_KNOWN_CAPABILITIES` only, never on undeclared attributes.
        example_config: keyword arguments for the factory that build a small instance; the
            conformance kit builds every component from it.
        aliases: other names that find the same component.
    """

    kind: ClassVar[str] = ""

    name: str = attrs.field(validator=_check_name)
    factory: Factory = attrs.field(validator=_check_factory)
    summary: str = ""
    capabilities: frozenset[str] = attrs.field(default=frozenset(), converter=_flags)
    example_config: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_names)

    def load(self) -> Callable[..., Any]:
        """Resolve the factory (imports the plugin's heavy module on first use)."""
        return resolve_factory(self.factory, component=f"{self.kind}:{self.name}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (factories shown by their import path)."""
        factory = self.factory if isinstance(self.factory, str) else _qualname(self.factory)
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "capabilities": sorted(self.capabilities),
            "aliases": list(self.aliases),
            "factory": factory,
            "example_config": dict(self.example_config),
        }


def _qualname(obj: Callable[..., Any]) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


@attrs.frozen(kw_only=True)
class LayerRecord(ComponentRecord):
    """A layer or activation. ``factory(**config) -> torch.nn.Module``.

    ``example_input`` is the shape of an example input batch for ``example_config``
    (``None`` when the layer takes no single tensor); ``example_input_dtype`` its dtype name.
    Activations carry the ``"activation"`` capability.
    """

    kind: ClassVar[str] = "layer"
    example_input: tuple[int, ...] | None = attrs.field(default=None, converter=_shape)
    example_input_dtype: str = "float32"


@attrs.frozen(kw_only=True)
class ModelRecord(ComponentRecord):
    """A model family. ``factory(config: ModelConfig) -> torch.nn.Module``.

    ``example_config`` holds the hyperparameters of a small instance; ``example_input`` the
    shape of an example batch. ``training_step`` (optional) is a factory returning the
    family's own :class:`~neuroplex.protocols.TrainingStep`; ``None`` means supervised
    classification/regression. ``export_graphs`` names the sub-graphs the ONNX bridge exports
    (e.g. ``("generator", "discriminator")`` for a GAN); the model exposes each as an attribute,
    ``"model"`` meaning the model itself; a sub-graph that takes other inputs than the model
    comes from a model that is :class:`~neuroplex.protocols.Exportable`. ``sharding``
    (optional) is a factory returning the family's
    :class:`~neuroplex.protocols.ShardingPolicy` for the ``fsdp`` strategy; a family without
    one cannot train under ``fsdp``. Optional model
    behaviours: :class:`~neuroplex.protocols.Configurable` (``to_config()``),
    :class:`~neuroplex.protocols.SampleReporter` (``report_samples(x)``).
    """

    kind: ClassVar[str] = "model"
    example_input: tuple[int, ...] | None = attrs.field(default=None, converter=_shape)
    example_input_dtype: str = "float32"
    training_step: Factory | None = None
    sharding: Factory | None = None
    export_graphs: tuple[str, ...] = attrs.field(default=("model",), converter=_names)

    def require_sharding(self) -> Factory:
        """``sharding``, or the :class:`~neuroplex.ConfigError` of a ``fsdp`` spec for a
        family that gives no policy."""
        if self.sharding is None:
            from neuroplex.errors import ConfigError

            raise ConfigError(
                f'"fsdp" needs a sharding policy and model {self.name!r} '
                "gives none (its plugin sets ModelRecord.sharding): use strategy 'ddp' for it",
                path="training.strategy",
            )
        return self.sharding


@attrs.frozen(kw_only=True)
class OptimizerRecord(ComponentRecord):
    """An optimizer or a learning-rate scheduler.

    ``role="optimizer"``: ``factory(params, **config) -> torch.optim.Optimizer`` where
    ``params`` is an iterable of parameters or of param-group dicts.
    ``role="scheduler"``: ``factory(optimizer, **config) ->``
    :class:`~neuroplex.protocols.Scheduler`; with the :data:`NEEDS_METRIC` capability the
    Trainer calls ``step(monitored_value)``, else ``step()``.
    """

    kind: ClassVar[str] = "optimizer"
    role: Literal["optimizer", "scheduler"] = "optimizer"


@attrs.frozen(kw_only=True)
class DeviceRecord(ComponentRecord):
    """A device. ``factory(**config) ->`` :class:`~neuroplex.protocols.Device`
    (``is_available() -> bool`` (never raises), ``torch_device()``, ``ort_providers() -> list``
    and ``info() -> dict``).

    ``priority`` orders the ``auto`` choice (highest available wins), never hook order.
    """

    kind: ClassVar[str] = "device"
    priority: int = 0


@attrs.frozen(kw_only=True)
class AnalyzerRecord(ComponentRecord):
    """An analysis (explanation, attack). ``factory(model, **config) ->``
    :class:`~neuroplex.protocols.Analyzer`, whose ``analyze(x, y=None)`` returns an
    :class:`~neuroplex.protocols.AnalysisResult` (a frozen attrs record with ``to_dict()``),
    optionally :class:`~neuroplex.protocols.Reportable`. An attack that can return its
    adversarial inputs is an :class:`~neuroplex.protocols.AdversarialCrafter`.

    ``model`` may be a ``torch.nn.Module``, an ``OnnxModule`` or a path to a ``.onnx`` file.
    Capability ``"gradients"`` means the analysis needs gradients (ONNX: exported VJP graph).
    """

    kind: ClassVar[str] = "analyzer"


@attrs.frozen(kw_only=True)
class FeedbackSinkRecord(ComponentRecord):
    """A feedback sink. ``factory(**config) ->`` :class:`~neuroplex.protocols.FeedbackSink`
    (``send(event: Event)``, ``flush()``, ``close()``). Sinks ignore event fields they do not
    know. With the :data:`RUN_DIR` capability the factory also receives ``run_dir=``.
    """

    kind: ClassVar[str] = "feedback_sink"


@attrs.frozen(kw_only=True)
class DatasetRecord(ComponentRecord):
    """A dataset. ``factory(**config) -> DataSplits``; ``config`` always accepts ``seed``,
    ``val_fraction`` and ``test_fraction`` (deterministic splits from the seed).
    """

    kind: ClassVar[str] = "dataset"


def _option_kinds(value: Mapping[str, str] | None) -> dict[str, str]:
    kinds = dict(value or {})
    for option, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(
                f"component_options[{option!r}] = {kind!r} is not a component kind; "
                f"kinds: {', '.join(KINDS)}"
            )
    return kinds


@attrs.frozen(kw_only=True)
class PolicyRecord(ComponentRecord):
    """A Mechanic policy (what the feedback stage does with a run's results).

    ``factory(max_rounds=int, **options) -> Policy`` (see :class:`neuroplex.protocols.Policy`):
    ``options`` is the spec's ``[feedback.policies.options]`` table; an unknown or bad option
    raises :class:`~neuroplex.ConfigError` naming it. ``component_options`` maps option
    names whose values name other components to their kind (e.g. ``{"attack": "analyzer"}``):
    a run checks that those components are installed before it starts.
    """

    kind: ClassVar[str] = "policy"
    component_options: dict[str, str] = attrs.field(factory=dict, converter=_option_kinds)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "component_options": dict(self.component_options)}


RECORD_TYPES: dict[str, type[ComponentRecord]] = {
    cls.kind: cls
    for cls in (
        LayerRecord,
        ModelRecord,
        OptimizerRecord,
        DeviceRecord,
        AnalyzerRecord,
        FeedbackSinkRecord,
        DatasetRecord,
        PolicyRecord,
    )
}


@attrs.frozen(kw_only=True)
class DataSplits:
    """A dataset split into train/val/test, with what export and analysis need to know.

    Each split is a pair ``(X, y)`` of tensors (``y`` may be ``None`` for unlabelled data).
    ``input_range`` is the (min, max) the inputs are scaled to; attacks clip to it.
    ``task`` is ``"classification"``, ``"regression"`` or ``"generation"``.
    """

    train: tuple[Any, Any]
    val: tuple[Any, Any]
    test: tuple[Any, Any]
    input_shape: tuple[int, ...] = attrs.field(converter=_dims)
    num_classes: int | None = None
    class_names: tuple[str, ...] = attrs.field(default=(), converter=_names)
    input_range: tuple[float, float] = (0.0, 1.0)
    task: str = "classification"
    name: str = ""


@attrs.frozen(kw_only=True)
class Event:
    """One thing a feedback sink receives.

    ``kind`` is one of ``run_started``, ``epoch``, ``metrics``, ``analysis``, ``decision``,
    ``artifact``, ``run_finished`` (sinks ignore kinds they do not know). ``(run_id, kind,
    name, step)`` is the event's key: a resumed run re-sends an event with the same key, and
    sinks store it once.
    """

    run_id: str
    kind: str
    name: str
    step: int = 0
    payload: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    time: float = attrs.field(factory=time.time)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.run_id, self.kind, self.name, self.step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "name": self.name,
            "step": self.step,
            "payload": dict(self.payload),
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            run_id=str(data["run_id"]),
            kind=str(data["kind"]),
            name=str(data["name"]),
            step=int(data.get("step", 0)),
            payload=dict(data.get("payload", {})),
            time=float(data.get("time", 0.0)),
        )
