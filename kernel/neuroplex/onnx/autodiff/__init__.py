"""Reverse-mode differentiation of an ONNX graph, written as ONNX.

:func:`build_gradient_model` takes a forward model with one floating-point input ``x`` and
differentiates its first (or a named) floating-point output ``y``; it returns the
vector-Jacobian-product model ::

    (x, grad_output) -> (grad_input, y)      grad_input = (dy/dx)ᵀ · grad_output

with the forward nodes first, then one group of backward nodes per forward node, emitted by the
gradient rule of its operator (:data:`RULES`, see ``kernel/docs/onnx-autodiff.md``). Only the
input gradient is built: weights are constants. Values that do not depend on ``x`` (shape
arithmetic, ``Shape``/``Range``/comparison chains, weights) need no rule.

A graph that cannot be differentiated exactly raises :class:`UnsupportedGraph` naming the
operator and the node — never a wrong gradient: an operator without a rule on the path from
``x`` to ``y``, control flow (``If``/``Loop``/``Scan``), several or integer inputs.
Files of opsets 7–12 are upgraded in memory (``onnx.version_converter``) to opset 13; the
gradient model uses opset ``max(opset, 16)`` (the first with ``ScatterElements`` reduction).
``LSTM``/``GRU`` nodes are unrolled into per-step elementary ops first
(:mod:`neuroplex.onnx.autodiff.expand`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroplex.onnx.autodiff import rules_elementwise, rules_nn, rules_resize, rules_shape
from neuroplex.onnx.autodiff._builder import Builder, UnsupportedGraph, describe
from neuroplex.onnx.autodiff._registry import NON_DIFFERENTIABLE, REFUSED, RULES, RuleInfo
from neuroplex.onnx.autodiff.expand import expand_recurrent

__all__ = [
    "GRAD_INPUT",
    "GRAD_OUTPUT",
    "NON_DIFFERENTIABLE",
    "RULES",
    "RuleInfo",
    "UnsupportedGraph",
    "build_gradient_model",
    "rules_table",
    "supported_ops",
    "upgrade_opset",
]

del rules_elementwise, rules_nn, rules_resize, rules_shape  # imported for their registrations

GRAD_OUTPUT = "grad_output"
GRAD_INPUT = "grad_input"
#: the gradient model's minimum opset (ScatterElements / ScatterND with reduction="add")
GRADIENT_MIN_OPSET = 16
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "SequenceMap"})
_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def supported_ops() -> list[str]:
    """Op types with a gradient rule, sorted."""
    return sorted(RULES)


def default_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise UnsupportedGraph("the model imports no default-domain (ai.onnx) opset")


def upgrade_opset(model: Any, target: int = 13) -> Any:
    """The model converted to ``target`` when its opset is lower (in memory), else itself.

    Raises:
        UnsupportedGraph: the version converter fails; the message names the reason.
    """
    import onnx

    if default_opset(model) >= target:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises RuntimeError / ValidationError / ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedGraph(
            f"cannot upgrade opset {default_opset(model)} to {target}: {first}"
        ) from None
    return converted


def _shape_tables(model: Any) -> tuple[dict[str, Any], dict[str, int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    graph = inferred.graph
    shapes: dict[str, Any] = {}
    types: dict[str, int] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        types[info.name] = tensor.elem_type
        if tensor.HasField("shape"):
            shapes[info.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim
            )
    for init in graph.initializer:
        types[init.name] = init.data_type
        shapes[init.name] = tuple(init.dims)
    return shapes, types


def _constants(model: Any) -> dict[str, np.ndarray]:
    import onnx

    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            a = node.attribute[0]
            if a.name == "value":
                values[node.output[0]] = onnx.numpy_helper.to_array(a.t)
            elif a.name in ("value_float", "value_int"):
                values[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(a))
            elif a.name in ("value_floats", "value_ints"):
                values[node.output[0]] = np.asarray(list(onnx.helper.get_attribute_value(a)))
    return values


def _the_input(model: Any) -> Any:
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise UnsupportedGraph(
            f"the graph has {len(inputs)} inputs {names}; input gradients are built for "
            "single-input models only"
        )
    elem = inputs[0].type.tensor_type.elem_type
    if elem not in _FLOAT_TYPES:
        import onnx

        raise UnsupportedGraph(
            f"input {inputs[0].name!r} has type {onnx.TensorProto.DataType.Name(elem)}: "
            "gradients need a floating-point input (token ids have none)"
        )
    return inputs[0]


def _the_output(model: Any, output: str | None) -> str:
    names = [o.name for o in model.graph.output]
    if output is None:
        return str(names[0])
    if output not in names:
        raise UnsupportedGraph(f"output {output!r} is not a graph output; outputs: {names}")
    return output


def _active_values(model: Any, x: str, types: dict[str, int]) -> set[str]:
    """Values that depend differentiably on ``x`` (floating-point, through a rule-able path)."""
    active = {x}
    for node in model.graph.node:
        if node.op_type in NON_DIFFERENTIABLE or not any(i in active for i in node.input):
            continue
        for out in node.output:
            if out and types.get(out, 1) in _FLOAT_TYPES:
                active.add(out)
    return active


def _needed_nodes(model: Any, y: str, active: set[str]) -> list[Any]:
    """Nodes on a differentiable path from the input to ``y``, in forward order."""
    wanted, path = {y}, []
    for node in reversed(model.graph.node):
        if any(o in wanted for o in node.output) and any(o in active for o in node.output):
            path.append(node)
            wanted.update(i for i in node.input if i in active)
    return list(reversed(path))


def _check_graph(model: Any) -> None:
    for node in model.graph.node:
        if node.op_type in _CONTROL_FLOW:
            raise UnsupportedGraph(
                f"control flow: {describe(node)} (If/Loop/Scan graphs are not differentiated)",
                op_type=node.op_type,
                node=node.name,
            )
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedGraph(
                f"{describe(node)} is in custom domain {node.domain!r}: no gradient rule",
                op_type=node.op_type,
                node=node.name,
            )


def build_gradient_model(model: Any, *, output: str | None = None) -> Any:
    """The VJP model ``(x, grad_output) -> (grad_input, y)`` of a forward ``onnx.ModelProto``.

    Args:
        model: the forward model (not modified); one floating-point graph input.
        output: the output to differentiate (default: the first graph output).

    Raises:
        UnsupportedGraph: the graph cannot be differentiated; ``reason``, ``op_type`` and
            ``node`` say why and where.
    """
    import onnx

    model = upgrade_opset(model)
    opset = default_opset(model)
    _check_graph(model)
    model, not_unrolled = expand_recurrent(model, _constants(model))
    shapes, types = _shape_tables(model)
    x_info = _the_input(model)
    x, y = x_info.name, _the_output(model, output)
    if types.get(y) not in _FLOAT_TYPES:
        raise UnsupportedGraph(f"output {y!r} is not floating-point: it has no gradient")
    active = _active_values(model, x, types)
    path = _needed_nodes(model, y, active)
    missing = [n for n in path if n.op_type not in RULES]
    if missing:
        listed = "; ".join(describe(n) for n in missing[:5])
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        reasons = [
            f"{describe(n)} is not unrolled: {not_unrolled[n.name]}"
            if n.name in not_unrolled
            else REFUSED[n.op_type]
            for n in missing
            if n.name in not_unrolled or n.op_type in REFUSED
        ]
        why = "".join(f" ({reason})" for reason in dict.fromkeys(reasons))
        raise UnsupportedGraph(
            f"no gradient rule for {listed}{more}{why}",
            op_type=missing[0].op_type,
            node=missing[0].name,
        )
    forward = [onnx.NodeProto() for _ in model.graph.node]
    copies = {}
    for copy, node in zip(forward, model.graph.node, strict=True):
        copy.CopyFrom(node)
        copies[id(node)] = copy
    b = Builder(shapes, types, _constants(model), active, x_info.type.tensor_type.elem_type, opset)
    grad_out = GRAD_OUTPUT if GRAD_OUTPUT not in types else f"{GRAD_OUTPUT}_"
    grads: dict[str, str] = {y: grad_out}
    for node in reversed(path):
        gy = [grads.get(o) if o else None for o in node.output]
        if all(g is None for g in gy):
            continue
        info = RULES[node.op_type]
        gx = info.function(b, copies[id(node)], gy)
        for name, g in zip(node.input, gx, strict=False):
            if g is None or name not in active:
                continue
            grads[name] = b.op("Add", [grads[name], g]) if name in grads else g
    grad_x = grads.get(x) or b.zeros_like(x)
    grad_name = GRAD_INPUT if GRAD_INPUT not in types else f"{GRAD_INPUT}_"
    b.nodes.append(onnx.helper.make_node("Identity", [grad_x], [grad_name], "grad/output"))
    return _assemble(model, forward, b, x_info, y, grad_out, grad_name, opset)


def _assemble(
    model: Any,
    forward: list[Any],
    b: Builder,
    x_info: Any,
    y: str,
    grad_out: str,
    grad_name: str,
    opset: int,
) -> Any:
    import onnx

    graph = model.graph
    y_info = next(o for o in graph.output if o.name == y)
    g_info = onnx.ValueInfoProto()
    g_info.CopyFrom(y_info)
    g_info.name = grad_out
    gx_info = onnx.ValueInfoProto()
    gx_info.CopyFrom(x_info)
    gx_info.name = grad_name
    new_graph = onnx.helper.make_graph(
        [*forward, *b.nodes],
        f"{graph.name or 'model'}_vjp",
        [x_info, g_info],
        [gx_info, y_info],
        initializer=[*graph.initializer, *b.initializers],
    )
    imports = [
        onnx.helper.make_opsetid(i.domain, max(opset, GRADIENT_MIN_OPSET))
        if i.domain in ("", "ai.onnx")
        else i
        for i in model.opset_import
    ]
    vjp = onnx.helper.make_model(new_graph, opset_imports=imports)
    vjp.ir_version = max(model.ir_version, 8)
    return vjp


def rules_table() -> str:
    """The Markdown table of supported operators (kept in ``kernel/docs/onnx-autodiff.md``)."""
    lines = ["| operator | input gradient |", "|---|---|"]
    lines += [f"| `{op}` | {RULES[op].note} |" for op in supported_ops()]
    lines.append(
        "| "
        + ", ".join(f"`{op}`" for op in sorted(NON_DIFFERENTIABLE))
        + " | constants (no gradient flows through them) |"
    )
    return "\n".join(lines) + "\n"
