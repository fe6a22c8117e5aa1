"""Gradient rules of the ONNX autodiff pass against central finite differences (float64).

Each test builds a small random graph with ``onnx.helper`` around one operator, derives its
VJP model and compares ``⟨vjp(x, v), u⟩`` with the finite difference of ``⟨v, f(x)⟩`` along
``u`` for random directions (see ``neuroplex.onnx.autodiff.verify``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from neuroplex.onnx.autodiff import (  # noqa: E402
    RULES,
    UnsupportedGraph,
    build_gradient_model,
    supported_ops,
)
from neuroplex.onnx.autodiff.verify import check_gradient_model  # noqa: E402

RNG = np.random.default_rng(0)
TESTED: set[str] = set()
# test_every_rule_has_a_test reads what the tests before it recorded: under pytest-xdist
# (--dist loadfile, as .ci/test and tox run it) a file runs on one worker, in file order


def _model(
    nodes: list[Any],
    x_shape: tuple[int | str, ...],
    params: dict[str, np.ndarray] | None = None,
    *,
    opset: int = 18,
    dtype: int = TensorProto.DOUBLE,
) -> Any:
    inits = []
    for name, value in (params or {}).items():
        arr = np.asarray(value)
        if arr.dtype == np.float64 and dtype == TensorProto.FLOAT:
            arr = arr.astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", dtype, list(x_shape))],
        [helper.make_tensor_value_info("y", dtype, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _check(model: Any, x: np.ndarray, *ops: str, **tolerances: float) -> None:
    vjp = build_gradient_model(model)
    result = check_gradient_model(model, vjp, x, directions=2, **tolerances)
    assert result.passed, result.summary() + "\n" + "\n".join(map(str, result.rows))
    TESTED.update(ops)


def _x(*shape: int, positive: bool = False) -> np.ndarray:
    x = RNG.standard_normal(shape)
    return np.abs(x) + 0.5 if positive else x


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


# -- elementwise -----------------------------------------------------------------------------
UNARY = [
    ("Relu", {}, False),
    ("LeakyRelu", {"alpha": 0.1}, False),
    ("Elu", {"alpha": 0.7}, False),
    ("Selu", {}, False),
    ("Sigmoid", {}, False),
    ("Tanh", {}, False),
    ("Exp", {}, False),
    ("Log", {}, True),
    ("Sqrt", {}, True),
    ("Reciprocal", {}, True),
    ("Neg", {}, False),
    ("Abs", {}, False),
    ("Erf", {}, False),
    ("Softplus", {}, False),
    ("Sin", {}, False),
    ("Cos", {}, False),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, False),
    ("HardSwish", {}, False),
    ("Identity", {}, False),
    ("Gelu", {}, False),
    ("Gelu", {"approximate": "tanh"}, False),
]


@pytest.mark.parametrize(("op", "attrs", "positive"), UNARY, ids=[f"{u[0]}{u[1]}" for u in UNARY])
def test_unary(op: str, attrs: dict[str, Any], positive: bool) -> None:
    opset = 20 if op == "Gelu" else 18
    x = _x(3, 5, positive=positive) * (4 if op == "HardSwish" else 1)
    model = _model([helper.make_node(op, ["x"], ["y"], **attrs)], ("N", 5), opset=opset)
    _check(model, x, op)


BROADCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 3, 4), (3, 1)), ((3, 1), (1, 4)), ((3, 4), ())]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum"])
@pytest.mark.parametrize(("xs", "ws"), BROADCAST)
def test_binary_broadcast_both_sides(op: str, xs: tuple[int, ...], ws: tuple[int, ...]) -> None:
    """Both operands depend on x: x op (x-derived tensor of another shape), reduced back."""
    positive = op in ("Pow", "Div")
    w = _w(*ws) if op != "Pow" else np.abs(_w(*ws)) + 0.5
    # t = x * 0 + w has x's dependence through a ReduceSum broadcast: exercises both gradients
    axes = list(range(len(xs) - len(ws)))
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["xh"]),
        helper.make_node("ReduceSum", ["xh", "axes"], ["s"], keepdims=0)
        if axes
        else helper.make_node("Identity", ["xh"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "ws_end", "ws_axes"], ["s1"])
        if ws
        else helper.make_node("ReduceSum", ["s"], ["s1"], keepdims=0),
        helper.make_node("Add", ["s1", "w"], ["t"])
        if op != "Pow"
        else helper.make_node("Add", ["s1", "w"], ["t0"]),
    ]
    if op == "Pow":
        nodes.append(helper.make_node("Sigmoid", ["t0"], ["t"]))
    nodes.append(helper.make_node(op, ["x", "t"], ["y"]))
    params = {
        "half": np.asarray(0.5),
        "w": w,
        "axes": np.asarray(axes or [0], dtype=np.int64),
        "zero": np.zeros(len(ws), dtype=np.int64),
        "ws_end": np.asarray(ws, dtype=np.int64),
        "ws_axes": np.arange(len(ws), dtype=np.int64),
    }
    _check(_model(nodes, xs, params), _x(*xs, positive=positive), op)


def test_where_and_prelu() -> None:
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["c"]),
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Where", ["c", "t", "x"], ["w"]),
        helper.make_node("PRelu", ["w", "slope"], ["y"]),
    ]
    params = {"zero": np.asarray(0.1), "slope": _w(4)}
    _check(_model(nodes, ("N", 4), params), _x(3, 4), "Where", "PRelu", "Greater")


@pytest.mark.parametrize("bounds", ["both", "min", "none"])
def test_clip(bounds: str) -> None:
    inputs = {"both": ["x", "lo", "hi"], "min": ["x", "lo"], "none": ["x"]}[bounds]
    params = {"lo": np.asarray(-0.5), "hi": np.asarray(0.7)}
    x = _x(4, 6)
    _check(_model([helper.make_node("Clip", inputs, ["y"])], ("N", 6), params), x, "Clip")


# -- layers ----------------------------------------------------------------------------------
CONVS = [
    {
        "cin": 2,
        "cout": 3,
        "k": (3, 3),
        "strides": [1, 1],
        "pads": [0, 0, 0, 0],
        "dilations": [1, 1],
        "group": 1,
    },
    {
        "cin": 2,
        "cout": 4,
        "k": (3, 3),
        "strides": [2, 2],
        "pads": [1, 1, 1, 1],
        "dilations": [1, 1],
        "group": 1,
    },
    {
        "cin": 2,
        "cout": 2,
        "k": (3, 2),
        "strides": [2, 1],
        "pads": [1, 0, 0, 1],
        "dilations": [2, 1],
        "group": 1,
    },
    {
        "cin": 4,
        "cout": 4,
        "k": (3, 3),
        "strides": [1, 1],
        "pads": [1, 1, 1, 1],
        "dilations": [1, 1],
        "group": 4,
    },
    {
        "cin": 4,
        "cout": 6,
        "k": (2, 2),
        "strides": [2, 2],
        "pads": [0, 0, 1, 1],
        "dilations": [1, 1],
        "group": 2,
    },
    # stride 1: the flipped-weight Conv adjoint (dilations, groups, asymmetric pads)
    {"cin": 4, "cout": 6, "k": (3, 2), "strides": [1, 1], "pads": [2, 0, 1, 1],
     "dilations": [2, 1], "group": 2},
    # pads wider than the kernel span: falls back to ConvTranspose
    {"cin": 2, "cout": 2, "k": (2, 2), "strides": [1, 1], "pads": [3, 0, 0, 0],
     "dilations": [1, 1], "group": 1},
]  # fmt: skip


@pytest.mark.parametrize("conv", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_conv(conv: dict[str, Any]) -> None:
    w = _w(conv["cout"], conv["cin"] // conv["group"], *conv["k"])
    node = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        strides=conv["strides"],
        pads=conv["pads"],
        dilations=conv["dilations"],
        group=conv["group"],
    )
    model = _model([node], ("N", conv["cin"], 7, 6), {"w": w, "b": _w(conv["cout"])})
    _check(model, _x(2, conv["cin"], 7, 6), "Conv")


def test_conv_stride_1_with_dynamic_spatial_sizes() -> None:
    """The flipped-weight adjoint needs no static sizes: dynamic H and W are fine."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], group=2)
    model = _model([node], ("N", 4, "H", "W"), {"w": _w(6, 2, 3, 3)})
    _check(model, _x(2, 4, 5, 7), "Conv")
    ops = [n.op_type for n in build_gradient_model(model).graph.node]
    assert "Conv" in ops[1:] and "ConvTranspose" not in ops


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad_1d(auto_pad: str) -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2], auto_pad=auto_pad)
    _check(_model([node], ("N", 2, 9), {"w": _w(3, 2, 4)}), _x(2, 2, 9), "Conv")


