"""Numeric leaves of event payloads as dotted names."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def numeric_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``{"a": {"b": 1}}`` → ``("a.b", 1.0)``; lists are skipped, booleans become 0/1."""
    if isinstance(value, bool):
        yield prefix, float(value)
    elif isinstance(value, int | float):
        if math.isfinite(float(value)):
            yield prefix, float(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from numeric_leaves(item, f"{prefix}.{key}" if prefix else str(key))


def default_path(path: str | None, run_dir: str | None, filename: str) -> Path:
    if path:
        return Path(path)
    return Path(run_dir or ".") / filename
