"""Gradient rules of data-movement operators: reshapes, transposes, slices, gathers, pads."""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroplex.onnx.autodiff._builder import Builder, UnsupportedGraph, attr, describe
from neuroplex.onnx.autodiff._registry import rule

Grads = list[str | None]
_INT_MAX = np.iinfo(np.int64).max


def _refuse(node: Any, why: str) -> UnsupportedGraph:
    return UnsupportedGraph(f"{describe(node)}: {why}", op_type=node.op_type, node=node.name)


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze", note="reshaped back to the input's shape")
def _reshape(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    gx = b.op("Reshape", [g, b.shape_of(node.input[0])])
    return [gx, *([None] * (len(node.input) - 1))]


@rule("Expand", note="summed over the expanded axes")
def _expand(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    return [b.sum_to(g, b.shape(node.output[0]), node.input[0], node), None]


@rule("Transpose", note="inverse permutation")
def _transpose(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    rank = b.rank(node.input[0], node)
    perm = list(attr(node, "perm", list(reversed(range(rank)))))
    return [b.op("Transpose", [g], perm=[int(i) for i in np.argsort(perm)])]


@rule("Concat", note="Split of the gradient at the input sizes")
def _concat(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    axis = int(attr(node, "axis"))
    sizes = b.op(
        "Concat",
        [b.op("Gather", [b.shape_of(name), b.ints([axis])], axis=0) for name in node.input],
        axis=0,
    )
    parts = b.op_n("Split", [g, sizes], len(node.input), axis=axis)
    return [p if name in b.active else None for p, name in zip(parts, node.input, strict=True)]


@rule("Split", note="Concat of the output gradients (zeros for unused outputs)")
def _split(b: Builder, node: Any, gy: Grads) -> Grads:
    axis = int(attr(node, "axis", 0))
    parts = [g if g is not None else b.zeros_like(y) for g, y in zip(gy, node.output, strict=True)]
    return [b.op("Concat", parts, axis=axis), *([None] * (len(node.input) - 1))]


@rule("Slice", note="zero-padded back (constant starts/ends/axes, any step)")
def _slice(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    rank = b.rank(x, node)
    starts = b.require_value(node, 1, "starts")
    ends = b.require_value(node, 2, "ends")
    axes = b.require_value(node, 3, "axes")
    steps = b.require_value(node, 4, "steps")
    assert starts is not None and ends is not None
    axes_l = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
    steps_l = [1] * len(axes_l) if steps is None else [int(s) for s in steps]
    dims = b.static_dims(x, node, axes_l)
    # every kept index along each axis: scatter the gradient back to those positions
    gx = g
    for axis, dim, start, end, step in zip(axes_l, dims, starts, ends, steps_l, strict=True):
        kept = np.arange(dim)[slice(int(start), int(end), step)]
        gx = _scatter_axis(b, gx, x, axis, dim, kept, rank)
    return [gx, *([None] * (len(node.input) - 1))]


def _scatter_axis(
    b: Builder, g: str, x: str, axis: int, dim: int, kept: np.ndarray, rank: int
) -> str:
    """``g`` has ``len(kept)`` entries along ``axis``; put them at rows ``kept`` of ``dim``."""
    if kept.size and np.all(np.diff(kept) == 1):  # a contiguous block: zero padding
        pads = [0] * (2 * rank)
        pads[axis], pads[axis + rank] = int(kept[0]), int(dim - kept[-1] - 1)
        return b.op("Pad", [g, b.ints(pads)]) if any(pads) else g
    # a one-hot matrix (dim, len(kept)) contracted with g along the axis
    onehot = np.zeros((dim, kept.size), dtype=b.np_dtype)
    onehot[kept, np.arange(kept.size)] = 1
    moved = b.op("Transpose", [g], perm=[*[i for i in range(rank) if i != axis], axis])
    product = b.op("MatMul", [moved, b.const(onehot.T, "slice_onehot")])
    back = list(range(rank - 1))
    back.insert(axis, rank - 1)
    return b.op("Transpose", [product], perm=back)


def _permuted(b: Builder, value: str, perm: list[int]) -> str:
    """``Transpose`` of ``value``, or ``value`` itself for the identity permutation."""
    return value if perm == sorted(perm) else b.op("Transpose", [value], perm=perm)


@rule(
    "Gather",
    note="one constant index on an axis of static size: Pad of the gradient; otherwise "
    "ScatterND (add) into zeros (repeated indices summed)",
)
def _gather(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x, indices = node.input[0], node.input[1]
    rank = b.rank(x, node)
    axis = int(attr(node, "axis", 0)) % rank
    q = b.rank(indices, node)
    index = b.value(indices)
    shape = b.shape(x)
    size = shape[axis] if shape is not None else None
    if index is not None and index.size == 1 and q <= 1 and isinstance(size, int) and size > 0:
        # x[..., i, ...] (a q/k/v split): the gradient padded with zeros around position i
        i = int(index.reshape(-1)[0]) % size
        grad = b.op("Unsqueeze", [g, b.ints([axis])]) if q == 0 else g
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = i, size - 1 - i
        return [b.op("Pad", [grad, b.ints(pads)], mode="constant"), None]
    dim = b.op("Gather", [b.shape_of(x), b.const(np.asarray(axis, dtype=np.int64))], axis=0)
    wrapped = b.op("Mod", [b.op("Add", [b.op("Cast", [indices], to=7), dim]), dim])
    # data with the gathered axis first: (dim, other axes of x)
    to_front = [axis, *[i for i in range(rank) if i != axis]]
    data = _permuted(b, b.zeros_like(x), to_front)
    # g is x.shape[:axis] + indices.shape + x.shape[axis+1:]; put the index axes first
    g_rank = rank - 1 + q
    idx_axes = list(range(axis, axis + q))
    g_front = _permuted(b, g, [*idx_axes, *[i for i in range(g_rank) if i not in idx_axes]])
    scattered = b.op(
        "ScatterND",
        [data, b.op("Unsqueeze", [wrapped, b.ints([-1])]), g_front],
        reduction="add",
    )
    return [_permuted(b, scattered, [int(i) for i in np.argsort(to_front)]), None]


@rule("Pad", note="constant mode: Slice of the gradient (constant pads)")
def _pad(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    if attr(node, "mode", "constant") != "constant":
        raise _refuse(node, f"mode {attr(node, 'mode')!r} has no gradient rule (only 'constant')")
    x = node.input[0]
    rank = b.rank(x, node)
    pads = attr(node, "pads")
    if pads is None:
        value = b.require_value(node, 1, "pads")
        pads = [] if value is None else [int(p) for p in value]
    axes_value = b.require_value(node, 3, "axes")
    axes = list(range(rank)) if axes_value is None else [int(a) % rank for a in axes_value]
    n = len(axes)
    begins, ends = list(pads[:n]), list(pads[n:])
    if any(p < 0 for p in (*begins, *ends)):
        raise _refuse(node, f"negative pads {pads} (cropping) are not supported")
    stops = b.op("Sub", [b.op("Gather", [b.shape_of(g), b.ints(axes)], axis=0), b.ints(ends)])
    gx = b.op("Slice", [g, b.ints(begins), stops, b.ints(axes)])
    return [gx, *([None] * (len(node.input) - 1))]


@rule("Tile", note="summed over the repeats (static input shape)")
def _tile(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    rank = b.rank(x, node)
    repeats = b.require_value(node, 1, "repeats")
    assert repeats is not None
    dims = b.static_dims(x, node, range(rank))
    split = [v for r, d in zip(repeats, dims, strict=True) for v in (int(r), d)]
    grouped = b.op("Reshape", [g, b.ints(split)])
    return [b.op("ReduceSum", [grouped, b.ints([2 * a for a in range(rank)])], keepdims=0), None]
