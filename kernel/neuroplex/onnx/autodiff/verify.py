"""Checking a gradient model against central finite differences in float64.

For random directions ``u`` (input) and ``v`` (output), the VJP must satisfy

    ⟨vjp(x, v), u⟩ ≈ (⟨v, f(x + εu)⟩ - ⟨v, f(x - εu)⟩) / (2ε)

Both models are converted to float64 (initializers, ``Constant``/``ConstantOfShape`` values and
``Cast`` targets) and run by ONNX Runtime, or by ``onnx.reference`` where ORT has no float64
kernel (ORT's CPU Conv/ConvTranspose are float32 only); when neither runs the graph in float64,
ORT runs it in float32 with ``ε = 3e-3``, ``atol ≥ 1e-4`` and ``rtol ≥ 1e-3`` (the table says
which runner was used). A direction passes when
``|analytic - numeric| <= atol + rtol·max(|analytic|, |numeric|)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

__all__ = ["GradientCheck", "GradientCheckRow", "check_gradient_model", "to_float64"]

#: finite-difference step and tolerances (float64, central differences: error ~ ε²)
EPSILON = 1e-6
ATOL = 1e-6
RTOL = 1e-5
#: the step when a graph only runs in float32 (then atol ≥ 1e-4, rtol ≥ 1e-3)
FLOAT32_EPSILON = 3e-3

_FLOAT, _DOUBLE = 1, 11


@attrs.frozen
class GradientCheckRow:
    """One random direction: ``analytic = ⟨vjp, u⟩``, ``numeric`` its finite difference."""

    direction: int
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    passed: bool


@attrs.frozen
class GradientCheck:
    """The tolerance table of one gradient model (``passed`` when every row passed)."""

    rows: tuple[GradientCheckRow, ...]
    atol: float
    rtol: float
    epsilon: float
    runner: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def summary(self) -> str:
        worst = max((r.rel_error for r in self.rows), default=0.0)
        state = "passed" if self.passed else "FAILED"
        return (
            f"finite differences {state}: {len(self.rows)} directions, worst relative error "
            f"{worst:.2e} (atol {self.atol:g}, rtol {self.rtol:g}, ε {self.epsilon:g}, "
            f"{self.runner})"
        )


def _retype_tensor(tensor: Any, src: int, dst: int) -> None:
    import onnx

    if tensor.data_type == src:
        array = onnx.numpy_helper.to_array(tensor)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(dst)
        tensor.CopyFrom(onnx.numpy_helper.from_array(array.astype(dtype), tensor.name))


def _retyped(model: Any, src: int, dst: int) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    del graph.value_info[:]
    for init in graph.initializer:
        _retype_tensor(init, src, dst)
    for info in (*graph.input, *graph.output):
        if info.type.tensor_type.elem_type == src:
            info.type.tensor_type.elem_type = dst
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                _retype_tensor(a.t, src, dst)
            elif a.name == "to" and node.op_type == "Cast" and a.i == src:
                a.i = dst
    return m


def to_float64(model: Any) -> Any:
    """A copy of ``model`` with every float32 tensor, input, output and cast made float64."""
    return _retyped(model, _FLOAT, _DOUBLE)


def check_gradient_model(
    forward: Any,
    vjp: Any,
    x: np.ndarray,
    *,
    directions: int = 3,
    seed: int = 0,
    epsilon: float = EPSILON,
    atol: float = ATOL,
    rtol: float = RTOL,
    output_index: int = 0,
    reference: bool = True,
) -> GradientCheck:
    """Compare ``vjp`` with central finite differences of ``forward`` at ``x``.

    Args:
        forward, vjp: ``onnx.ModelProto`` (any float type; both are run in float64).
        x: the point (its dtype is ignored; float64 is used).
        directions: how many random ``(u, v)`` pairs.
        reference: fall back to ``onnx.reference`` in float64 where ORT has no float64
            kernel (exact but slow: small graphs); ``False`` goes straight to ORT float32.
    """
    x64 = np.asarray(x, dtype=np.float64)
    fwd, grad_model = to_float64(forward), to_float64(vjp)
    dtype: Any = np.float64
    x_name, g_name = _input_name(fwd), grad_model.graph.input[1].name
    try:
        run_f, how = _runner_for(fwd, {x_name: x64}, reference)
        y0 = run_f({x_name: x64})[output_index]
        run_g, how_g = _runner_for(grad_model, {x_name: x64, g_name: np.zeros_like(y0)}, reference)
    except Exception:  # neither runs the graph in float64: ORT in float32, looser tolerances
        fwd, dtype = _retyped(forward, _DOUBLE, _FLOAT), np.float32
        grad_model = _retyped(vjp, _DOUBLE, _FLOAT)
        epsilon, atol, rtol = max(epsilon, FLOAT32_EPSILON), max(atol, 1e-4), max(rtol, 1e-3)
        x64 = x64.astype(dtype)
        run_f, how = _runner_for(fwd, {x_name: x64})
        y0 = run_f({x_name: x64})[output_index]
        run_g, how_g = _runner_for(grad_model, {x_name: x64, g_name: np.zeros_like(y0)})
        how, how_g = f"{how} float32", f"{how_g} float32"
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(directions):
        v = rng.standard_normal(y0.shape).astype(dtype)
        u = rng.standard_normal(x64.shape).astype(dtype)
        grad = run_g({x_name: x64, g_name: v})[0]
        analytic = float(np.sum(grad * u))
        plus = float(np.sum(v * run_f({x_name: x64 + epsilon * u})[output_index]))
        minus = float(np.sum(v * run_f({x_name: x64 - epsilon * u})[output_index]))
        numeric = (plus - minus) / (2 * epsilon)
        err = abs(analytic - numeric)
        scale = max(abs(analytic), abs(numeric))
        rows.append(
            GradientCheckRow(
                k, analytic, numeric, err, err / max(scale, 1e-300), err <= atol + rtol * scale
            )
        )
    runner = how if how == how_g else f"{how} / {how_g}"
    return GradientCheck(tuple(rows), atol, rtol, epsilon, runner)


def _float64_ops() -> list[Any]:
    """``Erf`` and ``Gelu`` for ``onnx.reference`` in the input's precision (its own round
    to float32, which ruins a float64 finite difference), and correct ``LRN`` and grouped
    ``ConvTranspose``."""
    import math

    from onnx.reference.op_run import OpRun

    erf = np.vectorize(math.erf, otypes=[np.float64])

    class Erf(OpRun):
        op_domain = ""

        def _run(self, x: np.ndarray) -> tuple[np.ndarray]:
            return (erf(x).astype(x.dtype),)

    class Gelu(OpRun):
        op_domain = ""

        def _run(self, x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray]:
            if approximate == "tanh":
                inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
                return ((0.5 * x * (1 + np.tanh(inner))).astype(x.dtype),)
            return ((0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype),)

    class LRN(OpRun):  # onnx.reference loops over the batch instead of the channels
        op_domain = ""

        def _run(
            self,
            x: np.ndarray,
            alpha: float = 1e-4,
            beta: float = 0.75,
            bias: float = 1.0,
            size: int = 1,
        ) -> tuple[np.ndarray]:
            low, high = (size - 1) // 2, size - 1 - (size - 1) // 2
            squares = np.zeros_like(x)
            for c in range(x.shape[1]):
                window = x[:, max(0, c - low) : min(x.shape[1], c + high + 1)]
                squares[:, c] = np.sum(window**2, axis=1)
            return ((x / (bias + alpha / size * squares) ** beta).astype(x.dtype),)

    from onnx.reference.ops.op_conv_transpose import ConvTranspose as _ConvTranspose

    class ConvTranspose(_ConvTranspose):  # onnx.reference mixes up the groups' channels
        op_domain = ""

        def _run(  # type: ignore[override]
            self, x: np.ndarray, w: np.ndarray, b: Any = None, **attrs: Any
        ) -> Any:
            run: Any = super()._run
            group = int(attrs.pop("group", None) or 1)
            if group == 1:
                return run(x, w, b, group=1, **attrs)
            xs, ws = np.split(x, group, axis=1), np.split(w, group, axis=0)
            parts = [run(xg, wg, None, group=1, **attrs)[0] for xg, wg in zip(xs, ws, strict=True)]
            out = np.concatenate(parts, axis=1)
            if b is not None:
                out = out + b.reshape(1, -1, *([1] * (out.ndim - 2)))
            return (out.astype(x.dtype),)

    return [Erf, Gelu, LRN, ConvTranspose]


def _input_name(model: Any) -> str:
    initializers = {t.name for t in model.graph.initializer}
    return str(next(i.name for i in model.graph.input if i.name not in initializers))


def _runner_for(
    model: Any, feed: dict[str, np.ndarray], reference: bool = True
) -> tuple[Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]], str]:
    """ORT in float64, else ``onnx.reference`` (float64), checked on ``feed`` before use."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        session.run(None, feed)
        return (lambda f: session.run(None, f)), "onnxruntime"
    except Exception:  # no float64 kernel in ORT (Conv, ConvTranspose, Erf)
        if not reference:
            raise
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(model, new_ops=_float64_ops())
        ref.run(None, feed)
        return (lambda f: list(ref.run(None, f))), "onnx.reference"
