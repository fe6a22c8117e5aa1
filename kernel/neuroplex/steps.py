"""The training-step protocol a model family supplies through ``ModelRecord.training_step``.

The kernel ``Trainer`` owns the loop (epochs, devices, AMP, accumulation, clipping,
schedulers, checkpoints, events); a family's step only says how to turn a batch into losses.

``optimize(group, loss)`` is supplied by the Trainer: it backpropagates ``loss`` (scaled for
AMP and divided for gradient accumulation) and, at an accumulation boundary, unscales, clips,
steps and zeroes the optimizer of parameter group ``group``. A GAN calls it twice per batch
(``"discriminator"`` then ``"generator"``); a supervised model once (``"model"``).

Optional attribute ``forward_wrappable`` (default ``False``): ``True`` says ``train_step`` reaches
the model only by calling it (``model(...)``, one forward per ``optimize``), so under the ``ddp``
strategy the Trainer may hand it the model wrapped in ``DistributedDataParallel`` (bucketed
all-reduce overlapped with backward, ``no_sync`` on accumulation micro-steps). A step that calls
sub-networks or reads model attributes leaves it unset and gets the Trainer's explicit gradient
averaging at each optimizer step instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

Batch = Any
Optimize = Callable[[str, "torch.Tensor"], None]


@runtime_checkable
class TrainingStep(Protocol):
    """What ``ModelRecord.training_step`` builds (``factory()`` with no arguments)."""

    def param_groups(self, model: torch.nn.Module) -> Mapping[str, Iterable[torch.nn.Parameter]]:
        """One optimizer per entry, named; a plain model returns ``{"model": params}``."""
        ...

    def train_step(
        self, model: torch.nn.Module, batch: Batch, optimize: Optimize
    ) -> Mapping[str, torch.Tensor]:
        """Run one training batch; call ``optimize`` per loss; return detached metrics
        (``"loss"`` required, summed-per-batch means; ``"n"`` optional: items in the batch)."""
        ...

    def eval_step(self, model: torch.nn.Module, batch: Batch) -> Mapping[str, torch.Tensor]:
        """Metrics of one validation batch (``"loss"`` required), under ``torch.no_grad``."""
        ...
