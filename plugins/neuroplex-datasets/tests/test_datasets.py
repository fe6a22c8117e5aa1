"""Datasets: bundled sets, files with clear errors, deterministic splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuroplex
from neuroplex import ConfigError, DataError, DatasetRecord, DataSplits


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
    # every feature spans exactly [0, 1] on the train split: the scaler saw only train rows
    # (fitted on all rows, some of the 13 features would have their extreme in val/test)
    assert torch.equal(x.min(dim=0).values, torch.zeros(13))
    assert torch.equal(x.max(dim=0).values, torch.ones(13))
    assert d.input_range == (0.0, 1.0)  # val/test are clipped into the train range
    held_out = torch.cat([d.val[0], d.test[0]])
    assert bool(((held_out == 0) | (held_out == 1)).any())  # some were clipped


def test_same_seed_same_splits_other_seed_other_splits() -> None:
    a, b = neuroplex.create_dataset("iris", seed=5), neuroplex.create_dataset("iris", seed=5)
    c = neuroplex.create_dataset("iris", seed=6)
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.test[1], b.test[1])
    assert not torch.equal(a.test[0], c.test[0])
    # stratified: test_fraction 0.15 of each class of 50 (round(7.5) == 8)
    assert torch.bincount(a.test[1]).tolist() == [8, 8, 8]


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


def test_csv_num_classes_option_and_task(write_csv) -> None:
    path = write_csv("a,b,label\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(20)) + "\n")
    assert neuroplex.create_dataset("csv", path=path, num_classes=5).num_classes == 5
    with pytest.raises(ConfigError, match="task must be 'classification' or 'regression'"):
        neuroplex.create_dataset("csv", path=path, task="ranking")
    nan_target = write_csv("a,y\n1,0.5\n2,nan\n3,1.5\n")
    with pytest.raises(DataError, match="column 'y': the target of sample 1 is nan"):
        neuroplex.create_dataset("csv", path=nan_target, target="y", task="regression")


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
    short = tmp_path / "short.npz"
    np.savez(short, X=rng.random((10, 3)), y=np.zeros(9, dtype=int))
    with pytest.raises(DataError, match="10 samples but 9 labels"):
        neuroplex.create_dataset("npz", path=str(short))
    fractional = tmp_path / "fractional.npz"
    np.savez(fractional, X=rng.random((4, 3)), y=np.array([0.0, 1.0, 0.5, 1.0]))
    with pytest.raises(DataError, match="'y' must hold integer class labels"):
        neuroplex.create_dataset("npz", path=str(fractional))


def test_synthetic_regression() -> None:
    d = neuroplex.create_dataset("synthetic", task="regression", n_samples=100, n_features=4)
    assert d.task == "regression" and d.train[1].dtype == torch.float32
    with pytest.raises(ConfigError, match="task must be 'classification' or 'regression'"):
        neuroplex.create_dataset("synthetic", task="ranking")


def _leaky(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> DataSplits:
    """A broken dataset: val and test are copies of the first training rows."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(50, 3, generator=gen), torch.arange(50) % 2
    return DataSplits(
        train=(x[:30], y[:30]),
        val=(x[:10], y[:10]),
        test=(x[10:20], y[10:20]),
        input_shape=(3,),
        num_classes=2,
    )


def _short_test(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> DataSplits:
    """A broken dataset: the test split ignores test_fraction."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(50, 3, generator=gen), torch.arange(50) % 2
    return DataSplits(
        train=(x[:38], y[:38]),
        val=(x[38:48], y[38:48]),
        test=(x[48:], y[48:]),
        input_shape=(3,),
        num_classes=2,
    )


def test_conformance_check_catches_overlapping_and_missized_splits() -> None:
    from neuroplex.testing.dataset import check_split_sizes_and_disjointness

    leaky = DatasetRecord(name="leaky", factory=_leaky, summary="val/test copy train rows")
    with pytest.raises(AssertionError, match="20 of 20 val/test samples are identical"):
        check_split_sizes_and_disjointness(leaky)
    short = DatasetRecord(name="short", factory=_short_test, summary="test split too small")
    with pytest.raises(AssertionError, match="test split has 2 of 50 samples"):
        check_split_sizes_and_disjointness(short)
