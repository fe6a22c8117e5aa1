"""Training callbacks: the hooks users write, and the built-in callbacks the Trainer runs.

Subclass :class:`Callback` (or write any object with some of its methods) and pass it as
``Trainer(model, config, callbacks=[...])``. Only the methods an object defines are called;
a callback that defines no ``on_batch_end`` costs nothing per batch. Raising
``KeyboardInterrupt`` from ``on_batch_end`` interrupts training with a resumable checkpoint;
setting ``trainer.should_stop = True`` ends training after the current epoch.

The Trainer builds its built-in callbacks from the :class:`~neuroplex.TrainingConfig`
(one module each): :class:`ProgressBar`, :class:`EarlyStopping` (best-metric tracking, early
stopping, best-weight restore), :class:`NonFiniteGuard` (skip / rollback / stop), then the
user's callbacks, then :class:`Checkpointing` (epoch checkpoints, pruning, interrupts). See
``kernel/docs/training.md``.
"""

from neuroplex.training.callbacks.base import HOOKS, Callback, CallbackList
from neuroplex.training.callbacks.checkpointing import Checkpointing
from neuroplex.training.callbacks.early_stopping import EarlyStopping
from neuroplex.training.callbacks.nonfinite import NonFinite, NonFiniteGuard
from neuroplex.training.callbacks.progress import ProgressBar

__all__ = [
    "HOOKS",
    "Callback",
    "CallbackList",
    "Checkpointing",
    "EarlyStopping",
    "NonFinite",
    "NonFiniteGuard",
    "ProgressBar",
]
