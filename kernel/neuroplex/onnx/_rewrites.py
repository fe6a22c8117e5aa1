"""Export-time rewrites: the same function, a graph ONNX Runtime runs faster.

``nn.MultiheadAttention`` (batch first, self-attention, no masks, no attention weights asked
for) is traced as one input projection, one reshape/permute to ``(3, N, heads, S, head_dim)``,
scaled-dot-product attention and one transpose back, instead of PyTorch's sequence-first
formulation (eight transposes per layer in the exported graph). Every other call takes
PyTorch's own path. Exports are verified against the unpatched model, so a rewrite that
changed a result would fail verification rather than ship.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["export_rewrites"]

_original_mha_forward = nn.MultiheadAttention.forward


def _simple_self_attention(
    module: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: Any,
    need_weights: bool,
    attn_mask: Any,
    is_causal: bool,
) -> bool:
    return (
        module.batch_first
        and query is key
        and key is value
        and query.dim() == 3
        and key_padding_mask is None
        and attn_mask is None
        and not is_causal
        and not need_weights
        and module._qkv_same_embed_dim
        and module.in_proj_weight is not None
        and module.bias_k is None
        and module.bias_v is None
        and not module.add_zero_attn
        and (module.dropout == 0.0 or not module.training)
    )


def _mha_forward(
    self: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: Any = None,
    need_weights: bool = True,
    attn_mask: Any = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not _simple_self_attention(
        self, query, key, value, key_padding_mask, need_weights, attn_mask, is_causal
    ):
        out: tuple[torch.Tensor, torch.Tensor | None] = _original_mha_forward(
            self,
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        return out
    n, s, e = query.shape
    heads = self.num_heads
    qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
    qkv = qkv.reshape(n, s, 3, heads, e // heads).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    merged = attended.transpose(1, 2).reshape(n, s, e)
    return F.linear(merged, self.out_proj.weight, self.out_proj.bias), None


@contextlib.contextmanager
def export_rewrites() -> Iterator[None]:
    """Apply the rewrites for the duration (export and VJP tracing only)."""
    nn.MultiheadAttention.forward = _mha_forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.MultiheadAttention.forward = _original_mha_forward  # type: ignore[method-assign]
