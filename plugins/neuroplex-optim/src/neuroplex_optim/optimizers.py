"""Optimizer factories: ``factory(params, lr=..., weight_decay=..., **options)``.

Weight decay never applies to biases and normalization weights (parameters with at most one
dimension), the usual practice; pass ``decay_all=True`` to decay everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch

from neuroplex import ConfigError

__all__ = ["adam", "adamw", "param_groups", "rmsprop", "sgd"]


def param_groups(params: Iterable[Any], weight_decay: float, decay_all: bool = False) -> list[Any]:
    """Split parameters (or param-group dicts) into decayed (ndim >= 2) and not decayed
    (biases, norm weights: ndim <= 1) groups."""
    items = list(params)
    if not items:
        raise ConfigError("the optimizer got no parameters")
    if weight_decay < 0:
        raise ConfigError(f"must be >= 0, got {weight_decay!r}", path="weight_decay")
    groups = items if isinstance(items[0], dict) else [{"params": items}]
    out: list[dict[str, Any]] = []
    for group in groups:
        plist = list(group["params"])
        rest = {k: v for k, v in group.items() if k != "params"}
        wd = float(cast(float, rest.pop("weight_decay", weight_decay)))
        if decay_all or wd == 0:
            out.append({**rest, "params": plist, "weight_decay": wd})
            continue
        decay = [p for p in plist if p.ndim >= 2]
        no_decay = [p for p in plist if p.ndim < 2]
        if decay:
            out.append({**rest, "params": decay, "weight_decay": wd})
        if no_decay:
            out.append({**rest, "params": no_decay, "weight_decay": 0.0})
    return out


def _lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(f"must be > 0, got {lr!r}", path="learning_rate")
    return float(lr)


def sgd(
    params: Iterable[Any],
    lr: float = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    decay_all: bool = False,
    **options: Any,
) -> torch.optim.SGD:
    """SGD; ``nesterov=True`` needs ``momentum > 0``."""
    if nesterov and momentum <= 0:
        raise ConfigError(
            f"nesterov needs momentum > 0, got momentum={momentum!r}", path="optimizer_params"
        )
    groups = param_groups(params, weight_decay, decay_all)
    return torch.optim.SGD(groups, lr=_lr(lr), momentum=momentum, nesterov=nesterov, **options)


def adam(
    params: Iterable[Any],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decay_all: bool = False,
    **options: Any,
) -> torch.optim.Adam:
    groups = param_groups(params, weight_decay, decay_all)
    return torch.optim.Adam(groups, lr=_lr(lr), betas=tuple(betas), eps=eps, **options)  # type: ignore[arg-type]


def adamw(
    params: Iterable[Any],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    decay_all: bool = False,
    **options: Any,
) -> torch.optim.AdamW:
    groups = param_groups(params, weight_decay, decay_all)
    return torch.optim.AdamW(groups, lr=_lr(lr), betas=tuple(betas), eps=eps, **options)  # type: ignore[arg-type]


def rmsprop(
    params: Iterable[Any],
    lr: float = 1e-2,
    alpha: float = 0.99,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    decay_all: bool = False,
    **options: Any,
) -> torch.optim.RMSprop:
    groups = param_groups(params, weight_decay, decay_all)
    return torch.optim.RMSprop(groups, lr=_lr(lr), alpha=alpha, momentum=momentum, **options)
