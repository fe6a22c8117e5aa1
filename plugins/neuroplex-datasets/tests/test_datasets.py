"""Datasets: bundled sets, files with clear errors, deterministic splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuroplex
from neuroplex import ConfigError, DataError


def test_digits_in_unit_range_with_stratified_splits() -> None:
    d = neuroplex.create_dataset("digits", seed=0, val_fraction=0.15, test_fraction=0.2)
    assert d.input_shape == (64,)
    assert d.num_classes == 10
    assert d.class_names == tuple(str(i) for i in range(10))
    assert d.input_range == (0.0, 1.0)
    assert len(d.train[0]) + len(d.val[0]) + len(d.test[0]) == 1797
    # stratified: every class is in the test split in about its share
    counts = torch.bincount(d.test[1], minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38


def test_digits_as_images() -> None:
    d = neuroplex.create_dataset("digits", shape=[1, 8, 8])
    assert d.train[0].shape[1:] == (1, 8, 8)
    with pytest.raises(ConfigError, match=r"shape \[1, 8, 9\] holds 72 values"):
        neuroplex.create_dataset("digits", shape=[1, 8, 9])


def test_tabular_scaling_uses_the_train_split_only() -> None:
    d = neuroplex.create_dataset("wine", seed=3)
    x = d.train[0]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert d.input_range == (0.0, 1.0)  # val/test are clipped into the train range


def test_bad_fractions() -> None:
    with pytest.raises(ConfigError, match="val_fraction \\+ test_fraction must be < 1"):
        neuroplex.create_dataset("iris", val_fraction=0.5, test_fraction=0.5)


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not accept these arguments"):
        neuroplex.create_dataset("iris", colour="red")


@pytest.fixture
def write_csv(tmp_path):
    def write(text: str):
        path = tmp_path / "data.csv"
        path.write_text(text)
        return str(path)

    return write


def test_csv_loads_with_named_classes(write_csv) -> None:
    rows = "\n".join(f"{i % 7},{i % 5},{'cat' if i % 2 else 'dog'}" for i in range(40))
    d = neuroplex.create_dataset("csv", path=write_csv("a,b,label\n" + rows + "\n"))
    assert d.class_names == ("cat", "dog")
    assert d.input_shape == (2,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,label\n1,2,0\n3,nan,1\n", "line 3, column 'b': 'nan' \\(NaN/inf\\)"),
        ("a,b,label\n1,2,0\n3,1\n", "line 3 has 2 columns, expected 3"),
        ("a,b,target\n1,2,0\n", "no target column 'label'; columns: a, b, target"),
        ("a,b,label\n1,x,0\n", "line 2, column 'b': 'x' is not a number"),
        ("a,b,label\n1,2,0.5\n", "class labels must be integers"),
        ("a,b,label\n1,2,-1\n", "labels must be >= 0, found -1"),
        ("a,b,label\n", "needs a header row and at least one data row"),
    ],
)
def test_csv_errors_are_clear(write_csv, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        neuroplex.create_dataset("csv", path=write_csv(text))


def test_csv_missing_feature_and_label_range(write_csv) -> None:
    path = write_csv("a,b,label\n1,2,0\n3,4,5\n")
    with pytest.raises(DataError, match="missing feature column\\(s\\) 'c'"):
        neuroplex.create_dataset("csv", path=path, features=["a", "c"])
    with pytest.raises(DataError, match="label 5 is out of range for num_classes=3"):
        neuroplex.create_dataset("csv", path=path, num_classes=3)


def test_empty_and_missing_files(tmp_path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="csv file is empty"):
        neuroplex.create_dataset("csv", path=str(empty))
    with pytest.raises(DataError, match="npz file not found"):
        neuroplex.create_dataset("npz", path=str(tmp_path / "nope.npz"))


def test_npz_round_trip_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, X=rng.random((50, 3)), y=np.arange(50) % 2)
    d = neuroplex.create_dataset("npz", path=str(good))
    assert d.num_classes == 2 and d.input_shape == (3,)
    nan = tmp_path / "nan.npz"
    x = rng.random((10, 3))
    x[4, 1] = np.nan
    np.savez(nan, X=x, y=np.zeros(10, dtype=int))
    with pytest.raises(DataError, match="1 sample\\(s\\) contain NaN or inf"):
        neuroplex.create_dataset("npz", path=str(nan))
    obj = tmp_path / "obj.npz"
    np.savez(obj, X=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))
    with pytest.raises(DataError, match="not a readable .npz"):
        neuroplex.create_dataset("npz", path=str(obj))
    keys = tmp_path / "keys.npz"
    np.savez(keys, data=x)
    with pytest.raises(DataError, match="needs arrays 'X' and 'y'; found: \\['data'\\]"):
        neuroplex.create_dataset("npz", path=str(keys))


def test_synthetic_regression() -> None:
    d = neuroplex.create_dataset("synthetic", task="regression", n_samples=100, n_features=4)
    assert d.task == "regression" and d.train[1].dtype == torch.float32
    with pytest.raises(ConfigError, match="task must be 'classification' or 'regression'"):
        neuroplex.create_dataset("synthetic", task="ranking")
