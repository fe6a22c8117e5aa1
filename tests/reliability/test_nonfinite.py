"""Non-finite loss or gradients injected mid-training: the configured policy acts (``skip``,
``rollback`` with a learning-rate back-off, ``stop``) and the History says what happened."""

from __future__ import annotations

import math
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ._helpers import cli_env, manifest, run_cli, tiny_spec, write_spec

pytestmark = pytest.mark.requires_plugins(
    "neuroplex-models", "neuroplex-optim", "neuroplex-devices", "neuroplex-datasets"
)

BATCHES = 20  # per epoch: 320 digits, batch 16
EPOCHS = 3


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x[:320] / 16.0, dtype=torch.float32), torch.tensor(y[:320])


def _mlp() -> Any:
    import torch

    from neuroplex import create_model

    torch.manual_seed(0)
    return create_model("mlp", input_size=64, output_size=10, hidden_layers=[{"out_features": 16}])


def _inject(model: Any, what: str, at: int) -> dict[str, int]:
    """Make the ``at``-th training forward's loss NaN (a NaN input), or its gradients
    infinite with a finite loss (a gradient hook on the first weight)."""
    import torch

    state = {"forward": 0, "backward": 0}
    first = next(model.parameters())

    def pre_hook(_module: Any, args: tuple[Any, ...]) -> Any:
        if not model.training:
            return None
        state["forward"] += 1
        if what == "loss" and state["forward"] == at:
            return (args[0] * float("nan"),)
        return None

    def grad_hook(grad: torch.Tensor) -> torch.Tensor:
        state["backward"] += 1
        if what == "gradients" and state["backward"] == at:
            return grad * float("inf")
        return grad

    model.register_forward_pre_hook(pre_hook)
    first.register_hook(grad_hook)
    return state


def _at(what: str, policy: str) -> int:
    """A seeded random batch of epoch 2 (``NEUROPLEX_RELIABILITY_SEED`` changes it)."""
    seed = int(os.environ.get("NEUROPLEX_RELIABILITY_SEED", "20261124"))
    rng = random.Random(f"{seed}-{what}-{policy}")
    return BATCHES + rng.randrange(1, BATCHES - 1)


def _finite(model: Any) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.reliability("fault", "NaN loss / inf gradients mid-training, policy 'skip'")
@pytest.mark.parametrize("what", ["loss", "gradients"])
def test_skip_drops_the_batch_and_says_so(what: str, digits, reliability) -> None:
    from neuroplex import TrainingConfig
    from neuroplex.training import Trainer

    at = _at(what, "skip")
    model = _mlp()
    _inject(model, what, at)
    config = TrainingConfig(epochs=EPOCHS, batch_size=16, nonfinite_policy="skip", progress=False)
    history = Trainer(model, config).train(digits)
    (event,) = history.events
    assert event.kind == "nonfinite_skip"
    assert f"non-finite {what}" in event.message and f"batch {at - BATCHES - 1}" in event.message
    assert event.epoch == 2
    assert [r.skipped_batches for r in history.epochs] == [0, 1, 0]
    assert [r.steps for r in history.epochs] == [BATCHES, BATCHES - 1, BATCHES]
    assert all(math.isfinite(r.train_loss) for r in history.epochs)
    assert _finite(model)  # the bad step never reached the weights
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss  # still learning


@pytest.mark.reliability("fault", "NaN loss / inf gradients mid-training, policy 'rollback'")
@pytest.mark.parametrize("what", ["loss", "gradients"])
def test_rollback_restarts_the_epoch_with_a_lower_learning_rate(what: str, digits) -> None:
    from neuroplex import TrainingConfig
    from neuroplex.training import Trainer

    model = _mlp()
    _inject(model, what, _at(what, "rollback"))
    config = TrainingConfig(
        epochs=EPOCHS, batch_size=16, learning_rate=0.01, nonfinite_policy="rollback",
        progress=False,
    )  # fmt: skip
    history = Trainer(model, config).train(digits)
    (event,) = history.events
    assert event.kind == "rollback" and event.epoch == 2
    assert f"non-finite {what}" in event.message and "learning rate x0.5" in event.message
    assert [r.learning_rate for r in history.epochs] == pytest.approx([0.01, 0.005, 0.005])
    assert [r.skipped_batches for r in history.epochs] == [0, 0, 0]
    assert len(history.epochs) == EPOCHS and _finite(model)


@pytest.mark.reliability("fault", "NaN loss mid-training, policy 'stop'")
def test_stop_raises_a_training_error_naming_where(digits) -> None:
    from neuroplex import TrainingConfig, TrainingError
    from neuroplex.training import Trainer

    at = _at("loss", "stop")
    model = _mlp()
    _inject(model, "loss", at)
    config = TrainingConfig(epochs=EPOCHS, batch_size=16, progress=False)
    with pytest.raises(TrainingError) as info:
        Trainer(model, config).train(digits)
    message = str(info.value)
    assert f"non-finite loss of group 'model' at epoch 2, batch {at - BATCHES - 1}" in message
    assert "nonfinite_policy is 'stop'" in message and "'skip' or 'rollback'" in message


def _epoch_metric(db: Path, metric: str) -> list[float]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT step, value FROM metrics WHERE kind = 'epoch' AND metric = ? ORDER BY step",
            (metric,),
        ).fetchall()
    return [float(v) for _, v in rows]


@pytest.mark.reliability("fault", "inf gradients in `neuroplex run`: skip / stop through the CLI")
@pytest.mark.requires_plugins("neuroplex-sinks")  # the spec records to, and the test reads, sqlite
@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_policies_through_the_cli(policy: str, tmp_path: Path) -> None:
    spec = tiny_spec(training={"epochs": 3, "nonfinite_policy": policy})
    out = tmp_path / "run"
    env = cli_env(NPREL_NONFINITE_AT="100:grad")  # epoch 2 (73 batches per epoch)
    done = run_cli("run", write_spec(tmp_path / "spec.json", spec), "--output", out, env=env)
    assert "inject: non-finite grad in backward pass 100" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if policy == "skip":
        assert done.returncode == 0, done.stderr[-3000:]
        assert manifest(out)["status"] == "completed"
        assert _epoch_metric(out / "neuroplex.sqlite", "skipped_batches") == [0.0, 1.0, 0.0]
        assert all(math.isfinite(v) for v in _epoch_metric(out / "neuroplex.sqlite", "train_loss"))
    else:
        assert done.returncode == 2
        assert "neuroplex: error: non-finite" in done.stderr
        assert "nonfinite_policy is 'stop'" in done.stderr
        state = manifest(out)
        assert state["status"] == "failed" and "TrainingError" in state["error"]
