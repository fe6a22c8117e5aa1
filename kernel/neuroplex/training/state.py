"""A Trainer's complete state, for exact resume: what a checkpoint holds and how it comes back.

Tensors and primitive containers only (checkpoints load with ``weights_only=True``): model,
optimizers, schedulers, loss scaler, RNG states, position (epoch, batch in epoch, optimizer
steps), the unfinished epoch's metrics and accumulated gradients, history, events and the
early-stopping state.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroplex.errors import CheckpointError
from neuroplex.training.components import plain_state
from neuroplex.training.history import EpochRecord, TrainingEvent
from neuroplex.training.rng import rng_state, set_rng_state
from neuroplex.training.sharded import load_sharded

if TYPE_CHECKING:
    from neuroplex.training.loop import Trainer

__all__ = ["load_trainer_state", "trainer_state"]


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to continue ``trainer`` exactly. Under a strategy that shards the
    state (``fsdp``) the model, optimizers and best weights are not in it: every rank writes
    its shards (:mod:`neuroplex.training.sharded`), between batches only at an epoch's end."""
    sharded = trainer.strategy.shards_state
    if sharded and any(p.grad is not None for ps in trainer.group_params.values() for p in ps):
        raise CheckpointError(
            f"strategy {trainer.strategy.name!r} checkpoints only between optimizer steps"
        )
    scaler = trainer.scaler
    early = trainer.early_stopping.state_dict()
    state: dict[str, Any] = {
        "schedulers": {k: plain_state(s.state_dict()) for k, s in trainer.schedulers.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "epoch": trainer.epoch,
        "batch_in_epoch": trainer.batch_in_epoch,
        "global_step": trainer.global_step,
        "partial": trainer.metric_log.state_dict(),
        "history": [r.to_dict() for r in trainer.records],
        "events": [e.to_dict() for e in trainer.events],
    }
    if sharded:  # the shards hold the model, the optimizers and the best weights
        state.update(model=None, optimizers=None, grads=None, best_state=None)
        state["sharded_best"] = early.pop("best_state") is not None
    else:
        state["model"] = trainer.model.state_dict()
        state["optimizers"] = {k: o.state_dict() for k, o in trainer.optimizers.items()}
        state["grads"] = {
            name: [None if p.grad is None else p.grad.detach().cpu().clone() for p in params]
            for name, params in trainer.group_params.items()
        }
    return {**state, **early}


def _load_weights(trainer: Trainer, state: Mapping[str, Any]) -> None:
    sharded = state.get("sharded")
    if (sharded is not None) != trainer.strategy.shards_state:
        written = "sharded (fsdp)" if sharded is not None else "full (single or ddp)"
        raise CheckpointError(
            f"the checkpoint is {written} and this run's strategy is "
            f"{trainer.strategy.name!r}: resume it under the strategy that wrote it"
        )
    if sharded is not None:
        load_sharded(trainer, Path(sharded), best=bool(state.get("sharded_best")))
        return
    trainer.model.load_state_dict(state["model"])
    for name, opt in trainer.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    for name, params in trainer.group_params.items():
        for p, g in zip(params, state["grads"][name], strict=True):
            p.grad = None if g is None else g.to(p.device)


def load_trainer_state(trainer: Trainer, state: Mapping[str, Any]) -> None:
    """Restore what :func:`trainer_state` captured (the optimizers must already exist).
    Under ddp each rank takes its own RNG states when the checkpoint holds one per rank."""
    _load_weights(trainer, state)
    for name, sched in trainer.schedulers.items():
        sched.load_state_dict(state["schedulers"][name])
    if trainer.scaler is not None and state.get("scaler") is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.epoch = int(state["epoch"])
    trainer.batch_in_epoch = int(state["batch_in_epoch"])
    trainer.global_step = int(state["global_step"])
    trainer.metric_log.load_state_dict(state["partial"])
    trainer.records = [EpochRecord.from_dict(r) for r in state["history"]]
    trainer.events = [TrainingEvent(**e) for e in state["events"]]
    best = trainer.early_stopping.best_state
    trainer.early_stopping.load_state_dict(state)
    if state.get("sharded") is not None:  # the best weights came with the shards
        trainer.early_stopping.best_state = best
    ranks = state.get("rng_ranks")
    rank, world = trainer.strategy.rank, trainer.strategy.world_size
    if ranks is not None and len(ranks) == world:
        set_rng_state(ranks[rank])
        return
    set_rng_state(state["rng"])
    if world > 1:
        trainer.event(
            "resume",
            f"the checkpoint holds the RNG states of {len(ranks or [0])} process(es), "
            f"this run has {world}: every rank continues with rank 0's",
        )
