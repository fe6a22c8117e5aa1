"""The state of one reverse-mode pass: emitted nodes, constants, shapes, fresh names.

Rules (see :mod:`neuroplex.onnx.autodiff.rules`) receive a :class:`Builder` and emit ONNX
nodes through it. Every helper returns the name of the value it made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from neuroplex.errors import ExportError

__all__ = ["Builder", "Rule", "UnsupportedGraph", "attr"]

#: ``shape`` entries: an int (static), a str (a named symbolic dimension) or ``None``
Dim = int | str | None


class UnsupportedGraph(ExportError):
    """The graph cannot be differentiated; ``reason`` names the operator and node."""

    def __init__(self, reason: str, *, op_type: str = "", node: str = "") -> None:
        self.reason = reason
        self.op_type = op_type
        self.node = node
        super().__init__(reason)


def attr(node: Any, name: str, default: Any = None) -> Any:
    """The value of attribute ``name`` of ``node`` (bytes decoded), or ``default``."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def describe(node: Any) -> str:
    return f"{node.op_type} node {node.name or '(unnamed)'!r}"


class Builder:
    """Emits the backward nodes of one graph.

    Args:
        shapes: ``{value name: shape}`` from shape inference (``None`` = rank unknown).
        types: ``{value name: onnx elem type}``.
        constants: ``{value name: array}`` of initializers and ``Constant`` outputs.
        active: values that depend differentiably on the input.
        elem_type: the floating type of the input (the dtype of every gradient).
    """

    def __init__(
        self,
        shapes: dict[str, tuple[Dim, ...] | None],
        types: dict[str, int],
        constants: dict[str, np.ndarray],
        active: set[str],
        elem_type: int,
        opset: int,
    ) -> None:
        import onnx

        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.shapes = shapes
        self.types = types
        self.constants = constants
        self.active = active
        self.elem_type = elem_type
        self.np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
        self.opset = opset
        self._count = 0
        self._shape_nodes: dict[str, str] = {}
        self._const_cache: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    # -- names and nodes ---------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"grad/{hint}_{self._count}"

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Emit one single-output node; return its output name."""
        return self.op_n(op_type, inputs, 1, **attrs)[0]

    def op_n(self, op_type: str, inputs: Sequence[str], n: int, **attrs: Any) -> list[str]:
        """Emit one node with ``n`` outputs; return their names."""
        import onnx

        outputs = [self.fresh(op_type.lower()) for _ in range(n)]
        name = self.fresh(f"{op_type}_node")
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), outputs, name, **attrs))
        return outputs

    # -- constants ---------------------------------------------------------------------------
    def const(self, array: Any, hint: str = "const") -> str:
        """An initializer holding ``array`` (deduplicated)."""
        import onnx

        arr = np.asarray(array)
        key = (arr.dtype.str, arr.tobytes(), arr.shape)
        name = self._const_cache.get(key)
        if name is None:
            name = self.fresh(hint)
            self.initializers.append(onnx.numpy_helper.from_array(arr, name))
            self._const_cache[key] = name
        return name

    def ints(self, values: Sequence[int]) -> str:
        """A 1-D int64 constant."""
        return self.const(np.asarray(list(values), dtype=np.int64), "ints")

    def scalar(self, value: float) -> str:
        """A 0-d constant of the gradient dtype."""
        return self.const(np.asarray(value, dtype=self.np_dtype), "scalar")

    def value(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` (initializer or ``Constant`` output), else ``None``."""
        return self.constants.get(name) if name else None

    def require_value(self, node: Any, index: int, what: str) -> np.ndarray | None:
        """The constant of input ``index`` (``None`` when the input is absent); unsupported
        when it is computed at run time."""
        if index >= len(node.input) or not node.input[index]:
            return None
        value = self.value(node.input[index])
        if value is None:
            raise UnsupportedGraph(
                f"{describe(node)}: its {what} (input {index}) is computed at run time; "
                "the gradient rule needs it constant",
                op_type=node.op_type,
                node=node.name,
            )
        return value

    # -- shapes ------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[Dim, ...] | None:
        return self.shapes.get(name)

    def rank(self, name: str, node: Any) -> int:
        shape = self.shapes.get(name)
        if shape is None:
            raise UnsupportedGraph(
                f"{describe(node)}: the rank of {name!r} is unknown after shape inference",
                op_type=node.op_type,
                node=node.name,
            )
        return len(shape)

    def static_dims(self, name: str, node: Any, axes: Sequence[int]) -> list[int]:
        """The static sizes of ``axes`` of ``name``; unsupported when one is dynamic."""
        shape = self.shapes.get(name)
        dims = [shape[a] if shape is not None else None for a in axes]
        if any(not isinstance(d, int) for d in dims):
            raise UnsupportedGraph(
                f"{describe(node)}: dimensions {list(axes)} of {name!r} must be static for "
                f"its gradient rule, got {shape}",
                op_type=node.op_type,
                node=node.name,
            )
        return [int(d) for d in dims]  # type: ignore[arg-type]

    def shape_of(self, name: str) -> str:
        """A ``Shape`` of ``name`` (one node per value)."""
        out = self._shape_nodes.get(name)
        if out is None:
            out = self.op("Shape", [name])
            self._shape_nodes[name] = out
        return out

    def zeros_like(self, name: str) -> str:
        import onnx

        value = onnx.helper.make_tensor("value", self.elem_type, [1], [0.0])
        return self.op("ConstantOfShape", [self.shape_of(name)], value=value)

    def where(self, condition: str, a: str, b: str) -> str:
        return self.op("Where", [condition, a, b])

    # -- broadcasting ------------------------------------------------------------------------
    def sum_to(self, grad: str, grad_shape: tuple[Dim, ...] | None, target: str, node: Any) -> str:
        """Reduce ``grad`` (of a broadcast result) to the shape of ``target``."""
        target_shape = self.shapes.get(target)
        if grad_shape is None or target_shape is None:
            raise UnsupportedGraph(
                f"{describe(node)}: ranks unknown, cannot reduce a broadcast gradient",
                op_type=node.op_type,
                node=node.name,
            )
        lead = len(grad_shape) - len(target_shape)
        if lead < 0:
            raise UnsupportedGraph(
                f"{describe(node)}: operand {target!r} has a higher rank than the result",
                op_type=node.op_type,
                node=node.name,
            )
        if lead:
            grad = self.op("ReduceSum", [grad, self.ints(range(lead))], keepdims=0)
        static, unknown = [], False
        for i, (t, r) in enumerate(zip(target_shape, grad_shape[lead:], strict=True)):
            if t == 1 and r != 1:
                static.append(i)
            elif not (t == r and t is not None) and t != 1:
                unknown = True
        if unknown:  # decide at run time which axes were broadcast
            differ = self.op(
                "Not", [self.op("Equal", [self.shape_of(grad), self.shape_of(target)])]
            )
            axes = self.op("Reshape", [self.op("NonZero", [differ]), self.ints([-1])])
            return self.op("ReduceSum", [grad, axes], keepdims=1, noop_with_empty_axes=1)
        if static:
            grad = self.op("ReduceSum", [grad, self.ints(static)], keepdims=1)
        return grad


#: a gradient rule: ``(builder, node, output grads) -> input grads`` (``None`` = no gradient)
Rule = Callable[[Builder, Any, list[str | None]], list[str | None]]
