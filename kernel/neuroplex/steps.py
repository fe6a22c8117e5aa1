"""The training-step protocol a model family supplies through ``ModelRecord.training_step``.

The protocol itself lives with the other contracts in :mod:`neuroplex.protocols`; this module
keeps its historical import path.

Optional attribute ``forward_wrappable`` (default ``False``) of a step: see
:class:`neuroplex.protocols.ForwardWrappableStep`.
"""

from __future__ import annotations

from neuroplex.protocols import Batch, Optimize, TrainingStep

__all__ = ["Batch", "Optimize", "TrainingStep"]
