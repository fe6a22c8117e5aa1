"""Deterministic, stratified train/val/test splits and train-only scaling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neuroplex import DataSplits
from neuroplex.errors import ConfigError, DataError

__all__ = ["check_fractions", "make_splits"]


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, int | float) or not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"must be in [0, 1), got {value!r}", path=f"data.{name}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1 (got {val_fraction} + {test_fraction}); "
            "leave some data for training",
            path="data",
        )


def _split_indices(
    y: np.ndarray | None, n: int, seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class shuffles from ``seed``: each split keeps the class proportions."""
    rng = np.random.default_rng(seed)
    if y is None or not np.issubdtype(y.dtype, np.integer):
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    train, val, test = [], [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))  # type: ignore[return-value]


def make_splits(
    X: np.ndarray,
    y: np.ndarray | None,
    *,
    name: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    task: str = "classification",
    class_names: Sequence[str] = (),
    scale: str = "minmax",
    shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> DataSplits:
    """Split ``X``/``y`` deterministically and scale features to [0, 1].

    ``scale="minmax"`` maps each feature through the *train split's* min and max and clips
    to [0, 1] (no leakage from val/test); ``scale="none"`` keeps values (X must already be in
    [0, 1] for ``input_range`` to hold — it is computed, not assumed). ``num_classes``
    defaults to the largest label + 1.

    Returns splits with X of shape (n_split, *shape) float32 and y of shape (n_split,)
    (int64 for classification, float32 for regression).
    """
    check_fractions(val_fraction, test_fraction)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2 or len(X) == 0:
        raise DataError(f"dataset {name!r}: expected a non-empty (n_samples, n_features) array")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=tuple(range(1, X.ndim))).sum())
        raise DataError(f"dataset {name!r}: {bad} sample(s) contain NaN or inf values")
    if y is not None and len(y) != len(X):
        raise DataError(f"dataset {name!r}: {len(X)} samples but {len(y)} labels")
    train_idx, val_idx, test_idx = _split_indices(y, len(X), seed, val_fraction, test_fraction)
    if len(train_idx) == 0:
        raise DataError(f"dataset {name!r}: too few samples ({len(X)}) for these fractions")
    flat = X.reshape(len(X), -1)
    if scale == "minmax":
        lo = flat[train_idx].min(axis=0)
        span = flat[train_idx].max(axis=0) - lo
        span[span == 0] = 1.0
        flat = np.clip((flat - lo) / span, 0.0, 1.0)
    elif scale != "none":
        raise ConfigError(
            f"scale must be 'minmax' or 'none', got {scale!r}", path="data.options.scale"
        )
    sample_shape = tuple(int(s) for s in shape) if shape else tuple(X.shape[1:])
    if int(np.prod(sample_shape)) != flat.shape[1]:
        raise ConfigError(
            f"shape {list(sample_shape)} holds {int(np.prod(sample_shape))} values but a sample "
            f"of {name!r} has {flat.shape[1]}",
            path="data.options.shape",
        )
    data = torch.from_numpy(flat.astype(np.float32)).reshape(len(X), *sample_shape)
    labels = None
    if y is not None:
        labels = torch.from_numpy(
            y.astype(np.int64) if task == "classification" else y.astype(np.float32)
        )

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = torch.from_numpy(idx)
        return data[index].contiguous(), None if labels is None else labels[index].contiguous()

    if labels is None or task != "classification":
        num_classes = None
    elif num_classes is None:
        num_classes = int(labels.max()) + 1
    elif int(labels.max()) >= num_classes:
        raise DataError(
            f"dataset {name!r}: label {int(labels.max())} is out of range for "
            f"num_classes={num_classes} (labels must be 0..{num_classes - 1})"
        )
    return DataSplits(
        train=part(train_idx),
        val=part(val_idx),
        test=part(test_idx),
        input_shape=sample_shape,
        num_classes=num_classes,
        class_names=tuple(str(c) for c in class_names),
        input_range=(float(data.min()), float(data.max())),
        task=task,
        name=name,
    )
