"""Adversarial attacks and input noise, batched, in the model's input units.

Every function takes a model returning logits ``(N, C)``, inputs ``x`` of shape ``(N, ...)``
inside ``input_range`` and labels ``y`` of shape ``(N,)``, and returns ``x_adv`` of ``x``'s
shape, clipped to ``input_range``. Gradient attacks maximise the mean cross-entropy of the
logits (like torchattacks and ``captum.robust.FGSM`` with a cross-entropy loss); the caller
puts the model in eval mode (see :class:`~neuroplex_attacks.AdversarialTester`). No Python loop
runs over samples; loops run over steps only.

=================  =========  =====================================================
attack             norm       ``epsilon`` means
=================  =========  =====================================================
``fgsm``           linf       step size and L∞ bound (one signed-gradient step)
``pgd``            linf       L∞ bound; ``steps`` steps of ``alpha``, random start
``pgd_l2``         l2         per-sample L2 bound; normalised-gradient steps
``apgd_ce``        linf, l2   Auto-PGD on the cross-entropy (:mod:`.apgd`)
``apgd_dlr``       linf, l2   Auto-PGD on the DLR loss
``apgd_t``         linf, l2   Auto-PGD on the targeted DLR loss, top-9 targets
``fab_t``          linf, l2   targeted FAB, minimal-norm (:mod:`.fab`)
``square``         linf, l2   black-box random search, no gradients (:mod:`.square`)
``autoattack``     linf, l2   the AutoAttack ensemble (:mod:`.autoattack`)
``gaussian_noise`` gaussian   standard deviation of i.i.d. normal noise (no bound)
``uniform_noise``  linf       half-width of i.i.d. uniform noise in [−ε, ε]
=================  =========  =====================================================

The attacks with a ``norm`` option (``"linf"`` or ``"l2"``) default to ``"linf"``; the
:data:`ATTACK_NORMS` entry is that default.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F

from neuroplex.analysis.backend import fused_loss_gradient
from neuroplex.ranges import Bounds, clip
from neuroplex_attacks.apgd import apgd_ce, apgd_dlr, apgd_t
from neuroplex_attacks.autoattack import autoattack
from neuroplex_attacks.fab import fab_t
from neuroplex_attacks.square import square

__all__ = [
    "ATTACKS",
    "ATTACK_NORMS",
    "GRADIENT_ATTACKS",
    "NORM_ATTACKS",
    "apgd_ce",
    "apgd_dlr",
    "apgd_t",
    "attack_parameters",
    "autoattack",
    "fab_t",
    "fgsm",
    "gaussian_noise",
    "margin",
    "pgd",
    "pgd_l2",
    "square",
    "uniform_noise",
]

#: the clip bounds: two numbers, or per-channel tensors of the input's per-sample shape
Range = Bounds


def _generator(x: torch.Tensor, seed: int) -> torch.Generator:
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    return gen


def _loss_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the mean cross-entropy w.r.t. ``x`` (shape of ``x``).

    An ONNX model with a fused cross-entropy graph answers in one ONNX Runtime call (forward,
    loss and backward together); any other model goes through autograd.
    """
    fused = fused_loss_gradient(model, "ce", x, y)
    if fused is not None:
        return fused / x.shape[0]
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
) -> torch.Tensor:
    """Fast gradient sign method: ``clip(x + ε · sign(∇x CE(f(x), y)))``."""
    grad = _loss_gradient(model, x, y)
    with torch.no_grad():
        return clip(x + epsilon * grad.sign(), *input_range)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    steps: int = 10,
    alpha: float | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient descent in the L∞ ball (Madry et al.), untargeted.

    Starts at ``x`` (or, with ``random_start``, at ``x + U(−ε, ε)`` seeded by ``seed``), then
    ``steps`` times: ``x ← clip(x₀ + clamp(x + α · sign(∇) − x₀, −ε, ε))`` (computed as one
    clamp between precomputed bounds: equal up to float rounding). ``alpha`` defaults
    to ``2.5 ε / steps``.
    """
    alpha = 2.5 * epsilon / steps if alpha is None else alpha
    x0 = x.detach()
    lo, hi = input_range
    with torch.no_grad():
        # clip(x0 + clamp(a − x0, −ε, ε)) == clamp(a, max(x0 − ε, lo), min(x0 + ε, hi))
        lower = torch.clamp(x0 - epsilon, min=lo)
        upper = torch.clamp(x0 + epsilon, max=hi)
        adv = x0.clone()
        if random_start:
            noise = torch.empty_like(x0).uniform_(-epsilon, epsilon, generator=_generator(x0, seed))
            adv = clip(adv + noise, lo, hi)
    for _ in range(steps):
        grad = _loss_gradient(model, adv, y)
        with torch.no_grad():
            adv = torch.clamp(adv.add_(grad.sign_(), alpha=alpha), lower, upper)
    return adv


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped ``(N, 1, ..., 1)`` for broadcasting."""
    flat = t.reshape(t.shape[0], -1).norm(p=2, dim=1)
    shaped: torch.Tensor = flat.view(-1, *([1] * (t.ndim - 1)))
    return shaped


