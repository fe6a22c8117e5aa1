"""Export-time rewrites: the same function, a graph ONNX Runtime runs faster.

``nn.MultiheadAttention`` (batch first, self-attention, no masks, no attention weights asked
for) is traced as one input projection, attention and the output projection, instead of
PyTorch's sequence-first formulation (eight transposes per layer in the exported graph):

* ``contrib=True`` (forward graphs, the default of ``export_onnx``): attention is the custom
  op ``neuroplex::self_attention``, translated to ONNX Runtime's fused
  ``com.microsoft.MultiHeadAttention`` kernel (no transposes at all);
* ``contrib=False`` (portable graphs, and the gradient graph, which needs differentiable
  ops): one reshape/permute to ``(3, N, heads, S, head_dim)``, scaled-dot-product attention,
  one transpose back.

In the gradient graph (``vjp=True``), exact GELU is a function whose backward reuses the
forward's ``Φ(x) = (1 + erf(x / √2)) / 2``: PyTorch's ``gelu_backward`` recomputes the ``erf``,
the most expensive elementwise kernel of a ConvNeXt or ViT gradient on ONNX Runtime; and
attention without a mask is ``softmax(q k^T * scale) v`` with a plain softmax (PyTorch's math
kernel wraps it in ``_safe_softmax``: four more elementwise operators over every attention
matrix, forward and backward).

Every other call takes PyTorch's own path. Exports are verified against the unpatched model,
so a rewrite that changed a result would fail verification rather than ship.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["custom_translations", "export_rewrites"]

_original_mha_forward = nn.MultiheadAttention.forward
_state = {"contrib": False}


@torch.library.custom_op("neuroplex::self_attention", mutates_args=())
def self_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int
) -> torch.Tensor:
    """Multi-head attention on ``(N, S, E)`` projections (heads packed in E) -> ``(N, S, E)``."""
    n, s, e = query.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n, s, heads, e // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value))
    return out.transpose(1, 2).reshape(n, s, e)


@self_attention.register_fake
def _self_attention_fake(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int
) -> torch.Tensor:
    return torch.empty_like(query)


def custom_translations() -> dict[Any, Any]:
    """ONNX translations of the custom ops, for ``torch.onnx.export``."""
    import onnxscript
    from onnx.defs import OpSchema

    schema = OpSchema(
        "MultiHeadAttention",
        "com.microsoft",
        1,
        inputs=[
            OpSchema.FormalParameter("query", "T"),
            OpSchema.FormalParameter("key", "T"),
            OpSchema.FormalParameter("value", "T"),
        ],
        outputs=[OpSchema.FormalParameter("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of heads")],
    )
    mha = onnxscript.values.Op(onnxscript.values.Opset("com.microsoft", 1), schema.name, schema)

    def translate(query: Any, key: Any, value: Any, heads: int) -> Any:
        return mha(query, key, value, num_heads=heads)

    return {torch.ops.neuroplex.self_attention.default: translate}


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
    if _state["contrib"]:
        q, k, v = qkv.chunk(3, dim=-1)
        fused = torch.ops.neuroplex.self_attention(q, k, v, heads)
        return F.linear(fused, self.out_proj.weight, self.out_proj.bias), None
    qkv = qkv.reshape(n, s, 3, heads, e // heads).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    merged = attended.transpose(1, 2).reshape(n, s, e)
    return F.linear(merged, self.out_proj.weight, self.out_proj.bias), None


_original_gelu = F.gelu
_SQRT_HALF = 0.5**0.5
_INV_SQRT_2PI = (2 * 3.141592653589793) ** -0.5


class _Gelu(torch.autograd.Function):
    """Exact GELU ``x Φ(x)``; the backward ``g (Φ(x) + x φ(x))`` reads the saved ``Φ(x)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        cdf = 0.5 * (1.0 + torch.erf(x * _SQRT_HALF))
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, cdf = ctx.saved_tensors
        pdf = torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
        out: torch.Tensor = grad * (cdf + x * pdf)
        return out


def _gelu(input: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    if approximate != "none":
        return _original_gelu(input, approximate=approximate)
    out: torch.Tensor = _Gelu.apply(input)  # type: ignore[no-untyped-call]
    return out


_original_sdpa = F.scaled_dot_product_attention


def _sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """Attention without a mask as ``softmax(q k^T * scale) v``, query and key each scaled by
    ``sqrt(scale)`` like PyTorch's math kernel, but a plain softmax: the math kernel's
    ``_safe_softmax`` adds ``Equal``/``Not``/``ReduceAny``/``Where`` over every attention
    matrix (to zero the rows a mask made all ``-inf``; none without a mask)."""
    if attn_mask is not None or dropout_p or is_causal or enable_gqa:
        out: torch.Tensor = _original_sdpa(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
        )
        return out
    factor = (query.shape[-1] ** -0.5 if scale is None else scale) ** 0.5
    scores = (query * factor) @ (key * factor).transpose(-2, -1)
    attended: torch.Tensor = torch.softmax(scores, dim=-1) @ value
    return attended


@contextlib.contextmanager
def export_rewrites(*, contrib: bool = False, vjp: bool = False) -> Iterator[None]:
    """Apply the rewrites for the duration (export and VJP tracing only); ``contrib`` uses
    ONNX Runtime's contrib attention kernel, ``vjp`` the gradient graph's GELU."""
    nn.MultiheadAttention.forward = _mha_forward  # type: ignore[method-assign]
    if vjp:
        F.gelu = _gelu
        F.scaled_dot_product_attention = _sdpa
    previous, _state["contrib"] = _state["contrib"], contrib
    try:
        yield
    finally:
        _state["contrib"] = previous
        F.gelu = _original_gelu
        F.scaled_dot_product_attention = _original_sdpa
        nn.MultiheadAttention.forward = _original_mha_forward  # type: ignore[method-assign]
