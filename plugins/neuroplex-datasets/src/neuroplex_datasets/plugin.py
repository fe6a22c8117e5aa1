"""Entry module of neuroplex-datasets: registers the datasets (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from neuroplex import DatasetRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_MOD = "neuroplex_datasets.sets"
#: small example files shipped in the package (75 rows of iris), used by the examples and the
#: conformance kit
EXAMPLES = Path(__file__).parent / "examples"


@hookimpl
def neuroplex_register_datasets() -> Iterator[DatasetRecord]:
    yield DatasetRecord(
        name="digits",
        factory=f"{_MOD}:digits",
        summary="8x8 handwritten digits, 10 classes, 1797 samples (ships with scikit-learn)",
        capabilities={"classification", "images", "bundled"},
        example_config={"test_fraction": 0.2, "val_fraction": 0.1},
    )
    yield DatasetRecord(
        name="breast_cancer",
        factory=f"{_MOD}:breast_cancer",
        summary="Wisconsin breast cancer, 30 features, 2 classes (ships with scikit-learn)",
        capabilities={"classification", "tabular", "bundled"},
    )
    yield DatasetRecord(
        name="iris",
        factory=f"{_MOD}:iris",
        summary="Fisher's iris, 4 features, 3 classes (ships with scikit-learn)",
        capabilities={"classification", "tabular", "bundled"},
    )
    yield DatasetRecord(
        name="wine",
        factory=f"{_MOD}:wine",
        summary="wine recognition, 13 features, 3 classes (ships with scikit-learn)",
        capabilities={"classification", "tabular", "bundled"},
    )
    yield DatasetRecord(
        name="synthetic",
        factory=f"{_MOD}:synthetic",
        summary="seeded Gaussian blobs (classification) or a linear target (regression)",
        capabilities={"classification", "regression", "generated"},
        example_config={"n_samples": 120, "n_features": 5, "n_classes": 3},
    )
    yield DatasetRecord(
        name="csv",
        factory="neuroplex_datasets.files:csv",
        summary="a CSV file: numeric feature columns and an integer label column",
        capabilities={"classification", "regression", "file"},
        example_config={"path": str(EXAMPLES / "iris_sample.csv"), "target": "species"},
    )
    yield DatasetRecord(
        name="npz",
        factory="neuroplex_datasets.files:npz",
        summary="a NumPy .npz file with arrays X and y",
        capabilities={"classification", "regression", "file"},
        example_config={"path": str(EXAMPLES / "iris_sample.npz")},
    )
