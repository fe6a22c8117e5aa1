"""The gradient rule of ``Resize``: per resized axis, the transpose of its interpolation matrix.

``Resize`` (modes ``nearest``, ``linear``, ``cubic``) is linear in its input and separable:
along each resized axis, ``y = M x`` with an ``(out, in)`` matrix ``M`` that depends only on
the sizes, the scale and the attributes. The rule computes ``M`` once, when the gradient graph
is built, by resizing an identity matrix with ONNX's reference evaluator (so every attribute,
``coordinate_transformation_mode``, ``nearest_mode``, ``cubic_coeff_a``, ``exclude_outside``,
``antialias``, means exactly what the operator means), and emits ``gx = Mᵀ g`` per axis as
``MatMul`` nodes. Sizes must be static; ``tf_crop_and_resize`` and
``keep_aspect_ratio_policy`` other than ``stretch`` are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroplex.onnx.autodiff._builder import Builder, UnsupportedGraph, attr, describe
from neuroplex.onnx.autodiff._registry import rule

Grads = list[str | None]

#: attributes copied to the 2-D resize that builds an axis's matrix
_COPIED = (
    "mode",
    "coordinate_transformation_mode",
    "nearest_mode",
    "cubic_coeff_a",
    "exclude_outside",
    "extrapolation_value",
    "antialias",
)


def _refuse(node: Any, why: str) -> UnsupportedGraph:
    return UnsupportedGraph(f"{describe(node)}: {why}", op_type=node.op_type, node=node.name)


def _axis_matrix(node: Any, size_in: int, size_out: int, scale: float | None) -> np.ndarray:
    """The ``(out, in)`` matrix of one axis: column ``i`` is the resized unit vector ``e_i``."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    kept = {
        k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items() if k in _COPIED
    }
    inits = [onnx.numpy_helper.from_array(np.zeros(0, dtype=np.float32), "roi")]
    if scale is not None:
        inits.append(onnx.numpy_helper.from_array(np.asarray([1.0, scale], np.float32), "s"))
        inputs = ["x", "roi", "s"]
    else:
        inits.append(onnx.numpy_helper.from_array(np.asarray([size_in, size_out]), "n"))
        inputs = ["x", "roi", "", "n"]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Resize", inputs, ["y"], **kept)],
        "axis",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [size_in, size_in])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
        initializer=inits,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 19)])
    (resized,) = ReferenceEvaluator(model).run(None, {"x": np.eye(size_in)})
    matrix = np.asarray(resized, dtype=np.float64).T  # (out, in)
    if matrix.shape != (size_out, size_in):
        raise _refuse(node, f"resizing {size_in} -> {size_out} gave a {matrix.shape} matrix")
    return matrix


@rule("Resize", note="per resized axis: Mᵀ·g with the interpolation matrix M (static sizes)")
def _resize(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    if attr(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
        raise _refuse(node, "coordinate_transformation_mode tf_crop_and_resize is not supported")
    if attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise _refuse(node, "keep_aspect_ratio_policy other than 'stretch' is not supported")
    rank = b.rank(x, node)
    axes = [int(a) % rank for a in attr(node, "axes", range(rank))]
    scales = b.require_value(node, 2, "scales")
    if scales is not None and scales.size == 0:
        scales = None
    if scales is None and b.require_value(node, 3, "sizes") is None:
        raise _refuse(node, "it has neither scales nor sizes")
    size_in = b.static_dims(x, node, range(rank))
    size_out = b.static_dims(node.output[0], node, range(rank))
    grad = g
    for k, axis in enumerate(axes):
        scale = None if scales is None else float(np.asarray(scales).reshape(-1)[k])
        if size_in[axis] == size_out[axis] and scale in (None, 1.0):
            continue
        matrix = _axis_matrix(node, size_in[axis], size_out[axis], scale)
        grad = _apply_transpose(b, grad, matrix.astype(b.np_dtype), axis, rank)
    return [grad, None, None, None][: len(node.input)]


def _apply_transpose(b: Builder, g: str, matrix: np.ndarray, axis: int, rank: int) -> str:
    """``Σ_o g[..., o, ...] · matrix[o, i]`` along ``axis``."""
    if axis == rank - 1:
        return b.op("MatMul", [g, b.const(matrix, "resize_matrix")])
    if axis == rank - 2:
        return b.op("MatMul", [b.const(np.ascontiguousarray(matrix.T), "resize_matrix"), g])
    perm = [*(a for a in range(rank) if a != axis), axis]
    moved = b.op("Transpose", [g], perm=perm)
    product = b.op("MatMul", [moved, b.const(matrix, "resize_matrix")])
    inverse = [int(i) for i in np.argsort(perm)]
    return b.op("Transpose", [product], perm=inverse)
