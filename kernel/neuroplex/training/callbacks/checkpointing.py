"""Built-in callback: epoch checkpoints with pruning, the interrupt checkpoint, and resume.

With ``checkpoint_dir`` set, the Trainer runs a :class:`Checkpointing` after every other
callback: each epoch it writes ``epoch-NNNN.pt`` (atomic, with a JSON manifest and checksum;
rank 0 only), keeps the newest ``keep_last`` and the ``keep_best`` best by ``monitor``, and
on SIGINT/SIGTERM between batches writes ``interrupt.pt``. A fresh run (no ``resume``) first
removes an earlier run's checkpoints, with a warning. :func:`resume_from` loads a checkpoint
back into a Trainer.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroplex.errors import CheckpointError, ConfigError
from neuroplex.training.callbacks.base import Callback
from neuroplex.training.checkpoint import (
    CheckpointInfo,
    find_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    remove_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from neuroplex.training.rng import rng_state, seed_everything
from neuroplex.training.sharded import save_sharded

if TYPE_CHECKING:
    from neuroplex.config import TrainingConfig
    from neuroplex.training.history import EpochRecord
    from neuroplex.training.loop import Trainer

__all__ = ["Checkpointing", "resume_from"]


class Checkpointing(Callback):
    """Checkpoints into ``directory``; ``fresh``: this run does not resume (so an earlier
    run's checkpoints there are stale)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        keep_last: int = 1,
        keep_best: int = 1,
        monitor: str = "val_loss",
        mode: str = "min",
        fresh: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.monitor = monitor
        self.mode = mode
        self.fresh = fresh

    @classmethod
    def from_config(cls, config: TrainingConfig, *, fresh: bool) -> Checkpointing | None:
        """As ``checkpoint_dir``, ``keep_last``, ``keep_best`` and ``monitor`` say (``None``
        without a ``checkpoint_dir``)."""
        if not config.checkpoint_dir:
            return None
        return cls(
            config.checkpoint_dir,
            keep_last=config.keep_last,
            keep_best=config.keep_best,
            monitor=config.monitor,
            mode=config.monitor_mode,
            fresh=fresh,
        )

    def on_train_start(self, trainer: Trainer) -> None:
        stale = find_checkpoints(self.directory) if self.fresh and trainer.strategy.is_main else []
        if stale:
            warnings.warn(
                f"{self.directory} holds {len(stale)} checkpoint(s) of an earlier run; a fresh "
                "run replaces them (pass resume='last' to continue instead)",
                stacklevel=5,
            )
            for info in stale:
                remove_checkpoint(info)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        strategy = trainer.strategy
        # under ddp, every rank's RNG states (each rank's last batch may be of another size, so
        # their streams differ): a resumed ddp run draws what an uninterrupted one would
        rng_ranks = strategy.gather_objects(rng_state()) if strategy.world_size > 1 else None
        stem = f"epoch-{record.epoch:04d}"
        # under fsdp every rank writes its shards first; rank 0's manifest then lists them
        sharded = save_sharded(self.directory, stem, trainer) if strategy.shards_state else None
        if not strategy.is_main:
            return
        metrics: dict[str, Any] = {"train_loss": record.train_loss, "val_loss": record.val_loss}
        metrics.update({f"train_{k}": v for k, v in record.train_metrics.items()})
        metrics.update({f"val_{k}": v for k, v in record.val_metrics.items()})
        info = self.save(
            trainer, stem, kind="epoch", metrics=metrics, rng_ranks=rng_ranks, sharded=sharded
        )
        prune_checkpoints(
            self.directory,
            keep_last=self.keep_last,
            keep_best=self.keep_best,
            monitor=self.monitor,
            mode=self.mode,
        )
        trainer.event("checkpoint", f"saved {info.path.name}")

    def on_interrupt(self, trainer: Trainer) -> None:
        """Called by the Trainer when a signal stopped it between batches of an epoch."""
        # under ddp the ranks stop at different safe points and rank 0 alone cannot save the
        # others' state: resume continues from the last epoch checkpoint
        strategy = trainer.strategy
        if strategy.world_size == 1 and not strategy.shards_state and trainer.batch_in_epoch > 0:
            self.save(trainer, "interrupt", kind="interrupt", metrics={})
            trainer.event("interrupt", "interrupted; resume with train(..., resume='last')")

    def save(
        self,
        trainer: Trainer,
        stem: str,
        *,
        kind: str,
        metrics: Mapping[str, Any],
        rng_ranks: list[Any] | None = None,
        sharded: Mapping[str, Any] | None = None,
    ) -> CheckpointInfo:
        """Write ``trainer.state_dict()`` as ``<stem>.pt`` with its manifest."""
        from neuroplex.config import unstructure

        config = trainer.config
        manifest = {
            "kind": kind,
            "epoch": trainer.epoch,
            "batch_in_epoch": trainer.batch_in_epoch,
            "global_step": trainer.global_step,
            "seed": config.seed,
            "monitor": config.monitor,
            "mode": config.monitor_mode,
            "metrics": dict(metrics),
            "config": unstructure(config),
            "versions": _versions(),
        }
        state = trainer.state_dict()
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        return save_checkpoint(self.directory, stem, state, manifest, sharded=sharded)


def resume_from(trainer: Trainer, resume: str | Path, directory: Path | None) -> int:
    """Load ``resume`` (``"last"``, ``"best"`` in ``directory``, or a path) into ``trainer``;
    returns how many batches of the current epoch are done. ``"last"`` with no checkpoint
    starts afresh; a corrupt checkpoint is reported and the previous good one used."""
    errors: list[str] = []
    if isinstance(resume, str) and resume in ("last", "best"):
        if directory is None:
            raise ConfigError(
                f"resume={resume!r} needs config.checkpoint_dir", path="training.checkpoint_dir"
            )
        candidates = find_checkpoints(directory)
        if resume == "best":
            candidates = [resolve_checkpoint(directory, "best")]
        state = None
        for info in reversed(candidates):
            try:
                state = load_checkpoint(info.path, map_location=trainer.device, full_weights=False)
            except CheckpointError as exc:
                errors.append(f"{exc}; used the previous checkpoint")
                warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=5)
                continue
            trainer.resumed_from = str(info.path)
            break
        if state is None:
            for message in errors:
                trainer.event("checkpoint_error", message)
            seed_everything(trainer.config.seed)
            return 0
    else:
        state = load_checkpoint(resume, map_location=trainer.device, full_weights=False)
        trainer.resumed_from = str(resume)
    trainer.load_state_dict(state)
    for message in errors:
        trainer.event("checkpoint_error", message)
    trainer.event("resume", f"resumed from {trainer.resumed_from}")
    return int(state["batch_in_epoch"])


def _versions() -> dict[str, str]:
    import torch

    import neuroplex

    versions = {"neuroplex": neuroplex.__version__, "torch": torch.__version__}
    with contextlib.suppress(Exception):
        from neuroplex.plugins import get_plugin_manager

        for info in get_plugin_manager().plugins():
            versions[info.distribution] = info.version
    return versions
