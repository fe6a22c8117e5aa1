"""Stage 3, train: the Trainer on the train/val splits, checkpointing into the run directory;
then the test metrics of the trained model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.config import RunSpec, TrainingConfig
from neuroplex.mechanic import Mechanic
from neuroplex.records import ModelRecord
from neuroplex.run.build import Built, plugin_errors, sharding_policy, training_step
from neuroplex.training import Trainer, evaluate

__all__ = ["Tested", "Trained", "test", "test_metrics", "train", "train_model"]


@attrs.frozen(kw_only=True)
class Trained:
    """The train stage's result: the build stage's, plus the Trainer's history."""

    built: Built
    history: Any


@attrs.frozen(kw_only=True)
class Tested:
    """The trained model's metrics on the test split (``loss``, ``accuracy``, ...)."""

    trained: Trained
    test_metrics: dict[str, float]


def train(built: Built, *, resume: bool, mechanic: Mechanic | None) -> Trained:
    """Train the model as the spec says, checkpointing into ``<run_dir>/checkpoints``."""
    spec, run_dir, data = built.loaded.spec, built.loaded.run_dir, built.loaded.data
    config = _training_config(spec, run_dir)
    history = train_model(
        built.model, built.record, config, data.train, data.val, resume=resume,
        mechanic=mechanic, tag=spec.model.name,
    )  # fmt: skip
    return Trained(built=built, history=history)


def test(trained: Trained, mechanic: Mechanic) -> Tested:
    built = trained.built
    metrics = test_metrics(built.model, built.record, built.loaded.data.test)
    mechanic.record_performance(built.loaded.spec.model.name, metrics, step=0)
    return Tested(trained=trained, test_metrics=metrics)


def _training_config(spec: RunSpec, run_dir: Path, **changes: Any) -> TrainingConfig:
    return attrs.evolve(spec.training, checkpoint_dir=str(run_dir / "checkpoints"), **changes)


def train_model(
    model: torch.nn.Module,
    record: ModelRecord,
    config: TrainingConfig,
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    *,
    resume: bool,
    mechanic: Mechanic | None,
    tag: str,
    step: Any = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train ``model`` in place; ``step`` replaces the family's training step, ``callbacks``
    are extra Trainer callbacks (run after the one that sends epochs to ``mechanic``)."""
    every: list[Any] = []
    if mechanic is not None:
        every.append(_EpochToMechanic(mechanic, tag))
    every.extend(callbacks)
    step = step if step is not None else training_step(record)
    sharding = sharding_policy(record, config.strategy)
    trainer = Trainer(model, config, step=step, callbacks=every, sharding=sharding)
    with plugin_errors(model, "model", record.name, "training"):
        return trainer.train(train, val, resume="last" if resume else None)


class _EpochToMechanic:
    """Trainer callback: every finished epoch becomes an ``epoch`` event."""

    def __init__(self, mechanic: Mechanic, tag: str) -> None:
        self.mechanic = mechanic
        self.tag = tag

    def on_epoch_end(self, trainer: Any, epoch: Any) -> None:
        index = int(getattr(epoch, "epoch", 0))
        self.mechanic.record_epoch(self.tag, epoch, step=index)


@torch.no_grad()
def test_metrics(
    model: torch.nn.Module, record: ModelRecord, split: tuple[Any, Any]
) -> dict[str, float]:
    """The metrics of :func:`neuroplex.training.evaluate` on ``split`` through the family's
    ``eval_step`` (or the supervised default), a plugin's failure named as such."""
    with plugin_errors(model, "model", record.name, "evaluating"):
        metrics = evaluate(model, split, step=training_step(record))
    return {k: float(v) for k, v in metrics.items()}
