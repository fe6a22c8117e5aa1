"""Dense stacks from hyperparameters: a list of sizes (``[128, 64]``) or of layer dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neuroplex_layers import build_layers
from torch import nn

from neuroplex.errors import ConfigError

__all__ = ["dense_stack", "positive_int"]


def positive_int(family: str, hp: Mapping[str, Any], key: str) -> int:
    """``hp[key]`` as an int > 0, else a ConfigError naming the family and key."""
    value = hp[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(
            f"{family}: {key} must be a positive integer, got {value!r}", path=f"{family}.{key}"
        )
    return value


def dense_stack(
    family: str, key: str, specs: Any, in_features: int, defaults: Mapping[str, Any]
) -> tuple[nn.Sequential, int]:
    """Build ``specs`` (ints are ``out_features``) on ``(in_features,)``; return the stack and
    its output features."""
    if not isinstance(specs, list | tuple):
        raise ConfigError(
            f"{family}: {key} must be a list of sizes or layer dicts, got {specs!r}",
            path=f"{family}.{key}",
        )
    layers = []
    for i, spec in enumerate(specs):
        if isinstance(spec, int) and not isinstance(spec, bool):
            if spec <= 0:
                raise ConfigError(
                    f"{family}: layer sizes must be positive, got {spec}",
                    path=f"{family}.{key}[{i}]",
                )
            layers.append({"out_features": spec})
        else:
            layers.append(spec)
    stack, shape = build_layers(layers, (in_features,), path=f"{family}.{key}", defaults=defaults)
    if len(shape) != 1:
        raise ConfigError(
            f"{family}: {key} must end with a flat (F,) shape, it gives {shape}",
            path=f"{family}.{key}",
        )
    return stack, shape[0]
