"""``cnn``: convolution blocks, optional global pooling, a dense classifier."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from neuroplex_layers import build_layers
from torch import Tensor, nn

from neuroplex.errors import ConfigError, DataError
from neuroplex_models.base import NeuroplexModel

__all__ = ["CNNModel"]

_GLOBAL_POOLS = ("auto", "avg", "max", None)
_ADAPTIVE: dict[tuple[str, int], type[nn.Module]] = {
    ("avg", 1): nn.AdaptiveAvgPool1d,
    ("avg", 2): nn.AdaptiveAvgPool2d,
    ("max", 1): nn.AdaptiveMaxPool1d,
    ("max", 2): nn.AdaptiveMaxPool2d,
}
_CONV_KEYS = (
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "pool",
    "norm",
    "activation",
    "dropout",
    "bias",
)


class CNNModel(NeuroplexModel):
    """A convolutional classifier over images (2-D) or signals (1-D).

    Hyperparameters:
        input_channels: channels ``C`` of the inputs.
        input_size: ``[H, W]`` (2-D) or ``[L]`` (1-D), or ``None`` when unknown (then
            ``global_pool`` must pool). An int ``s`` means ``[s, s]`` (2-D) or ``[s]`` (1-D).
            Flat inputs ``(N, C*H*W)`` / ``(N, C*L)`` are reshaped to ``(N, C, H, W)`` /
            ``(N, C, L)``.
        dims: ``2`` (``Conv2d``), ``1`` (``Conv1d``) or ``None``: the length of
            ``input_size`` when it is a list, else 2.
        conv_layers: list of dicts, each ``out_channels``, ``kernel_size`` (3), ``stride``
            (1), ``padding`` (0), ``pool`` (max-pool kernel after the conv, or ``None``),
            ``norm`` (``"batch"`` or ``None``), ``activation`` (``"relu"``), ``dropout`` (0).
        global_pool: ``"avg"``, ``"max"`` (pool each channel to one value), ``None`` (flatten
            the feature maps; needs ``input_size``) or ``"auto"`` (``None`` when
            ``input_size`` is given, else ``"avg"``).
        hidden: sizes of dense layers before the output, e.g. ``[128]``.
        num_classes: output logits.
        dropout: dropout before each dense layer of the classifier.

    Shape: ``(N, C, H, W)`` or ``(N, C*H*W)`` -> ``(N, num_classes)`` (2-D);
    ``(N, C, L)`` or ``(N, C*L)`` -> ``(N, num_classes)`` (1-D).
    """

    family: ClassVar[str] = "cnn"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "input_channels": 1,
        "input_size": None,
        "dims": None,
        "conv_layers": [
            {"out_channels": 32, "kernel_size": 3},
            {"out_channels": 64, "kernel_size": 3},
        ],
        "global_pool": "auto",
        "hidden": [],
        "num_classes": 10,
        "dropout": 0.0,
    }

    def _build(self, hp: dict[str, Any]) -> None:
        channels = self._positive(hp, "input_channels")
        self.num_classes = self._positive(hp, "num_classes")
        dims = self._dims(hp["dims"], hp["input_size"])
        hp["dims"] = self.dims = dims
        size = self._size(hp["input_size"], dims)
        if size is not None:
            hp["input_size"] = list(size)
        self.image_shape: tuple[int, ...] | None = (channels, *size) if size is not None else None
        pool = hp["global_pool"]
        if pool not in _GLOBAL_POOLS:
            raise self.error(
                "global_pool", f"global_pool must be one of {list(_GLOBAL_POOLS)}, got {pool!r}"
            )
        if pool == "auto":
            pool = None if size is not None else "avg"
        if pool is None and size is None:
            raise self.error(
                "input_size",
                f"input_size {'[L]' if dims == 1 else '[H, W]'} is required when global_pool "
                "is None (the classifier size depends on it); give input_size or set "
                "global_pool to 'avg' or 'max'",
            )
        self._check_conv_layers(hp["conv_layers"])
        # a stand-in size when unknown: the conv stack is size-agnostic under global pooling
        probe = (channels, *(size if size is not None else (32,) * dims))
        specs = [{"type": f"conv{dims}d", **layer} for layer in hp["conv_layers"]]
        self.features, shape = build_layers(specs, probe, path="cnn.conv_layers")
        self.global_pool: nn.Module
        if pool is None:
            self.global_pool = nn.Flatten()
            flat = math.prod(shape)
        else:
            adaptive = _ADAPTIVE[(pool, dims)](1)
            self.global_pool = nn.Sequential(adaptive, nn.Flatten())
            flat = shape[0]
        p = hp["dropout"]
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
            raise self.error("dropout", f"dropout must be in [0, 1), got {p!r}")
        hidden = hp["hidden"]
        if not isinstance(hidden, list | tuple):
            raise self.error("hidden", f"hidden must be a list of layer sizes, got {hidden!r}")
        dense = [{"out_features": h, "activation": "relu"} for h in hidden]
        for i, h in enumerate(hidden):
            if isinstance(h, bool) or not isinstance(h, int) or h <= 0:
                raise self.error(f"hidden[{i}]", f"hidden sizes must be positive ints, got {h!r}")
        self.hidden, (features,) = build_layers(
            dense, (flat,), path="cnn.hidden", defaults={"dropout": hp["dropout"]}
        )
        self.dropout = nn.Dropout(hp["dropout"])
        self.classifier = nn.Linear(features, self.num_classes)

    def _dims(self, dims: Any, size: Any) -> int:
        if dims is None:
            return len(size) if isinstance(size, list | tuple) and len(size) in (1, 2) else 2
        if dims not in (1, 2) or isinstance(dims, bool):
            raise self.error("dims", f"dims must be 1, 2 or None (inferred), got {dims!r}")
        return int(dims)

    def _size(self, size: Any, dims: int) -> tuple[int, ...] | None:
        if size is None:
            return None
        if isinstance(size, int) and not isinstance(size, bool):
            size = [size] * dims
        wanted = "[L]" if dims == 1 else "[H, W]"
        if (
            not isinstance(size, list | tuple)
            or len(size) != dims
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        ):
            raise self.error(
                "input_size",
                f"input_size must be {wanted} of positive ints for dims={dims}, got {size!r}",
            )
        return tuple(size)

    def _positive(self, hp: Mapping[str, Any], key: str) -> int:
        value = hp[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(key, f"{key} must be a positive integer, got {value!r}")
        return value

    def _check_conv_layers(self, layers: Any) -> None:
        if not isinstance(layers, list | tuple) or not layers:
            raise self.error("conv_layers", f"conv_layers must be a non-empty list, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Mapping):
                raise self.error(f"conv_layers[{i}]", f"each conv layer is a dict, got {layer!r}")
            for key in layer:
                if key not in _CONV_KEYS:
                    raise self.error(
                        f"conv_layers[{i}].{key}",
                        f"unknown conv layer key {key!r}; valid keys: {list(_CONV_KEYS)}",
                    )
            if "out_channels" not in layer:
                raise self.error(f"conv_layers[{i}].out_channels", "out_channels is required")

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` or flat ``(N, C*H*W)`` (2-D), ``(N, C, L)`` or flat ``(N, C*L)``
        (1-D) -> logits ``(N, num_classes)``."""
        if x.ndim == 2:
            if self.image_shape is None:
                wanted = "[L]" if self.dims == 1 else "[H, W]"
                raise ConfigError(
                    f"cnn: flat (N, F) inputs need input_size {wanted} to reshape them",
                    path="cnn.input_size",
                )
            flat = math.prod(self.image_shape)
            if x.shape[1] != flat:
                what = "C*L" if self.dims == 1 else "C*H*W"
                raise DataError(
                    f"cnn: flat inputs must have {what} = {flat} features (input_channels, "
                    f"input_size = {list(self.image_shape)}), got {tuple(x.shape)}"
                )
            x = x.reshape(-1, *self.image_shape)
        elif x.ndim != self.dims + 2:
            layout = "(N, C, L)" if self.dims == 1 else "(N, C, H, W)"
            raise DataError(
                f"cnn: inputs must be {layout} or flat (N, F) (dims={self.dims}), got "
                f"{tuple(x.shape)}"
            )
        h = self.global_pool(self.features(x))
        out: Tensor = self.classifier(self.dropout(self.hidden(h)))
        return out
