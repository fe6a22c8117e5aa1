"""Targeted FAB (Croce & Hein, ICML 2020, "fast adaptive boundary"), L∞ and L2.

FAB looks for the adversarial example of smallest norm; a point counts as broken when the one
it finds lies within ``epsilon``. For a target class ``t`` it repeats ``n_iter`` times, for the
whole batch at once:

1. linearise ``g(z) = z_t(z) − z_y(z)`` at the current iterate ``x_k`` (one forward and one
   backward pass) and project both ``x_k`` and the original ``x₀`` onto the hyperplane
   ``g(x_k) + ∇g·(z − x_k) = 0`` inside the box ``input_range`` (the minimal-norm steps ``d_k``
   and ``d₀``, solved exactly: see :func:`box_projection`);
2. step to ``(1 − α)(x_k + η d_k) + α (x₀ + η d₀)``, clipped to the box, with the bias towards
   the original ``α = min(‖d_k‖ / (‖d_k‖ + ‖d₀‖), α_max)`` and the overshoot ``η``;
3. if that point is misclassified, remember it when it is the closest so far, and move back
   towards the original: ``x_{k+1} = x₀ + β (x_{k+1} − x₀)``.

The first run starts at ``x₀``; further restarts start at a random point at half the distance of
the best example found (at most ``ε/2``). Targets are the classes the clean logits rank 2nd to
``n_target_classes + 1``-th, each tried on the points no earlier target broke.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neuroplex.ranges import Bounds, clip

__all__ = ["box_projection", "fab_t"]

#: the clip bounds: two numbers, or per-channel tensors of the input's per-sample shape
Range = Bounds
_TINY = 1e-12


def _norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    flat = t.reshape(t.shape[0], -1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


def _flat_bounds(bounds: Range) -> Range:
    """Per-channel bounds ``(1, C, ...)`` flattened to ``(1, D)`` like the points."""
    lo, hi = bounds
    if isinstance(lo, torch.Tensor):
        lo = lo.reshape(1, -1)
    if isinstance(hi, torch.Tensor):
        hi = hi.reshape(1, -1)
    return lo, hi


def box_projection(
    point: torch.Tensor, w: torch.Tensor, c: torch.Tensor, norm: str, input_range: Range
) -> torch.Tensor:
    """The smallest ``d`` (L∞ or L2) with ``w·d = c`` and ``point + d`` inside the box.

    ``point`` and ``w`` are ``(N, D)``, ``c`` is ``(N,)``. Moving coordinate ``i`` by ``d_i``
    (sign of ``c·w_i``) at most ``room_i`` (to the box edge) contributes ``a_i · min(p, b_i)``
    to ``|w·d|`` for a scalar ``p``: L∞ ``d_i = min(p, room_i)`` (``a = |w|``, ``b = room``),
    L2 ``d_i = min(p|w_i|, room_i)`` (``a = w²``, ``b = room/|w|``). That sum is piecewise
    linear and increasing in ``p``; sorting the breakpoints ``b`` gives the ``p`` reaching
    ``|c|`` exactly. When even the whole box cannot reach ``|c|``, every coordinate goes to its
    edge (the closest the box allows).
    """
    lo, hi = input_range
    direction = torch.sign(w) * torch.sign(c)[:, None]
    room = torch.where(direction > 0, hi - point, point - lo).clamp_min(0.0)
    aw = w.abs()
    if norm == "linf":
        a, b = aw, room
    else:
        a = aw * aw
        b = torch.where(aw > 0, room / aw.clamp_min(_TINY), torch.zeros_like(room))
    b_sorted, order = b.sort(dim=1)
    a_sorted = a.gather(1, order)
    saturated = torch.cumsum(a_sorted * b_sorted, dim=1) - a_sorted * b_sorted  # Σ_{j<k} a_j b_j
    rest = a_sorted.flip(1).cumsum(1).flip(1)  # Σ_{j≥k} a_j
    reach = saturated + b_sorted * rest  # |w·d| at p = b_k
    target = c.abs()
    k = (reach < target[:, None]).sum(dim=1)
    feasible = k < b.shape[1]
    kk = k.clamp(max=b.shape[1] - 1)[:, None]
    p = (target - saturated.gather(1, kk).squeeze(1)) / rest.gather(1, kk).squeeze(1).clamp_min(
        _TINY
    )
    p = torch.where(feasible, p, b_sorted[:, -1]).clamp_min(0.0)[:, None]
    step = torch.minimum(p, room) if norm == "linf" else torch.minimum(p * aw, room)
    return direction * step


def _logit_gap_and_grad(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``z_t − z_y`` per sample and its gradient w.r.t. ``x``."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        gap = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(gap.sum(), xg)
    return gap.detach(), grad.detach()


def _run(
    model: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
    start: torch.Tensor,
    *,
    norm: str,
    input_range: Range,
    n_iter: int,
    alpha_max: float,
    eta: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run: ``(closest adversarial found, its norm)`` (norm ``inf`` where none)."""
    lo, hi = input_range = _flat_bounds(input_range)  # the points below are (N, D)
    n = x0.shape[0]
    flat0 = x0.reshape(n, -1)
    best = x0.clone()
    best_norm = torch.full((n,), float("inf"), dtype=x0.dtype, device=x0.device)
    x = start.clone()
    for _ in range(n_iter):
        gap, grad = _logit_gap_and_grad(model, x, y, target)
        with torch.no_grad():
            w = grad.reshape(n, -1)
            flat = x.reshape(n, -1)
            # both projections in one batched call: from x_k, and from x₀
            c_orig = -gap - (w * (flat0 - flat)).sum(dim=1)
            both = box_projection(
                torch.cat([flat, flat0]),
                w.repeat(2, 1),
                torch.cat([-gap, c_orig]),
                norm,
                input_range,
            )
            d_cur, d_orig = both[:n], both[n:]
            n_cur, n_orig = _norm(d_cur, norm), _norm(d_orig, norm)
            alpha = (n_cur / (n_cur + n_orig).clamp_min(_TINY)).clamp(0.0, alpha_max)[:, None]
            moved = (1 - alpha) * (flat + eta * d_cur) + alpha * (flat0 + eta * d_orig)
            x = clip(moved, lo, hi).view_as(x0)
            adversarial = model(x).argmax(dim=1) != y
            dist = _norm(x - x0, norm)
            closer = adversarial & (dist < best_norm)
            best[closer], best_norm[closer] = x[closer], dist[closer]
            x = torch.where(adversarial.view(-1, *([1] * (x0.ndim - 1))), x0 + beta * (x - x0), x)
    return best, best_norm


