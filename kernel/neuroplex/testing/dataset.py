"""Conformance checks for datasets: shapes, dtypes, ranges, deterministic disjoint splits.

Each check builds the dataset from the record's ``example_config`` (``val_fraction`` and
``test_fraction`` default to 0.2) and raises AssertionError saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuroplex.records import DatasetRecord, DataSplits

__all__ = ["CHECKS", "build"]


def _config(record: DatasetRecord, seed: int) -> dict[str, Any]:
    config: dict[str, Any] = {"val_fraction": 0.2, "test_fraction": 0.2}
    config.update(record.example_config)
    config["seed"] = seed
    return config


def build(record: DatasetRecord, seed: int = 0) -> DataSplits:
    """The record's factory called with its example config (fractions default to 0.2)."""
    splits = record.load()(**_config(record, seed))
    assert isinstance(splits, DataSplits), f"returned {type(splits).__name__}, not DataSplits"
    return splits


def _parts(splits: DataSplits) -> list[tuple[str, Any, Any]]:
    return [("train", *splits.train), ("val", *splits.val), ("test", *splits.test)]


def check_shapes_and_dtypes(record: DatasetRecord) -> None:
    import torch

    splits = build(record)
    for name, x, y in _parts(splits):
        assert isinstance(x, torch.Tensor), f"{name} X is {type(x).__name__}, not a tensor"
        assert tuple(x.shape[1:]) == tuple(splits.input_shape), (
            f"{name} X has sample shape {tuple(x.shape[1:])}, input_shape says {splits.input_shape}"
        )
        assert x.dtype == torch.float32, f"{name} X dtype {x.dtype}, expected float32"
        if y is not None:
            assert len(y) == len(x), f"{name}: {len(x)} samples, {len(y)} labels"
            if splits.task == "classification":
                assert y.dtype == torch.int64, f"{name} y dtype {y.dtype}, expected int64"


def check_values(record: DatasetRecord) -> None:
    import torch

    splits = build(record)
    lo, hi = splits.input_range
    for name, x, y in _parts(splits):
        if len(x) == 0:
            continue
        assert torch.isfinite(x).all(), f"{name} X contains NaN or inf"
        assert float(x.min()) >= lo and float(x.max()) <= hi, (
            f"{name} X leaves input_range {splits.input_range}: "
            f"[{float(x.min())}, {float(x.max())}]"
        )
        if y is not None and splits.task == "classification":
            assert splits.num_classes is not None, "classification data must set num_classes"
            assert int(y.min()) >= 0 and int(y.max()) < splits.num_classes, (
                f"{name} labels outside 0..{splits.num_classes - 1}"
            )


def check_deterministic_splits(record: DatasetRecord) -> None:
    import torch

    a, b, c = build(record, seed=0), build(record, seed=0), build(record, seed=1)
    for (name, xa, _), (_, xb, _) in zip(_parts(a), _parts(b), strict=True):
        assert torch.equal(xa, xb), f"{name} split differs between two builds with seed 0"
    assert not torch.equal(a.train[0], c.train[0]), "seeds 0 and 1 give the same train split"
    sizes = [len(x) for _, x, _ in _parts(a)]
    assert sizes[0] > 0, "the train split is empty"
    assert sum(sizes) == sum(len(x) for _, x, _ in _parts(c)), "split sizes depend on the seed"


def check_split_sizes_and_disjointness(record: DatasetRecord) -> None:
    """Split sizes follow the fractions; held-out samples are not copies of train samples.

    Sizes may differ from ``fraction * total`` by one per class (stratified rounding). A
    held-out row identical to a train row is counted as overlap; more than 5% of the held-out
    rows (at least 2) means the splits are not disjoint (or the data is full of duplicates).
    """
    import torch

    config = _config(record, 0)
    splits = build(record)
    parts = _parts(splits)
    total = sum(len(x) for _, x, _ in parts)
    slack = (splits.num_classes or 1) + 1
    for (name, x, _), key in zip(parts[1:], ("val_fraction", "test_fraction"), strict=True):
        expected = float(config[key]) * total
        assert abs(len(x) - expected) <= slack, (
            f"{name} split has {len(x)} of {total} samples; {key}={config[key]} asks for about "
            f"{expected:.0f}"
        )
    train = {tuple(row.tolist()) for row in splits.train[0].reshape(len(splits.train[0]), -1)}
    held_out = torch.cat([splits.val[0], splits.test[0]])
    shared = sum(tuple(row.tolist()) in train for row in held_out.reshape(len(held_out), -1))
    assert shared <= max(1, 0.05 * len(held_out)), (
        f"{shared} of {len(held_out)} val/test samples are identical to train samples: "
        "the splits are not disjoint"
    )


CHECKS: list[Callable[[DatasetRecord], None]] = [
    check_shapes_and_dtypes,
    check_values,
    check_deterministic_splits,
    check_split_sizes_and_disjointness,
]
