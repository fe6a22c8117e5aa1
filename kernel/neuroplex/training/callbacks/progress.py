"""Built-in callback: a tqdm progress bar per epoch (rank 0; ``progress`` in the config)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from neuroplex.training.callbacks.base import Callback

if TYPE_CHECKING:
    from neuroplex.training.history import EpochRecord
    from neuroplex.training.loop import Trainer

__all__ = ["ProgressBar"]


class ProgressBar(Callback):
    """One bar per epoch on stderr, counting batches (a resumed epoch starts where it was)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.batches_per_epoch,
            initial=trainer.batch_in_epoch,
            desc=f"epoch {epoch}",
            leave=False,
            unit="batch",
        )

    def on_batch_end(self, trainer: Trainer, batch_index: int, metrics: Mapping[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(batch_index + 1 - self.bar.n)  # skipped batches included

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
