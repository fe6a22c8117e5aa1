"""Conformance checks for datasets: shapes, dtypes, ranges, deterministic disjoint splits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuroplex.records import DatasetRecord, DataSplits

__all__ = ["CHECKS", "build"]


def build(record: DatasetRecord, seed: int = 0) -> DataSplits:
    config: dict[str, Any] = {"val_fraction": 0.2, "test_fraction": 0.2}
    config.update(record.example_config)
    config["seed"] = seed
    splits = record.load()(**config)
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


CHECKS: list[Callable[[DatasetRecord], None]] = [
    check_shapes_and_dtypes,
    check_values,
    check_deterministic_splits,
]