@pytest.mark.parametrize(
    ("strides", "pads", "group"), [([1, 1], [0, 0, 0, 0], 1), ([2, 2], [1, 0, 1, 0], 2)]
)
def test_conv_transpose(strides: list[int], pads: list[int], group: int) -> None:
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], strides=strides, pads=pads, group=group
    )
    _check(
        _model([node], ("N", 2, 4, 5), {"w": _w(2, 3 // group * group // group, 3, 3)}),
        _x(2, 2, 4, 5),
        "ConvTranspose",
    )


@pytest.mark.parametrize(("ta", "tb"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm(ta: int, tb: int) -> None:
    w = _w(5, 4) if not tb else _w(4, 5)
    node = helper.make_node(
        "Gemm", ["x", "w", "c"], ["y"], alpha=0.7, beta=1.3, transA=ta, transB=tb
    )
    shape = (3, 5) if not ta else (5, 3)
    _check(_model([node], shape, {"w": w, "c": _w(4)}), _x(*shape), "Gemm")


@pytest.mark.parametrize(
    ("xs", "ws"),
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 2)), ((4,), (4, 3)), ((3, 4), (4,))],
)
def test_matmul(xs: tuple[int, ...], ws: tuple[int, ...]) -> None:
    _check(
        _model([helper.make_node("MatMul", ["x", "w"], ["y"])], xs, {"w": _w(*ws)}),
        _x(*xs),
        "MatMul",
    )


def test_matmul_both_operands_depend_on_x() -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["y"]),
    ]
    _check(_model(nodes, (2, 3, 4)), _x(2, 3, 4), "MatMul", "Transpose")


