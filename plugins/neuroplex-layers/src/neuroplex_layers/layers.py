"""Layer modules: the seed's :class:`Layer` and the blocks the layer builder composes.

Every module here has a fixed structure once built (no data-dependent Python control flow in
``forward``), so models made of them export with ``torch.export`` / ONNX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from neuroplex.errors import ConfigError
from neuroplex_layers._validate import (
    check_choice,
    check_fraction,
    check_positive_int,
    check_positive_ints,
)
from neuroplex_layers.activations import get_activation

if TYPE_CHECKING:
    from neuroplex_layers.neuron import Neuron

__all__ = [
    "NORMS",
    "ConvBlock",
    "Layer",
    "Residual",
    "SelfAttention",
    "TransformerBlock",
    "activation_label",
]

#: normalization choices of Layer / ConvBlock
NORMS = ("batch", "layer", None)


def activation_label(name: str | None) -> str:
    return "identity" if name is None else str(name)


class Layer(nn.Module):
    """A dense layer: ``Linear -> [norm] -> activation -> Dropout``.

    Args:
        in_features: input features ``F_in``.
        out_features: output features (units) ``F_out``.
        activation: an activation name (``neuroplex list layer``), ``None`` for identity.
        dropout: dropout probability in [0, 1).
        norm: ``"batch"``, ``"layer"`` or ``None``: normalization after the linear map.
        bias: whether the linear map has a bias (off by default under batch norm is common).

    Shape: ``(N, *, F_in) -> (N, *, F_out)`` (``norm="batch"`` needs ``(N, F_in)``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str | None = "relu",
        dropout: float = 0.2,
        norm: str | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.dropout_p = check_fraction(dropout, "dropout")
        self.norm_kind: str | None = check_choice(norm, "norm", NORMS)
        self.activation_name = activation_label(activation)
        self.use_bias = bool(bias)
        self.linear = nn.Linear(self.in_features, self.out_features, bias=self.use_bias)
        self.norm: nn.Module
        if self.norm_kind == "batch":
            self.norm = nn.BatchNorm1d(self.out_features)
        elif self.norm_kind == "layer":
            self.norm = nn.LayerNorm(self.out_features)
        else:
            self.norm = nn.Identity()
        self.activation = get_activation(activation)
        self.dropout = nn.Dropout(self.dropout_p)

    def pre_activation(self, x: Tensor) -> Tensor:
        """The normalized linear map before the activation, ``(N, F_out)``."""
        out: Tensor = self.norm(self.linear(x))
        return out

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.dropout(self.activation(self.pre_activation(x)))
        return out

    def __repr__(self) -> str:
        return (
            f"Layer({self.in_features} -> {self.out_features}, "
            f"activation={self.activation_name}, dropout={self.dropout_p}, "
            f"norm={self.norm_kind}, bias={self.use_bias})"
        )

    def neuron(self, index: int) -> Neuron:
        """A view of unit ``index`` (see :class:`~neuroplex_layers.Neuron`)."""
        from neuroplex_layers.neuron import Neuron

        return Neuron(self, index)


class ConvBlock(nn.Module):
    """``Conv{1,2}d -> [BatchNorm] -> activation -> [MaxPool] -> [Dropout]``.

    Shape: ``(N, C_in, L) -> (N, C_out, L')`` (``dims=1``) or ``(N, C_in, H, W) ->
    (N, C_out, H', W')`` (``dims=2``); ``pool`` is the max-pool kernel after the conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...] = 3,
        stride: int = 1,
        padding: int | str = 0,
        activation: str | None = "relu",
        norm: str | None = None,
        pool: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        dims: int = 2,
    ) -> None:
        super().__init__()
        dims = check_choice(dims, "dims", (1, 2))
        self.dims = dims
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        kernel = check_positive_ints(kernel_size, "kernel_size")
        stride = check_positive_int(stride, "stride")
        if not (padding in ("same", "valid") or (isinstance(padding, int) and padding >= 0)):
            raise ConfigError(
                f"padding must be an int >= 0, 'same' or 'valid', got {padding!r}",
                path="padding",
            )
        norm = check_choice(norm, "norm", ("batch", None))
        self.activation_name = activation_label(activation)
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.conv = conv(
            self.in_channels,
            self.out_channels,
            kernel if len(kernel) > 1 else kernel[0],  # type: ignore[arg-type]
            stride=stride,
            padding=padding,
            bias=bool(bias),
        )
        bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.norm = bn(self.out_channels) if norm == "batch" else nn.Identity()
        self.activation = get_activation(activation)
        if pool is not None:
            check_positive_int(pool, "pool")
            self.pool: nn.Module = nn.MaxPool1d(pool) if dims == 1 else nn.MaxPool2d(pool)
        else:
            self.pool = nn.Identity()
        self.dropout = nn.Dropout(check_fraction(dropout, "dropout"))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.dropout(self.pool(self.activation(self.norm(self.conv(x)))))
        return out


class SelfAttention(nn.Module):
    """Multi-head self-attention on batch-first tokens: ``(N, S, E) -> (N, S, E)``."""

    def __init__(self, embed_dim: int, num_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        embed_dim = check_positive_int(embed_dim, "embed_dim")
        num_heads = check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ConfigError(
                f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}; choose "
                f"num_heads among {[h for h in range(1, embed_dim + 1) if embed_dim % h == 0]}",
                path="num_heads",
            )
        self.attention = nn.MultiheadAttention(
            embed_dim, num_heads, dropout=check_fraction(dropout, "dropout"), batch_first=True
        )

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.attention(x, x, x, need_weights=False)
        result: Tensor = out
        return result


class TransformerBlock(nn.Module):
    """A pre-norm transformer encoder block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``.

    Shape: ``(N, S, d_model) -> (N, S, d_model)``. Written out (rather than
    ``nn.TransformerEncoderLayer``) so that eval mode never takes PyTorch's fused fast path,
    which ``torch.export`` and ONNX export do not trace.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int = 1,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        activation: str | None = "gelu",
    ) -> None:
        super().__init__()
        d_model = check_positive_int(d_model, "d_model")
        ff = check_positive_int(dim_feedforward or 4 * d_model, "dim_feedforward")
        p = check_fraction(dropout, "dropout")
        self.norm1 = nn.LayerNorm(d_model)
        try:
            self.attention = SelfAttention(d_model, nhead, dropout=p)
        except ConfigError as exc:
            raise ConfigError(
                str(exc).replace("embed_dim", "d_model").replace("num_heads", "nhead"), path="nhead"
            ) from None
        self.norm2 = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, ff),
            get_activation(activation),
            nn.Dropout(p),
            nn.Linear(ff, d_model),
        )
        self.dropout = nn.Dropout(p)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.norm1(x)))
        out: Tensor = x + self.dropout(self.feedforward(self.norm2(x)))
        return out


class Residual(nn.Module):
    """``x + body(x)``: the body must keep the shape."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.body(x)
        return out
