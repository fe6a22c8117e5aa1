"""Stage 1, data: the spec's dataset, split into train/val/test with the run's seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.config import RunSpec
from neuroplex.errors import ConfigError
from neuroplex.records import DataSplits
from neuroplex.registry import create_dataset

__all__ = ["Loaded", "load", "load_data"]


@attrs.frozen(kw_only=True)
class Loaded:
    """The data stage's result: the spec, its run directory and the dataset's splits."""

    spec: RunSpec
    run_dir: Path
    data: DataSplits


def load(spec: RunSpec, run_dir: Path) -> Loaded:
    return Loaded(spec=spec, run_dir=run_dir, data=load_data(spec))


def load_data(spec: RunSpec) -> DataSplits:
    options = dict(spec.data.options)
    for key in ("seed", "val_fraction", "test_fraction"):
        if key in options:
            raise ConfigError(
                f"set {key} in [data] (or training.seed), not in data.options",
                path=f"data.options.{key}",
            )
    splits = create_dataset(
        spec.data.name,
        seed=spec.training.seed,
        val_fraction=spec.data.val_fraction,
        test_fraction=spec.data.test_fraction,
        **options,
    )
    if not isinstance(splits, DataSplits):
        raise ConfigError(
            f"dataset {spec.data.name!r} returned {type(splits).__name__}, not DataSplits",
            path="data.name",
        )
    return splits


def _xy(split: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    x, y = split
    return torch.as_tensor(x), (None if y is None else torch.as_tensor(y))
