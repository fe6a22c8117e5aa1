"""Typed configuration: attrs classes, (un)structured by cattrs from TOML, JSON or dicts.

Unknown keys and bad values raise :class:`~neuroplex.ConfigError` naming the dotted path,
the bad value, what was expected and close matches. ``structure(unstructure(x)) == x``.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from neuroplex.errors import ConfigError

__all__ = [
    "AnalysisConfig",
    "AnalyzerSpec",
    "DataConfig",
    "ExportConfig",
    "FeedbackConfig",
    "ModelConfig",
    "PluginsConfig",
    "PolicyConfig",
    "RunSpec",
    "SinkSpec",
    "TrainingConfig",
    "load_spec",
    "structure",
    "unstructure",
]

T = TypeVar("T")

Precision = Literal["fp32", "bf16", "fp16"]
NonFinitePolicy = Literal["skip", "stop", "rollback"]
Strategy = Literal["single", "ddp"]
Mode = Literal["min", "max"]


# ---------------------------------------------------------------- validators
def _positive(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not _is_number(value) or value <= 0):
        raise ConfigError(f"must be > 0, got {value!r}", path=attribute.name)


def _non_negative(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not _is_number(value) or value < 0):
        raise ConfigError(f"must be >= 0, got {value!r}", path=attribute.name)


def _fraction(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ConfigError(f"must be in [0, 1), got {value!r}", path=attribute.name)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _name(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be a non-empty name, got {value!r}", path=attribute.name)


# ---------------------------------------------------------------- records
@attrs.frozen(kw_only=False)
class ModelConfig:
    """A model family and its hyperparameters: ``ModelConfig(name="cnn", hyperparameters={...})``.

    ``name`` is a registered model name (``neuroplex list model``); ``hyperparameters`` are the
    family's own keys, validated by the family.
    """

    name: str = attrs.field(validator=_name)
    hyperparameters: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """How to train. The seed's fields first: ``epochs``, ``batch_size``, ``learning_rate``,
    ``optimizer``, ``use_gpu``.

    ``use_gpu=True`` picks the best available device (``device="auto"``); ``use_gpu=False``
    forces ``cpu``. ``device`` names a registered device and overrides ``use_gpu``.
    """

    epochs: int = attrs.field(default=10, validator=_positive)
    batch_size: int = attrs.field(default=32, validator=_positive)
    learning_rate: float = attrs.field(default=1e-3, validator=_positive)
    optimizer: str = attrs.field(default="adam", validator=_name)
    use_gpu: bool = False
    device: str | None = None
    optimizer_params: dict[str, Any] = attrs.field(factory=dict)
    weight_decay: float = attrs.field(default=0.0, validator=_non_negative)
    scheduler: str | None = None
    scheduler_params: dict[str, Any] = attrs.field(factory=dict)
    grad_clip_norm: float | None = attrs.field(default=None, validator=_positive)
    grad_clip_value: float | None = attrs.field(default=None, validator=_positive)
    precision: Precision = "fp32"
    accumulate_grad_batches: int = attrs.field(default=1, validator=_positive)
    early_stopping_patience: int | None = attrs.field(default=None, validator=_positive)
    monitor: str = "val_loss"
    monitor_mode: Mode = "min"
    restore_best: bool = True
    seed: int = 0
    deterministic: bool = False
    shuffle: bool = True
    drop_last: bool = False
    num_workers: int = attrs.field(default=0, validator=_non_negative)
    checkpoint_dir: str | None = None
    keep_last: int = attrs.field(default=1, validator=_positive)
    keep_best: int = attrs.field(default=1, validator=_non_negative)
    nonfinite_policy: NonFinitePolicy = "stop"
    strategy: Strategy = "single"
    #: ddp: how long a collective waits for a peer before the job fails (a dead or hung rank)
    ddp_timeout_s: float = attrs.field(default=300.0, validator=_positive)
    progress: bool | None = None

    def resolved_device(self) -> str:
        """The device name this config asks for (``device`` wins over ``use_gpu``)."""
        if self.device:
            return self.device
        return "auto" if self.use_gpu else "cpu"


@attrs.frozen(kw_only=True)
class DataConfig:
    """Which dataset (a registered name) and its options (``seed``, fractions, paths...)."""

    name: str = attrs.field(validator=_name)
    options: dict[str, Any] = attrs.field(factory=dict)
    val_fraction: float = attrs.field(default=0.15, validator=_fraction)
    test_fraction: float = attrs.field(default=0.15, validator=_fraction)


@attrs.frozen(kw_only=True)
class ExportConfig:
    """ONNX export: ``enabled``, ``opset``, gradient graph, verification tolerances."""

    enabled: bool = True
    opset: int = attrs.field(default=18, validator=_positive)
    gradients: bool = True
    verify: bool = True
    atol: float = attrs.field(default=1e-5, validator=_positive)
    rtol: float = attrs.field(default=1e-4, validator=_positive)


@attrs.frozen(kw_only=True)
class AnalyzerSpec:
    """One analysis to run: a registered analyzer name and its options.

    ``id`` names this entry's result (its ``results.json`` section, its sink events, its
    report section); it defaults to ``name``, so the same analyzer listed twice (e.g. once on
    ``onnx`` and once on ``torch``) needs an ``id`` on at least one of the two entries.
    """

    name: str = attrs.field(validator=_name)
    options: dict[str, Any] = attrs.field(factory=dict)
    backend: Literal["onnx", "torch"] = "onnx"
    n_samples: int = attrs.field(default=256, validator=_positive)
    id: str | None = attrs.field(default=None, validator=attrs.validators.optional(_name))

    @property
    def key(self) -> str:
        """What the entry's result is filed under: ``id``, else ``name``."""
        return self.id if self.id is not None else self.name


