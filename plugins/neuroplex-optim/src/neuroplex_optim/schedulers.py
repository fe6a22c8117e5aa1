"""Learning-rate scheduler factories: ``factory(optimizer, **options)``.

The Trainer steps schedulers once per epoch; ``plateau`` (``needs_metric``) receives the
monitored value. ``cosine`` takes ``total_epochs`` (the Trainer passes ``config.epochs``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from neuroplex import ConfigError

__all__ = ["WarmupCosine", "cosine", "plateau", "step"]


def step(optimizer: torch.optim.Optimizer, step_size: int = 10, gamma: float = 0.1) -> Any:
    """Multiply every group's lr by ``gamma`` every ``step_size`` epochs."""
    if step_size < 1:
        raise ConfigError(f"must be >= 1, got {step_size!r}", path="scheduler_params.step_size")
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up from ``warmup_start_factor * base_lr`` over ``warmup_epochs``, then a
    cosine decay to ``min_lr`` at ``total_epochs``. Its state is primitive (checkpoint-safe)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_epochs: int,
        warmup_epochs: int = 0,
        min_lr: float = 0.0,
        warmup_start_factor: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        if total_epochs < 1:
            raise ConfigError(
                f"must be >= 1, got {total_epochs!r}", path="scheduler_params.total_epochs"
            )
        if not 0 <= warmup_epochs < total_epochs:
            raise ConfigError(
                f"must be in [0, total_epochs={total_epochs}), got {warmup_epochs!r}",
                path="scheduler_params.warmup_epochs",
            )
        self.total_epochs = total_epochs
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr
        self.warmup_start_factor = warmup_start_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        e = self.last_epoch
        out: list[float] = []
        for base in self.base_lrs:
            if e < self.warmup_epochs:
                f = self.warmup_start_factor
                out.append(float(base * (f + (1 - f) * e / self.warmup_epochs)))
            else:
                span = max(1, self.total_epochs - self.warmup_epochs)
                t = min(1.0, (e - self.warmup_epochs) / span)
                out.append(
                    float(self.min_lr + (base - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t)))
                )
        return out


def cosine(
    optimizer: torch.optim.Optimizer,
    total_epochs: int = 10,
    warmup_epochs: int = 0,
    min_lr: float = 0.0,
    warmup_start_factor: float = 0.1,
) -> WarmupCosine:
    return WarmupCosine(optimizer, total_epochs, warmup_epochs, min_lr, warmup_start_factor)


def plateau(
    optimizer: torch.optim.Optimizer,
    mode: Literal["min", "max"] = "min",
    factor: float = 0.1,
    patience: int = 10,
    min_lr: float = 0.0,
    threshold: float = 1e-4,
) -> Any:
    """Reduce lr by ``factor`` after ``patience`` epochs without improvement."""
    if mode not in ("min", "max"):
        raise ConfigError(f"{mode!r} is not one of 'min', 'max'", path="scheduler_params.mode")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=mode,
        factor=factor,
        patience=patience,
        min_lr=min_lr,
        threshold=threshold,
    )
