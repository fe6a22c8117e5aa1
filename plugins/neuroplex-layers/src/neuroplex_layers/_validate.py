"""Argument checks shared by layers and models: messages name the key, value and fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neuroplex.errors import ConfigError

__all__ = ["check_choice", "check_fraction", "check_positive_int", "check_positive_ints"]


def check_positive_int(value: Any, key: str, *, where: str = "") -> int:
    """``value`` as an int > 0, else a ConfigError naming ``where.key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}", path=where or key)
    return value


def check_positive_ints(value: Any, key: str, *, where: str = "") -> tuple[int, ...]:
    """An int or a sequence of ints, each > 0, as a tuple."""
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return tuple(check_positive_int(v, key, where=where) for v in items)


def check_fraction(value: Any, key: str, *, where: str = "") -> float:
    """A float in [0, 1) (a dropout probability)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1
    if not ok:
        raise ConfigError(f"{key} must be in [0, 1), got {value!r}", path=where or key)
    return float(value)


def check_choice(value: Any, key: str, choices: Sequence[Any], *, where: str = "") -> Any:
    """``value`` if it is one of ``choices`` (strings compare case-insensitively)."""
    norm = value.lower() if isinstance(value, str) else value
    for choice in choices:
        if norm == (choice.lower() if isinstance(choice, str) else choice):
            return choice
    raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}", path=where or key)
