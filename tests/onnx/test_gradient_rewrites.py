"""The VJP trace's rewrites (stride-1 convolution as a convolution, max-pool indices from the
input, GELU reusing its forward) give autograd's input gradients, ties included."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuroplex.onnx._gradients import trace_vjp


def _check(model: nn.Module, x: torch.Tensor) -> torch.fx.GraphModule:
    model.eval()
    traced = trace_vjp(model, x, symbolic=False)
    go = torch.randn_like(model(x))
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(xr), xr, go)
    grad, out = traced(x, go)
    assert (grad - expected).abs().max().item() <= 1e-6 * max(1.0, expected.abs().max().item())
    assert (out - model(x)).abs().max().item() <= 1e-6
    return traced


def _transposed_convolutions(traced: torch.fx.GraphModule) -> int:
    return sum(
        1
        for n in traced.graph.nodes
        if n.target is torch.ops.aten.convolution.default and n.args[6]
    )


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(8, 6, 3, 1, 1),
        nn.Conv2d(8, 6, 3, 1, 0),
        nn.Conv2d(6, 6, 7, 1, 3, groups=6),
        nn.Conv2d(8, 6, 3, 1, 2, dilation=2),
        nn.Conv2d(8, 6, (3, 5), 1, (1, 0)),
        nn.Conv1d(8, 5, 5, 1, 2),
    ],
)
def test_stride_one_convolution_gradient_is_a_plain_convolution(conv: nn.Module) -> None:
    torch.manual_seed(0)
    spatial = (9,) if isinstance(conv, nn.Conv1d) else (9, 10)
    x = torch.randn(3, conv.in_channels, *spatial)
    assert _transposed_convolutions(_check(conv, x)) == 0


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3, 2, 1),  # strided
        nn.Conv2d(3, 16, 3, 1, 1),  # few input channels: ConvTranspose is faster on ORT
        nn.Conv2d(8, 6, 3, 1, 1, groups=2),  # grouped, not depthwise
    ],
)
def test_other_convolutions_keep_the_transposed_convolution(conv: nn.Module) -> None:
    torch.manual_seed(0)
    traced = _check(conv, torch.randn(2, conv.in_channels, 9, 9))
    assert _transposed_convolutions(traced) == 1


@pytest.mark.parametrize(
    ("pool", "side"),
    [
        (nn.MaxPool2d(3, 2, 1), 7),
        (nn.MaxPool2d(3, 2, 1), 8),
        (nn.MaxPool2d(3, 1, 1), 6),
        (nn.MaxPool2d((3, 2), (2, 1), (1, 0)), 9),
        (nn.MaxPool2d(3, 2, 1, dilation=2), 11),
        (nn.MaxPool2d(2, 3), 10),
        (nn.MaxPool2d(2), 8),  # non-overlapping: no indices, no scatter
        (nn.MaxPool2d((2, 3)), 12),
    ],
)
def test_max_pool_indices_route_ties_like_pytorch(pool: nn.Module, side: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), pool)
    traced = _check(model, (torch.rand(4, 1, side, side) * 2).round())  # many ties
    targets = {n.target for n in traced.graph.nodes}
    assert torch.ops.aten.max_pool2d_with_indices_backward.default not in targets


def test_gelu_gradient_computes_erf_once() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 3), nn.GELU("tanh"))
    traced = _check(model, torch.randn(4, 5) * 3)
    erfs = [n for n in traced.graph.nodes if n.target is torch.ops.aten.erf.default]
    assert len(erfs) == 1
    assert torch.nn.functional.gelu is torch._C._nn.gelu  # restored after the trace


class _SelfAttention(nn.Module):
    def __init__(self, mask: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.mask = torch.tril(torch.ones(5, 5, dtype=torch.bool)) if mask else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).reshape(x.shape[0], 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=self.mask
        )
        return out.flatten(1)


@pytest.mark.parametrize("mask", [False, True])
def test_attention_gradient_has_no_safe_softmax_and_pads_selections(mask: bool) -> None:
    torch.manual_seed(0)
    traced = _check(_SelfAttention(mask), torch.randn(3, 5, 8))
    targets = [n.target for n in traced.graph.nodes]
    # qkv[i]'s gradient: a zero pad, not an expand and a where against an arange
    assert targets.count(torch.ops.aten.constant_pad_nd.default) == 3
    assert (torch.ops.aten.where.self in targets) == mask  # masks keep PyTorch's own path
    assert nn.functional.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention


def test_relu_gradient_is_a_product_not_a_where() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU())
    traced = _check(model, torch.randn(6, 5))
    assert torch.ops.aten.where.self not in {n.target for n in traced.graph.nodes}