def _unique_ids(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    seen: dict[str, int] = {}
    for i, spec in enumerate(value):
        first = seen.setdefault(spec.key, i)
        if first != i:
            other = value[first]
            raise ConfigError(
                f"{spec.key!r} is also the id of {attribute.name}[{first}] ({other.name} on "
                f"{other.backend}); an entry's id defaults to its analyzer name, so give one "
                f'of the two its own id, e.g. id = "{spec.name}-{spec.backend}"',
                path=f"{attribute.name}[{i}].id",
            )


@attrs.frozen(kw_only=True)
class AnalysisConfig:
    analyzers: list[AnalyzerSpec] = attrs.field(factory=list, validator=_unique_ids)


@attrs.frozen(kw_only=True)
class SinkSpec:
    """One feedback sink: a registered sink name and its options."""

    name: str = attrs.field(validator=_name)
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PolicyConfig:
    """A Mechanic policy, e.g. ``adversarial``: retrain while vulnerable, under budget."""

    name: str = attrs.field(validator=_name)
    options: dict[str, Any] = attrs.field(factory=dict)
    max_rounds: int = attrs.field(default=3, validator=_positive)


@attrs.frozen(kw_only=True)
class FeedbackConfig:
    sinks: list[SinkSpec] = attrs.field(factory=lambda: [SinkSpec(name="sqlite")])
    policies: list[PolicyConfig] = attrs.field(factory=list)
    sink_timeout_s: float = attrs.field(default=10.0, validator=_positive)


@attrs.frozen(kw_only=True)
class PluginsConfig:
    """Plugin selection by entry-point name: ``enable`` (allow list; ``None`` = all),
    ``disable`` (deny list), ``prefer`` (``{"kind:name": "distribution"}`` resolving a name
    registered by two distributions), ``strict`` (failures are errors)."""

    enable: list[str] | None = None
    disable: list[str] = attrs.field(factory=list)
    prefer: dict[str, str] = attrs.field(factory=dict)
    strict: bool = False


@attrs.frozen(kw_only=True)
class RunSpec:
    """A whole run: data → model → training → export → analysis → feedback."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = attrs.field(factory=TrainingConfig)
    export: ExportConfig = attrs.field(factory=ExportConfig)
    analysis: AnalysisConfig = attrs.field(factory=AnalysisConfig)
    feedback: FeedbackConfig = attrs.field(factory=FeedbackConfig)
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    name: str = "run"
    output_dir: str = "runs"


# ---------------------------------------------------------------- (un)structuring
_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_strict_scalar(kind: type[Any]) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if kind is float and _is_number(value):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        raise ConfigError(f"expected {kind.__name__}, got {value!r} ({type(value).__name__})")

    return hook


for _kind in (int, float, bool, str):
    _converter.register_structure_hook(_kind, _structure_strict_scalar(_kind))


def _structure_dict(value: Any, type_: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a table/dict, got {value!r} ({type(value).__name__})")
    args = typing.get_args(type_)
    value_type = args[1] if len(args) == 2 else Any
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError(f"keys must be strings, got {key!r}")
        if value_type is str and not isinstance(item, str):
            raise ConfigError(f"expected a string, got {item!r}", path=key)
        out[key] = item
    return out


def _is_dict_type(type_: Any) -> bool:
    origin: Any = typing.get_origin(type_)
    return origin is dict


_converter.register_structure_hook_func(_is_dict_type, _structure_dict)


def _is_literal(type_: Any) -> bool:
    origin: Any = typing.get_origin(type_)
    return origin is Literal


def _structure_literal(value: Any, type_: Any) -> Any:
    choices = typing.get_args(type_)
    if value in choices and type(value) in {type(c) for c in choices}:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    valid = ", ".join(repr(c) for c in choices)
    raise ConfigError(f"{value!r} is not one of {valid}{hint}")


_converter.register_structure_hook_func(_is_literal, _structure_literal)


def _attrs_hook_factory(cls: type[Any]) -> Any:
    inner = make_dict_structure_fn(cls, _converter, _cattrs_forbid_extra_keys=True)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"expected a table/dict for {cls.__name__}, got {type(value).__name__}"
            )
        return inner(value, type_)

    return hook


_converter.register_structure_hook_factory(attrs.has, _attrs_hook_factory)


def _field_names(cls: type[Any]) -> list[str]:
    return [a.name for a in attrs.fields(cls)] if attrs.has(cls) else []


def _first_error(exc: BaseException, cls: type[Any], path: str) -> ConfigError:
    """Flatten a cattrs exception group into one ConfigError with a dotted path."""
    if isinstance(exc, ConfigError):
        full = ".".join(p for p in (path, exc.path) if p)
        message = str(exc)
        if exc.path and message.startswith(f"{exc.path}: "):
            message = message[len(exc.path) + 2 :]
        return ConfigError(message, path=full)
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = _field_names(exc.cl)
        key = sorted(exc.extra_fields, key=repr)[0]  # keys may be of any type (and mixed)
        shown = key if isinstance(key, str) and key.strip() else repr(key)
        where = ".".join(p for p in (path, shown) if p)
        if not isinstance(key, str):
            return ConfigError(f"keys must be strings, got {key!r}", path=where)
        close = difflib.get_close_matches(key, valid, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return ConfigError(f"unknown key; valid keys: {', '.join(valid)}{hint}", path=where)
    if isinstance(exc, ClassValidationError | IterableValidationError):
        # an unknown key (a typo) explains more than the missing key it causes
        subs = sorted(exc.exceptions, key=lambda e: not isinstance(e, ForbiddenExtraKeysError))
        for sub in subs:
            notes = getattr(sub, "__notes__", [])
            sub_path, sub_cls = path, cls
            for note in notes:
                name = getattr(note, "name", None)
                index = getattr(note, "index", None)
                if name is not None:
                    sub_path = ".".join(p for p in (path, str(name)) if p)
                    hints = typing.get_type_hints(cls) if attrs.has(cls) else {}
                    sub_cls = _innermost_attrs(hints.get(str(name), type(None)))
                elif index is not None:
                    sub_path = f"{path}[{index}]"
                    sub_cls = _innermost_attrs(getattr(exc, "cl", type(None)))
            return _first_error(sub, sub_cls, sub_path)
    if isinstance(exc, KeyError):
        return ConfigError("required key is missing", path=path)
    if isinstance(exc, ValueError | TypeError):
        return ConfigError(str(exc), path=path)
    return ConfigError(f"{type(exc).__name__}: {exc}", path=path)


def _innermost_attrs(tp: Any) -> type[Any]:
    if attrs.has(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _innermost_attrs(arg)
        if attrs.has(found):
            return found
    return type(None)


def structure(data: Any, cls: type[T], *, path: str = "") -> T:
    """Build ``cls`` from plain data; every failure is a :class:`ConfigError` with a path."""
    if attrs.has(cls) and not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a table/dict for {cls.__name__}, got {type(data).__name__}", path=path
        )
    try:
        return _converter.structure(data, cls)
    except (ConfigError, cattrs.BaseValidationError, KeyError, ValueError, TypeError) as exc:
        raise _first_error(exc, cls, path) from None


def unstructure(obj: Any) -> Any:
    """Plain dicts/lists of ``obj`` (inverse of :func:`structure`)."""
    return _converter.unstructure(obj)


def load_spec(source: str | Path | Mapping[str, Any]) -> RunSpec:
    """Load a :class:`RunSpec` from a TOML or JSON file path, or a dict."""
    if isinstance(source, Mapping):
        return structure(source, RunSpec)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"spec file not found: {path} (give the path to a .toml or .json spec)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read spec {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # decode errors; ints past the digit limit
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    return structure(data, RunSpec)
