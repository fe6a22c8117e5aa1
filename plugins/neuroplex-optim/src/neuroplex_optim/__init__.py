"""neuroplex-optim: optimizers and learning-rate schedulers for neuroplex.

Attributes load lazily: the entry module ``neuroplex_optim.plugin`` must not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "adam": "optimizers",
    "adamw": "optimizers",
    "param_groups": "optimizers",
    "rmsprop": "optimizers",
    "sgd": "optimizers",
    "WarmupCosine": "schedulers",
    "cosine": "schedulers",
    "plateau": "schedulers",
    "step": "schedulers",
}
__all__ = [
    "WarmupCosine",
    "adam",
    "adamw",
    "cosine",
    "param_groups",
    "plateau",
    "rmsprop",
    "sgd",
    "step",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroplex_optim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"neuroplex_optim.{module}"), name)


if TYPE_CHECKING:
    from neuroplex_optim.optimizers import adam, adamw, param_groups, rmsprop, sgd
    from neuroplex_optim.schedulers import WarmupCosine, cosine, plateau, step
