"""Dynamic layer building: an ``nn.Sequential`` from a list of config dicts.

Each dict names its kind with ``"type"`` (optional: ``out_features`` means ``linear``,
``out_channels`` a convolution matching the input's rank). Input sizes (``in_features``,
``in_channels``, ``num_features``, ``embed_dim``, ``d_model``...) are inferred from the
previous layer's output shape, found by a forward pass on a zero batch. Errors name the list
index and the key: ``hidden_layers[1].out_features: must be a positive integer, got -3``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from neuroplex.errors import ConfigError, NeuroplexError
from neuroplex.torchutils import eval_mode
from neuroplex_layers.layers import ConvBlock, Layer, Residual, SelfAttention, TransformerBlock

__all__ = [
    "KIND_ALIASES",
    "LAYER_KINDS",
    "LayerManager",
    "batchnorm",
    "build_layers",
    "build_sequential",
    "conv1d",
    "conv2d",
    "dropout",
    "embedding",
    "flatten",
    "layernorm",
    "output_shape",
    "pool",
    "residual",
]

Shape = tuple[int, ...]


# ----------------------------------------------------------------- factories (one per kind)
def conv1d(in_channels: int, out_channels: int, **options: Any) -> nn.Module:
    """``ConvBlock(dims=1)``: ``(N, C_in, L) -> (N, C_out, L')``."""
    return ConvBlock(in_channels, out_channels, dims=1, **options)


def conv2d(in_channels: int, out_channels: int, **options: Any) -> nn.Module:
    """``ConvBlock(dims=2)``: ``(N, C_in, H, W) -> (N, C_out, H', W')``."""
    return ConvBlock(in_channels, out_channels, dims=2, **options)


conv1d.__signature__ = inspect.signature(ConvBlock).replace(  # type: ignore[attr-defined]
    parameters=[p for n, p in inspect.signature(ConvBlock).parameters.items() if n != "dims"]
)
conv2d.__signature__ = conv1d.__signature__  # type: ignore[attr-defined]

_POOLS = ("max", "avg", "adaptive_avg", "adaptive_max")


def pool(
    mode: str = "max",
    kernel_size: int = 2,
    stride: int | None = None,
    output_size: int = 1,
    dims: int = 2,
) -> nn.Module:
    """Pooling: ``mode`` in max, avg (``kernel_size``, ``stride``) or adaptive_avg,
    adaptive_max (``output_size``); ``dims`` 1 for ``(N, C, L)``, 2 for ``(N, C, H, W)``."""
    if mode not in _POOLS:
        raise ConfigError(f"mode must be one of {list(_POOLS)}, got {mode!r}", path="mode")
    if dims not in (1, 2):
        raise ConfigError(f"dims must be 1 or 2, got {dims!r}", path="dims")
    if mode == "max":
        return (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(kernel_size, stride or kernel_size)
    if mode == "avg":
        return (nn.AvgPool1d if dims == 1 else nn.AvgPool2d)(kernel_size, stride or kernel_size)
    if mode == "adaptive_avg":
        return (nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(output_size)
    return (nn.AdaptiveMaxPool1d if dims == 1 else nn.AdaptiveMaxPool2d)(output_size)


def batchnorm(num_features: int, dims: int = 1) -> nn.Module:
    """Batch normalization over channels: ``dims=1`` for ``(N, C)``/``(N, C, L)``, 2 for
    ``(N, C, H, W)``."""
    if dims not in (1, 2):
        raise ConfigError(f"dims must be 1 or 2, got {dims!r}", path="dims")
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features)


def layernorm(normalized_shape: int) -> nn.Module:
    """Layer normalization over the last dimension."""
    return nn.LayerNorm(normalized_shape)


def dropout(p: float = 0.5) -> nn.Module:
    """Dropout with probability ``p``."""
    return nn.Dropout(p)


def flatten() -> nn.Module:
    """``(N, *) -> (N, prod(*))``."""
    return nn.Flatten()


def embedding(num_embeddings: int, embedding_dim: int) -> nn.Module:
    """Token embedding: int64 ``(N, S) -> (N, S, embedding_dim)``."""
    return nn.Embedding(num_embeddings, embedding_dim)


def residual(layers: Sequence[Mapping[str, Any]], input_shape: Sequence[int]) -> nn.Module:
    """``x + body(x)`` where ``body`` is built from ``layers`` and must keep the shape."""
    body, out = build_layers(layers, tuple(input_shape), path="residual.layers")
    if out != tuple(input_shape):
        raise ConfigError(
            f"a residual body must keep the shape {tuple(input_shape)}, these layers give {out}",
            path="residual.layers",
        )
    return Residual(body)


#: kind -> factory
LAYER_KINDS: dict[str, Callable[..., nn.Module]] = {
    "linear": Layer,
    "conv1d": conv1d,
    "conv2d": conv2d,
    "pool": pool,
    "batchnorm": batchnorm,
    "layernorm": layernorm,
    "dropout": dropout,
    "flatten": flatten,
    "embedding": embedding,
    "attention": SelfAttention,
    "transformer_block": TransformerBlock,
    "residual": residual,
}

#: other spellings -> (kind, options they imply)
KIND_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "dense": ("linear", {}),
    "maxpool": ("pool", {"mode": "max"}),
    "avgpool": ("pool", {"mode": "avg"}),
    "pooling": ("pool", {}),
    "batch_norm": ("batchnorm", {}),
    "layer_norm": ("layernorm", {}),
    "multihead_attention": ("attention", {}),
    "mha": ("attention", {}),
    "transformer": ("transformer_block", {}),
    "encoder_block": ("transformer_block", {}),
}

#: inputs of each kind's factory that come from the previous shape; required input rank
_INFERRED: dict[str, Callable[[Shape], dict[str, Any]]] = {
    "linear": lambda s: {"in_features": s[-1]},
    "conv1d": lambda s: {"in_channels": s[0]},
    "conv2d": lambda s: {"in_channels": s[0]},
    "pool": lambda s: {"dims": len(s) - 1},
    "batchnorm": lambda s: {"num_features": s[0], "dims": 2 if len(s) == 3 else 1},
    "layernorm": lambda s: {"normalized_shape": s[-1]},
    "attention": lambda s: {"embed_dim": s[-1]},
    "transformer_block": lambda s: {"d_model": s[-1]},
    "residual": lambda s: {"input_shape": s},
}
_RANKS: dict[str, tuple[int, ...]] = {
    "conv1d": (2,),
    "conv2d": (3,),
    "pool": (2, 3),
    "batchnorm": (1, 2, 3),
    "attention": (2,),
    "transformer_block": (2,),
    "embedding": (1,),
}
_RANK_NAMES = {1: "(F,)", 2: "(C, L) or (S, E)", 3: "(C, H, W)"}


def _kind_of(spec: Mapping[str, Any], shape: Shape, where: str) -> tuple[str, dict[str, Any]]:
    raw = spec.get("type")
    if raw is None:
        if "out_features" in spec:
            return "linear", {}
        if "out_channels" in spec:
            return ("conv1d" if len(shape) == 2 else "conv2d"), {}
        raise ConfigError(
            f"cannot tell the layer kind: give 'type' (one of {sorted(LAYER_KINDS)}) or "
            "'out_features' (linear) / 'out_channels' (convolution)",
            path=where,
        )
    key = str(raw).strip().lower().replace("-", "_")
    if key in LAYER_KINDS:
        return key, {}
    if key in KIND_ALIASES:
        kind, implied = KIND_ALIASES[key]
        return kind, dict(implied)
    choices = sorted([*LAYER_KINDS, *KIND_ALIASES])
    close = difflib.get_close_matches(key, choices, n=2)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ConfigError(f"unknown layer type {raw!r}{hint}; choose one of {choices}", path=where)


def _parameters(factory: Callable[..., Any]) -> list[str]:
    return [
        n
        for n, p in inspect.signature(factory).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def output_shape(module: nn.Module, shape: Shape, dtype: torch.dtype = torch.float32) -> Shape:
    """Per-sample output shape of ``module`` on inputs of per-sample ``shape``."""
    with eval_mode(module, freeze=False), torch.no_grad():
        out = module(torch.zeros((2, *shape), dtype=dtype))
    return tuple(out.shape[1:])


def build_one(
    spec: Mapping[str, Any],
    shape: Shape,
    *,
    where: str,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, Shape]:
    """Build one layer from ``spec`` for inputs of per-sample ``shape``; return it and its
    per-sample output shape."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"each layer must be a dict, got {spec!r}", path=where)
    kind, options = _kind_of(spec, shape, f"{where}.type")
    factory = LAYER_KINDS[kind]
    valid = _parameters(factory)
    for key in spec:
        if key != "type" and key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=2)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise ConfigError(
                f"unknown key {key!r} for a {kind} layer{hint}; valid keys: {valid}",
                path=f"{where}.{key}",
            )
    ranks = _RANKS.get(kind)
    if ranks is not None and len(shape) not in ranks:
        wanted = " or ".join(_RANK_NAMES.get(r, str(r)) for r in ranks)
        raise ConfigError(
            f"a {kind} layer needs per-sample inputs shaped {wanted}, the previous layer gives "
            f"{shape}: add a flatten/reshape or change the layer",
            path=f"{where}.type",
        )
    infer = _INFERRED.get(kind)
    inferred = infer(shape) if infer is not None else {}
    for key, value in inferred.items():
        if key in spec and key != "dims" and spec[key] != value:
            raise ConfigError(
                f"shapes cannot connect: {key}={spec[key]!r} but the previous layer gives "
                f"{value!r} (per-sample shape {shape}); drop the key to infer it",
                path=f"{where}.{key}",
            )
    config = {k: v for k, v in (defaults or {}).items() if k in valid}
    config.update(options)
    config.update(inferred)
    config.update({k: v for k, v in spec.items() if k != "type"})
    try:
        module = factory(**config)
    except ConfigError as exc:
        raise ConfigError(
            _strip_path(exc), path=f"{where}.{exc.path}" if exc.path else where
        ) from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot build a {kind} layer: {exc}", path=where) from None
    dtype = torch.long if kind == "embedding" else torch.float32
    try:
        out = output_shape(module, shape, dtype)
    except NeuroplexError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"shapes cannot connect: a {kind} layer on per-sample shape {shape} fails: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
            path=where,
        ) from None
    if any(d <= 0 for d in out):
        raise ConfigError(
            f"shapes cannot connect: a {kind} layer on per-sample shape {shape} gives {out}",
            path=where,
        )
    return module, out


def _strip_path(exc: ConfigError) -> str:
    text = str(exc)
    prefix = f"{exc.path}: "
    return text[len(prefix) :] if exc.path and text.startswith(prefix) else text


def build_layers(
    specs: Sequence[Mapping[str, Any]],
    input_shape: int | Sequence[int],
    *,
    path: str = "layers",
    defaults: Mapping[str, Any] | None = None,
) -> tuple[nn.Sequential, Shape]:
    """Build ``nn.Sequential`` from ``specs`` for per-sample ``input_shape``.

    Returns the sequential and its per-sample output shape. ``defaults`` fill keys a spec
    leaves out (where the kind accepts them), e.g. ``{"dropout": 0.0}``.
    """
    shape: Shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if isinstance(specs, Mapping | str) or not isinstance(specs, Sequence):
        raise ConfigError(f"must be a list of layer dicts, got {specs!r}", path=path)
    modules = []
    for i, spec in enumerate(specs):
        module, shape = build_one(spec, shape, where=f"{path}[{i}]", defaults=defaults)
        modules.append(module)
    return nn.Sequential(*modules), shape


def build_sequential(
    specs: Sequence[Mapping[str, Any]],
    input_shape: int | Sequence[int],
    *,
    path: str = "layers",
    defaults: Mapping[str, Any] | None = None,
) -> nn.Sequential:
    """:func:`build_layers` without the output shape."""
    return build_layers(specs, input_shape, path=path, defaults=defaults)[0]


class LayerManager:
    """The seed's layer manager: add layer dicts one at a time, each checked as it comes.

    ``LayerManager((1, 8, 8)).add({"out_channels": 4, "kernel_size": 3}).add({"type":
    "flatten"}).build()`` gives an ``nn.Sequential``; ``output_shape`` is the per-sample shape
    after the layers added so far.
    """

    def __init__(self, input_shape: int | Sequence[int], *, path: str = "layers") -> None:
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        self.input_shape: Shape = shape
        self.output_shape: Shape = shape
        self.path = path
        self._modules: list[nn.Module] = []

    def add(self, spec: Mapping[str, Any], **defaults: Any) -> LayerManager:
        """Build ``spec`` on the current output shape (errors name its index)."""
        where = f"{self.path}[{len(self._modules)}]"
        module, self.output_shape = build_one(
            spec, self.output_shape, where=where, defaults=defaults
        )
        self._modules.append(module)
        return self

    def build(self) -> nn.Sequential:
        """The layers added so far, in order."""
        return nn.Sequential(*self._modules)

    def __len__(self) -> int:
        return len(self._modules)