def pgd_l2(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    steps: int = 10,
    alpha: float | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient descent in the per-sample L2 ball.

    Steps ``x ← x + α ∇/‖∇‖₂``, then the perturbation is scaled back into the ε-ball and the
    result clipped to ``input_range`` (clipping only shrinks the perturbation). The random
    start is a uniformly random direction at radius ``ε · U(0, 1)``. ``alpha`` defaults to
    ``2.5 ε / steps``.
    """
    alpha = 2.5 * epsilon / steps if alpha is None else alpha
    x0 = x.detach()
    tiny = torch.finfo(x0.dtype).tiny
    with torch.no_grad():
        adv = x0.clone()
        if random_start:
            gen = _generator(x0, seed)
            direction = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
            radius = torch.rand(
                (x0.shape[0],), generator=gen, device=x0.device, dtype=x0.dtype
            ).view_as(_l2(x0))
            direction = direction / _l2(direction).clamp_min(tiny)
            adv = clip(x0 + direction * radius * epsilon, *input_range)
    for _ in range(steps):
        grad = _loss_gradient(model, adv, y)
        with torch.no_grad():
            adv = adv + alpha * grad / _l2(grad).clamp_min(tiny)
            delta = adv - x0
            scale = (epsilon / _l2(delta).clamp_min(tiny)).clamp(max=1.0)
            adv = clip(x0 + delta * scale, *input_range)
    return adv


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``logit[y] − max_{j≠y} logit[j]`` per sample; negative means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


def gaussian_noise(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    """``clip(x + ε · N(0, 1))``, seeded (``epsilon`` is the standard deviation)."""
    noise = torch.randn(x.shape, generator=_generator(x, seed), device=x.device, dtype=x.dtype)
    return clip(x.detach() + epsilon * noise, *input_range)


def uniform_noise(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    """``clip(x + U(−ε, ε))``, seeded."""
    noise = torch.empty_like(x).uniform_(-epsilon, epsilon, generator=_generator(x, seed))
    return clip(x.detach() + noise, *input_range)


Attack = Callable[..., torch.Tensor]

ATTACKS: dict[str, Attack] = {
    "fgsm": fgsm,
    "pgd": pgd,
    "pgd_l2": pgd_l2,
    "apgd_ce": apgd_ce,
    "apgd_dlr": apgd_dlr,
    "apgd_t": apgd_t,
    "fab_t": fab_t,
    "square": square,
    "autoattack": autoattack,
    "gaussian_noise": gaussian_noise,
    "uniform_noise": uniform_noise,
}

#: the norm that bounds each attack's perturbation by ``epsilon`` ("gaussian": unbounded)
ATTACK_NORMS: dict[str, str] = {
    "fgsm": "linf",
    "pgd": "linf",
    "pgd_l2": "l2",
    "apgd_ce": "linf",
    "apgd_dlr": "linf",
    "apgd_t": "linf",
    "fab_t": "linf",
    "square": "linf",
    "autoattack": "linf",
    "gaussian_noise": "gaussian",
    "uniform_noise": "linf",
}

#: attacks that need gradients of the model (ONNX: an exported VJP graph)
GRADIENT_ATTACKS = frozenset({"fgsm", "pgd", "pgd_l2", "apgd_ce", "apgd_dlr", "apgd_t", "fab_t"})

#: attacks whose ``norm`` option ("linf" or "l2") picks the threat model
NORM_ATTACKS = frozenset({"apgd_ce", "apgd_dlr", "apgd_t", "fab_t", "square", "autoattack"})


@functools.cache
def attack_parameters(name: str) -> tuple[str, ...]:
    """Keyword arguments attack ``name`` accepts beyond ``epsilon`` and ``input_range``."""
    params = inspect.signature(ATTACKS[name]).parameters
    return tuple(p for p in params if p not in ("model", "x", "y", "epsilon", "input_range"))
