"""The Trainer's promises: exact resume, accumulation, clipping, AMP, early stopping,
non-finite policies, config errors and step resolution."""

from __future__ import annotations

import pytest
import torch

from neuroplex import ComponentNotFoundError, ConfigError, TrainingConfig, TrainingError
from neuroplex.training import Callback, EpochRecord, History, Trainer

pytestmark = pytest.mark.requires_plugins("neuroplex-optim", "neuroplex-devices")


def make_data(n: int = 96, d: int = 6, classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = (x[:, :classes].argmax(1)).long()
    return x, y


def make_mlp(seed: int = 0, d: int = 6, classes: int = 3, dropout: float = 0.0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d, 16),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(16, classes),
    )


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def data():
    return make_data()


def cfg(**kw) -> TrainingConfig:
    base = {"epochs": 3, "batch_size": 16, "learning_rate": 0.05, "progress": False}
    base.update(kw)
    return TrainingConfig(**base)


class InterruptAfter(Callback):
    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def on_batch_end(self, trainer, batch_index, metrics) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


@pytest.mark.parametrize(("accumulate", "stop_after"), [(1, 9), (2, 9), (1, 6)])
def test_interrupted_and_resumed_run_is_bit_identical(
    tmp_path, data, accumulate, stop_after
) -> None:
    x, y = data
    kw = {
        "epochs": 3,
        "optimizer": "adam",
        "scheduler": "step",
        "scheduler_params": {"step_size": 1, "gamma": 0.7},
        "deterministic": True,
        "seed": 7,
        "accumulate_grad_batches": accumulate,
        "keep_last": 2,
    }
    ref = make_mlp(dropout=0.2)
    ref_history = Trainer(ref, cfg(**kw)).train((x, y), (x[:32], y[:32]))

    ckpt = tmp_path / "ck"
    model = make_mlp(dropout=0.2)
    # 6 batches per epoch: stop after batch 9 (mid-epoch 2, inside an accumulation window)
    # or after batch 6 (the last batch of epoch 1, before its validation)
    callback = InterruptAfter(stop_after)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, cfg(checkpoint_dir=str(ckpt), **kw), callbacks=[callback]).train(
            (x, y), (x[:32], y[:32])
        )
    assert (ckpt / "interrupt.pt").is_file()
    fresh = make_mlp(seed=123, dropout=0.2)  # different init: everything must come from disk
    history = Trainer(fresh, cfg(checkpoint_dir=str(ckpt), **kw)).train(
        (x, y), (x[:32], y[:32]), resume="last"
    )
    assert history.resumed_from and history.resumed_from.endswith("interrupt.pt")
    assert [e.epoch for e in history.epochs] == [1, 2, 3]
    assert history["val_loss"] == ref_history["val_loss"]
    for key, value in weights(ref).items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_accumulation_equals_the_larger_batch(data) -> None:
    x, y = make_data(n=100)  # uneven: the last window holds 4 items
    a, b = make_mlp(), make_mlp()
    common = {"optimizer": "sgd", "shuffle": False, "epochs": 2, "learning_rate": 0.1}
    Trainer(a, cfg(batch_size=32, **common)).train((x, y))
    Trainer(b, cfg(batch_size=8, accumulate_grad_batches=4, **common)).train((x, y))
    for key, value in weights(a).items():
        torch.testing.assert_close(b.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    # and the window really matters: without accumulation the weights differ
    c = make_mlp()
    Trainer(c, cfg(batch_size=8, **common)).train((x, y))
    assert not torch.allclose(c[0].weight, a[0].weight, atol=1e-4)


def _one_step_delta(**kw) -> torch.Tensor:
    x, y = make_data(n=16)
    model = make_mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = cfg(epochs=1, optimizer="sgd", learning_rate=1.0, batch_size=16, **kw)
    history = Trainer(model, config).train((x * 50, y))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return after - before, history


def test_gradient_clipping_by_norm_and_value() -> None:
    free, h0 = _one_step_delta()
    assert free.norm() > 0.5
    clipped, h1 = _one_step_delta(grad_clip_norm=0.01)
    assert clipped.norm() <= 0.01 * (1 + 1e-5)
    assert h1.epochs[0].grad_norm == pytest.approx(h0.epochs[0].grad_norm, rel=1e-5)
    by_value, _ = _one_step_delta(grad_clip_value=0.001)
    assert by_value.abs().max() <= 0.001 * (1 + 1e-5)


class DtypeProbe(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_mlp()
        self.dtypes: set[torch.dtype] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        self.dtypes.add(out.dtype)
        return out


def test_bf16_autocast_on_cpu(data) -> None:
    x, y = data
    model = DtypeProbe()
    history = Trainer(model, cfg(precision="bf16", optimizer="adam")).train((x, y), (x, y))
    assert model.dtypes == {torch.bfloat16}
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_fp16_on_cpu_falls_back_with_a_message(data) -> None:
    x, y = data
    model = DtypeProbe()
    with pytest.warns(UserWarning, match="fp16.*not supported on CPU"):
        history = Trainer(model, cfg(precision="fp16", epochs=1)).train((x, y))
    assert [e.kind for e in history.events] == ["precision_fallback"]
    assert model.dtypes == {torch.bfloat16}


def test_early_stopping_restores_the_best_weights(data) -> None:
    x, y = data
    y_val = (y + 1) % 3  # the better the model fits train, the worse val gets
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, record: EpochRecord) -> None:
            snapshots[record.epoch] = weights(trainer.model)

    model = make_mlp()
    config = cfg(epochs=20, early_stopping_patience=2, optimizer="adam", learning_rate=0.05)
    history = Trainer(model, config, callbacks=[Keep()]).train((x, y), (x, y_val))
    assert history.stopped_early and history.restored_best
    assert len(history) == history.best_epoch + 2 < 20
    assert history.best_value == min(v for v in history["val_loss"] if v is not None)
    for key, value in snapshots[history.best_epoch].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert [e.kind for e in history.events][-2:] == ["early_stop", "restore_best"]


class NaNAt(Callback):
    """Poisons the model's input on given global batches through a forward pre-hook."""


def _poisoned(model: torch.nn.Module, batches: set[int]) -> torch.nn.Module:
    state = {"i": 0}

    def hook(_m, args):
        i = state["i"]
        state["i"] += 1
        if i in batches:
            return (args[0] * float("nan"),)
        return None

    model[0].register_forward_pre_hook(hook)
    return model


def test_nonfinite_skip_stop_and_rollback(data) -> None:
    x, y = data
    model = _poisoned(make_mlp(), {2})
    history = Trainer(model, cfg(nonfinite_policy="skip", epochs=1)).train((x, y))
    assert history.epochs[0].skipped_batches == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert history.events[0].kind == "nonfinite_skip"

    with pytest.raises(TrainingError, match="non-finite loss.*nonfinite_policy is 'stop'"):
        Trainer(_poisoned(make_mlp(), {2}), cfg(epochs=1)).train((x, y))

    model = _poisoned(make_mlp(), {8})  # epoch 2, batch 2 (6 batches per epoch)
    history = Trainer(model, cfg(nonfinite_policy="rollback", optimizer="sgd")).train((x, y))
    kinds = [e.kind for e in history.events]
    assert kinds == ["rollback"]
    assert history.epochs[-1].learning_rate == pytest.approx(0.025)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    always = _poisoned(make_mlp(), set(range(6, 1000)))
    with pytest.raises(TrainingError, match="after 3 rollbacks"):
        Trainer(always, cfg(nonfinite_policy="rollback")).train((x, y))


def test_bad_config_values_are_clear(data) -> None:
    x, y = data
    with pytest.raises(ComponentNotFoundError, match="unknown optimizer 'adma'.*'adam'"):
        Trainer(make_mlp(), cfg(optimizer="adma")).train((x, y))
    with pytest.raises(ConfigError, match="batch_size 500.*larger than the 96 train items"):
        Trainer(make_mlp(), cfg(batch_size=500, drop_last=True)).train((x, y))
    with pytest.raises(ComponentNotFoundError, match="is a scheduler, not a optimizer"):
        Trainer(make_mlp(), cfg(optimizer="cosine")).train((x, y))
    with pytest.raises(ConfigError, match="monitor 'val_loss' needs validation data"):
        Trainer(make_mlp(), cfg(early_stopping_patience=1)).train((x, y))


def test_inputs_dataset_loader_and_regression(data) -> None:
    x, y = data
    ds = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=16)
    for train in (ds, loader):
        history = Trainer(make_mlp(), cfg(epochs=1, optimizer="Adam")).train(train, (x, y))
        assert isinstance(history, History) and history.epochs[0].val_metrics["accuracy"] > 0
    target = x[:, :1] * 2.0
    model = torch.nn.Linear(6, 1)
    history = Trainer(model, cfg(epochs=30, optimizer="adam")).train((x, target))
    assert "accuracy" not in history.epochs[0].train_metrics
    assert history["train_loss"][-1] < 0.2 * history["train_loss"][0]
    assert history.to_dict()["epochs"][0]["epoch"] == 1


