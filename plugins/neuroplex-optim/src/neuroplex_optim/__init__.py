"""neuroplex-optim: optimizers and learning-rate schedulers for neuroplex."""

from neuroplex_optim.optimizers import adam, adamw, param_groups, rmsprop, sgd
from neuroplex_optim.schedulers import WarmupCosine, cosine, plateau, step

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
