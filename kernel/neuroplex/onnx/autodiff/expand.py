"""Recurrent layers unrolled into elementary ops, so their gradients come from the rules.

ONNX writes a whole ``LSTM`` or ``GRU`` layer as one node over the sequence. Before a graph is
differentiated, :func:`expand_recurrent` replaces each such node by the per-step equations of
the ONNX specification (``MatMul``, ``Add``, ``Split``, ``Sigmoid``, ``Tanh``, ``Mul``,
``Concat``): one group per time step, with the input projection ``X·Wᵀ + b`` computed once for
the whole sequence and cut into steps by one ``Split``. The unrolled graph computes the same
outputs (the finite-difference check compares the derived gradient with the *original* node);
it grows with the sequence length.

Expanded: ``layout=0``, a static sequence length, constant ``W``/``R``/``B``/``P``, no
``sequence_lens``, the default activations, no ``clip``, ``input_forget=0``; directions
forward, reverse and bidirectional; optional ``initial_h``/``initial_c``, peepholes and GRU's
``linear_before_reset``. Any other recurrent node is left as it is (and then refused, naming
the reason).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_STEPS", "expand_recurrent", "why_not_expanded"]

#: the longest sequence unrolled (the unrolled graph has ~10 nodes per step and direction)
MAX_STEPS = 512
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            if isinstance(value, bytes):
                return value.decode()
            if isinstance(value, list):
                return [v.decode() if isinstance(v, bytes) else v for v in value]
            return value
    return default


def _optional(node: Any, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def why_not_expanded(node: Any, constants: dict[str, np.ndarray], steps: int | None) -> str | None:
    """Why ``node`` (an ``LSTM``/``GRU``) cannot be unrolled, or ``None`` when it can."""
    if node.op_type not in _DEFAULT_ACTIVATIONS:
        return f"{node.op_type} is not unrolled"
    directions = 2 if _attr(node, "direction", "forward") == "bidirectional" else 1
    activations = _attr(node, "activations")
    if activations and [a.lower() for a in activations] != [
        a.lower() for a in _DEFAULT_ACTIVATIONS[node.op_type] * directions
    ]:
        return f"custom activations {activations}"
    checks = [
        (int(_attr(node, "layout", 0)) != 0, "layout=1"),
        (_attr(node, "clip") is not None, "clip"),
        (int(_attr(node, "input_forget", 0)) != 0, "input_forget=1"),
        (bool(_optional(node, 4)), "sequence_lens"),
        (steps is None, "a dynamic sequence length"),
        (steps is not None and steps > MAX_STEPS, f"a sequence longer than {MAX_STEPS} steps"),
    ]
    for bad, what in checks:
        if bad:
            return f"{what} is not supported"
    weights = [node.input[1], node.input[2], _optional(node, 3)]
    if node.op_type == "LSTM":
        weights.append(_optional(node, 7))
    for name in weights:
        if name and name not in constants:
            return f"its weight {name!r} is computed at run time"
    return None


class _Emitter:
    """Appends nodes and initializers with names unique to one expanded node."""

    def __init__(self, prefix: str, np_dtype: Any) -> None:
        self.prefix, self.dtype = prefix, np_dtype
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._count = 0

    def name(self) -> str:
        self._count += 1
        return f"{self.prefix}/{self._count}"

    def op(self, op_type: str, inputs: list[str], n: int = 1, **attrs: Any) -> Any:
        import onnx

        outputs = [self.name() for _ in range(n)]
        self.nodes.append(
            onnx.helper.make_node(op_type, inputs, outputs, f"{self.name()}_{op_type}", **attrs)
        )
        return outputs[0] if n == 1 else outputs

    def const(self, value: Any, dtype: Any = None) -> str:
        import onnx

        name = self.name()
        array = np.asarray(value, dtype=dtype or self.dtype)
        self.inits.append(onnx.numpy_helper.from_array(array, name))
        return name

    def ints(self, values: list[int]) -> str:
        return self.const(values, np.int64)


def _initial(e: _Emitter, node: Any, index: int, d: int, x: str, hidden: int) -> str:
    """``initial_h``/``initial_c`` of direction ``d`` ``(N, H)``, or zeros."""
    name = _optional(node, index)
    if name:
        return str(e.op("Squeeze", [e.op("Gather", [name, e.ints([d])], axis=0), e.ints([0])]))
    batch = e.op("Slice", [e.op("Shape", [x]), e.ints([1]), e.ints([2])])
    shape = e.op("Concat", [batch, e.ints([hidden])], axis=0)
    return str(e.op("Expand", [e.const(np.zeros((1, hidden))), shape]))


def _per_step(e: _Emitter, xw: str, steps: int) -> list[str]:
    """The input projection ``(T, N, G)`` cut into its ``T`` steps ``(N, G)``: one ``Split``
    (its gradient is one ``Concat``; a ``Gather`` per step would scatter each step's gradient
    into a zero tensor of the whole sequence)."""
    parts = e.op("Split", [xw, e.ints([1] * steps)], steps, axis=0) if steps > 1 else [xw]
    return [str(e.op("Squeeze", [part, e.ints([0])])) for part in parts]


def _order(node: Any, d: int, steps: int) -> range:
    """The time steps of direction ``d`` in the order they are computed."""
    forward = d == 0 and _attr(node, "direction", "forward") != "reverse"
    return range(steps) if forward else range(steps - 1, -1, -1)


def _lstm_direction(
    e: _Emitter, node: Any, c: dict[str, np.ndarray], d: int, steps: int, hidden: int
) -> tuple[list[str], str, str]:
    x = node.input[0]
    w, r = c[node.input[1]][d], c[node.input[2]][d]
    bias = c[node.input[3]][d] if _optional(node, 3) else np.zeros(8 * hidden)
    peep = c[node.input[7]][d] if _optional(node, 7) else None
    summed = bias[: 4 * hidden] + bias[4 * hidden :]
    xw = e.op("Add", [e.op("MatMul", [x, e.const(w.T)]), e.const(summed)])
    rt = e.const(r.T)
    h, cell = _initial(e, node, 5, d, x, hidden), _initial(e, node, 6, d, x, hidden)
    order = _order(node, d, steps)
    inputs = _per_step(e, xw, steps)
    ys: dict[int, str] = {}
    for t in order:
        step = inputs[t]
        gates = e.op("Add", [step, e.op("MatMul", [h, rt])])
        if peep is None:  # one Sigmoid over the i, o, f gates (fewer, larger nodes)
            iof, g = e.op("Split", [gates, e.ints([3 * hidden, hidden])], 2, axis=1)
            si, so, sf = e.op("Split", [e.op("Sigmoid", [iof]), e.ints([hidden] * 3)], 3, axis=1)
            cell = e.op("Add", [e.op("Mul", [sf, cell]), e.op("Mul", [si, e.op("Tanh", [g])])])
            h = e.op("Mul", [so, e.op("Tanh", [cell])])
            ys[t] = h
            continue
        i, o, f, g = e.op("Split", [gates, e.ints([hidden] * 4)], 4, axis=1)
        i = e.op("Add", [i, e.op("Mul", [cell, e.const(peep[:hidden])])])
        f = e.op("Add", [f, e.op("Mul", [cell, e.const(peep[2 * hidden :])])])
        cell = e.op(
            "Add",
            [
                e.op("Mul", [e.op("Sigmoid", [f]), cell]),
                e.op("Mul", [e.op("Sigmoid", [i]), e.op("Tanh", [g])]),
            ],
        )
        o = e.op("Add", [o, e.op("Mul", [cell, e.const(peep[hidden : 2 * hidden])])])
        h = e.op("Mul", [e.op("Sigmoid", [o]), e.op("Tanh", [cell])])
        ys[t] = h
    return [ys[t] for t in range(steps)], h, cell


def _gru_direction(
    e: _Emitter, node: Any, c: dict[str, np.ndarray], d: int, steps: int, hidden: int
) -> tuple[list[str], str, str]:
    x = node.input[0]
    w, r = c[node.input[1]][d], c[node.input[2]][d]
    bias = c[node.input[3]][d] if _optional(node, 3) else np.zeros(6 * hidden)
    wb, rb = bias[: 3 * hidden], bias[3 * hidden :]
    before_reset = int(_attr(node, "linear_before_reset", 0))
    xw = e.op("Add", [e.op("MatMul", [x, e.const(w.T)]), e.const(wb)])
    r_zr, rb_zr = e.const(r[: 2 * hidden].T), e.const(rb[: 2 * hidden])
    r_h, rb_h = e.const(r[2 * hidden :].T), e.const(rb[2 * hidden :])
    h = _initial(e, node, 5, d, x, hidden)
    order = _order(node, d, steps)
    inputs = _per_step(e, xw, steps)
    ys: dict[int, str] = {}
    for t in order:
        x_zr, xh = e.op("Split", [inputs[t], e.ints([2 * hidden, hidden])], 2, axis=1)
        projected = e.op("Add", [e.op("MatMul", [h, r_zr]), rb_zr])
        zr = e.op("Sigmoid", [e.op("Add", [x_zr, projected])])  # both gates at once
        z, reset = e.op("Split", [zr, e.ints([hidden] * 2)], 2, axis=1)
        if before_reset:
            inner = e.op("Mul", [reset, e.op("Add", [e.op("MatMul", [h, r_h]), rb_h])])
        else:
            inner = e.op("Add", [e.op("MatMul", [e.op("Mul", [reset, h]), r_h]), rb_h])
        candidate = e.op("Tanh", [e.op("Add", [xh, inner])])
        h = e.op("Add", [candidate, e.op("Mul", [z, e.op("Sub", [h, candidate])])])
        ys[t] = h
    return [ys[t] for t in range(steps)], h, h


def _expand_node(
    node: Any, constants: dict[str, np.ndarray], steps: int, np_dtype: Any, index: int
) -> tuple[list[Any], list[Any]]:
    import onnx

    e = _Emitter(f"{node.name or node.op_type}#{index}/unrolled", np_dtype)
    hidden = int(_attr(node, "hidden_size"))
    directions = 2 if _attr(node, "direction", "forward") == "bidirectional" else 1
    cast = {k: v.astype(np_dtype) for k, v in constants.items() if k in node.input}
    one_direction = _lstm_direction if node.op_type == "LSTM" else _gru_direction
    ys, hs, cs = [], [], []
    for d in range(directions):
        seq, h, cell = one_direction(e, node, cast, d, steps, hidden)
        stacked = e.op("Concat", [e.op("Unsqueeze", [y, e.ints([0, 1])]) for y in seq], axis=0)
        ys.append(stacked)
        hs.append(e.op("Unsqueeze", [h, e.ints([0])]))
        cs.append(e.op("Unsqueeze", [cell, e.ints([0])]))
    wanted = list(node.output) + [""] * (3 - len(node.output))
    for out, parts, axis in ((wanted[0], ys, 1), (wanted[1], hs, 0), (wanted[2], cs, 0)):
        if out:
            e.nodes.append(onnx.helper.make_node("Concat", parts, [out], e.name(), axis=axis))
    return e.nodes, e.inits


def expand_recurrent(model: Any, constants: dict[str, np.ndarray]) -> tuple[Any, dict[str, str]]:
    """``model`` with every unrollable ``LSTM``/``GRU`` node unrolled (a copy when any was),
    and ``{node name: why not}`` for the recurrent nodes left as they are."""
    import onnx

    recurrent = [n for n in model.graph.node if n.op_type in _DEFAULT_ACTIVATIONS]
    if not recurrent:
        return model, {}
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    infos = {i.name: i for i in (*inferred.graph.input, *inferred.graph.value_info)}
    refused: dict[str, str] = {}
    nodes: list[Any] = []
    inits: list[Any] = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _DEFAULT_ACTIVATIONS:
            nodes.append(node)
            continue
        info = infos.get(node.input[0])
        dims = info.type.tensor_type.shape.dim if info is not None else []
        steps = dims[0].dim_value if len(dims) == 3 and dims[0].HasField("dim_value") else None
        why = why_not_expanded(node, constants, steps)
        if why is not None or info is None:
            refused[node.name] = why or "unknown input type"
            nodes.append(node)
            continue
        assert steps is not None
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        new_nodes, new_inits = _expand_node(node, constants, steps, dtype, index)
        nodes += new_nodes
        inits += new_inits
    if len(refused) == len(recurrent):
        return model, refused
    expanded = onnx.ModelProto()
    expanded.CopyFrom(model)
    del expanded.graph.node[:]
    expanded.graph.node.extend(nodes)
    expanded.graph.initializer.extend(inits)
    return expanded, refused