@pytest.mark.parametrize("rank", [3, 4])
def test_batch_norm(rank: int) -> None:
    c = 3
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    params = {"s": _w(c), "b": _w(c), "m": _w(c), "v": np.abs(_w(c)) + 0.2}
    shape = (2, c, 5) if rank == 3 else (2, c, 4, 3)
    _check(_model([node], ("N", *shape[1:]), params), _x(*shape), "BatchNormalization")


def test_instance_and_layer_norm() -> None:
    nodes = [
        helper.make_node("InstanceNormalization", ["x", "s", "b"], ["h"], epsilon=1e-3),
        helper.make_node("LayerNormalization", ["h", "ls", "lb"], ["y"], axis=-2, epsilon=1e-3),
    ]
    params = {"s": _w(3), "b": _w(3), "ls": _w(4, 5), "lb": _w(4, 5)}
    _check(
        _model(nodes, ("N", 3, 4, 5), params),
        _x(2, 3, 4, 5),
        "InstanceNormalization",
        "LayerNormalization",
    )


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax(op: str, axis: int) -> None:
    _check(_model([helper.make_node(op, ["x"], ["y"], axis=axis)], (2, 3, 4)), _x(2, 3, 4), op)


POOLS = [
    {"kernel_shape": [2, 2], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]},
    {"kernel_shape": [2, 2], "strides": [1, 1], "dilations": [2, 1]},
]


@pytest.mark.parametrize("pool", POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_max_pool(pool: dict[str, Any]) -> None:
    _check(
        _model([helper.make_node("MaxPool", ["x"], ["y"], **pool)], ("N", 2, 6, 5)),
        _x(2, 2, 6, 5),
        "MaxPool",
    )


@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize("pool", POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_average_pool(pool: dict[str, Any], include_pad: int) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=include_pad, **pool)
    _check(_model([node], ("N", 2, 6, 5), opset=19), _x(2, 2, 6, 5), "AveragePool")


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(op: str) -> None:
    _check(_model([helper.make_node(op, ["x"], ["y"])], ("N", 3, 4, 5)), _x(2, 3, 4, 5), op)


@pytest.mark.parametrize(("axes", "keepdims"), [([1], 1), ([0, 2], 0), ([-1], 0), (None, 1)])
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax"])
def test_reduce(op: str, axes: list[int] | None, keepdims: int) -> None:
    inputs = ["x", "axes"] if axes is not None else ["x"]
    params = {"axes": np.asarray(axes, dtype=np.int64)} if axes is not None else {}
    node = helper.make_node(op, inputs, ["y"], keepdims=keepdims)
    _check(_model([node], (2, 3, 4), params), _x(2, 3, 4), op)


def test_reduce_opset13_axes_attribute() -> None:
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)
    _check(_model([node], (2, 3, 4), opset=13), _x(2, 3, 4), "ReduceMean")


