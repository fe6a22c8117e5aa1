"""The valid input range of a model: one ``(min, max)`` for every input value, or one per channel.

Attacks clip to the input range, in the model's own units. Images normalised per channel
(torchvision's ``Normalize(mean, std)``) have a different range in each channel, so a range is
either

* ``(min, max)``: two numbers, for every value of the input; or
* ``(mins, maxs)``: two sequences with one value per channel (as ART's ``clip_values``
  accepts arrays), the channel being axis 1 of the input ``(N, C, ...)`` — PyTorch's and ONNX's
  layout; for tabular inputs ``(N, F)`` that is one range per feature. A number on one side is
  used for every channel. For ``Normalize(mean, std)`` of inputs in ``0..1``:
  ``([(0 - m) / s for m, s in zip(mean, std)], [(1 - m) / s for m, s in zip(mean, std)])``.

:func:`check_input_range` validates a value (finite, ``min < max`` in every channel) and
returns the canonical form: ``(float, float)`` or ``(tuple[float, ...], tuple[float, ...])``.
:func:`range_bounds` gives the bounds to clip a batch to: the two numbers, or tensors of the
batch's per-sample shape (checked against its channel count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from neuroplex.errors import ConfigError

__all__ = [
    "Bounds",
    "InputRange",
    "bounds_scale",
    "check_input_range",
    "clip",
    "describe_range",
    "outside_bounds",
    "parse_range_arg",
    "range_bounds",
    "range_channels",
    "range_envelope",
]

#: a checked input range: ``(min, max)``, or per channel ``((min_c, ...), (max_c, ...))``
InputRange = tuple[float, float] | tuple[tuple[float, ...], tuple[float, ...]]
#: what an attack clips to: two numbers, or two tensors broadcastable to the batch
Bounds = tuple[float | torch.Tensor, float | torch.Tensor]

_HINT = (
    "give (min, max), or one value per channel (axis 1 of the input): "
    "((min_0, min_1, ...), (max_0, max_1, ...)); CLI: --input-range MIN MAX or "
    "--input-range MIN_0,MIN_1,... MAX_0,MAX_1,..."
)


def _side(value: Any) -> float | tuple[float, ...]:
    """One side of a range: a number, or a 1-D sequence of numbers."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, bool):
        raise TypeError("a bool is not a bound")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"not a number or a sequence: {value!r}")
    numbers = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"not a number: {v!r}")
        numbers.append(float(v))
    if not numbers:
        raise TypeError("an empty sequence")
    return tuple(numbers)


def check_input_range(value: Any, *, channels: int | None = None) -> InputRange:
    """``value`` as a checked input range (see the module doc).

    Args:
        value: ``(min, max)`` or ``(mins, maxs)`` (sequences, arrays or tensors per channel).
        channels: the input's channel count (axis 1) when known: a per-channel range must
            have as many values.

    Raises:
        ConfigError: one line naming ``input_range``, the value and what is allowed.
    """
    try:
        lo_raw, hi_raw = value
        lo, hi = _side(lo_raw), _side(hi_raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"input_range must be two numbers (min, max) or two per-channel sequences, got "
            f"{value!r}: {_HINT}",
            path="input_range",
        ) from None
    if isinstance(lo, float) and isinstance(hi, float):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(
                f"input_range must be finite with min < max, got ({lo:g}, {hi:g})",
                path="input_range",
            )
        return (lo, hi)
    n = len(lo) if isinstance(lo, tuple) else len(hi)  # type: ignore[arg-type]
    los = lo if isinstance(lo, tuple) else (lo,) * n
    his = hi if isinstance(hi, tuple) else (hi,) * n
    if len(los) != len(his):
        raise ConfigError(
            f"input_range gives {len(los)} per-channel minima but {len(his)} maxima; {_HINT}",
            path="input_range",
        )
    for c, (a, b) in enumerate(zip(los, his, strict=True)):
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise ConfigError(
                f"input_range must be finite with min < max in every channel, got "
                f"({a:g}, {b:g}) in channel {c}",
                path="input_range",
            )
    if channels is not None and len(los) != channels:
        raise ConfigError(_channel_mismatch(len(los), channels, None), path="input_range")
    return (los, his)


