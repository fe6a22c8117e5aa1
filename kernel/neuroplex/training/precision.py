"""Mixed precision (autocast dtype, fp16 loss scaling) and gradient accumulation windows.

:class:`Precision` resolves the configured ``precision`` against the device (fp16 on CPU falls
back to bf16, a GPU without bf16 to fp16, other devices to fp32, each with an event and a
warning). :class:`Accumulation` says, for each micro-batch, whether it closes its window and
how its loss is weighted, so ``N`` accumulated micro-batches give the gradient of one batch of
their total size.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch

__all__ = ["Accumulation", "Precision"]


class Precision:
    """An autocast ``dtype`` (``None``: fp32) and, for fp16, a ``GradScaler``."""

    def __init__(
        self, dtype: torch.dtype | None = None, scaler: Any = None, device_type: str = "cpu"
    ) -> None:
        self.dtype = dtype
        self.scaler = scaler
        self.device_type = device_type

    @classmethod
    def resolve(
        cls, precision: str, device: torch.device, event: Callable[[str, str], None]
    ) -> Precision:
        """The precision ``precision`` (``fp32``, ``bf16``, ``fp16``) becomes on ``device``;
        ``event(kind, message)`` hears about every fallback."""
        kind = device.type
        if precision == "fp32":
            return cls(device_type=kind)
        if precision == "fp16" and kind == "cpu":
            event("precision_fallback", "fp16 autocast is not supported on CPU; using bf16")
            warnings.warn(
                "precision 'fp16' is not supported on CPU; falling back to 'bf16'", stacklevel=4
            )
            precision = "bf16"
        if kind not in ("cpu", "cuda", "mps"):
            event("precision_fallback", f"no autocast on {kind}; training in fp32")
            warnings.warn(f"mixed precision is not supported on {kind}; using fp32", stacklevel=4)
            return cls(device_type=kind)
        if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            event("precision_fallback", "this GPU lacks bf16; using fp16 with loss scaling")
            warnings.warn("this GPU does not support bf16; falling back to fp16", stacklevel=4)
            precision = "fp16"
        if precision == "fp16":
            return cls(torch.float16, torch.amp.GradScaler(kind), kind)
        return cls(torch.bfloat16, None, kind)

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward passes' context: ``torch.autocast``, or nothing in fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


class Accumulation:
    """Gradient accumulation over ``every`` micro-batches of an epoch of ``total`` batches.

    ``sizes`` are the epoch's batch sizes when known in advance (tensor and Dataset data):
    each loss is then weighted by its batch's items and the window's sum divides the gradient
    (``items``), exact for an uneven last window. Without them (a DataLoader) each loss is
    divided by ``every``. The last batch of an epoch always closes its window.
    """

    def __init__(self, every: int = 1, total: int = 0, sizes: Sequence[int] = ()) -> None:
        self.every = every
        self.total = total
        self.sizes = list(sizes)
        self.boundary = True  # the current micro-batch steps the optimizers
        self.items = 0  # items in the current window (0: unknown or no accumulation)
        self.scale: float | None = None  # the current loss's factor (None: 1)
        self._start = -1

    def at(self, index: int, n: int) -> None:
        """Enter micro-batch ``index`` (0-based in the epoch) of ``n`` items."""
        every = self.every
        self.boundary = (index + 1) % every == 0 or index == self.total - 1
        start = index - index % every
        if start != self._start:  # a new window (or the first after a resume)
            self._start = start
            window = self.sizes[start : min(start + every, self.total)]
            self.items = sum(window)
        self.scale = float(n) if self.items else 1.0 / every