# -- data movement ---------------------------------------------------------------------------
def test_reshape_family() -> None:
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),  # (3, 12)
        helper.make_node("Reshape", ["f", "shape"], ["r"]),  # (3, 4, 3)
        helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),  # (3, 1, 4, 3)
        helper.make_node("Squeeze", ["u", "ax"], ["s"]),  # (3, 4, 3)
        helper.make_node("Transpose", ["s"], ["t"], perm=[2, 0, 1]),  # (3, 3, 4)
        helper.make_node("Unsqueeze", ["t", "ax0"], ["t4"]),  # (1, 3, 3, 4)
        helper.make_node("Expand", ["t4", "eshape"], ["e"]),  # (2, 3, 3, 4)
        helper.make_node("Tile", ["e", "reps"], ["y"]),  # (2, 6, 3, 12)
    ]
    params = {
        "shape": np.asarray([0, 4, -1], dtype=np.int64),
        "ax": np.asarray([1], dtype=np.int64),
        "ax0": np.asarray([0], dtype=np.int64),
        "eshape": np.asarray([2, 1, 1, 4], dtype=np.int64),
        "reps": np.asarray([1, 2, 1, 3], dtype=np.int64),
    }
    ops = ("Flatten", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Expand", "Tile")
    _check(_model(nodes, (3, 2, 2, 3), params), _x(3, 2, 2, 3), *ops)


@pytest.mark.parametrize("axis", [0, 1])
def test_concat_and_split(axis: int) -> None:
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Concat", ["x", "w", "t"], ["c"], axis=axis),
        helper.make_node("Split", ["c", "sizes"], ["a", "b", "unused"], axis=axis),
        helper.make_node("Mul", ["a", "b"], ["y"]),
    ]
    n = 2 * 3 + 2  # x, t (3 each along the axis) and w (2)
    params = {
        "w": _w(2, 3) if axis == 0 else _w(3, 2),
        "sizes": np.asarray([3, 3, n - 6], dtype=np.int64),
    }
    _check(_model(nodes, (3, 3), params), _x(3, 3), "Concat", "Split")


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([1], [3], [1], [1]),
        ([0, -3], [2, 100], [0, 2], [1, 1]),
        ([4], [0], [2], [-2]),
        ([0], [5], [1], [2]),
    ],
)
def test_slice(starts: list[int], ends: list[int], axes: list[int], steps: list[int]) -> None:
    params = {
        k: np.asarray(v, dtype=np.int64)
        for k, v in {"s": starts, "e": ends, "a": axes, "t": steps}.items()
    }
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    _check(_model([node], (3, 5, 6), params), _x(3, 5, 6), "Slice")


@pytest.mark.parametrize(
    ("axis", "indices"),
    [(0, [2, 0, 2]), (1, [[1, -1], [0, 0]]), (2, 3), (-1, [-2]), (0, -1), (1, [[2]])],
)
def test_gather(axis: int, indices: Any) -> None:
    params = {"i": np.asarray(indices, dtype=np.int64)}
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    _check(_model([node], (3, 4, 5), params), _x(3, 4, 5), "Gather")


@pytest.mark.parametrize(("pads", "axes"), [([0, 1, 2, 0, 0, 1, 0, 3], None), ([2, 1], [-1])])
def test_pad(pads: list[int], axes: list[int] | None) -> None:
    inputs = ["x", "p", "v"] + (["a"] if axes else [])
    params = {"p": np.asarray(pads, dtype=np.int64), "v": np.asarray(0.3)}
    if axes:
        params["a"] = np.asarray(axes, dtype=np.int64)
    node = helper.make_node("Pad", inputs, ["y"], mode="constant")
    _check(_model([node], (2, 3, 4, 5), params), _x(2, 3, 4, 5), "Pad")


