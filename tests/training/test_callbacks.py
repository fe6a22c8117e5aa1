"""The Trainer's callback composition and the small modules it is made of: the hook order,
the built-in callbacks (early stopping, non-finite guard, checkpointing, progress), dispatch
only to overriding callbacks, ``should_stop``, the one metric reduction, accumulation windows,
RNG capture and the safe-stop signal flag."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

from neuroplex import TrainingConfig
from neuroplex.training import (
    Callback,
    Checkpointing,
    EarlyStopping,
    NonFiniteGuard,
    ProgressBar,
    Trainer,
    evaluate,
)
from neuroplex.training.callbacks import HOOKS, CallbackList
from neuroplex.training.distributed import Strategy
from neuroplex.training.metrics import MetricLog
from neuroplex.training.precision import Accumulation
from neuroplex.training.rng import rng_state, set_rng_state
from neuroplex.training.signals import SafeStop

pytestmark = pytest.mark.requires_plugins("neuroplex-optim")


def _data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen)
    return x, x[:, :3].argmax(1)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _cfg(**kw: object) -> TrainingConfig:
    base: dict[str, object] = {"epochs": 2, "batch_size": 16, "progress": False}
    base.update(kw)
    return TrainingConfig(**base)  # type: ignore[arg-type]


class Recorder(Callback):
    """Every hook call, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_start(self, trainer):
        self.calls.append("train_start")

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(f"epoch_start {epoch}")

    def on_batch_end(self, trainer, batch_index, metrics):
        self.calls.append(f"batch {batch_index}")

    def on_epoch_end(self, trainer, record):
        self.calls.append(f"epoch_end {record.epoch}")

    def on_event(self, trainer, event):
        self.calls.append(f"event {event.kind}")

    def on_train_end(self, trainer, history):
        self.calls.append("train_end")


def test_hook_order_and_built_ins_around_user_callbacks(tmp_path) -> None:
    x, y = _data(32)
    rec = Recorder()
    config = _cfg(checkpoint_dir=str(tmp_path / "ck"), progress=True, early_stopping_patience=5)
    trainer = Trainer(_model(), config, callbacks=[rec])
    trainer.train((x, y), (x, y))
    kinds = [type(cb) for cb in trainer.callbacks.callbacks]
    assert kinds == [ProgressBar, EarlyStopping, NonFiniteGuard, Recorder, Checkpointing]
    epoch = ["batch 0", "batch 1"]
    assert rec.calls == [
        "train_start",
        *["epoch_start 1", *epoch, "epoch_end 1", "event checkpoint"],
        *["epoch_start 2", *epoch, "epoch_end 2", "event checkpoint"],
        "train_end",
    ]


def test_early_stop_event_reaches_user_callbacks_before_their_epoch_end() -> None:
    x, y = _data()
    rec = Recorder()
    config = _cfg(epochs=10, early_stopping_patience=1, monitor="train_loss", monitor_mode="max")
    history = Trainer(_model(), config, callbacks=[rec]).train((x, y))
    assert history.stopped_early and len(history) == 2  # the loss falls: epoch 2 is worse
    tail = ["event early_stop", "epoch_end 2", "event restore_best", "train_end"]
    assert rec.calls[-4:] == tail
    assert history.events[-1].kind == "restore_best" and history.best_epoch == 1


def test_a_callback_stops_training_with_should_stop() -> None:
    x, y = _data()

    class StopAfterOne(Callback):
        def on_epoch_end(self, trainer, record):
            trainer.should_stop = True

    history = Trainer(_model(), _cfg(epochs=5), callbacks=[StopAfterOne()]).train((x, y))
    assert len(history) == 1 and not history.stopped_early


def test_dispatch_only_to_callbacks_that_override_a_hook() -> None:
    class EpochOnly(Callback):
        def on_epoch_end(self, trainer, record):
            pass

    class Plain:  # any object: only the methods it has
        def on_batch_end(self, trainer, batch_index, metrics):
            pass

    quiet = CallbackList([EpochOnly(), Callback()])
    assert not quiet.has_batch_end
    assert [len(quiet._bound[h]) for h in HOOKS] == [0, 0, 0, 1, 0, 0]
    assert CallbackList([Plain()]).has_batch_end


def test_built_in_callbacks_carry_their_state_through_a_checkpoint(tmp_path) -> None:
    x, y = _data()
    ck = tmp_path / "ck"
    config = _cfg(epochs=3, checkpoint_dir=str(ck), early_stopping_patience=3, monitor="val_loss")
    trainer = Trainer(_model(), config)
    history = trainer.train((x, y), (x[:16], y[:16]))
    state = trainer.state_dict()
    assert state["best"][1] == history.best_epoch and state["best_state"] is not None
    resumed = Trainer(_model(), config)
    resumed.train((x, y), (x[:16], y[:16]), resume="last")
    assert resumed.early_stopping.best == trainer.early_stopping.best
    assert resumed.early_stopping.bad_epochs == trainer.early_stopping.bad_epochs


def test_metric_log_is_item_weighted_and_round_trips() -> None:
    log = MetricLog()
    log.add({"loss": torch.tensor(1.0), "acc": torch.tensor(0.5)}, 10)
    log.add({"loss": torch.tensor(4.0), "acc": torch.tensor(1.0), "n": torch.tensor(30)}, 99)
    means = log.means(Strategy())
    assert means == {"loss": pytest.approx((10 * 1 + 30 * 4) / 40), "acc": pytest.approx(35 / 40)}
    assert log.counts == [10, 30]
    copy = MetricLog()
    copy.load_state_dict(log.state_dict())
    assert copy.means() == means
    floats = MetricLog()  # plain floats reduce the same way
    floats.add({"loss": 1.0}, 10)
    floats.add({"loss": 4.0}, 30)
    assert floats.means() == {"loss": means["loss"]}
    assert MetricLog().means() == {}


def test_evaluate_matches_the_trainers_validation() -> None:
    x, y = _data()
    model = _model()
    history = Trainer(model, _cfg(epochs=1)).train((x, y), (x, y))
    metrics = evaluate(model, (x, y), batch_size=16)
    assert metrics["loss"] == history.epochs[0].val_loss
    assert metrics["accuracy"] == history.epochs[0].val_metrics["accuracy"]


def test_accumulation_windows_and_weights() -> None:
    acc = Accumulation(every=3, total=5, sizes=[4, 4, 4, 4, 2])
    seen = []
    for index, n in enumerate([4, 4, 4, 4, 2]):
        acc.at(index, n)
        seen.append((acc.boundary, acc.items, acc.scale))
    assert seen == [
        (False, 12, 4.0),
        (False, 12, 4.0),
        (True, 12, 4.0),
        (False, 6, 4.0),
        (True, 6, 2.0),  # the epoch's last batch closes the uneven window
    ]
    unknown = Accumulation(every=4, total=8)  # a DataLoader: sizes not known in advance
    unknown.at(0, 16)
    assert (unknown.items, unknown.scale, unknown.boundary) == (0, 0.25, False)


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_safe_stop_flags_a_signal_inside_the_loop_and_raises_outside() -> None:
    stop = SafeStop()
    with stop.installed():
        stop.armed = True
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM  # flagged: the loop stops at its next safe point
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second signal stops at once
        stop.signal, stop.armed = None, False
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # outside the loop: at once
    assert signal.getsignal(signal.SIGTERM) is not stop._handler
