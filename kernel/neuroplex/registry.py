"""Registries: the only place components are constructed (``create_*``) and listed (``list_*``).

Lookups ignore case and treat ``-`` as ``_``. An unknown name raises
:class:`~neuroplex.ComponentNotFoundError` listing the installed names of that kind, close
matches, and — for a first-party component whose plugin is missing — the ``pip install`` that
brings it. Every object built here remembers where it came from (``neuroplex_origin``).
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import inspect
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from neuroplex.catalog import distribution_for, load_catalog
from neuroplex.errors import ComponentNotFoundError, ConfigError, NeuroplexError, PluginError
from neuroplex.plugins import Registration, get_plugin_manager
from neuroplex.protocols import Analyzer, Device, FeedbackSink, Scheduler
from neuroplex.records import ComponentRecord, DataSplits, OptimizerRecord, normalize_name

if TYPE_CHECKING:
    import torch

    from neuroplex.config import ModelConfig

_P = TypeVar("_P")

if TYPE_CHECKING:
    from neuroplex.protocols import Policy

__all__ = [
    "FIRST_PARTY",
    "create",
    "create_analyzer",
    "create_dataset",
    "create_device",
    "create_layer",
    "create_model",
    "create_optimizer",
    "create_policy",
    "create_scheduler",
    "create_sink",
    "get_record",
    "get_registration",
    "list_analyzers",
    "list_components",
    "list_datasets",
    "list_devices",
    "list_layers",
    "list_models",
    "list_optimizers",
    "list_policies",
    "list_sinks",
    "missing_distributions",
    "origin_of",
    "plural",
]

#: ``{kind: {distribution: names}}`` of the first-party plugins, for install hints only; read
#: from the generated :mod:`neuroplex.catalog`, never written here
FIRST_PARTY: Mapping[str, Mapping[str, tuple[str, ...]]] = load_catalog()


def plural(kind: str) -> str:
    """``"layer"`` → ``"layers"``, ``"policy"`` → ``"policies"``."""
    return f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"


def _distribution_for(kind: str, name: str) -> str | None:
    return distribution_for(kind, name)


def get_registration(kind: str, name: str) -> Registration:
    """The registration of ``kind``/``name`` or a :class:`ComponentNotFoundError`."""
    if not isinstance(name, str) or not name.strip():
        raise ComponentNotFoundError(f"{kind} name must be a non-empty string, got {name!r}")
    manager = get_plugin_manager()
    reg = manager.lookup(kind, name)
    if reg is not None:
        return reg
    installed = sorted(r.record.name for r in manager.registrations(kind))
    parts = [f"unknown {kind} {name!r}"]
    by_key = {normalize_name(n): n for n in installed}
    keys = difflib.get_close_matches(normalize_name(name), list(by_key), n=3, cutoff=0.6)
    close = [by_key[k] for k in keys]
    if close:
        parts.append(f"did you mean {', '.join(repr(c) for c in close)}?")
    dist = _distribution_for(kind, name)
    if dist is not None and not _dist_installed(dist):
        parts.append(f"it is provided by {dist}: pip install {dist}")
    elif installed:
        parts.append(f"installed {plural(kind)}: {', '.join(installed)}")
    else:
        dists = " ".join(FIRST_PARTY.get(kind, {})) or "a plugin that provides one"
        parts.append(f"no {kind} plugin is installed: pip install {dists}")
    raise ComponentNotFoundError("; ".join(parts))


def _dist_installed(dist: str) -> bool:
    return any(
        normalize_name(p.distribution) == normalize_name(dist) and p.status == "ok"
        for p in get_plugin_manager().plugins()
    )


def missing_distributions(requirements: Iterable[tuple[str, str]]) -> list[str]:
    """First-party distributions needed for ``(kind, name)`` pairs that are not registered."""
    manager = get_plugin_manager()
    missing: list[str] = []
    for kind, name in requirements:
        if manager.lookup(kind, name) is None:
            dist = _distribution_for(kind, name)
            if dist is not None and dist not in missing:
                missing.append(dist)
    return missing


def get_record(kind: str, name: str) -> ComponentRecord:
    """The record registered as ``kind``/``name``."""
    return get_registration(kind, name).record


def list_components(kind: str, pattern: str = "*") -> list[ComponentRecord]:
    """Records (not names) of ``kind`` whose name matches the glob ``pattern``
    (case-insensitive), sorted by name; the ``list_*`` functions give the names."""
    pat = pattern.lower()
    return [
        reg.record
        for reg in get_plugin_manager().registrations(kind)
        if fnmatch.fnmatchcase(reg.record.name.lower(), pat)
    ]


def create(kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Build component ``kind``/``name`` by calling its factory with ``args``/``kwargs``.

    Errors the component raises on purpose (:class:`NeuroplexError`, e.g. a ``ConfigError``
    for bad hyperparameters) pass through; anything else is a bug of the plugin and becomes a
    :class:`PluginError` naming the component, its plugin and its distribution.
    """
    reg = get_registration(kind, name)
    factory = reg.record.load()
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"{kind} {reg.record.name!r} ({reg.origin}) does not accept these arguments: {exc}"
        ) from None
    except ValueError:  # no introspectable signature (C callables): let the call decide
        pass
    try:
        obj = factory(*args, **kwargs)
    except NeuroplexError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{kind} {reg.record.name!r} from {reg.origin} (plugin {reg.plugin!r}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    with contextlib.suppress(TypeError):  # objects that cannot be weakly referenced
        _ORIGINS[obj] = reg
    if kind != "optimizer":  # schedulers save their whole __dict__ in state_dict()
        with contextlib.suppress(AttributeError, TypeError):  # __slots__ or C types
            obj.neuroplex_origin = reg
    return obj


_ORIGINS: weakref.WeakKeyDictionary[Any, Registration] = weakref.WeakKeyDictionary()


def origin_of(component: Any) -> Registration | None:
    """Where a component built by ``create_*`` came from (plugin, distribution, version)."""
    try:
        reg = _ORIGINS.get(component)
    except TypeError:  # unhashable objects
        reg = None
    if reg is None:  # a copy keeps the attribute ``create`` set (deepcopy, pickling)
        reg = getattr(component, "neuroplex_origin", None)
    return reg if isinstance(reg, Registration) else None


def _conforming(kind: str, name: str, obj: Any, protocol: type[_P]) -> _P:
    """``obj`` if it satisfies ``protocol`` (its methods exist), else a :class:`PluginError`
    naming the component and what it lacks."""
    if isinstance(obj, protocol):
        return obj
    members = [m for m in _protocol_members(protocol) if not callable(getattr(obj, m, None))]
    reg = get_registration(kind, name)
    raise PluginError(
        f"{kind} {reg.record.name!r} from {reg.origin}: its factory returned "
        f"{type(obj).__name__}, which does not satisfy neuroplex.protocols.{protocol.__name__} "
        f"(no {', '.join(f'{m}()' for m in members)})"
    )


def _protocol_members(protocol: type) -> list[str]:
    """The public methods a protocol declares, its base protocols' included."""
    return sorted(
        {
            n
            for klass in protocol.__mro__
            if getattr(klass, "_is_protocol", False)
            for n, v in vars(klass).items()
            if callable(v) and not n.startswith("_")
        }
    )


def create_layer(name: str, /, **config: Any) -> torch.nn.Module:
    """Build a layer or activation: ``factory(**config) -> torch.nn.Module``."""
    return create("layer", name, **config)  # type: ignore[no-any-return]


def create_model(config: ModelConfig | str, /, **hyperparameters: Any) -> torch.nn.Module:
    """Build a model from a ``ModelConfig`` or a family name plus hyperparameters."""
    from neuroplex.config import ModelConfig

    if isinstance(config, str):
        config = ModelConfig(name=config, hyperparameters=dict(hyperparameters))
    elif hyperparameters:
        merged = {**config.hyperparameters, **hyperparameters}
        config = ModelConfig(name=config.name, hyperparameters=merged)
    if not isinstance(config, ModelConfig):
        raise ComponentNotFoundError(
            f"create_model expects a ModelConfig or a model name, got {type(config).__name__}"
        )
    return create("model", config.name, config)  # type: ignore[no-any-return]


def _optimizer_record(name: str, role: str) -> None:
    record = get_record("optimizer", name)
    if isinstance(record, OptimizerRecord) and record.role != role:
        raise ComponentNotFoundError(
            f"{name!r} is a {record.role}, not a {role}; {role}s: {', '.join(_names_by_role(role))}"
        )


def _names_by_role(role: str) -> list[str]:
    return [
        r.name
        for r in list_components("optimizer")
        if isinstance(r, OptimizerRecord) and r.role == role
    ]


def create_optimizer(name: str, params: Any, /, **config: Any) -> torch.optim.Optimizer:
    """Build an optimizer over ``params``: ``factory(params, **config)``."""
    _optimizer_record(name, "optimizer")
    return create("optimizer", name, params, **config)  # type: ignore[no-any-return]


def create_scheduler(name: str, optimizer: Any, /, **config: Any) -> Scheduler:
    """Build an LR scheduler for ``optimizer``: ``factory(optimizer, **config)``."""
    _optimizer_record(name, "scheduler")
    obj = create("optimizer", name, optimizer, **config)
    return _conforming("optimizer", name, obj, Scheduler)  # type: ignore[type-abstract]


def create_device(name: str = "auto", /, **config: Any) -> Device:
    """Build a device: ``factory(**config)``. ``"auto"`` is a registered device like any other
    (neuroplex-devices' picks the available device of highest ``DeviceRecord.priority``)."""
    obj = create("device", name, **config)
    return _conforming("device", name, obj, Device)  # type: ignore[type-abstract]


def create_analyzer(name: str, model: Any, /, **config: Any) -> Analyzer:
    """Build an analyzer for ``model`` (torch module, OnnxModule or .onnx path)."""
    obj = create("analyzer", name, model, **config)
    return _conforming("analyzer", name, obj, Analyzer)  # type: ignore[type-abstract]


def create_sink(name: str, /, **config: Any) -> FeedbackSink:
    """Build a feedback sink: ``factory(**config)``."""
    obj = create("feedback_sink", name, **config)
    return _conforming("feedback_sink", name, obj, FeedbackSink)  # type: ignore[type-abstract]


def create_dataset(name: str, /, **config: Any) -> DataSplits:
    """Build a dataset: ``factory(**config) -> DataSplits``."""
    return create("dataset", name, **config)  # type: ignore[no-any-return]


def create_policy(name: str, /, *, max_rounds: int = 3, **options: Any) -> Policy:
    """Build a Mechanic policy: ``factory(max_rounds=max_rounds, **options) -> Policy``.

    The policy must have an ``apply(context)`` method (:class:`~neuroplex.protocols.Policy`).
    """
    from neuroplex.protocols import Policy

    policy = create("policy", name, max_rounds=max_rounds, **options)
    if not isinstance(policy, Policy):
        reg = get_registration("policy", name)
        raise PluginError(
            f"policy {reg.record.name!r} from {reg.origin} (plugin {reg.plugin!r}) built a "
            f"{type(policy).__name__} without an apply(context) method"
        )
    return policy


def _names(kind: str, pattern: str) -> list[str]:
    """Names of the ``kind`` components matching ``pattern`` (case-insensitive glob)."""
    return [r.name for r in list_components(kind, pattern)]


def list_layers(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered layers and activations matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("layer", pattern)


def list_models(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered model families matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("model", pattern)


def list_optimizers(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered optimizers and schedulers matching the glob
    ``pattern``, sorted by name; :func:`list_components` gives the records."""
    return _names("optimizer", pattern)


def list_devices(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered devices matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("device", pattern)


def list_analyzers(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered analyzers matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("analyzer", pattern)


def list_sinks(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered feedback sinks matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("feedback_sink", pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered datasets matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("dataset", pattern)


def list_policies(pattern: str = "*") -> list[str]:
    """Names (not records) of the registered policies matching the glob ``pattern``,
    sorted by name; :func:`list_components` gives the records."""
    return _names("policy", pattern)
