"""Tracing the vector-Jacobian product of a model into an exportable graph.

``vjp(x, grad_output) = (d model(x) / d x)^T · grad_output`` (and ``model(x)``, the second
output) is traced with
``make_fx`` over core ATen decompositions, plus custom decompositions of backward ops that
ONNX has no function for: ``convolution_backward`` becomes a transposed convolution of
``grad_output`` with the forward weight, ``avg_pool2d_backward`` a depthwise transposed
convolution with a ones kernel; others because ONNX Runtime runs a different formulation
faster (max-pool without indices, ReLU's backward as a product, ``select``'s gradient as a
``Pad``; see ``kernel/docs/onnx-gradients.md``). Parameters are frozen while tracing,
so only the input gradient is traced. The traced graph is then exported like any model.

Symbolic tracing gives a graph with a dynamic batch; when it fails, a fixed-batch graph is
traced instead and :class:`~neuroplex.onnx.OnnxModule` pads every batch to that size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VjpModule", "distinct_batch", "frozen_parameters", "trace_vjp"]

_aten = torch.ops.aten


#: the fewest input channels of a dense stride-1 convolution whose input gradient is traced as
#: a Conv (ORT profile, 1 thread: 3 x slower at 1 channel, even at 8, 1.6 x faster at 16)
_MIN_CONV_GRAD_CHANNELS = 8


def _convolution_backward(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor | None, None, None]:
    """Input gradient of a (transposed) convolution as the adjoint convolution."""
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError(
            "convolution_backward: weight/bias gradients are not traced (parameters are frozen)"
        )
    if not output_mask[0]:
        return None, None, None
    if transposed:  # adjoint of a transposed convolution is the plain convolution
        grad = _aten.convolution(
            grad_output, weight, None, stride, padding, dilation, False, [0] * len(stride), groups
        )
        return grad, None, None
    kernels = list(weight.shape[2:])
    out_ch, in_ch = weight.shape[0], weight.shape[1] * groups
    depthwise = groups == in_ch == out_ch
    if (
        all(s == 1 for s in stride)
        and all(p <= d * (k - 1) for p, d, k in zip(padding, dilation, kernels, strict=True))
        and (depthwise or (groups == 1 and in_ch >= _MIN_CONV_GRAD_CHANNELS))
    ):
        # stride 1: the adjoint is a plain convolution with the spatially flipped kernel, its
        # in/out channels swapped per group; ONNX Runtime runs Conv on its optimized
        # (NCHWc, depthwise) kernels, ConvTranspose on a slower generic one -- except for a
        # Conv with few output channels (the model's first layer), where ConvTranspose wins
        flipped = weight.flip(list(range(2, weight.dim())))
        per_group = flipped.reshape(groups, out_ch // groups, *flipped.shape[1:])
        adjoint = per_group.transpose(1, 2).reshape(
            flipped.shape[1] * groups, out_ch // groups, *kernels
        )
        pads = [d * (k - 1) - p for p, d, k in zip(padding, dilation, kernels, strict=True)]
        grad = _aten.convolution(
            grad_output, adjoint, None, stride, pads, dilation, False, [0] * len(stride), groups
        )
        return grad, None, None
    opad = []
    for d in range(len(stride)):
        kernel = weight.shape[2 + d]
        rebuilt = (
            (grad_output.shape[2 + d] - 1) * stride[d]
            - 2 * padding[d]
            + dilation[d] * (kernel - 1)
            + 1
        )
        opad.append(input.shape[2 + d] - rebuilt)
    grad = _aten.convolution(
        grad_output, weight, None, stride, padding, dilation, True, opad, groups
    )
    return grad, None, None


def _pair(value: Sequence[int], default: Sequence[int]) -> list[int]:
    items = list(value) if len(value) else list(default)
    return items * 2 if len(items) == 1 else items


def _avg_pool2d_backward(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> torch.Tensor:
    """Input gradient of average pooling: a depthwise transposed convolution with a ones
    kernel of the averaged ``grad_output`` (``ceil_mode`` is not covered)."""
    if ceil_mode or input.dim() != 4:
        raise NotImplementedError("avg_pool2d_backward: ceil_mode or unbatched input")
    kernel = _pair(kernel_size, kernel_size)
    step = _pair(stride, kernel)
    pad = _pair(padding, [0])
    channels, height, width = input.shape[1], input.shape[2], input.shape[3]
    if divisor_override:
        scaled = grad_output / divisor_override
    elif count_include_pad or not any(pad):
        scaled = grad_output / (kernel[0] * kernel[1])
    else:  # divide by the number of real (unpadded) elements in each window
        counts = _aten.convolution(
            input.new_ones((1, 1, height, width)),
            input.new_ones((1, 1, kernel[0], kernel[1])),
            None,
            step,
            pad,
            [1, 1],
            False,
            [0, 0],
            1,
        )
        scaled = grad_output / counts
    opad = [
        size - ((out - 1) * s - 2 * p + k)
        for size, out, s, p, k in zip(
            (height, width), grad_output.shape[2:], step, pad, kernel, strict=True
        )
    ]
    ones = grad_output.new_ones((channels, 1, kernel[0], kernel[1]))
    grad: torch.Tensor = _aten.convolution(
        scaled, ones, None, step, pad, [1, 1], True, opad, channels
    )
    return grad


def _max_pool2d_indices(
    input: torch.Tensor,
    kernel: list[int],
    step: list[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    grad_output: torch.Tensor,
) -> torch.Tensor:
    """The flat ``h * w`` index of each window's first maximum (PyTorch's indices: row-major
    scan, padding never wins).

    The padded input is split into its ``step`` phases once (one reshape and transpose), so
    that each kernel offset is a unit-step slice of one phase; a running maximum over the
    offsets keeps the first one that is strictly greater, and carries its flat offset in the
    input as a float (exact below 2**24; a lookup table would be a slow GatherND).
    """
    pad, dil = _pair(padding, [0]), _pair(dilation, [1])
    n, c, height, width = input.shape
    out = (grad_output.shape[-2], grad_output.shape[-1])
    sizes = []  # padded size per axis: a multiple of the step that holds every window
    for size, o, k, s, p, d in zip((height, width), out, kernel, step, pad, dil, strict=True):
        sizes.append(-(-max(size + 2 * p, (k - 1) * d + s * o) // s))
    padded = F.pad(
        input,
        (pad[1], sizes[1] * step[1] - width - pad[1], pad[0], sizes[0] * step[0] - height - pad[0]),
        value=float("-inf"),
    )
    phases = padded.reshape(n, c, sizes[0], step[0], sizes[1], step[1]).permute(0, 1, 3, 5, 2, 4)
    best = offset = input.new_empty(0)
    for k, (i, j) in enumerate((i, j) for i in range(kernel[0]) for j in range(kernel[1])):
        oi, oj = i * dil[0], j * dil[1]
        qi, qj = oi // step[0], oj // step[1]
        view = phases[:, :, oi % step[0], oj % step[1], qi : qi + out[0], qj : qj + out[1]]
        if k == 0:
            best, offset = view, torch.zeros_like(view)
            continue
        greater = view > best
        best = torch.maximum(view, best)
        offset = torch.where(greater, float(oi * width + oj), offset)
    rows = torch.arange(out[0], device=input.device)[:, None] * step[0] - pad[0]
    cols = torch.arange(out[1], device=input.device) * step[1] - pad[1]
    return rows * width + cols + offset.to(torch.int64)


def _max_pool2d_backward(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    indices: torch.Tensor,
) -> torch.Tensor:
    """Input gradient of max pooling without the forward's indices (ORT computes MaxPool
    indices slowly and scatters them back): each window routes its gradient to its first
    maximum (row-major scan), as PyTorch does.

    Non-overlapping windows (kernel == stride, no padding, the input a multiple of the
    kernel) use only full-resolution elementwise operators and pooling, each a flat pass
    over contiguous memory on ONNX Runtime: ``m`` is the forward's pooling (the exporter
    merges the two identical MaxPool nodes into one), ``x == upsample(m)`` marks every
    maximum; a window with tied maxima keeps its first, the one of highest priority
    ``k0 * k1 - offset`` (a second max-pool over ``priority * is_max``); the gradient is
    ``upsample(grad_output)`` there.
    Other poolings recompute the indices from strided views and use PyTorch's
    decomposition.
    """
    from torch._decomp import decomposition_table

    kernel = _pair(kernel_size, kernel_size)
    step = _pair(stride, kernel)
    height, width = input.shape[-2], input.shape[-1]
    simple = (
        input.dim() == 4
        and step == kernel
        and not any(_pair(padding, [0]))
        and _pair(dilation, [1]) == [1, 1]
        and height % kernel[0] == 0
        and width % kernel[1] == 0
    )
    if not simple:
        general = decomposition_table[_aten.max_pool2d_with_indices_backward.default]
        if input.dim() == 4 and not ceil_mode:
            # ONNX Runtime computes MaxPool's indices on a slow path (several times the
            # pooling itself): recompute them from strided views of the input instead, so the
            # forward MaxPool drops its indices output
            indices = _max_pool2d_indices(input, kernel, step, padding, dilation, grad_output)
        grad: torch.Tensor = general(
            grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices
        )
        return grad
    size = [height, width]

    def pool(t: torch.Tensor) -> torch.Tensor:
        # the forward's own call: the exporter merges the two into one MaxPool node
        out: torch.Tensor = _aten.max_pool2d_with_indices.default(
            t, kernel_size, stride, padding, dilation, ceil_mode
        )[0]
        return out

    def upsample(t: torch.Tensor) -> torch.Tensor:
        # ONNX Resize (nearest): a broadcast to (..., k0, ..., k1) runs element by element
        out: torch.Tensor = _aten.upsample_nearest2d.default(t, size)
        return out

    rows = torch.arange(height, device=input.device) % kernel[0]
    cols = torch.arange(width, device=input.device) % kernel[1]
    priority = (kernel[0] * kernel[1] - rows[:, None] * kernel[1] - cols).to(input.dtype)
    score = (input == upsample(pool(input))).to(input.dtype) * priority
    first = score == upsample(pool(score))
    return first.to(grad_output.dtype) * upsample(grad_output)


def _threshold_backward(
    grad_output: torch.Tensor, input: torch.Tensor, threshold: float
) -> torch.Tensor:
    """ReLU's backward as ``grad_output * (input > threshold)``: ONNX Runtime's ``Where``
    (PyTorch's decomposition) costs more than a comparison, a cast and a product."""
    out: torch.Tensor = grad_output * (input > threshold).to(grad_output.dtype)
    return out


def _select_backward(
    grad_output: torch.Tensor, input_sizes: Sequence[int], dim: int, index: int
) -> torch.Tensor:
    """The gradient of ``input.select(dim, index)`` as one zero ``Pad`` of ``grad_output``
    (PyTorch's decomposition is an ``Expand`` and a ``Where`` against an ``arange`` over the
    whole input, e.g. per ``qkv[0]``, ``qkv[1]``, ``qkv[2]`` of an attention layer)."""
    dim %= len(input_sizes)
    size = input_sizes[dim]
    if not isinstance(size, int):  # a symbolic size (the batch): PyTorch's decomposition
        from torch._decomp import decomposition_table

        general: torch.Tensor = decomposition_table[_aten.select_backward.default](
            grad_output, input_sizes, dim, index
        )
        return general
    index %= size
    pads = [0, 0] * (len(input_sizes) - dim - 1) + [index, size - 1 - index]
    out: torch.Tensor = _aten.constant_pad_nd.default(grad_output.unsqueeze(dim), pads, 0.0)
    return out


def _decompositions() -> dict[Any, Any]:
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    # kept whole: exported as ONNX Resize (max-pool backward); decomposed it is a Gather
    table.pop(_aten.upsample_nearest2d.default, None)
    table[_aten.convolution_backward.default] = _convolution_backward
    table[_aten.avg_pool2d_backward.default] = _avg_pool2d_backward
    table[_aten.max_pool2d_with_indices_backward.default] = _max_pool2d_backward
    table[_aten.threshold_backward.default] = _threshold_backward
    table[_aten.select_backward.default] = _select_backward
    return table


@contextlib.contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Stop parameter gradients for the duration (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _vjp_function(module: nn.Module) -> Any:
    def vjp(x: torch.Tensor, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            y = module(x)
            if not isinstance(y, torch.Tensor):
                raise TypeError("the model returns more than one tensor")
            (grad,) = torch.autograd.grad(y, x, grad_output, allow_unused=True)
        # the output too: fused loss graphs splice their loss head between it and grad_output
        return (grad if grad is not None else torch.zeros_like(x)), y.detach()

    return vjp


def distinct_batch(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` re-batched to a size no other input/output dimension has.

    Symbolic tracing gives equal example sizes one symbol ("duck shaping"): a batch of 4 with
    4 classes would tie the batch to the class count and bake it in.
    """
    with torch.no_grad():
        y = module(x)
    dims = {*x.shape[1:], *(y.shape[1:] if isinstance(y, torch.Tensor) else ())}
    batch = next(b for b in range(max(2, x.shape[0]), 10**6) if b not in dims)
    if batch == x.shape[0]:
        return x
    reps = -(-batch // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch].contiguous()


def trace_vjp(module: nn.Module, x: torch.Tensor, *, symbolic: bool) -> torch.fx.GraphModule:
    """Trace ``vjp(x, grad_output)`` of ``module`` (in eval mode, parameters frozen).

    Args:
        module: the model, ``(N, ...) -> (N, ...)`` with one tensor output.
        x: an example input batch (``N >= 2`` for a symbolic trace).
        symbolic: trace with a symbolic batch (dynamic) instead of the concrete one.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.no_grad():
        y = module(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the model returns a {type(y).__name__}, not one tensor")
    grad_output = torch.randn_like(y)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # the math attention kernel decomposes into matmul/softmax, whose backward ONNX can express
    from neuroplex.onnx._rewrites import export_rewrites

    with frozen_parameters(module), sdpa_kernel(SDPBackend.MATH), export_rewrites(vjp=True):
        traced: torch.fx.GraphModule = make_fx(
            _vjp_function(module),
            decomposition_table=_decompositions(),
            tracing_mode="symbolic" if symbolic else "real",
            _allow_non_fake_inputs=True,
        )(x, grad_output)
    return traced


class VjpModule(nn.Module):
    """Wraps a traced VJP graph as a module ``(input, grad_output) -> (grad_input, output)``."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph_module = graph

    def forward(
        self, x: torch.Tensor, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out: tuple[torch.Tensor, torch.Tensor] = self.graph_module(x, grad_output)
        return out
