"""Typed training callbacks.

Subclass :class:`Callback` (or write any object with some of these methods) and pass it as
``Trainer(model, config, callbacks=[...])``. Only the methods an object defines are called;
a callback that defines no ``on_batch_end`` costs nothing per batch. Raising
``KeyboardInterrupt`` from ``on_batch_end`` interrupts training with a resumable checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from neuroplex.training.history import EpochRecord, History, TrainingEvent
    from neuroplex.training.loop import Trainer

__all__ = ["HOOKS", "Callback", "CallbackList"]

HOOKS = (
    "on_train_start",
    "on_epoch_start",
    "on_batch_end",
    "on_epoch_end",
    "on_event",
    "on_train_end",
)


class Callback:
    """No-op base class; override what you need."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume has been applied)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based)."""

    def on_batch_end(
        self, trainer: Trainer, batch_index: int, metrics: Mapping[str, torch.Tensor]
    ) -> None:
        """After a training batch (0-based index within the epoch), metrics detached."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """After an epoch's validation, with its record."""

    def on_event(self, trainer: Trainer, event: TrainingEvent) -> None:
        """A notable event (checkpoint, rollback, early stop, ...)."""

    def on_train_end(self, trainer: Trainer, history: History) -> None:
        """After training, with the final history."""


class CallbackList:
    """Dispatch to the callbacks that define each hook (resolved once, not per call)."""

    def __init__(self, callbacks: Iterable[Any]) -> None:
        self.callbacks = list(callbacks)
        self._bound: dict[str, list[Callable[..., None]]] = {}
        for hook in HOOKS:
            methods = []
            for cb in self.callbacks:
                method = getattr(cb, hook, None)
                base = getattr(Callback, hook)
                if callable(method) and getattr(method, "__func__", None) is not base:
                    methods.append(method)
            self._bound[hook] = methods
        self.has_batch_end = bool(self._bound["on_batch_end"])

    def __call__(self, hook: str, *args: Any) -> None:
        for method in self._bound[hook]:
            method(*args)
