"""What training returns: one :class:`EpochRecord` per epoch, gathered in a :class:`History`.

Both are frozen attrs records with ``to_dict()``; the Trainer's callbacks and the feedback
sinks receive exactly these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["EpochRecord", "History", "TrainingEvent"]


def _float_dict(value: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (value or {}).items()}


@attrs.frozen(kw_only=True)
class TrainingEvent:
    """Something notable during training, e.g. a skipped non-finite batch.

    ``kind`` is one of ``nonfinite_skip``, ``rollback``, ``early_stop``, ``checkpoint``,
    ``checkpoint_error``, ``resume``, ``interrupt``, ``restore_best``, ``precision_fallback``.
    ``epoch`` is 1-based; ``step`` counts optimizer steps since the start of training.
    """

    kind: str
    epoch: int
    step: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class EpochRecord:
    """One finished epoch.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: item-weighted mean training loss over the epoch.
        val_loss: mean validation loss (``None`` without validation data).
        train_metrics: other item-weighted means returned by the step (e.g. ``accuracy``).
        val_metrics: the same on the validation data.
        learning_rate: learning rate of the first optimizer's first group at the epoch's end
            (before the scheduler steps).
        grad_norm: total L2 norm of the gradients (before clipping) at the epoch's last
            optimizer step; ``None`` when no step was taken.
        epoch_time_s: wall-clock seconds of the epoch, validation included.
        overhead_fraction: share of the training part of the epoch spent outside the step
            (forward, backward, optimizer step): data fetching, bookkeeping, callbacks.
        steps: optimizer steps taken in this epoch.
        skipped_batches: batches skipped for non-finite loss or gradients.
    """

    epoch: int
    train_loss: float
    val_loss: float | None = None
    train_metrics: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    val_metrics: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    learning_rate: float = 0.0
    grad_norm: float | None = None
    epoch_time_s: float = 0.0
    overhead_fraction: float = 0.0
    steps: int = 0
    skipped_batches: int = 0

    def metric(self, name: str) -> float | None:
        """A monitored quantity: ``train_loss``, ``val_loss``, ``train_<m>`` or ``val_<m>``."""
        if name == "train_loss":
            return self.train_loss
        if name == "val_loss":
            return self.val_loss
        for prefix, table in (("train_", self.train_metrics), ("val_", self.val_metrics)):
            if name.startswith(prefix) and name[len(prefix) :] in table:
                return table[name[len(prefix) :]]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "train_metrics": dict(self.train_metrics),
            "val_metrics": dict(self.val_metrics),
            "learning_rate": self.learning_rate,
            "grad_norm": self.grad_norm,
            "epoch_time_s": self.epoch_time_s,
            "overhead_fraction": self.overhead_fraction,
            "steps": self.steps,
            "skipped_batches": self.skipped_batches,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        return cls(**{f.name: data[f.name] for f in attrs.fields(cls) if f.name in data})


@attrs.frozen(kw_only=True)
class History:
    """Everything :meth:`Trainer.train` returns.

    ``history["train_loss"]`` (or any :meth:`EpochRecord.metric` name) gives the per-epoch
    list, Keras style. ``best_epoch``/``best_value`` refer to ``monitor``; ``stopped_early`` says
    whether early stopping ended the run; ``restored_best`` whether the best weights were
    loaded back at the end.
    """

    epochs: tuple[EpochRecord, ...] = ()
    events: tuple[TrainingEvent, ...] = ()
    monitor: str = "val_loss"
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    restored_best: bool = False
    resumed_from: str | None = None

    def __getitem__(self, name: str) -> list[float | None]:
        names = self.metric_names()
        if name not in names:
            raise KeyError(f"{name!r} is not recorded; recorded: {', '.join(names) or 'nothing'}")
        return [e.metric(name) for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def metric_names(self) -> list[str]:
        """Names accepted by ``history[...]``."""
        if not self.epochs:
            return []
        first = self.epochs[0]
        names = ["train_loss", "val_loss"]
        names += [f"train_{k}" for k in first.train_metrics]
        names += [f"val_{k}" for k in first.val_metrics]
        return names

    @property
    def last(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": [e.to_dict() for e in self.epochs],
            "events": [e.to_dict() for e in self.events],
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "stopped_early": self.stopped_early,
            "restored_best": self.restored_best,
            "resumed_from": self.resumed_from,
        }