def test_cast_and_dropout_and_shape_constants() -> None:
    """Shape arithmetic on x is a constant for the gradient; Cast/Dropout pass it through."""
    nodes = [
        helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
        helper.make_node("Dropout", ["x32"], ["d"]),
        helper.make_node("Cast", ["d"], ["d64"], to=TensorProto.DOUBLE),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["d64", "target"], ["y"]),
    ]
    params = {"zero": np.asarray([0], dtype=np.int64), "minus1": np.asarray([-1], dtype=np.int64)}
    model = _model(nodes, ("N", 3, 2), params)
    vjp = build_gradient_model(model)
    result = check_gradient_model(model, vjp, _x(2, 3, 2), directions=2, rtol=1e-4, atol=1e-5)
    assert result.passed, result.summary()
    TESTED.update({"Cast", "Dropout", "Shape"})


@pytest.mark.parametrize(
    ("size", "alpha", "beta", "bias"),
    [(3, 1e-2, 0.75, 1.0), (4, 0.5, 0.6, 2.0), (1, 0.3, 1.0, 1.5)],
)
def test_lrn(size: int, alpha: float, beta: float, bias: float) -> None:
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    model = _model([node], ("N", 5, 3, 2))
    _check(model, _x(2, 5, 3, 2), "LRN")
    if size % 2 == 0:
        return  # ORT's LRN takes odd sizes only
    # the float64 LRN the check runs (onnx.reference's own is wrong) agrees with ORT's float32
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from neuroplex.onnx.autodiff.verify import _float64_ops, _retyped

    x = _x(2, 5, 3, 2)
    ours = ReferenceEvaluator(model, new_ops=_float64_ops()).run(None, {"x": x})[0]
    f32 = _retyped(model, TensorProto.DOUBLE, TensorProto.FLOAT).SerializeToString()
    theirs = ort.InferenceSession(f32).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


EINSUMS = [
    ("ij,jk->ik", (3, 4), (4, 5)),
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 2)),
    ("nchw,c->nhw", (2, 3, 2, 2), (3,)),
    ("ij,kj", (3, 4), (2, 4)),  # implicit output ("ik")
    ("ijk,j->i", (2, 3, 4), (3,)),  # k is summed out of x alone: broadcast back
    ("ij->ji", (3, 4), None),
]


@pytest.mark.parametrize(("equation", "xs", "ws"), EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum(equation: str, xs: tuple[int, ...], ws: tuple[int, ...] | None) -> None:
    inputs, params = (["x", "w"], {"w": _w(*ws)}) if ws else (["x"], {})
    node = helper.make_node("Einsum", inputs, ["y"], equation=equation)
    _check(_model([node], xs, params), _x(*xs), "Einsum")


def test_einsum_both_operands_depend_on_x_and_refusals() -> None:
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Einsum", ["x", "t"], ["y"], equation="ij,kj->ik"),
    ]
    _check(_model(nodes, (3, 4)), _x(3, 4), "Einsum")
    for equation, why in [("...j,j->...", "ellipsis"), ("ii->i", "diagonal")]:
        node = helper.make_node(
            "Einsum", ["x"] + (["w"] if "," in equation else []), ["y"], equation=equation, name="e"
        )
        model = _model([node], (3, 3), {"w": _w(3)} if "," in equation else None)
        with pytest.raises(UnsupportedGraph, match=rf"Einsum node 'e': .*{why}"):
            build_gradient_model(model)


RESIZES = [
    ({"mode": "nearest"}, [1.0, 1.0, 2.0, 2.0], None),
    ({"mode": "nearest", "nearest_mode": "floor", "coordinate_transformation_mode": "asymmetric"},
     [1.0, 1.0, 1.5, 3.0], None),
    ({"mode": "linear"}, [1.0, 1.0, 2.0, 2.0], None),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, [2, 3, 7, 5]),
    ({"mode": "linear"}, [1.0, 1.0, 0.5, 0.75], None),  # downsampling
    ({"mode": "linear", "antialias": 1}, [1.0, 1.0, 0.5, 0.5], None),
    ({"mode": "cubic"}, [1.0, 1.0, 2.0, 1.0], None),
    ({"mode": "linear"}, [1.0, 2.0, 1.0, 1.0], None),  # a leading axis: transposes
]  # fmt: skip


