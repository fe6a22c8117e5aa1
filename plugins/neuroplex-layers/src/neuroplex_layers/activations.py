"""Activation functions by name: each is a registered layer component (capability
``"activation"``), built with :func:`get_activation`.

Every activation maps ``(N, *)`` to ``(N, *)`` (softmax over ``dim``, default the last).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from neuroplex.errors import ConfigError

__all__ = ["ACTIVATIONS", "ALIASES", "activation_names", "get_activation"]


def relu() -> nn.Module:
    return nn.ReLU()


def leaky_relu(negative_slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(negative_slope)


def elu(alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha)


def gelu(approximate: str = "none") -> nn.Module:
    if approximate not in ("none", "tanh"):
        raise ConfigError(
            f"gelu approximate must be 'none' or 'tanh', got {approximate!r}", path="approximate"
        )
    return nn.GELU(approximate=approximate)


def silu() -> nn.Module:
    return nn.SiLU()


def mish() -> nn.Module:
    return nn.Mish()


def tanh() -> nn.Module:
    return nn.Tanh()


def sigmoid() -> nn.Module:
    return nn.Sigmoid()


def softplus(beta: float = 1.0, threshold: float = 20.0) -> nn.Module:
    return nn.Softplus(beta=beta, threshold=threshold)


def softmax(dim: int = -1) -> nn.Module:
    return nn.Softmax(dim=dim)


def identity() -> nn.Module:
    return nn.Identity()


#: name -> factory (keyword options only)
ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "gelu": gelu,
    "silu": silu,
    "mish": mish,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "softmax": softmax,
    "identity": identity,
}

#: other names for the same activation
ALIASES: dict[str, str] = {"swish": "silu", "linear": "identity", "none": "identity"}


def activation_names() -> list[str]:
    """Every activation name this package knows (aliases included), sorted."""
    return sorted([*ACTIVATIONS, *ALIASES])


def _installed_activation_names() -> list[str]:
    """Activation names registered by any installed plugin (falls back to our own)."""
    try:
        from neuroplex.registry import list_components

        names = [r.name for r in list_components("layer") if "activation" in r.capabilities]
    except Exception:  # registry unavailable (e.g. a broken environment): our own names
        names = []
    return sorted(set(names) | set(activation_names()))


def get_activation(name: str | None, **options: Any) -> nn.Module:
    """Build an activation module from its name (``None`` means identity).

    Names ignore case and treat ``-`` as ``_``. Our own names resolve locally; any other
    name is looked up in the registry (activations registered by other plugins). An unknown
    name raises :class:`~neuroplex.ConfigError` listing the installed activations.
    """
    if name is None:
        return nn.Identity()
    if not isinstance(name, str):
        raise ConfigError(
            f"activation must be a name, got {name!r}; choose one of {activation_names()}",
            path="activation",
        )
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    factory = ACTIVATIONS.get(key)
    if factory is not None:
        try:
            return factory(**options)
        except TypeError as exc:
            raise ConfigError(f"activation {name!r}: {exc}", path="activation") from None
    installed = _installed_activation_names()
    if key in installed:
        from neuroplex.registry import create_layer

        module: nn.Module = create_layer(key, **options)
        return module
    close = difflib.get_close_matches(key, installed, n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ConfigError(
        f"unknown activation {name!r}{hint}; installed activations: {', '.join(installed)}",
        path="activation",
    )
