"""The bundled datasets: scikit-learn ships these files, nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from neuroplex import DataSplits
from neuroplex.errors import ConfigError
from neuroplex_datasets._splits import make_splits

__all__ = ["breast_cancer", "digits", "iris", "synthetic", "wine"]


def digits(
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    shape: Sequence[int] | None = None,
) -> DataSplits:
    """8x8 digit images as 64 features in [0, 1] (pixel / 16); ``shape=[1, 8, 8]`` for images."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return make_splits(
        bunch.data / 16.0,
        bunch.target,
        name="digits",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        class_names=[str(c) for c in bunch.target_names],
        scale="none",
        shape=shape,
    )


def _tabular(loader: Callable[[], Any], name: str) -> Callable[..., DataSplits]:
    def build(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> DataSplits:
        bunch = loader()
        return make_splits(
            bunch.data,
            bunch.target,
            name=name,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            class_names=list(bunch.target_names),
        )

    build.__name__ = name
    build.__doc__ = f"scikit-learn's {name}: features min-max scaled to [0, 1] on the train split."
    return build


def _sk(name: str) -> Callable[[], Any]:
    def load() -> Any:
        import sklearn.datasets

        return getattr(sklearn.datasets, f"load_{name}")()

    return load


breast_cancer = _tabular(_sk("breast_cancer"), "breast_cancer")
iris = _tabular(_sk("iris"), "iris")
wine = _tabular(_sk("wine"), "wine")


def synthetic(
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    n_samples: int = 600,
    n_features: int = 8,
    n_classes: int = 3,
    task: str = "classification",
    noise: float = 0.5,
) -> DataSplits:
    """Seeded data: Gaussian blobs (``task="classification"``) or ``y = X @ w + noise``."""
    for key, value, low in (("n_samples", n_samples, 2), ("n_features", n_features, 1)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(
                f"must be an integer >= {low}, got {value!r}", path=f"data.options.{key}"
            )
    rng = np.random.default_rng(seed)
    if task == "classification":
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ConfigError(
                f"must be an integer >= 2, got {n_classes!r}", path="data.options.n_classes"
            )
        centers = rng.normal(0, 3, size=(n_classes, n_features))
        y = np.arange(n_samples) % n_classes
        X = centers[y] + rng.normal(0, noise, size=(n_samples, n_features))
        names = [f"class_{c}" for c in range(n_classes)]
        return make_splits(
            X,
            y,
            name="synthetic",
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            class_names=names,
        )
    if task == "regression":
        X = rng.normal(size=(n_samples, n_features))
        target = X @ rng.normal(size=n_features) + rng.normal(0, noise, size=n_samples)
        return make_splits(
            X,
            target,
            name="synthetic",
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            task="regression",
        )
    raise ConfigError(
        f"task must be 'classification' or 'regression', got {task!r}", path="data.options.task"
    )
