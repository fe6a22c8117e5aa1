"""Input attributions of a classifier's target score.

Gradient methods (saliency, input × gradient, integrated gradients) are written here, batched
(all integration points of a batch in one or a few forward/backward passes); they need
gradients, so on ONNX they run through the ``OnnxModule``'s exported VJP graph (tier
``"gradients"``). Perturbation methods (occlusion, feature ablation) use Captum and need only
forward passes, so they run on any ONNX file.

The explained score is ``out[i, target_i]`` of the raw model output (logits); ``target``
defaults to the labels when given, else to the predicted class.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from neuroplex.analysis.backend import (
    ResolvedModel,
    eval_mode,
    fused_loss_gradient,
    require_gradients,
)
from neuroplex.analysis.inputs import as_inputs, as_labels, check_logits, to_python
from neuroplex.errors import ConfigError

__all__ = [
    "ATTRIBUTION_METHODS",
    "Attribution",
    "attribute",
    "check_options",
    "method_options",
    "feature_ablation",
    "input_x_gradient",
    "integrated_gradients",
    "occlusion",
    "saliency",
]

#: default integrated-gradients chunk: this many input values per forward/backward pass
_CHUNK_ELEMENTS = 2**18

IG_METHODS = (
    "gausslegendre",
    "riemann_trapezoid",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
)


@attrs.frozen(kw_only=True)
class Attribution:
    """Attributions of one batch.

    Attributes:
        method: e.g. ``"integrated_gradients"``.
        attributions: tensor of the input's shape ``(N, ...)``; entry ``[i, ...]`` is the
            contribution of that input feature to ``out[i, target[i]]``.
        target: the explained class per sample.
        convergence_delta: integrated gradients only: per sample
            ``sum(attributions[i]) − (out[i, t] − out_baseline[i, t])`` (completeness error,
            shrinks as ``n_steps`` grows), else ``None``.
        params: the method's settings.
        backend, tier: the engine that produced it.
    """

    method: str
    attributions: torch.Tensor = attrs.field(eq=False)
    target: tuple[int, ...]
    convergence_delta: tuple[float, ...] | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    backend: str = "torch"
    tier: str = "torch"

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html``: attribution maps of up to 16 samples, drawn as
        images when a sample is an image or a flat square (e.g. 64 = 8x8 features)."""
        maps = self.attributions.detach().abs().float().cpu()[:16]
        if maps.ndim == 4 and maps.shape[1] in (1, 3):
            maps = maps.mean(dim=1)
        elif maps.ndim == 2:
            side = round(maps.shape[1] ** 0.5)
            if side * side != maps.shape[1]:
                return []
            maps = maps.reshape(len(maps), side, side)
        if maps.ndim != 3:
            return []
        labels = [f"class {t}" for t in self.target[: len(maps)]]
        return [
            {
                "type": "images",
                "title": f"{self.method} maps ({self.backend}/{self.tier})",
                "data": maps.numpy(),
                "labels": labels,
                "cmap": "viridis",
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "attributions": to_python(self.attributions),
            "target": list(self.target),
            "convergence_delta": (
                list(self.convergence_delta) if self.convergence_delta is not None else None
            ),
            "params": to_python(self.params),
            "backend": self.backend,
            "tier": self.tier,
        }


def _targets(resolved: ResolvedModel, x: torch.Tensor, target: Any) -> torch.Tensor:
    with torch.no_grad():
        out = check_logits(resolved.module(x))
    n, n_classes = int(out.shape[0]), int(out.shape[1])
    if target is None:
        return out.argmax(dim=1)
    if isinstance(target, int):
        target = [target] * n
    return as_labels(target, n, n_classes, device=x.device)


def _score_gradients(
    module: torch.nn.Module, x: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """d out[i, target_i] / d x[i], shape of ``x`` (samples are independent in eval mode);
    one ONNX Runtime call when the ONNX model has a fused ``selected`` loss graph."""
    fused = fused_loss_gradient(module, "selected", x, target)
    if fused is not None:
        return fused
    x = x.detach().requires_grad_(True)
    out = check_logits(module(x))
    score = out.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad


def _baseline(x: torch.Tensor, baseline: Any) -> torch.Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, int | float):
        return torch.full_like(x, float(baseline))
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(b, x.shape).clone()
    except RuntimeError as exc:
        raise ConfigError(
            f"baseline of shape {tuple(b.shape)} does not broadcast to the input shape "
            f"{tuple(x.shape)}",
            path="baseline",
        ) from exc


def _result(
    resolved: ResolvedModel,
    method: str,
    attr: torch.Tensor,
    target: torch.Tensor,
    params: dict[str, Any],
    delta: torch.Tensor | None = None,
) -> Attribution:
    return Attribution(
        method=method,
        attributions=attr.detach(),
        target=tuple(int(t) for t in target.tolist()),
        convergence_delta=tuple(float(d) for d in delta.tolist()) if delta is not None else None,
        params={**params, "model_output": resolved.output_note} if resolved.output_note else params,
        backend=resolved.backend,
        tier=resolved.tier,
    )


def saliency(
    resolved: ResolvedModel, x: Any, target: Any = None, *, abs: bool = True
) -> Attribution:
    """Gradient of the target score w.r.t. the input (absolute value with ``abs=True``).

    Same definition as ``captum.attr.Saliency``.
    """
    require_gradients(resolved, "saliency")
    x = as_inputs(x, resolved.device)
    with eval_mode(resolved.module):
        t = _targets(resolved, x, target)
        grad = _score_gradients(resolved.module, x, t)
    return _result(resolved, "saliency", grad.abs() if abs else grad, t, {"abs": abs})


def input_x_gradient(resolved: ResolvedModel, x: Any, target: Any = None) -> Attribution:
    """Input times the gradient of the target score (``captum.attr.InputXGradient``)."""
    require_gradients(resolved, "input_x_gradient")
    x = as_inputs(x, resolved.device)
    with eval_mode(resolved.module):
        t = _targets(resolved, x, target)
        grad = _score_gradients(resolved.module, x, t)
    return _result(resolved, "input_x_gradient", x * grad, t, {})


def _quadrature(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of the integral over [0, 1]; Captum's conventions."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if n_steps < 2:
        raise ConfigError(f"{method} needs n_steps >= 2, got {n_steps}", path="n_steps")
    weights = np.full(n_steps, 1.0 / n_steps)
    kind = method.split("_")[1]
    if kind == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0, 1, n_steps), weights
    starts = {"left": (0.0, 1 - 1 / n_steps), "right": (1 / n_steps, 1.0)}
    lo, hi = starts.get(kind, (1 / (2 * n_steps), 1 - 1 / (2 * n_steps)))
    return np.linspace(lo, hi, n_steps), weights


def integrated_gradients(
    resolved: ResolvedModel,
    x: Any,
    target: Any = None,
    *,
    baseline: Any = None,
    n_steps: int = 50,
    integration_method: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> Attribution:
    """Integrated gradients from ``baseline`` (default zeros) to ``x``.

    ``attr = (x − b) · Σ_k w_k ∇ out_t(b + α_k (x − b))`` with quadrature nodes ``α_k`` and
    weights ``w_k`` of ``integration_method`` (Captum's ``method``: ``gausslegendre`` or
    ``riemann_*``). All
    ``n_steps × N`` points are evaluated in chunks of ``internal_batch_size`` rows (default:
    about 2**18 input values per chunk, which keeps activations cache-sized: 2–3× faster than one
    huge pass on a small CNN). ``convergence_delta`` is the completeness error (see
    :class:`Attribution`).
    """
    require_gradients(resolved, "integrated_gradients")
    method = integration_method
    if method not in IG_METHODS:
        raise ConfigError(
            f"unknown integration_method {method!r}; choose one of {IG_METHODS}",
            path="integration_method",
        )
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be a positive int, got {n_steps!r}", path="n_steps")
    x = as_inputs(x, resolved.device)
    b = _baseline(x, baseline)
    n = int(x.shape[0])
    alphas_np, weights_np = _quadrature(method, n_steps)
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
    bshape = (n_steps, 1) + (1,) * (x.ndim - 1)
    with eval_mode(resolved.module):
        t = _targets(resolved, x, target)
        diff = x - b
        points = (b.unsqueeze(0) + alphas.view(bshape) * diff.unsqueeze(0)).reshape(
            n_steps * n, *x.shape[1:]
        )
        targets = t.repeat(n_steps)
        chunk = internal_batch_size or max(1, _CHUNK_ELEMENTS // max(1, x[0].numel()))
        grads = torch.cat(
            [
                _score_gradients(resolved.module, points[i : i + chunk], targets[i : i + chunk])
                for i in range(0, points.shape[0], chunk)
            ]
        )
        total = (grads.view(n_steps, n, *x.shape[1:]) * weights.view(bshape)).sum(dim=0)
        attr = total * diff
        with torch.no_grad():
            ends = check_logits(resolved.module(torch.cat([x, b])))
            scores = ends.gather(1, torch.cat([t, t])[:, None]).squeeze(1)
        delta = attr.reshape(n, -1).sum(dim=1) - (scores[:n] - scores[n:])
    params = {
        "n_steps": n_steps,
        "method": method,
        "baseline": "zeros" if baseline is None else "given",
    }
    return _result(resolved, "integrated_gradients", attr, t, params, delta)


def _forward(resolved: ResolvedModel) -> Any:
    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return check_logits(resolved.module(inputs))

    return forward


def occlusion(
    resolved: ResolvedModel,
    x: Any,
    target: Any = None,
    *,
    sliding_window_shapes: Sequence[int] | None = None,
    strides: int | Sequence[int] | None = None,
    baseline: float = 0.0,
    perturbations_per_eval: int = 16,
) -> Attribution:
    """Occlusion (``captum.attr.Occlusion``): score change when a sliding window of the input
    is replaced by ``baseline``. Default window: one element (shape of ones over ``x.shape[1:]``).
    Forward passes only: works on any ONNX file."""
    from captum.attr import Occlusion

    x = as_inputs(x, resolved.device)
    window = tuple(sliding_window_shapes or (1,) * (x.ndim - 1))
    if len(window) != x.ndim - 1:
        raise ConfigError(
            f"sliding_window_shapes {window} must have one entry per input dimension "
            f"(input sample shape {tuple(x.shape[1:])})",
            path="sliding_window_shapes",
        )
    with eval_mode(resolved.module), torch.no_grad():
        t = _targets(resolved, x, target)
        attr = Occlusion(_forward(resolved)).attribute(
            x,
            sliding_window_shapes=window,
            strides=strides,
            baselines=baseline,
            target=t,
            perturbations_per_eval=perturbations_per_eval,
        )
    params = {"sliding_window_shapes": list(window), "baseline": baseline}
    return _result(resolved, "occlusion", attr, t, params)


def feature_ablation(
    resolved: ResolvedModel,
    x: Any,
    target: Any = None,
    *,
    feature_mask: Any = None,
    baseline: float = 0.0,
    perturbations_per_eval: int = 16,
) -> Attribution:
    """Feature ablation (``captum.attr.FeatureAblation``): score change when each feature (or
    each group of ``feature_mask``, ints of the input's shape) is replaced by ``baseline``.
    Forward passes only: works on any ONNX file."""
    from captum.attr import FeatureAblation

    x = as_inputs(x, resolved.device)
    mask = None
    if feature_mask is not None:
        mask = torch.as_tensor(feature_mask, device=x.device).long()
    with eval_mode(resolved.module), torch.no_grad():
        t = _targets(resolved, x, target)
        attr = FeatureAblation(_forward(resolved)).attribute(
            x,
            target=t,
            baselines=baseline,
            feature_mask=mask,
            perturbations_per_eval=perturbations_per_eval,
        )
    params = {"baseline": baseline, "feature_mask": feature_mask is not None}
    return _result(resolved, "feature_ablation", attr, t, params)


ATTRIBUTION_METHODS = {
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
    "occlusion": occlusion,
    "feature_ablation": feature_ablation,
}


def method_options(method: str) -> tuple[str, ...]:
    """The keyword options of attribution ``method`` (raises ConfigError if unknown)."""
    fn = _method(method)
    params = inspect.signature(fn).parameters
    return tuple(p for p in params if p not in ("resolved", "x", "target"))


def _method(method: str) -> Any:
    key = method.strip().lower().replace("-", "_") if isinstance(method, str) else method
    fn = ATTRIBUTION_METHODS.get(key)
    if fn is None:
        raise ConfigError(
            f"unknown attribution method {method!r}; choose one of {sorted(ATTRIBUTION_METHODS)}",
            path="method",
        )
    return fn


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise a ConfigError naming options that ``method`` does not take."""
    valid = method_options(method)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"{method} does not take {unknown}; its options are {', '.join(valid) or 'none'}",
            path=unknown[0],
        )


def attribute(
    resolved: ResolvedModel, x: Any, target: Any = None, *, method: str, **kwargs: Any
) -> Attribution:
    """Dispatch to one of :data:`ATTRIBUTION_METHODS` by name."""
    check_options(method, kwargs)
    result: Attribution = _method(method)(resolved, x, target, **kwargs)
    return result