@pytest.mark.parametrize(("attrs", "scales", "sizes"), RESIZES, ids=[str(i) for i in range(8)])
def test_resize(attrs: dict[str, Any], scales: list[float] | None, sizes: list[int] | None) -> None:
    params: dict[str, np.ndarray] = {"roi": np.zeros(0)}
    if scales is not None:
        params["scales"] = np.asarray(scales, dtype=np.float32)
        inputs = ["x", "roi", "scales"]
    else:
        params["sizes"] = np.asarray(sizes, dtype=np.int64)
        inputs = ["x", "roi", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    model = _model([node], (2, 3, 4, 6), params, opset=19)
    _check(model, _x(2, 3, 4, 6), "Resize")


RECURRENT = [
    ("LSTM", "forward", {}, ()),
    ("LSTM", "reverse", {}, ("B",)),
    ("LSTM", "bidirectional", {}, ("B", "", "initial_h", "initial_c", "P")),
    ("GRU", "forward", {}, ("B",)),
    ("GRU", "bidirectional", {"linear_before_reset": 1}, ("B", "", "initial_h")),
]


@pytest.mark.parametrize(
    ("op", "direction", "attrs", "extra"), RECURRENT, ids=[f"{r[0]}-{r[1]}" for r in RECURRENT]
)
def test_recurrent_layers_are_unrolled(
    op: str, direction: str, attrs: dict[str, Any], extra: tuple[str, ...]
) -> None:
    """LSTM/GRU become per-step elementary ops; the check differentiates the original node."""
    from neuroplex.onnx.autodiff.expand import expand_recurrent

    hidden, gates, d = 3, 4 if op == "LSTM" else 3, 2 if direction == "bidirectional" else 1
    params = {"W": _w(d, gates * hidden, 2) * 0.5, "R": _w(d, gates * hidden, hidden) * 0.5}
    sizes = {"B": (d, 2 * gates * hidden), "P": (d, 3 * hidden)}
    params.update({n: _w(*sizes[n]) * 0.5 for n in extra if n in sizes})
    params.update({n: _w(d, 2, hidden) for n in extra if n.startswith("initial")})
    outputs = ["y", "y_h", "y_c"] if op == "LSTM" else ["y", "y_h"]
    nodes = [
        helper.make_node(
            op,
            ["x", "W", "R", *extra],
            ["ys", *outputs[1:]],
            hidden_size=hidden,
            direction=direction,
            name="rnn",
            **attrs,
        ),
        # every output reaches y: Y, Y_h (and Y_c) summed into one tensor
        helper.make_node("ReduceSum", ["ys", "axes0"], ["y0"], keepdims=0),
        *[helper.make_node("Add", [f"y{k}", o], [f"y{k + 1}"]) for k, o in enumerate(outputs[1:])],
        helper.make_node("Identity", [f"y{len(outputs) - 1}"], ["y"]),
    ]
    params["axes0"] = np.asarray([0], dtype=np.int64)
    model = _model(nodes, (5, 2, 2), params)
    _check(model, _x(5, 2, 2))
    # the unrolled forward equals ONNX Runtime's own kernel (float32)
    import onnxruntime as ort

    from neuroplex.onnx.autodiff import _constants
    from neuroplex.onnx.autodiff.verify import _retyped

    f32 = _retyped(model, TensorProto.DOUBLE, TensorProto.FLOAT)
    unrolled, refused = expand_recurrent(f32, _constants(f32))
    assert refused == {} and op not in {n.op_type for n in unrolled.graph.node}
    x = _x(5, 2, 2).astype(np.float32)
    ours, theirs = (
        ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0] for m in (unrolled, f32)
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_recurrent_layers_that_cannot_be_unrolled_are_refused_with_the_reason() -> None:
    hidden = 3
    params = {"W": _w(1, 4 * hidden, 2), "R": _w(1, 4 * hidden, hidden)}
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden, name="lstm")
    with pytest.raises(
        UnsupportedGraph,
        match=r"no gradient rule for LSTM node 'lstm' \(LSTM node 'lstm' is not unrolled: a "
        r"dynamic sequence length is not supported\)",
    ):
        build_gradient_model(_model([node], ("T", 1, 2), params))
    clipped = helper.make_node(
        "GRU", ["x", "W", "R"], ["y"], hidden_size=hidden, clip=1.0, name="g"
    )
    params = {"W": _w(1, 3 * hidden, 2), "R": _w(1, 3 * hidden, hidden)}
    with pytest.raises(UnsupportedGraph, match=r"GRU node 'g' is not unrolled: clip"):
        build_gradient_model(_model([clipped], (4, 1, 2), params))


