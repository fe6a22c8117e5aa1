"""Datasets from files the user names: CSV and NPZ, validated before use (never executed)."""

from __future__ import annotations

import csv as _csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neuroplex import DataSplits
from neuroplex.errors import ConfigError, DataError
from neuroplex_datasets._splits import make_splits

__all__ = ["csv", "npz"]


def _existing(path: str | Path | None, kind: str) -> Path:
    if not path:
        raise ConfigError(f"the {kind} dataset needs options.path", path="data.options.path")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{kind} file not found: {p}")
    if p.stat().st_size == 0:
        raise DataError(f"{kind} file is empty: {p}")
    return p


def _labels(
    raw: Sequence[object], where: str, task: str, num_classes: int | None
) -> tuple[np.ndarray, list[str]]:
    if task not in ("classification", "regression"):
        raise ConfigError(
            f"task must be 'classification' or 'regression', got {task!r}",
            path="data.options.task",
        )
    if task == "regression":
        try:
            targets = np.asarray([float(v) for v in raw], dtype=np.float64)  # type: ignore[arg-type]
        except ValueError as exc:
            raise DataError(f"{where}: regression targets must be numbers ({exc})") from None
        if not np.isfinite(targets).all():
            row = int(np.flatnonzero(~np.isfinite(targets))[0])
            raise DataError(f"{where}: the target of sample {row} is {targets[row]} (NaN/inf)")
        return targets, []
    values = [str(v).strip() for v in raw]
    if all(_is_int(v) for v in values):
        labels = np.asarray([int(float(v)) for v in values], dtype=np.int64)
        names: list[str] = []
    elif any(_is_number(v) for v in values):
        bad = next(v for v in values if not _is_int(v))
        raise DataError(
            f"{where}: class labels must be integers (or all names), got {bad!r}; "
            "for a numeric target use task = 'regression'"
        )
    else:  # class names: map sorted names to 0..k-1
        names = sorted(set(values))
        index = {n: i for i, n in enumerate(names)}
        labels = np.asarray([index[v] for v in values], dtype=np.int64)
    if len(labels) and labels.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, found {int(labels.min())}")
    if num_classes is not None and len(labels) and labels.max() >= num_classes:
        raise DataError(
            f"{where}: label {int(labels.max())} is out of range for num_classes={num_classes} "
            f"(labels must be 0..{num_classes - 1})"
        )
    return labels, names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_int(text: str) -> bool:
    return _is_number(text) and math.isfinite(float(text)) and float(text).is_integer()


def csv(
    path: str | None = None,
    target: str = "label",
    features: Sequence[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    task: str = "classification",
    num_classes: int | None = None,
    delimiter: str = ",",
) -> DataSplits:
    """A CSV file with a header row: numeric ``features`` (default: every column but
    ``target``) and a ``target`` column of integer labels or class names."""
    p = _existing(path, "csv")
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(_csv.reader(fh, delimiter=delimiter))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"{p}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise DataError(f"{p}: no target column {target!r}; columns: {', '.join(header)}")
    wanted = list(features) if features is not None else [h for h in header if h != target]
    missing = [f for f in wanted if f not in header]
    if missing:
        raise DataError(
            f"{p}: missing feature column(s) {', '.join(map(repr, missing))}; "
            f"columns: {', '.join(header)}"
        )
    cols = [header.index(f) for f in wanted]
    t = header.index(target)
    X = np.empty((len(rows) - 1, len(cols)), dtype=np.float64)
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{p}: line {i} has {len(row)} columns, expected {len(header)}")
        for j, c in enumerate(cols):
            try:
                X[i - 2, j] = float(row[c])
            except ValueError:
                raise DataError(
                    f"{p}: line {i}, column {header[c]!r}: {row[c]!r} is not a number"
                ) from None
            if not math.isfinite(X[i - 2, j]):
                raise DataError(f"{p}: line {i}, column {header[c]!r}: {row[c]!r} (NaN/inf)")
    y, names = _labels([r[t] for r in rows[1:]], f"{p}: column {target!r}", task, num_classes)
    return make_splits(
        X,
        y,
        name=p.stem,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        task=task,
        class_names=names,
        num_classes=num_classes,
    )


def npz(
    path: str | None = None,
    x_key: str = "X",
    y_key: str = "y",
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    task: str = "classification",
    num_classes: int | None = None,
) -> DataSplits:
    """A NumPy ``.npz`` with a numeric ``X`` (n, ...) and labels ``y`` (n,); loaded with
    ``allow_pickle=False`` (object arrays are refused, never unpickled)."""
    p = _existing(path, "npz")
    try:
        with np.load(p, allow_pickle=False) as arrays:
            keys = list(arrays.files)
            if x_key not in keys or y_key not in keys:
                raise DataError(f"{p}: needs arrays {x_key!r} and {y_key!r}; found: {keys}")
            X, y_raw = arrays[x_key], arrays[y_key]
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not a readable .npz of numeric arrays ({exc})") from None
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{p}: {x_key!r} must be numeric, got dtype {X.dtype}")
    if y_raw.ndim != 1:
        raise DataError(f"{p}: {y_key!r} must be 1-D (one label per sample), got {y_raw.shape}")
    floating = np.issubdtype(y_raw.dtype, np.floating)
    if task == "classification" and floating and not np.all(y_raw == np.round(y_raw)):
        raise DataError(f"{p}: {y_key!r} must hold integer class labels")
    y, names = _labels(list(y_raw.tolist()), f"{p}: {y_key!r}", task, num_classes)
    return make_splits(
        X,
        y,
        name=p.stem,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        task=task,
        class_names=names,
        scale="none",
        num_classes=num_classes,
    )