def _channel_mismatch(given: int, channels: int, shape: Sequence[Any] | None) -> str:
    where = f" (shape {tuple(shape)})" if shape is not None else ""
    return (
        f"input_range gives {given} per-channel values, but the input has {channels} "
        f"channel{'s' if channels != 1 else ''} on axis 1{where}; give one value per channel, "
        "or one (min, max) for all"
    )


def range_channels(value: InputRange) -> int | None:
    """The channel count of a per-channel range, ``None`` for one ``(min, max)``."""
    lo = value[0]
    return len(lo) if isinstance(lo, tuple) else None


def range_envelope(value: InputRange | None) -> tuple[float, float] | None:
    """One ``(min, max)`` holding every channel's range (the range itself when scalar)."""
    if value is None:
        return None
    lo, hi = value
    low = min(lo) if isinstance(lo, tuple) else float(lo)
    high = max(hi) if isinstance(hi, tuple) else float(hi)
    return (low, high)


def describe_range(value: InputRange) -> str:
    """``(0, 1)``, or ``per channel min (…) max (…)``, for messages."""
    lo, hi = value
    if isinstance(lo, tuple) and isinstance(hi, tuple):
        return (
            f"per channel min ({', '.join(f'{v:g}' for v in lo)}) "
            f"max ({', '.join(f'{v:g}' for v in hi)})"
        )
    return f"({lo:g}, {hi:g})"


def range_bounds(value: InputRange, x: torch.Tensor) -> Bounds:
    """The bounds to clip ``x`` (``(N, C, ...)``) to: the two numbers of a scalar range, else
    tensors of ``x``'s per-sample shape ``(1, C, ...)`` on its device and dtype.

    Raises:
        ConfigError: a per-channel range whose channel count is not ``x.shape[1]``.
    """
    lo, hi = value
    if not isinstance(lo, tuple) or not isinstance(hi, tuple):
        return float(lo), float(hi)  # type: ignore[arg-type]
    if x.ndim < 2 or int(x.shape[1]) != len(lo):
        channels = int(x.shape[1]) if x.ndim >= 2 else 0
        raise ConfigError(_channel_mismatch(len(lo), channels, x.shape), path="input_range")
    view = (1, len(lo)) + (1,) * (x.ndim - 2)
    full = (1, *x.shape[1:])

    def side(values: tuple[float, ...]) -> torch.Tensor:
        t = torch.tensor(values, dtype=x.dtype, device=x.device).view(view)
        return t.expand(full).contiguous()

    return side(lo), side(hi)


def clip(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor) -> torch.Tensor:
    """``torch.clamp(x, lo, hi)`` for bounds that are numbers or (per-channel) tensors."""
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        low = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
        high = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
        return torch.clamp(x, low, high)
    return torch.clamp(x, lo, hi)


def bounds_scale(bounds: Bounds) -> float:
    """The largest ``|bound|`` (for tolerances)."""
    return max(
        float(b.abs().max()) if isinstance(b, torch.Tensor) else abs(float(b)) for b in bounds
    )


def outside_bounds(x: torch.Tensor, bounds: Bounds, tol: float) -> bool:
    """Whether some value of ``x`` lies below ``lo - tol`` or above ``hi + tol``."""
    lo, hi = bounds
    return bool((x < lo - tol).any() or (x > hi + tol).any())


def parse_range_arg(text: str) -> float | tuple[float, ...]:
    """One side of ``--input-range``: ``0.5`` or ``0.1,0.2,0.3`` (one value per channel)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--input-range takes numbers or comma-separated numbers per channel, got {text!r}",
            path="--input-range",
        ) from None
    return values[0] if len(values) == 1 and "," not in text else values
