"""Verification of an ONNX export against the PyTorch model it came from.

Every output is compared for batch sizes 1, 2 and an odd one (5), on random inputs and on edge
inputs (zeros and the input-range limits, or ``±1`` when no range is known). Per output the
report gives the maximum absolute error ``max|ort - torch|``, the maximum relative error
``max(|ort - torch| / max(|torch|, 1e-12))`` and, for ``(N, C)`` outputs with ``C >= 2``, the
fraction of rows whose argmax agrees (rows where PyTorch's top two scores are closer than the
tolerance are ties and not counted). A row passes when every element satisfies
``|ort - torch| <= atol + rtol * |torch|`` (NumPy's ``allclose``) and argmax agreement is 1.

Tolerances: on CPU ``atol=1e-5, rtol=1e-4``; on CUDA ``atol=1e-4, rtol=1e-3`` with TF32 off on
both sides. The gradient graph (when present) is checked against ``torch.autograd.grad``:
``max|g_ort - g_torch| <= 1e-6 * max(1, max|g_torch|)`` (CUDA: ``1e-4``; float32 rounding
grows with the gradient's scale) and signs agree on at least 99.9 % of the entries where
``|g_torch| > 1e-6``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from neuroplex.errors import ExportError
from neuroplex.onnx.results import VerificationReport, VerificationRow
from neuroplex.onnx.runtime import InputSpec, OnnxModule
from neuroplex.ranges import range_envelope
from neuroplex.torchutils import eval_mode

__all__ = [
    "GRAD_ATOL",
    "SIGN_AGREEMENT",
    "VerificationReport",
    "VerificationRow",
    "default_tolerances",
    "verify_loss_graph",
    "verify_onnx",
]

#: maximum absolute gradient error on CPU (CUDA: 1e-4)
GRAD_ATOL = 1e-6
#: minimum fraction of gradient entries (|g| > 1e-6) whose signs agree
SIGN_AGREEMENT = 0.999
_TINY = 1e-12


def default_tolerances(device: torch.device | str) -> tuple[float, float]:
    """``(atol, rtol)`` for a device: CPU ``(1e-5, 1e-4)``, CUDA ``(1e-4, 1e-3)``."""
    return (1e-4, 1e-3) if torch.device(device).type == "cuda" else (1e-5, 1e-4)


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def _make_input(
    spec: InputSpec, batch: int, case: str, rng: tuple[float, float] | None, gen: torch.Generator
) -> torch.Tensor:
    shape = tuple(batch if d is None else d for d in spec.shape)
    if not spec.dtype.is_floating_point:
        lo, hi = (int(rng[0]), int(rng[1])) if rng is not None else (0, 1)
        if case == "random":
            return torch.randint(lo, hi + 1, shape, generator=gen).to(spec.dtype)
        fill = {"zeros": 0, "min": lo, "max": hi}[case]
        return torch.full(shape, fill, dtype=spec.dtype)
    if case == "random":
        if rng is None:
            return torch.randn(shape, generator=gen).to(spec.dtype)
        u = torch.rand(shape, generator=gen)
        return (rng[0] + (rng[1] - rng[0]) * u).to(spec.dtype)
    value = {
        "zeros": 0.0,
        "ones": 1.0,
        "minus_ones": -1.0,
        "min": rng[0] if rng else 0.0,
        "max": rng[1] if rng else 0.0,
    }[case]
    return torch.full(shape, value, dtype=spec.dtype)


def _cases(specs: Sequence[InputSpec], rng: tuple[float, float] | None) -> list[str]:
    if rng is not None:
        return ["random", "zeros", "min", "max"]
    if all(s.dtype.is_floating_point for s in specs):
        return ["random", "zeros", "ones", "minus_ones"]
    return ["random", "zeros"]


def _flatten(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, list | tuple):
        return [t for item in output for t in _flatten(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in _flatten(item)]
    raise ExportError(f"cannot compare a model output of type {type(output).__name__}")


def _compare(
    ort: np.ndarray, ref: np.ndarray, atol: float, rtol: float
) -> tuple[float, float, float | None, bool]:
    if ort.shape != ref.shape:
        return float("inf"), float("inf"), None, False
    a, b = ort.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(b), _TINY)).max()) if diff.size else 0.0
    ok = bool(np.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True))
    agreement = None
    if b.ndim == 2 and b.shape[1] >= 2 and b.shape[0] > 0:
        top2 = np.sort(b, axis=1)[:, -2:]
        decisive = (top2[:, 1] - top2[:, 0]) > 2 * (atol + rtol * np.abs(top2[:, 1]))
        same = a.argmax(axis=1) == b.argmax(axis=1)
        agreement = float(same[decisive].mean()) if decisive.any() else 1.0
        ok = ok and agreement == 1.0
    return max_abs, (max_rel if np.isfinite(max_rel) else float("inf")), agreement, ok


def _grad_row(
    graph: str,
    module: OnnxModule,
    model: nn.Module,
    x: torch.Tensor,
    grad_atol: float,
    gen: torch.Generator,
) -> VerificationRow:
    model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    xt = x.to(model_device).detach().requires_grad_(True)
    with torch.enable_grad():
        y = model(xt)
        go = torch.randn(y.shape, generator=gen).to(y)
        (ref,) = torch.autograd.grad(y, xt, go, allow_unused=True)
    ref = ref if ref is not None else torch.zeros_like(xt)
    got = module.vjp(x, go.to(x.device))
    a = got.detach().cpu().double().numpy()
    b = ref.detach().cpu().double().numpy()
    # float32 rounding grows with the gradient's magnitude (a trained network's input gradients
    # reach O(1)-O(10)): the bound is grad_atol in units of scale = max(1, max|g_torch|)
    max_abs, max_rel, sign, scale = _grad_stats(a, b)
    ok = a.shape == b.shape and max_abs <= grad_atol * scale and sign >= SIGN_AGREEMENT
    return VerificationRow(
        graph=graph,
        case="gradient",
        batch=int(x.shape[0]),
        output="grad_input",
        max_abs=max_abs,
        max_rel=max_rel,
        sign_agreement=sign,
        passed=bool(ok),
    )


def verify_onnx(
    source: str | os.PathLike[str] | bytes | OnnxModule,
    model: nn.Module,
    *,
    graph: str = "model",
    batch_sizes: Sequence[int] = (1, 2, 5),
    atol: float | None = None,
    rtol: float | None = None,
    grad_atol: float | None = None,
    input_range: tuple[float, float] | None = None,
    gradients: bool = True,
    seed: int = 0,
    device: Any = "cpu",
    raise_on_failure: bool = False,
) -> VerificationReport:
    """Compare an ONNX model with the PyTorch ``model`` it was exported from.

    Args:
        source: the ``.onnx`` file (or bytes, or an already open :class:`OnnxModule`).
        model: the PyTorch module (put in eval mode for the comparison, restored after).
        graph: the graph name shown in the report.
        batch_sizes: batch sizes to test (a graph with a fixed batch is tested at that one).
        atol, rtol: forward tolerances (default: :func:`default_tolerances` of the device).
        grad_atol: gradient tolerance (default ``1e-6`` on CPU, ``1e-4`` on CUDA).
        input_range: ``(min, max)`` for random and edge inputs (default: the file's metadata).
        gradients: also check the VJP graph when the module has one.
        seed: seeds the random inputs.
        device: where ONNX Runtime runs (``"cpu"`` default, ``"cuda"``).
        raise_on_failure: raise :class:`ExportError` carrying the table instead of returning.

    Returns:
        a :class:`VerificationReport` (``passed`` says whether every row is in tolerance).
    """
    module = source if isinstance(source, OnnxModule) else OnnxModule(source, device=device)
    what = str(getattr(module, "_source", None) or "<bytes>")
    d_atol, d_rtol = default_tolerances(module.device)
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    if grad_atol is None:
        grad_atol = 1e-4 if module.device.type == "cuda" else GRAD_ATOL
    rng = range_envelope(input_range if input_range is not None else module.input_range)
    gen = torch.Generator().manual_seed(seed)
    fixed = {s.shape[0] for s in module.input_specs if s.shape and s.shape[0] is not None}
    batches = sorted(fixed) if fixed else list(batch_sizes)
    model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows: list[VerificationRow] = []
    with eval_mode(model, freeze=False):
        with _no_tf32(), torch.no_grad():
            for case in _cases(module.input_specs, rng):
                for batch in batches:
                    inputs = [_make_input(s, batch, case, rng, gen) for s in module.input_specs]
                    ref = _flatten(model(*[t.to(model_device) for t in inputs]))
                    got = _flatten(module(*inputs))
                    if len(ref) != len(got):
                        raise ExportError(
                            f"{what}: the ONNX graph has {len(got)} outputs, the PyTorch model "
                            f"{len(ref)}"
                        )
                    for name, o, r in zip(module.output_names, got, ref, strict=True):
                        max_abs, max_rel, agree, ok = _compare(
                            o.cpu().numpy(), r.detach().cpu().numpy(), atol, rtol
                        )
                        rows.append(
                            VerificationRow(
                                graph=graph,
                                case=case,
                                batch=batch,
                                output=name,
                                max_abs=max_abs,
                                max_rel=max_rel,
                                argmax_agreement=agree,
                                passed=ok,
                            )
                        )
        if gradients and module.tier == "gradients":
            with _no_tf32():
                for batch in batches if not fixed else [1, *batches]:
                    x = _make_input(module.input_specs[0], batch, "random", rng, gen)
                    rows.append(_grad_row(graph, module, model, x, grad_atol, gen))
    report = VerificationReport(
        source=what,
        rows=tuple(rows),
        atol=atol,
        rtol=rtol,
        grad_atol=grad_atol,
        device=str(module.device),
        providers=tuple(module.providers),
    )
    if raise_on_failure and not report.passed:
        raise ExportError(f"ONNX verification failed:\n{report.to_markdown()}")
    return report


def _grad_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """max abs, max rel, sign agreement and scale (``max(1, max|b|)``) of a gradient."""
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(b), _TINY)).max()) if diff.size else 0.0
    significant = np.abs(b) > 1e-6
    sign = (
        float((np.sign(a[significant]) == np.sign(b[significant])).mean())
        if significant.any()
        else 1.0
    )
    scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
    return max_abs, max_rel, sign, scale


def verify_loss_graph(
    module: OnnxModule,
    model: nn.Module,
    loss: str,
    *,
    graph: str = "model",
    batch_sizes: Sequence[int] = (2, 5),
    input_range: tuple[float, float] | None = None,
    seed: int = 0,
) -> list[VerificationRow]:
    """Compare the fused ``loss`` graph of ``module`` with autograd on ``model``.

    Per batch size, rows for ``output`` and ``loss`` (forward tolerances of the device) and
    ``grad_input`` (the gradient bound and sign agreement of :func:`verify_onnx`); the case is
    ``loss-<name>``. Random inputs (in ``input_range`` when given) and random labels.
    """
    from neuroplex.onnx._losses import LOSSES, example_labels

    spec = LOSSES[loss]
    atol, rtol = default_tolerances(module.device)
    grad_atol = 1e-4 if module.device.type == "cuda" else GRAD_ATOL
    rng = range_envelope(input_range if input_range is not None else module.input_range)
    gen = torch.Generator().manual_seed(seed)
    model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows: list[VerificationRow] = []
    case = f"loss-{loss}"
    with _no_tf32():
        for batch in batch_sizes:
            x = _make_input(module.input_specs[0], batch, "random", rng, gen)
            xt = x.to(model_device).requires_grad_(True)
            with torch.enable_grad():
                out = model(xt)
                labels = example_labels(spec, out.detach().cpu())
                value = spec.fn(out, *[t.to(model_device) for t in labels])
                (grad,) = torch.autograd.grad(value.sum(), xt, allow_unused=True)
            grad = grad if grad is not None else torch.zeros_like(xt)
            got = module.loss_and_grad(x, *labels, loss=loss)
            for name, o, r in (("output", got.output, out), ("loss", got.loss, value)):
                max_abs, max_rel, agree, ok = _compare(
                    o.detach().cpu().numpy(), r.detach().cpu().numpy(), atol, rtol
                )
                rows.append(
                    VerificationRow(
                        graph=graph,
                        case=case,
                        batch=batch,
                        output=name,
                        max_abs=max_abs,
                        max_rel=max_rel,
                        argmax_agreement=agree,
                        passed=ok,
                    )
                )
            a = got.grad.detach().cpu().double().numpy()
            b = grad.detach().cpu().double().numpy()
            max_abs, max_rel, sign, scale = _grad_stats(a, b)
            ok = a.shape == b.shape and max_abs <= grad_atol * scale and sign >= SIGN_AGREEMENT
            rows.append(
                VerificationRow(
                    graph=graph,
                    case=case,
                    batch=batch,
                    output="grad_input",
                    max_abs=max_abs,
                    max_rel=max_rel,
                    sign_agreement=sign,
                    passed=bool(ok),
                )
            )
    return rows