def fab_t(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    norm: str = "linf",
    n_iter: int = 100,
    n_restarts: int = 1,
    n_target_classes: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    seed: int = 0,
) -> torch.Tensor:
    """Targeted FAB; returns ``x_adv`` (the closest example within ``epsilon``, else ``x``)."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    for name, value in (
        ("n_iter", n_iter),
        ("n_restarts", n_restarts),
        ("n_target_classes", n_target_classes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    lo, hi = input_range
    x0 = x.detach()
    gen = torch.Generator(device=x0.device).manual_seed(int(seed))
    with torch.no_grad():
        logits = model(x0)
    robust = logits.argmax(dim=1) == y
    ranked = logits.argsort(dim=1, descending=True)
    x_adv = x0.clone()
    for rank in range(1, min(n_target_classes, logits.shape[1] - 1) + 1):
        best_norm = torch.full((x0.shape[0],), float("inf"), dtype=x0.dtype, device=x0.device)
        for restart in range(n_restarts):
            idx = torch.nonzero(robust).flatten()
            if idx.numel() == 0:
                return x_adv
            xs = x0[idx]
            start = xs.clone()
            if restart > 0:
                u = torch.rand(xs.shape, generator=gen, device=xs.device, dtype=xs.dtype) * 2 - 1
                radius = 0.5 * torch.clamp(best_norm[idx], max=epsilon)
                scale = radius / _norm(u, norm).clamp_min(_TINY)
                start = clip(xs + u * scale.view(-1, *([1] * (xs.ndim - 1))), lo, hi)
            found, dist = _run(
                model,
                xs,
                y[idx],
                ranked[idx, rank],
                start,
                norm=norm,
                input_range=input_range,
                n_iter=n_iter,
                alpha_max=alpha_max,
                eta=eta,
                beta=beta,
            )
            best_norm[idx] = torch.minimum(best_norm[idx], dist)
            broken = dist <= epsilon
            x_adv[idx[broken]] = found[broken]
            robust[idx[broken]] = False
    return x_adv
