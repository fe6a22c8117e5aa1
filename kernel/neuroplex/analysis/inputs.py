"""Input validation shared by every analysis: clear errors that name the argument and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuroplex.errors import DataError

__all__ = ["as_inputs", "as_labels", "check_logits", "to_python"]


def as_inputs(
    x: Any, device: torch.device | None = None, name: str = "x", *, keep_dtype: bool = False
) -> torch.Tensor:
    """``x`` as a tensor of shape ``(N, ...)`` with ``N >= 1`` and no NaN/inf.

    Integer inputs become float32, unless ``keep_dtype`` (e.g. token ids for an embedding).
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name} must be a tensor or array, got {type(x).__name__}") from exc
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(
            f"{name} must be a batch of shape (N, ...) with N >= 1, got {tuple(x.shape)}"
        )
    if not x.is_floating_point() and not keep_dtype:
        x = x.float()
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{name} contains NaN or inf values")
    out: torch.Tensor = x.detach().to(device) if device is not None else x.detach()
    return out


def as_labels(
    y: Any, n: int, n_classes: int | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """``y`` as an int64 tensor of shape ``(n,)`` with values in ``[0, n_classes)``."""
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(
            f"y must have shape ({n},) to match x's {n} samples, got shape {tuple(y.shape)}"
        )
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            raise DataError("y must hold integer class labels, got non-integer values")
    elif y.dtype == torch.bool:
        raise DataError("y must hold integer class labels, got booleans")
    y = y.long()
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        valid = f"[0, {n_classes - 1}]" if n_classes is not None else ">= 0"
        raise DataError(
            f"labels out of range: y spans [{lo}, {hi}] but the model has {n_classes} outputs "
            f"(valid labels: {valid})"
        )
    labels: torch.Tensor = y.to(device) if device is not None else y
    return labels


def check_logits(out: Any, *, allow_probabilities: bool = True) -> torch.Tensor:
    """The model output as a ``(N, C)`` tensor of class scores, ``C >= 2``.

    With ``allow_probabilities=False``, outputs whose rows are non-negative and sum to 1
    (already probabilities) are refused: cross-entropy on them is wrong.
    """
    if isinstance(out, tuple | list):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(
            f"the model must return class scores of shape (N, C) with C >= 2, got {shape}"
        )
    if not allow_probabilities:
        det = out.detach().double()
        rows = det.sum(dim=1)
        if bool((det >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
            raise DataError(
                "the model outputs probabilities (rows are non-negative and sum to 1), but "
                "attacks need logits for the cross-entropy loss: drop the final softmax "
                "(or wrap the model to return log-probabilities)"
            )
    return out


def to_python(value: Any) -> Any:
    """Tensors and numpy values as plain Python (lists, floats, ints) for ``to_dict()``."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_python(v) for v in value]
    return value