class CountingStep:
    """A family's own step: supervised, but counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def param_groups(self, model):
        return {"model": list(model.parameters())}

    def train_step(self, model, batch, optimize):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        optimize("model", loss)
        return {"loss": loss.detach()}

    def eval_step(self, model, batch):
        return {"loss": torch.nn.functional.cross_entropy(model(batch[0]), batch[1])}


def test_model_supplies_its_own_step(data) -> None:
    x, y = data
    step = CountingStep()

    class Own(torch.nn.Sequential):
        def neuroplex_training_step(self):
            return step

    model = Own(*make_mlp())
    Trainer(model, cfg(epochs=2)).train((x, y))
    assert step.calls == 12
    with pytest.raises(ConfigError, match="lacks param_groups"):
        Trainer(make_mlp(), cfg(), step=object())


class TwoGroupStep:
    """A GAN-like step: two parameter groups, each with its own optimizer and loss."""

    def param_groups(self, model):
        return {"first": list(model[0].parameters()), "second": list(model[1].parameters())}

    def train_step(self, model, batch, optimize):
        x = batch[0]
        loss_a = (model[0](x) ** 2).mean()
        optimize("first", loss_a)
        loss_b = ((model[1](x) - 1.0) ** 2).mean()
        optimize("second", loss_b)
        return {"loss": (loss_a + loss_b).detach(), "loss_first": loss_a.detach()}

    def eval_step(self, model, batch):
        x = batch[0]
        return {"loss": (model[0](x) ** 2).mean() + ((model[1](x) - 1.0) ** 2).mean()}


def test_a_family_step_with_two_optimizers(data) -> None:
    x, _ = data
    torch.manual_seed(0)
    model = torch.nn.ModuleList([torch.nn.Linear(6, 2), torch.nn.Linear(6, 2)])
    trainer = Trainer(model, cfg(epochs=5, optimizer="adam"), step=TwoGroupStep())
    history = trainer.train(x, x)  # unlabelled: batches are (x,)
    assert set(trainer.optimizers) == {"first", "second"}
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert "loss_first" in history.epochs[0].train_metrics


def test_callbacks_receive_typed_records_and_events(data, tmp_path) -> None:
    x, y = data
    seen: list[tuple[str, object]] = []

    class Spy(Callback):
        def on_train_start(self, trainer):
            seen.append(("start", None))

        def on_epoch_end(self, trainer, record):
            seen.append(("epoch", record))

        def on_event(self, trainer, event):
            seen.append(("event", event.kind))

        def on_train_end(self, trainer, history):
            seen.append(("end", history))

    config = cfg(epochs=2, checkpoint_dir=str(tmp_path / "ck"))
    history = Trainer(make_mlp(), config, callbacks=[Spy()]).train((x, y), (x, y))
    kinds = [k for k, _ in seen]
    assert kinds == ["start", "epoch", "event", "epoch", "event", "end"]
    assert all(isinstance(v, EpochRecord) for k, v in seen if k == "epoch")
    assert seen[-1][1] == history and history.epochs[1].overhead_fraction < 1.0


def test_progress_bar_only_when_asked(data, capsys) -> None:
    x, y = data
    Trainer(make_mlp(), cfg(epochs=1, progress=True)).train((x, y))
    assert "epoch 1" in capsys.readouterr().err
    Trainer(make_mlp(), cfg(epochs=1, progress=None)).train((x, y))  # stderr is not a TTY
    assert capsys.readouterr().err == ""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision(data, precision: str) -> None:
    x, y = data
    model = DtypeProbe()
    config = cfg(device="cuda", precision=precision, optimizer="adam", grad_clip_norm=1.0)
    history = Trainer(model, config).train((x, y), (x, y))
    assert next(model.parameters()).device.type == "cuda"
    assert model.dtypes == {torch.float16 if precision == "fp16" else torch.bfloat16}
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_one_seed_makes_runs_bit_identical(data) -> None:
    x, y = data
    runs = []
    for seed in (11, 11, 12):
        model = make_mlp(dropout=0.3)  # same init; dropout and shuffling follow the seed
        Trainer(model, cfg(seed=seed, deterministic=True, optimizer="adam")).train((x, y))
        runs.append(weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
