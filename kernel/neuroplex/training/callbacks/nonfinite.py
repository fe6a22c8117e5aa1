"""Built-in callback: what happens when a loss or the gradients are not finite.

``nonfinite_policy`` ``stop`` raises a :class:`~neuroplex.TrainingError` naming where;
``skip`` drops the batch (no optimizer step, a ``nonfinite_skip`` event); ``rollback`` restores
the weights and optimizer state of the epoch's start, halves the learning rate and replays the
epoch (a ``rollback`` event), at most :attr:`NonFiniteGuard.max_rollbacks` times.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from neuroplex.errors import TrainingError
from neuroplex.training.callbacks.base import Callback

if TYPE_CHECKING:
    from neuroplex.training.loop import Trainer

__all__ = ["NonFinite", "NonFiniteGuard"]


class NonFinite(Exception):
    """Raised inside the step when ``what`` (a loss or a group's gradients) is not finite."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class NonFiniteGuard(Callback):
    """Applies ``policy`` (``stop``, ``skip`` or ``rollback``) to a :class:`NonFinite`."""

    max_rollbacks = 3
    lr_factor = 0.5

    def __init__(self, policy: str = "stop") -> None:
        self.policy = policy
        self.rollbacks = 0
        self.snapshot: dict[str, Any] | None = None

    @property
    def checks_every_step(self) -> bool:
        """Whether every step's gradient norm must be checked (skip and rollback must catch
        non-finite gradients before the optimizer writes them into the weights; a finite loss
        can still give infinite gradients)."""
        return self.policy != "stop"

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if self.policy == "rollback" and trainer.batch_in_epoch == 0:
            self.snapshot = {
                "model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                "optimizers": {
                    k: copy.deepcopy(o.state_dict()) for k, o in trainer.optimizers.items()
                },
                "global_step": trainer.global_step,
            }

    def skip(self, trainer: Trainer, exc: NonFinite, index: int) -> bool:
        """Whether the batch ``index`` that raised ``exc`` is skipped (policy ``skip``)."""
        if self.policy != "skip":
            return False
        trainer.event("nonfinite_skip", f"non-finite {exc.what} in batch {index}; skipped")
        return True

    def recover(self, trainer: Trainer, exc: NonFinite, epoch: int) -> None:
        """Roll back to the start of ``epoch`` (policy ``rollback``) or raise."""
        snap = self.snapshot
        if self.policy != "rollback" or snap is None:
            raise TrainingError(
                f"non-finite {exc.what} at epoch {epoch}, batch {trainer.batch_in_epoch} "
                f"(step {trainer.global_step}); nonfinite_policy is {self.policy!r}: "
                "set it to 'skip' or 'rollback', lower the learning rate, or clip gradients"
            ) from None
        self.rollbacks += 1
        if self.rollbacks > self.max_rollbacks:
            raise TrainingError(
                f"non-finite {exc.what} again after {self.max_rollbacks} rollbacks "
                f"(epoch {epoch}, step {trainer.global_step}); lower the learning "
                "rate or enable gradient clipping"
            ) from None
        trainer.model.load_state_dict(snap["model"])
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(snap["optimizers"][name])
            for group in opt.param_groups:
                group["lr"] = group["lr"] * self.lr_factor
            snap["optimizers"][name] = copy.deepcopy(opt.state_dict())
        for sched in trainer.schedulers.values():
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [lr * self.lr_factor for lr in sched.base_lrs]
        trainer.global_step = int(snap["global_step"])
        trainer.zero_grad()
        trainer.event(
            "rollback",
            f"non-finite {exc.what}; rolled back to the start of epoch {epoch} "
            f"with learning rate x{self.lr_factor}",
        )
