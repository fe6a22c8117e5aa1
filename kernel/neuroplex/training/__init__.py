"""The kernel's training loop: ``Trainer(model, config).train(train, val) -> History``.

Importing this package imports torch (``import neuroplex`` does not: ``neuroplex.Trainer``
loads it on first use).
"""

from neuroplex.training.callbacks import (
    Callback,
    Checkpointing,
    EarlyStopping,
    NonFiniteGuard,
    ProgressBar,
)
from neuroplex.training.checkpoint import (
    CheckpointInfo,
    find_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
)
from neuroplex.training.history import EpochRecord, History, TrainingEvent
from neuroplex.training.loop import Trainer, evaluate, resolve_step, seed_everything
from neuroplex.training.supervised import SupervisedStep

__all__ = [
    "Callback",
    "CheckpointInfo",
    "Checkpointing",
    "EarlyStopping",
    "EpochRecord",
    "History",
    "NonFiniteGuard",
    "ProgressBar",
    "SupervisedStep",
    "Trainer",
    "TrainingEvent",
    "evaluate",
    "find_checkpoints",
    "load_checkpoint",
    "resolve_checkpoint",
    "resolve_step",
    "seed_everything",
]