# -- refusals --------------------------------------------------------------------------------
def test_unsupported_operator_is_named() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Acosh", ["r"], ["y"], name="odd"),
    ]
    with pytest.raises(UnsupportedGraph, match=r"no gradient rule for Acosh node 'odd'") as info:
        build_gradient_model(_model(nodes, (2, 3)))
    assert (info.value.op_type, info.value.node) == ("Acosh", "odd")


def test_unsupported_operator_off_the_gradient_path_is_fine() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Acosh", ["x"], ["z"])]
    model = _model(nodes, (2, 3))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.DOUBLE, None))
    _check(model, _x(2, 3), "Relu")


def test_refusals_name_the_reason() -> None:
    two = _model([helper.make_node("Add", ["x", "x2"], ["y"])], (2, 3))
    two.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.DOUBLE, [2, 3]))
    with pytest.raises(UnsupportedGraph, match=r"2 inputs \['x', 'x2'\]"):
        build_gradient_model(two)
    ints = _model(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)],
        (2, 3),
        dtype=TensorProto.INT64,
    )
    with pytest.raises(
        UnsupportedGraph, match=r"type INT64: gradients need a floating-point input"
    ):
        build_gradient_model(ints)
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o"])],
        "b",
        [],
        [helper.make_tensor_value_info("o", TensorProto.DOUBLE, None)],
    )
    cond = _model(
        [
            helper.make_node("Greater", ["x", "x"], ["c0"]),
            helper.make_node("ReduceMax", ["c0"], ["c"], keepdims=0),
            helper.make_node(
                "If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="branchy"
            ),
        ],
        (2, 3),
    )
    with pytest.raises(UnsupportedGraph, match=r"control flow: If node 'branchy'"):
        build_gradient_model(cond)
    bn = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2], storage_order=1)
    with pytest.raises(UnsupportedGraph, match=r"storage_order=1"):
        build_gradient_model(_model([bn], (1, 1, 4)))


def test_initializers_listed_as_inputs_are_constants() -> None:
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], (3, 4), {"w": _w(4, 2)})
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.DOUBLE, [4, 2]))
    _check(model, _x(3, 4), "MatMul")
    assert [i.name for i in build_gradient_model(model).graph.input] == ["x", "grad_output"]


def test_opset_9_file_is_upgraded() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["l"], transB=1),
        helper.make_node("Softmax", ["l"], ["y"]),
    ]
    params = {"w": _w(2, 1, 3, 3), "fc": _w(3, 8), "fb": _w(3)}
    model = _model(nodes, (2, 1, 4, 4), params, opset=9)
    vjp = build_gradient_model(model)
    assert vjp.opset_import[0].version == 16
    result = check_gradient_model(model, vjp, _x(2, 1, 4, 4), directions=2)
    assert result.passed, result.summary()


def test_float32_model_keeps_its_dtype() -> None:
    model = _model([helper.make_node("Sigmoid", ["x"], ["y"])], ("N", 3), dtype=TensorProto.FLOAT)
    vjp = build_gradient_model(model)
    import onnxruntime as ort

    session = ort.InferenceSession(vjp.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _x(2, 3).astype(np.float32)
    grad, y = session.run(None, {"x": x, "grad_output": np.ones_like(x)})
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, y * (1 - y), rtol=1e-6)


def test_every_rule_has_a_test() -> None:
    """Runs last (file order): every registered rule was exercised by a test above."""
    assert set(RULES) - TESTED == set(), "rules without a finite-difference test"
    assert supported_ops() == sorted(RULES)


def test_docs_table_matches_the_registry() -> None:
    """kernel/docs/onnx-autodiff.md lists exactly the registered rules (regenerate the block
    between the markers with ``neuroplex.onnx.autodiff.rules_table()``)."""
    from pathlib import Path

    from neuroplex.onnx.autodiff import rules_table

    doc = (Path(__file__).parents[2] / "kernel" / "docs" / "onnx-autodiff.md").read_text()
    block = doc.split("<!-- rules:begin -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert block == rules_table()
