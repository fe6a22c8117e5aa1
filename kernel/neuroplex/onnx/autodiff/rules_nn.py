"""Gradient rules of layers: convolutions, matrix products, normalization, pooling, softmax.

Only the gradient of the layer *input* is built; weights, biases and statistics must be
constants (initializers), or the rule refuses the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroplex.onnx.autodiff._builder import Builder, UnsupportedGraph, attr, describe
from neuroplex.onnx.autodiff._registry import rule

Grads = list[str | None]


def _refuse(node: Any, why: str) -> UnsupportedGraph:
    return UnsupportedGraph(f"{describe(node)}: {why}", op_type=node.op_type, node=node.name)


def _constant_params(b: Builder, node: Any, first: int) -> None:
    for name in node.input[first:]:
        if name and name in b.active:
            raise _refuse(
                node,
                f"its parameter {name!r} depends on the input (only the input "
                "gradient of this layer is built)",
            )


def _explicit_pads(
    b: Builder,
    node: Any,
    spatial: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
) -> list[int]:
    """``pads`` of a Conv/pool node with ``auto_pad`` resolved against static sizes."""
    auto = attr(node, "auto_pad", "NOTSET")
    rank = len(spatial)
    if auto in ("NOTSET", ""):
        return list(attr(node, "pads", [0] * (2 * rank)))
    if auto == "VALID":
        return [0] * (2 * rank)
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else large)
        ends.append(large if auto == "SAME_UPPER" else small)
    return begins + ends


def _conv_geometry(
    b: Builder, node: Any
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """``(spatial sizes of x, kernel, strides, dilations, pads)`` of a Conv or pool node."""
    x = node.input[0]
    rank = b.rank(x, node)
    spatial = b.static_dims(x, node, range(2, rank))
    kernel = attr(node, "kernel_shape")
    if kernel is None:
        kernel = b.static_dims(node.input[1], node, range(2, rank))
    kernel = list(kernel)
    strides = list(attr(node, "strides", [1] * len(kernel)))
    dilations = list(attr(node, "dilations", [1] * len(kernel)))
    pads = _explicit_pads(b, node, spatial, kernel, strides, dilations)
    return spatial, kernel, strides, dilations, pads


def _transpose_conv(b: Builder, g: str, node: Any, weight: str, group: int) -> str:
    """The adjoint of a convolution applied to ``g``: a ConvTranspose of the same geometry."""
    spatial, kernel, strides, dilations, pads = _conv_geometry(b, node)
    out = b.static_dims(node.output[0], node, range(2, 2 + len(spatial)))
    rank = len(spatial)
    opad = [
        size - ((o - 1) * s - pads[i] - pads[i + rank] + (k - 1) * d + 1)
        for i, (size, o, s, k, d) in enumerate(
            zip(spatial, out, strides, kernel, dilations, strict=True)
        )
    ]
    if any(p < 0 or p >= max(s, d) for p, s, d in zip(opad, strides, dilations, strict=True)):
        raise _refuse(
            node, f"cannot express its adjoint as a ConvTranspose (output padding {opad})"
        )
    return b.op(
        "ConvTranspose",
        [g, weight],
        kernel_shape=kernel,
        strides=strides,
        dilations=dilations,
        pads=pads,
        output_padding=opad,
        group=group,
    )


@rule(
    "Conv",
    note="stride 1 with constant weights: Conv with flipped weights (faster in ORT); "
    "otherwise ConvTranspose (strides, pads, auto_pad, dilations, groups)",
)
def _conv(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    _constant_params(b, node, 1)
    group = int(attr(node, "group", 1))
    gx = _flipped_conv(b, g, node, group)
    if gx is None:
        gx = _transpose_conv(b, g, node, node.input[1], group)
    return [gx, *([None] * (len(node.input) - 1))]


def _flipped_conv(b: Builder, g: str, node: Any, group: int) -> str | None:
    """The adjoint of a stride-1 convolution as a convolution of ``g`` with the weights
    flipped in space and swapped in/out channels per group; ``None`` when not applicable
    (strides, ``auto_pad``, weights computed at run time, pads wider than the kernel)."""
    weight = b.value(node.input[1])
    if weight is None or attr(node, "auto_pad", "NOTSET") not in ("NOTSET", ""):
        return None
    rank = weight.ndim - 2
    kernel = list(weight.shape[2:])
    if any(int(s) != 1 for s in attr(node, "strides", [1] * rank)):
        return None
    dilations = [int(d) for d in attr(node, "dilations", [1] * rank)]
    pads = [int(p) for p in attr(node, "pads", [0] * (2 * rank))]
    span = [(k - 1) * d for k, d in zip(kernel, dilations, strict=True)]
    new_pads = [span[i % rank] - p for i, p in enumerate(pads)]
    if any(p < 0 for p in new_pads):
        return None
    out_c, in_per_group = weight.shape[0], weight.shape[1]
    grouped = weight.reshape(group, out_c // group, in_per_group, *kernel).swapaxes(1, 2)
    swapped = grouped.reshape(group * in_per_group, out_c // group, *kernel)
    flipped = np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, 2 + rank))))
    return b.op(
        "Conv",
        [g, b.const(flipped.astype(b.np_dtype), "flipped_weight")],
        kernel_shape=kernel,
        dilations=dilations,
        pads=new_pads,
        group=group,
    )


@rule("ConvTranspose", note="Conv of the gradient (explicit pads only)")
def _conv_transpose(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    _constant_params(b, node, 1)
    if attr(node, "output_shape") is not None or attr(node, "auto_pad", "NOTSET") not in (
        "NOTSET",
        "VALID",
    ):
        raise _refuse(node, "output_shape / auto_pad SAME are not supported, use explicit pads")
    rank = b.rank(node.input[0], node)
    kernel = attr(node, "kernel_shape") or b.static_dims(node.input[1], node, range(2, rank))
    n = len(kernel)
    gx = b.op(
        "Conv",
        [g, node.input[1]],
        kernel_shape=list(kernel),
        strides=list(attr(node, "strides", [1] * n)),
        dilations=list(attr(node, "dilations", [1] * n)),
        pads=list(attr(node, "pads", [0] * (2 * n)))
        if attr(node, "auto_pad", "NOTSET") != "VALID"
        else [0] * (2 * n),
        group=int(attr(node, "group", 1)),
    )
    return [gx, *([None] * (len(node.input) - 1))]


@rule("Gemm", note="Gemm with the other operand transposed; C summed over broadcast axes")
def _gemm(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    a, w = node.input[0], node.input[1]
    alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
    ta, tb = int(attr(node, "transA", 0)), int(attr(node, "transB", 0))
    grads: Grads = [None] * len(node.input)
    if a in b.active:
        if ta:  # dA = alpha · B' · gᵀ
            grads[0] = b.op("Gemm", [w, g], alpha=alpha, transA=tb, transB=1)
        else:  # dA = alpha · g · B'ᵀ
            grads[0] = b.op("Gemm", [g, w], alpha=alpha, transB=1 - tb)
    if w in b.active:
        if tb:  # dB = alpha · gᵀ · A'
            grads[1] = b.op("Gemm", [g, a], alpha=alpha, transA=1, transB=ta)
        else:  # dB = alpha · A'ᵀ · g
            grads[1] = b.op("Gemm", [a, g], alpha=alpha, transA=1 - ta)
    if len(node.input) > 2 and node.input[2] and node.input[2] in b.active:
        scaled = b.op("Mul", [g, b.scalar(beta)])
        grads[2] = b.sum_to(scaled, b.shape(node.output[0]), node.input[2], node)
    return grads


def _swap_last(b: Builder, name: str, rank: int) -> str:
    return b.op("Transpose", [name], perm=[*range(rank - 2), rank - 1, rank - 2])


@rule("MatMul", note="batched, broadcast and 1-D operands")
def _matmul(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    a, w = node.input[0], node.input[1]
    sa, sw, out = b.shape(a), b.shape(w), b.shape(node.output[0])
    if sa is None or sw is None or out is None:
        raise _refuse(node, "operand ranks are unknown")
    a2, w2, g2 = a, w, g
    if len(sa) == 1:  # (k) -> (1, k); the output lost that row
        a2, sa = b.op("Unsqueeze", [a, b.ints([0])]), (1, *sa)
        g2 = b.op("Unsqueeze", [g2, b.ints([-2] if len(sw) > 1 else [0])])
    if len(sw) == 1:  # (k) -> (k, 1); the output lost that column
        w2, sw = b.op("Unsqueeze", [w, b.ints([1])]), (*sw, 1)
        g2 = b.op("Unsqueeze", [g2, b.ints([-1])])
    b.shapes[a2], b.shapes[w2] = sa, sw
    batch = tuple(out[: len(out) - (len(b.shape(a) or ()) > 1) - (len(b.shape(w) or ()) > 1)])
    grads: Grads = [None, None]
    if a in b.active:
        ga = b.op("MatMul", [g2, _swap_last(b, w2, len(sw))])
        ga = b.sum_to(ga, batch + tuple(sa[-2:]), a2, node)
        grads[0] = ga if a2 == a else b.op("Squeeze", [ga, b.ints([0])])
    if w in b.active:
        gw = b.op("MatMul", [_swap_last(b, a2, len(sa)), g2])
        gw = b.sum_to(gw, batch + tuple(sw[-2:]), w2, node)
        grads[1] = gw if w2 == w else b.op("Squeeze", [gw, b.ints([1])])
    return grads


@rule("BatchNormalization", note="inference mode: g·scale/√(var+ε) per channel")
def _batch_norm(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    if int(attr(node, "training_mode", 0)) or len(node.output) > 1:
        raise _refuse(node, "training mode (batch statistics) is not supported")
    _constant_params(b, node, 1)
    rank = b.rank(node.input[0], node)
    scale, var = node.input[1], node.input[4]
    eps = float(attr(node, "epsilon", 1e-5))
    factor = b.op("Div", [scale, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps)])])])
    factor = b.op("Reshape", [factor, b.ints([-1, *([1] * (rank - 2))])])
    return [b.op("Mul", [g, factor]), None, None, None, None]


@rule("InstanceNormalization", note="per-sample, per-channel normalization over spatial axes")
def _instance_norm(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    _constant_params(b, node, 1)
    rank = b.rank(node.input[0], node)
    scale_shape = b.ints([-1, *([1] * (rank - 2))])
    gh = b.op("Mul", [g, b.op("Reshape", [node.input[1], scale_shape])])
    gx = _normalized_grad(
        b, node.input[0], gh, list(range(2, rank)), float(attr(node, "epsilon", 1e-5))
    )
    return [gx, None, None]


@rule("LayerNormalization", note="normalization over the trailing axes from `axis`")
def _layer_norm(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    _constant_params(b, node, 1)
    if len(node.output) > 1 and any(node.output[1:]):
        raise _refuse(node, "its Mean / InvStdDev outputs are used")
    rank = b.rank(node.input[0], node)
    axis = int(attr(node, "axis", -1)) % rank
    gh = b.op("Mul", [g, node.input[1]])
    gx = _normalized_grad(
        b, node.input[0], gh, list(range(axis, rank)), float(attr(node, "epsilon", 1e-5))
    )
    return [gx, None, None][: len(node.input)]


def _normalized_grad(b: Builder, x: str, gh: str, axes: list[int], eps: float) -> str:
    """Input gradient of ``xhat = (x - mean) / √(var + ε)`` over ``axes``; ``gh = dL/dxhat``."""
    axes_c = b.ints(axes)
    count = b.op(
        "Cast",
        [b.op("ReduceProd", [b.op("Gather", [b.shape_of(x), axes_c], axis=0)], keepdims=0)],
        to=b.elem_type,
    )

    def mean(v: str) -> str:
        return b.op("Div", [b.op("ReduceSum", [v, axes_c], keepdims=1), count])

    centered = b.op("Sub", [x, mean(x)])
    inv = b.op(
        "Reciprocal",
        [b.op("Sqrt", [b.op("Add", [mean(b.op("Mul", [centered, centered])), b.scalar(eps)])])],
    )
    xhat = b.op("Mul", [centered, inv])
    inner = b.op(
        "Sub", [b.op("Sub", [gh, mean(gh)]), b.op("Mul", [xhat, mean(b.op("Mul", [gh, xhat]))])]
    )
    return b.op("Mul", [inner, inv])


@rule("Softmax", note="y·(g - Σ g·y) along the axis")
def _softmax(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    y = node.output[0]
    axis = b.ints([int(attr(node, "axis", -1))])
    dot = b.op("ReduceSum", [b.op("Mul", [g, y]), axis], keepdims=1)
    return [b.op("Mul", [y, b.op("Sub", [g, dot])])]


@rule("LogSoftmax", note="g - exp(y)·Σ g along the axis")
def _log_softmax(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    axis = b.ints([int(attr(node, "axis", -1))])
    total = b.op("ReduceSum", [g, axis], keepdims=1)
    return [b.op("Sub", [g, b.op("Mul", [b.op("Exp", [node.output[0]]), total])])]


@rule("MaxPool", note="gradient scattered to the argmax (MaxPool indices, ScatterElements add)")
def _max_pool(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    if len(node.output) > 1 and node.output[1]:
        if int(attr(node, "storage_order", 0)):
            raise _refuse(node, "its indices output uses storage_order=1")
        indices = node.output[1]
    else:  # the node is a copy in the gradient graph: let it return its indices too
        indices = b.fresh("maxpool_indices")
        if len(node.output) == 1:
            node.output.append(indices)
        else:
            node.output[1] = indices
    x = node.input[0]
    flat = b.ints([-1])
    zeros = b.op("Reshape", [b.zeros_like(x), flat])
    scattered = b.op(
        "ScatterElements",
        [zeros, b.op("Reshape", [indices, flat]), b.op("Reshape", [g, flat])],
        axis=0,
        reduction="add",
    )
    return [b.op("Reshape", [scattered, b.shape_of(x)])]


@rule("AveragePool", note="depthwise ConvTranspose with a ones kernel over the window counts")
def _average_pool(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    spatial, kernel, strides, dilations, pads = _conv_geometry(b, node)
    channels = b.static_dims(x, node, [1])[0]
    if int(attr(node, "ceil_mode", 0)):
        out = b.static_dims(node.output[0], node, range(2, 2 + len(spatial)))
        floor = [
            (size + pads[i] + pads[i + len(spatial)] - ((k - 1) * d + 1)) // s + 1
            for i, (size, k, s, d) in enumerate(
                zip(spatial, kernel, strides, dilations, strict=True)
            )
        ]
        if out != floor:
            raise _refuse(node, "ceil_mode=1 adds partial windows; not supported")
    ones = b.const(np.ones((channels, 1, *kernel), dtype=b.np_dtype), "ones_kernel")
    if int(attr(node, "count_include_pad", 0)) or not any(pads):
        divided = b.op("Div", [g, b.scalar(float(np.prod(kernel)))])
    else:  # the window sizes without padding: average of ones with padding counted, × k
        ones_x = b.op("Add", [b.zeros_like(x), b.scalar(1.0)])
        counted = b.op(
            "AveragePool",
            [ones_x],
            kernel_shape=kernel,
            strides=strides,
            pads=pads,
            dilations=dilations,
            count_include_pad=1,
        )
        divided = b.op("Div", [g, b.op("Mul", [counted, b.scalar(float(np.prod(kernel)))])])
    return [_transpose_conv(b, divided, node, ones, channels)]


@rule("GlobalAveragePool", note="g / (spatial size), broadcast back")
def _global_average_pool(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    rank = b.rank(x, node)
    size = b.op(
        "ReduceProd", [b.op("Slice", [b.shape_of(x), b.ints([2]), b.ints([rank])])], keepdims=0
    )
    scaled = b.op("Div", [g, b.op("Cast", [size], to=b.elem_type)])
    return [b.op("Expand", [scaled, b.shape_of(x)])]


@rule("GlobalMaxPool", "ReduceMax", note="split equally among the maxima")
def _max_reduce(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x, y = node.input[0], node.output[0]
    rank = b.rank(x, node)
    if node.op_type == "GlobalMaxPool":
        axes, keep = list(range(2, rank)), True
    else:
        axes_opt, keep = _reduce_axes(b, node, rank), bool(attr(node, "keepdims", 1))
        if axes_opt is None:
            return [g, None]
        axes = axes_opt
    if not keep:
        y = b.op("Unsqueeze", [y, b.ints(axes)])
        g = b.op("Unsqueeze", [g, b.ints(axes)])
    mask = b.op("Cast", [b.op("Equal", [x, y])], to=b.elem_type)
    ties = b.op("ReduceSum", [mask, b.ints(axes)], keepdims=1)
    return [b.op("Mul", [mask, b.op("Div", [g, ties])]), None][: len(node.input)]


def _reduce_axes(b: Builder, node: Any, rank: int) -> list[int] | None:
    """The reduced axes (non-negative), or ``None`` for a no-op reduction."""
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = b.require_value(node, 1, "axes")
        axes = [] if value is None else [int(v) for v in np.asarray(value).reshape(-1)]
    if not axes:
        if int(attr(node, "noop_with_empty_axes", 0)):
            return None
        return list(range(rank))
    return sorted(int(a) % rank for a in axes)


@rule("ReduceSum", "ReduceMean", note="broadcast back (÷ count for the mean)")
def _reduce_sum(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    rank = b.rank(x, node)
    axes = _reduce_axes(b, node, rank)
    if axes is None:
        return [g, None][: len(node.input)]
    if not int(attr(node, "keepdims", 1)):
        g = b.op("Unsqueeze", [g, b.ints(axes)])
    if node.op_type == "ReduceMean":
        count = b.op("Div", [b.op("Size", [x]), b.op("Size", [node.output[0]])])
        g = b.op("Div", [g, b.op("Cast", [count], to=b.elem_type)])
    return [b.op("Expand", [g, b.shape_of(x)]), None][: len(node.input)]


def _channel_window_sum(b: Builder, value: str, x: str, size: int, before: int, after: int) -> str:
    """``Σ value[:, c']`` over channels ``c - before ≤ c' ≤ c + after`` (zero outside), the
    shape of ``x`` ``(N, C, ...)``: a ones-kernel Conv over ``(N, 1, C, rest)``."""
    shape = b.shape_of(x)
    lead = b.op("Slice", [shape, b.ints([0]), b.ints([1])])
    chans = b.op("Slice", [shape, b.ints([1]), b.ints([2])])
    flat = b.op("Concat", [lead, b.ints([1]), chans, b.ints([-1])], axis=0)
    ones = b.const(np.ones((1, 1, size, 1), dtype=b.np_dtype), "lrn_window")
    summed = b.op(
        "Conv",
        [b.op("Reshape", [value, flat]), ones],
        kernel_shape=[size, 1],
        pads=[before, 0, after, 0],
    )
    return b.op("Reshape", [summed, shape])


@rule("LRN", note="g·d^-β - (2αβ/size)·x·Σᵀ(g·x·d^(-β-1)), d = bias + α/size·Σ x² (channels)")
def _lrn(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    size = int(attr(node, "size"))
    alpha, beta = float(attr(node, "alpha", 1e-4)), float(attr(node, "beta", 0.75))
    bias = float(attr(node, "bias", 1.0))
    low, high = (size - 1) // 2, size - 1 - (size - 1) // 2
    square = _channel_window_sum(b, b.op("Mul", [x, x]), x, size, low, high)
    d = b.op("Add", [b.scalar(bias), b.op("Mul", [square, b.scalar(alpha / size)])])
    direct = b.op("Mul", [g, b.op("Pow", [d, b.scalar(-beta)])])
    inner = b.op("Mul", [b.op("Mul", [g, x]), b.op("Pow", [d, b.scalar(-beta - 1.0)])])
    spread = _channel_window_sum(b, inner, x, size, high, low)  # the transposed window
    cross = b.op("Mul", [b.op("Mul", [x, spread]), b.scalar(2.0 * alpha * beta / size)])
    return [b.op("Sub", [direct, cross])]


def _einsum_terms(node: Any, count: int) -> tuple[list[str], str]:
    equation = str(attr(node, "equation", "")).replace(" ", "")
    if "." in equation:
        raise _refuse(node, f"equation {equation!r} uses an ellipsis (not supported)")
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    if not arrow:  # implicit output: the letters used once, in alphabetical order
        letters = "".join(terms)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(terms) != count:
        raise _refuse(node, f"equation {equation!r} does not match its {count} inputs")
    for term in (*terms, out):
        if len(set(term)) != len(term):
            raise _refuse(node, f"equation {equation!r} repeats a letter in {term!r} (diagonal)")
    return terms, out


@rule("Einsum", note="Einsum of the gradient with the other operands (no ellipsis/diagonals)")
def _einsum(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    terms, out = _einsum_terms(node, len(node.input))
    grads: Grads = [None] * len(node.input)
    for i, name in enumerate(node.input):
        if name not in b.active:
            continue
        others = [(t, n) for j, (t, n) in enumerate(zip(terms, node.input, strict=True)) if j != i]
        seen = set(out).union(*(t for t, _ in others))
        kept = "".join(c for c in terms[i] if c in seen)  # letters summed out of x_i alone
        equation = ",".join([out, *(t for t, _ in others)]) + "->" + kept
        grad = b.op("Einsum", [g, *(n for _, n in others)], equation=equation)
        if kept != terms[i]:
            missing = [k for k, c in enumerate(terms[i]) if c not in seen]
            grad = b.op("Unsqueeze", [grad, b.ints(missing)])
            grad = b.op("Expand", [grad, b.shape_of(name)])
        grads[i] = grad
    return grads
