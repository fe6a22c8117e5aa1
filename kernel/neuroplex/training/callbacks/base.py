"""The callback protocol: :class:`Callback` (override what you need) and the dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from neuroplex.training.history import EpochRecord, History, TrainingEvent
    from neuroplex.training.loop import Trainer

__all__ = ["HOOKS", "Callback", "CallbackList"]

#: every hook, in the order the Trainer first calls them (``on_event`` whenever one happens)
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
        """After an epoch's validation (and the schedulers' step), with its record."""

    def on_event(self, trainer: Trainer, event: TrainingEvent) -> None:
        """A notable event (checkpoint, rollback, early stop, ...)."""

    def on_train_end(self, trainer: Trainer, history: History) -> None:
        """After training, with the final history."""


def _overrides(callback: Any, hook: str) -> Callable[..., None] | None:
    """``callback``'s bound ``hook`` unless it is missing or :class:`Callback`'s no-op."""
    method = getattr(callback, hook, None)
    if not callable(method) or getattr(method, "__func__", None) is getattr(Callback, hook):
        return None
    return method  # type: ignore[no-any-return]


class CallbackList:
    """Dispatch to the callbacks that define each hook, in list order (resolved once, not per
    call: a hook nobody overrides costs nothing)."""

    def __init__(self, callbacks: Iterable[Any]) -> None:
        self.callbacks = list(callbacks)
        self._bound: dict[str, list[Callable[..., None]]] = {
            hook: [m for m in (_overrides(cb, hook) for cb in self.callbacks) if m is not None]
            for hook in HOOKS
        }
        self.has_batch_end = bool(self._bound["on_batch_end"])

    def __call__(self, hook: str, *args: Any) -> None:
        for method in self._bound[hook]:
            method(*args)
