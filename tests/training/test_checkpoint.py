"""Checkpoints: manifest, atomic writes, retention, corruption, safe loading."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from neuroplex import CheckpointError, TrainingConfig
from neuroplex.training import Trainer, find_checkpoints, load_checkpoint, resolve_checkpoint
from neuroplex.training.checkpoint import atomic_write

pytestmark = pytest.mark.requires_plugins("neuroplex-optim", "neuroplex-devices")


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    return x, x[:, :2].argmax(1)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _train(tmp_path: Path, epochs: int = 4, **kw) -> tuple[torch.nn.Module, object, Path]:
    x, y = _data()
    ckpt = tmp_path / "ck"
    config = TrainingConfig(
        epochs=epochs,
        batch_size=16,
        learning_rate=0.05,
        progress=False,
        checkpoint_dir=str(ckpt),
        seed=3,
        **kw,
    )
    model = _model()
    history = Trainer(model, config).train((x, y), (x[:16], y[:16]))
    return model, history, ckpt


def test_manifest_and_checksum(tmp_path: Path) -> None:
    model, history, ckpt = _train(tmp_path, epochs=2)
    (info,) = [c for c in find_checkpoints(ckpt) if c.kind == "epoch"][-1:]
    manifest = json.loads(info.path.with_suffix(".json").read_text())
    assert manifest["sha256"] == hashlib.sha256(info.path.read_bytes()).hexdigest()
    assert manifest["size"] == info.path.stat().st_size
    assert manifest["epoch"] == 2 and manifest["seed"] == 3 and manifest["kind"] == "epoch"
    assert manifest["config"]["batch_size"] == 16 and manifest["config"]["optimizer"] == "adam"
    assert {"neuroplex", "torch", "neuroplex-optim"} <= set(manifest["versions"])
    assert manifest["metrics"]["val_loss"] == pytest.approx(history.epochs[-1].val_loss)
    state = load_checkpoint(info.path)
    for key in ("model", "optimizers", "schedulers", "scaler", "rng", "history", "global_step"):
        assert key in state, key
    assert torch.equal(state["model"]["0.weight"], model.state_dict()["0.weight"])
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert not list(ckpt.glob("*.tmp")), "temporary files left behind"


def test_keep_last_and_best(tmp_path: Path) -> None:
    _, history, ckpt = _train(tmp_path, epochs=5, keep_last=2, keep_best=1)
    epochs = sorted(c.manifest["epoch"] for c in find_checkpoints(ckpt))
    best = history.best_epoch
    assert set(epochs) == {4, 5} | {best}
    assert resolve_checkpoint(ckpt, "best").manifest["epoch"] == best
    assert resolve_checkpoint(ckpt, "last").manifest["epoch"] == 5


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.pt"
    atomic_write(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new content")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_checkpoint_is_an_error_and_resume_uses_the_previous(
    tmp_path: Path, damage: str
) -> None:
    _, _, ckpt = _train(tmp_path, epochs=3, keep_last=3, keep_best=0)
    newest = ckpt / "epoch-0003.pt"
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    else:
        newest.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    with pytest.raises(CheckpointError, match="truncated|sha256 mismatch"):
        load_checkpoint(newest)
    x, y = _data()
    config = TrainingConfig(
        epochs=4, batch_size=16, learning_rate=0.05, progress=False, checkpoint_dir=str(ckpt)
    )
    with pytest.warns(UserWarning, match="epoch-0003.pt"):
        history = Trainer(_model(seed=9), config).train((x, y), resume="last")
    assert history.resumed_from.endswith("epoch-0002.pt")
    assert [e.epoch for e in history.epochs] == [1, 2, 3, 4]
    assert "checkpoint_error" in [e.kind for e in history.events]


def test_missing_manifest_and_unsafe_pickles_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"model": {}}, plain)
    with pytest.raises(CheckpointError, match="no manifest"):
        load_checkpoint(plain)
    # a pickle that would run code: refused by weights_only loading, even with a valid manifest
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": os.getcwd}, evil)
    data = evil.read_bytes()
    evil.with_suffix(".json").write_text(
        json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    )
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(evil)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no last checkpoint"):
        load_checkpoint(empty)


def test_resume_of_a_finished_run_trains_further_epochs(tmp_path: Path) -> None:
    straight, _, _ = _train(tmp_path / "straight", epochs=3)
    _, _, ckpt = _train(tmp_path, epochs=2)
    x, y = _data()
    config = TrainingConfig(
        epochs=3,
        batch_size=16,
        learning_rate=0.05,
        progress=False,
        checkpoint_dir=str(ckpt),
        seed=3,
    )
    resumed = _model(seed=5)
    history = Trainer(resumed, config).train(
        (x, y), (x[:16], y[:16]), resume=ckpt / "epoch-0002.pt"
    )
    assert [e.epoch for e in history.epochs] == [1, 2, 3]
    assert "resume" in [e.kind for e in history.events]
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
