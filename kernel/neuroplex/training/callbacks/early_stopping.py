"""Built-in callback: track the best monitored value, stop early, restore the best weights."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from neuroplex.training.callbacks.base import Callback

if TYPE_CHECKING:
    import torch

    from neuroplex.config import TrainingConfig
    from neuroplex.training.history import EpochRecord
    from neuroplex.training.loop import Trainer

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Follows ``monitor`` (an :meth:`EpochRecord.metric` name) and, with ``patience``, ends
    training after that many epochs without improvement (``early_stop`` event).

    The Trainer always runs one (``patience=None`` only tracks the best epoch for the
    :class:`~neuroplex.training.History`). With ``restore_best`` and a patience, it keeps a copy
    of the best epoch's weights and loads them back when it stopped the run (``restore_best``
    event). A non-finite value never counts as an improvement. Under ddp rank 0 decides.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        patience: int | None = None,
        restore_best: bool = True,
    ) -> None:
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.restore_best = restore_best
        self.best: tuple[float, int] | None = None  # (value, sign-adjusted to minimise; epoch)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.stopped = False

    @classmethod
    def from_config(cls, config: TrainingConfig) -> EarlyStopping:
        """As ``monitor``, ``monitor_mode``, ``early_stopping_patience``, ``restore_best`` say."""
        patience = config.early_stopping_patience
        return cls(config.monitor, config.monitor_mode, patience, config.restore_best)

    @property
    def best_epoch(self) -> int | None:
        return None if self.best is None else self.best[1]

    @property
    def best_value(self) -> float | None:
        if self.best is None:
            return None
        return self.best[0] if self.mode == "min" else -self.best[0]

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        value = record.metric(self.monitor)
        improved = False
        if value is not None and math.isfinite(value):
            signed = value if self.mode == "min" else -value
            if self.best is None or signed < self.best[0]:
                self.best = (signed, record.epoch)
                improved = True
                if self.restore_best and self.patience is not None:
                    state = trainer.model.state_dict()
                    self.best_state = {k: v.detach().clone() for k, v in state.items()}
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        stop = self.patience is not None and self.bad_epochs >= self.patience
        if trainer.strategy.broadcast_flag(stop):
            self.stopped = True
            trainer.should_stop = True
            trainer.event(
                "early_stop",
                f"{self.monitor} did not improve for {self.patience} epochs; best epoch "
                f"{self.best_epoch or '?'}",
            )

    def restore(self, trainer: Trainer) -> None:
        """At the end of training: the best weights back, if this callback stopped the run."""
        if self.stopped and self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
            trainer.event("restore_best", f"restored the weights of epoch {self.best_epoch}")

    def state_dict(self) -> dict[str, Any]:
        best = None if self.best is None else [self.best[0], self.best[1]]
        return {"best": best, "best_state": self.best_state, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        best = state["best"]
        self.best = None if best is None else (float(best[0]), int(best[1]))
        self.best_state = state.get("best_state")
        self.bad_epochs = int(state["bad_epochs"])
