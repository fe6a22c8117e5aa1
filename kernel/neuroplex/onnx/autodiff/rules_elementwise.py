"""Gradient rules of elementwise operators: arithmetic with broadcasting and activations.

``x`` is ``node.input[0]``, ``y`` is ``node.output[0]`` and ``g`` the gradient of ``y``;
every rule returns one gradient (or ``None``) per node input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from neuroplex.onnx.autodiff._builder import Builder, attr
from neuroplex.onnx.autodiff._registry import rule

Grads = list[str | None]


def _out_shape(b: Builder, node: Any) -> Any:
    return b.shape(node.output[0])


def _needs(b: Builder, node: Any, index: int) -> bool:
    return index < len(node.input) and node.input[index] in b.active


@rule("Add", "Sum", note="broadcast axes summed")
def _add(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape = _out_shape(b, node)
    return [
        b.sum_to(g, shape, name, node) if _needs(b, node, i) else None
        for i, name in enumerate(node.input)
    ]


@rule("Sub", note="broadcast axes summed")
def _sub(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape = _out_shape(b, node)
    ga = b.sum_to(g, shape, node.input[0], node) if _needs(b, node, 0) else None
    gb = b.op("Neg", [b.sum_to(g, shape, node.input[1], node)]) if _needs(b, node, 1) else None
    return [ga, gb]


@rule("Mul", note="broadcast axes summed")
def _mul(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape = _out_shape(b, node)
    x, w = node.input[0], node.input[1]
    ga = b.sum_to(b.op("Mul", [g, w]), shape, x, node) if _needs(b, node, 0) else None
    gb = b.sum_to(b.op("Mul", [g, x]), shape, w, node) if _needs(b, node, 1) else None
    return [ga, gb]


@rule("Div", note="broadcast axes summed")
def _div(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape = _out_shape(b, node)
    x, w, y = node.input[0], node.input[1], node.output[0]
    ga = b.sum_to(b.op("Div", [g, w]), shape, x, node) if _needs(b, node, 0) else None
    gb = None
    if _needs(b, node, 1):  # d(x/w)/dw = -y/w
        gb = b.sum_to(b.op("Neg", [b.op("Div", [b.op("Mul", [g, y]), w])]), shape, w, node)
    return [ga, gb]


@rule("Pow", note="d/dx = b·x^(b-1); d/db = y·log x")
def _pow(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape = _out_shape(b, node)
    x, e, y = node.input[0], node.input[1], node.output[0]
    ga = gb = None
    if _needs(b, node, 0):
        e_cast = b.op("Cast", [e], to=b.elem_type)
        power = b.op("Pow", [x, b.op("Sub", [e_cast, b.scalar(1.0)])])
        ga = b.sum_to(b.op("Mul", [g, b.op("Mul", [e_cast, power])]), shape, x, node)
    if _needs(b, node, 1):
        gb = b.sum_to(b.op("Mul", [g, b.op("Mul", [y, b.op("Log", [x])])]), shape, e, node)
    return [ga, gb]


@rule("Max", "Min", note="to the operands equal to the result (ties each get the gradient)")
def _max_min(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape, y, zero = _out_shape(b, node), node.output[0], b.scalar(0.0)
    return [
        b.sum_to(b.where(b.op("Equal", [name, y]), g, zero), shape, name, node)
        if _needs(b, node, i)
        else None
        for i, name in enumerate(node.input)
    ]


@rule("Where", note="the gradient goes to the branch the condition selected")
def _where(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    shape, cond, zero = _out_shape(b, node), node.input[0], b.scalar(0.0)
    gx = (
        b.sum_to(b.where(cond, g, zero), shape, node.input[1], node) if _needs(b, node, 1) else None
    )
    gz = (
        b.sum_to(b.where(cond, zero, g), shape, node.input[2], node) if _needs(b, node, 2) else None
    )
    return [None, gx, gz]


UnaryRule = Callable[[Builder, Any, str], str]


def _unary(op_type: str, note: str) -> Callable[[UnaryRule], UnaryRule]:
    """Register a one-input rule ``grad(b, node, g) -> gx``."""

    def wrap(function: UnaryRule) -> UnaryRule:
        def run(b: Builder, node: Any, gy: Grads) -> Grads:
            g = gy[0]
            assert g is not None
            return [function(b, node, g), *([None] * (len(node.input) - 1))]

        rule(op_type, note=note)(run)
        return function

    return wrap


@_unary("Identity", "passes the gradient")
def _identity(b: Builder, node: Any, g: str) -> str:
    return g


@rule("Dropout", note="inference: passes the gradient (training_mode must be false)")
def _dropout(b: Builder, node: Any, gy: Grads) -> Grads:
    training = b.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and (training is None or bool(training)):
        from neuroplex.onnx.autodiff._builder import UnsupportedGraph, describe

        raise UnsupportedGraph(
            f"{describe(node)} runs in training mode (random masks): no gradient",
            op_type=node.op_type,
            node=node.name,
        )
    return [gy[0], None, None][: len(node.input)]


@_unary("Cast", "gradient cast back to the input's float type")
def _cast(b: Builder, node: Any, g: str) -> str:
    return b.op("Cast", [g], to=b.types.get(node.input[0], b.elem_type))


@_unary("Neg", "-g")
def _neg(b: Builder, node: Any, g: str) -> str:
    return b.op("Neg", [g])


@_unary("Abs", "g·sign(x)")
def _abs(b: Builder, node: Any, g: str) -> str:
    return b.op("Mul", [g, b.op("Sign", [node.input[0]])])


@_unary("Relu", "g where x > 0")
def _relu(b: Builder, node: Any, g: str) -> str:
    return b.where(b.op("Greater", [node.input[0], b.scalar(0.0)]), g, b.scalar(0.0))


@_unary("LeakyRelu", "g, or alpha·g where x ≤ 0")
def _leaky(b: Builder, node: Any, g: str) -> str:
    alpha = b.scalar(float(attr(node, "alpha", 0.01)))
    return b.where(b.op("Greater", [node.input[0], b.scalar(0.0)]), g, b.op("Mul", [g, alpha]))


@rule("PRelu", note="g, or slope·g where x ≤ 0 (slope broadcast)")
def _prelu(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x, slope = node.input[0], node.input[1]
    positive = b.op("Greater", [x, b.scalar(0.0)])
    gx = b.where(positive, g, b.op("Mul", [g, slope])) if _needs(b, node, 0) else None
    gs = None
    if _needs(b, node, 1):
        gs = b.sum_to(
            b.where(positive, b.scalar(0.0), b.op("Mul", [g, x])), _out_shape(b, node), slope, node
        )
    return [gx, gs]


@_unary("Elu", "g, or g·(y + alpha) where x ≤ 0")
def _elu(b: Builder, node: Any, g: str) -> str:
    alpha = b.scalar(float(attr(node, "alpha", 1.0)))
    negative = b.op("Mul", [g, b.op("Add", [node.output[0], alpha])])
    return b.where(b.op("Greater", [node.input[0], b.scalar(0.0)]), g, negative)


@_unary("Selu", "gamma·g, or g·(y + alpha·gamma) where x ≤ 0")
def _selu(b: Builder, node: Any, g: str) -> str:
    alpha = float(attr(node, "alpha", 1.67326319217681884765625))
    gamma = float(attr(node, "gamma", 1.05070102214813232421875))
    negative = b.op("Mul", [g, b.op("Add", [node.output[0], b.scalar(alpha * gamma)])])
    positive = b.op("Mul", [g, b.scalar(gamma)])
    return b.where(b.op("Greater", [node.input[0], b.scalar(0.0)]), positive, negative)


@_unary("Sigmoid", "g·y·(1 - y)")
def _sigmoid(b: Builder, node: Any, g: str) -> str:
    y = node.output[0]
    return b.op("Mul", [g, b.op("Mul", [y, b.op("Sub", [b.scalar(1.0), y])])])


@_unary("Tanh", "g·(1 - y²)")
def _tanh(b: Builder, node: Any, g: str) -> str:
    y = node.output[0]
    return b.op("Mul", [g, b.op("Sub", [b.scalar(1.0), b.op("Mul", [y, y])])])


@_unary("Exp", "g·y")
def _exp(b: Builder, node: Any, g: str) -> str:
    return b.op("Mul", [g, node.output[0]])


@_unary("Log", "g / x")
def _log(b: Builder, node: Any, g: str) -> str:
    return b.op("Div", [g, node.input[0]])


@_unary("Sqrt", "g / (2y)")
def _sqrt(b: Builder, node: Any, g: str) -> str:
    return b.op("Div", [g, b.op("Mul", [node.output[0], b.scalar(2.0)])])


@_unary("Reciprocal", "-g·y²")
def _reciprocal(b: Builder, node: Any, g: str) -> str:
    y = node.output[0]
    return b.op("Neg", [b.op("Mul", [g, b.op("Mul", [y, y])])])


@_unary("Sin", "g·cos x")
def _sin(b: Builder, node: Any, g: str) -> str:
    return b.op("Mul", [g, b.op("Cos", [node.input[0]])])


@_unary("Cos", "-g·sin x")
def _cos(b: Builder, node: Any, g: str) -> str:
    return b.op("Neg", [b.op("Mul", [g, b.op("Sin", [node.input[0]])])])


@_unary("Softplus", "g·sigmoid(x)")
def _softplus(b: Builder, node: Any, g: str) -> str:
    return b.op("Mul", [g, b.op("Sigmoid", [node.input[0]])])


@_unary("Erf", "g·2/√π·exp(-x²)")
def _erf(b: Builder, node: Any, g: str) -> str:
    x = node.input[0]
    gauss = b.op("Exp", [b.op("Neg", [b.op("Mul", [x, x])])])
    return b.op("Mul", [g, b.op("Mul", [gauss, b.scalar(2.0 / math.sqrt(math.pi))])])


@_unary("Gelu", "exact (erf) or tanh approximation")
def _gelu(b: Builder, node: Any, g: str) -> str:
    x = node.input[0]
    if attr(node, "approximate", "none") == "tanh":
        c, k = math.sqrt(2.0 / math.pi), 0.044715
        x2 = b.op("Mul", [x, x])
        inner = b.op(
            "Mul",
            [
                b.scalar(c),
                b.op("Mul", [x, b.op("Add", [b.scalar(1.0), b.op("Mul", [b.scalar(k), x2])])]),
            ],
        )
        t = b.op("Tanh", [inner])
        sech2 = b.op("Sub", [b.scalar(1.0), b.op("Mul", [t, t])])
        d_inner = b.op(
            "Mul", [b.scalar(c), b.op("Add", [b.scalar(1.0), b.op("Mul", [b.scalar(3 * k), x2])])]
        )
        half_x = b.op("Mul", [b.scalar(0.5), x])
        deriv = b.op(
            "Add",
            [
                b.op("Mul", [b.scalar(0.5), b.op("Add", [b.scalar(1.0), t])]),
                b.op("Mul", [half_x, b.op("Mul", [sech2, d_inner])]),
            ],
        )
        return b.op("Mul", [g, deriv])
    cdf = b.op(
        "Mul",
        [
            b.scalar(0.5),
            b.op(
                "Add",
                [b.scalar(1.0), b.op("Erf", [b.op("Mul", [x, b.scalar(1 / math.sqrt(2.0))])])],
            ),
        ],
    )
    pdf = b.op(
        "Mul",
        [
            b.scalar(1 / math.sqrt(2 * math.pi)),
            b.op("Exp", [b.op("Mul", [b.scalar(-0.5), b.op("Mul", [x, x])])]),
        ],
    )
    return b.op("Mul", [g, b.op("Add", [cdf, b.op("Mul", [x, pdf])])])


@_unary("HardSigmoid", "alpha·g inside the linear part")
def _hard_sigmoid(b: Builder, node: Any, g: str) -> str:
    alpha = float(attr(node, "alpha", 0.2))
    beta = float(attr(node, "beta", 0.5))
    z = b.op("Add", [b.op("Mul", [node.input[0], b.scalar(alpha)]), b.scalar(beta)])
    inside = b.op("And", [b.op("Greater", [z, b.scalar(0.0)]), b.op("Less", [z, b.scalar(1.0)])])
    return b.where(inside, b.op("Mul", [g, b.scalar(alpha)]), b.scalar(0.0))


@_unary("HardSwish", "g·(x/3 + 1/2) on (-3, 3), g above")
def _hard_swish(b: Builder, node: Any, g: str) -> str:
    x = node.input[0]
    slope = b.op("Add", [b.op("Div", [x, b.scalar(3.0)]), b.scalar(0.5)])
    inner = b.where(b.op("Less", [x, b.scalar(3.0)]), slope, b.scalar(1.0))
    deriv = b.where(b.op("Greater", [x, b.scalar(-3.0)]), inner, b.scalar(0.0))
    return b.op("Mul", [g, deriv])


@rule("Clip", note="g where min ≤ x ≤ max")
def _clip(b: Builder, node: Any, gy: Grads) -> Grads:
    g = gy[0]
    assert g is not None
    x = node.input[0]
    keep: str | None = None
    bounds = [(1, "GreaterOrEqual", attr(node, "min")), (2, "LessOrEqual", attr(node, "max"))]
    for index, compare, legacy in bounds:
        bound = node.input[index] if index < len(node.input) and node.input[index] else None
        if bound is None and legacy is not None:
            bound = b.scalar(float(legacy))
        if bound is None:
            continue
        test = b.op(compare, [x, bound])
        keep = test if keep is None else b.op("And", [keep, test])
    gx = g if keep is None else b.where(keep, g, b.scalar(0.0))
    return [gx, *([None] * (len(node.input) - 1))]
