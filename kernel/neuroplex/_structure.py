"""The cattrs converter behind :func:`neuroplex.config.structure` and
:func:`~neuroplex.config.unstructure`: strict scalars (no ``"3"`` for an int, no ``True`` for a
number), literal choices with a close match, tables that must be dicts, and every failure
flattened into one :class:`~neuroplex.errors.ConfigError` naming the dotted path.

Generic over attrs classes: the spec's records live in :mod:`neuroplex.config`.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from neuroplex.errors import ConfigError

__all__ = ["is_number", "structure", "unstructure"]

T = TypeVar("T")


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_strict_scalar(kind: type[Any]) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if kind is float and is_number(value):
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
