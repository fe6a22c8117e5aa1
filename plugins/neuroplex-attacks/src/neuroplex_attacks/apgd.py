"""Auto-PGD (Croce & Hein, ICML 2020): step-size-free PGD with momentum, L∞ and L2.

``apgd_ce`` maximises the cross-entropy, ``apgd_dlr`` the difference-of-logits ratio (DLR,
invariant to shifting and scaling the logits), ``apgd_t`` the targeted DLR towards each of the
``n_target_classes`` classes the clean logits rank highest after the top one.

One run, for every sample of the batch at once (no loop over samples):

* start at ``x + ε·u/‖u‖`` (``u`` uniform in [−1, 1] for L∞, Gaussian for L2), clipped to
  ``input_range``; step size ``η = 2ε``;
* step ``z = P(x_k + η·s(∇))`` (``s``: sign for L∞, ∇/‖∇‖₂ for L2) and, from the second step on,
  momentum ``x_{k+1} = P(x_k + 0.75 (z − x_k) + 0.25 (x_k − x_{k−1}))``;
* checkpoints after ``w₁ = ⌊0.22 N⌋`` steps, then at intervals shrinking by ``⌊0.03 N⌋`` down to
  ``⌊0.06 N⌋`` (the paper's ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``). At a
  checkpoint a sample halves its step size and restarts from its highest-loss point when the loss
  rose in at most ``ρ = 0.75`` of the steps since the last checkpoint, or when its step size was
  not halved at the last checkpoint and its best loss has not improved since.

Restarts (and, for ``apgd_t``, targets) run only on the points still classified correctly. A
point counts as broken as soon as one iterate is misclassified; that iterate is returned. With
``eot_iter > 1`` each gradient is the mean over that many forward/backward passes (expectation
over transformation, for randomized defenses).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from neuroplex.ranges import Bounds, clip

__all__ = ["apgd_ce", "apgd_dlr", "apgd_t", "dlr_loss", "targeted_dlr_loss"]

#: the clip bounds: two numbers, or per-channel tensors of the input's per-sample shape
Range = Bounds
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

NORMS = ("linf", "l2")
_TINY = 1e-12


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)`` per sample (π: logits sorted, descending)."""
    top = logits.topk(3, dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return -(true - others) / (top[:, 0] - top[:, 2] + _TINY)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)`` per sample: maximal when ``t`` wins.

    With 3 classes (no ``π4``) the denominator is ``z_π1 − z_π3``.
    """
    top = logits.topk(min(4, logits.shape[1]), dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    tgt = logits.gather(1, target[:, None]).squeeze(1)
    return -(true - tgt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, -1]) + _TINY)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def _norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample L∞ or L2 norm, shaped for broadcasting against ``t``."""
    flat = t.reshape(t.shape[0], -1)
    value = flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)
    return _view(value, t)


def _project(
    x0: torch.Tensor,
    v: torch.Tensor,
    epsilon: float,
    norm: str,
    lo: float | torch.Tensor,
    hi: float | torch.Tensor,
) -> torch.Tensor:
    """``v`` moved into the ε-ball around ``x0`` and then into ``[lo, hi]``."""
    if norm == "linf":
        return clip(torch.minimum(torch.maximum(v, x0 - epsilon), x0 + epsilon), lo, hi)
    delta = v - x0
    length = _norm(delta, "l2")
    scale = torch.clamp(epsilon / length.clamp_min(_TINY), max=1.0)
    return clip(x0 + delta * scale, lo, hi)


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _norm(grad, "l2").clamp_min(_TINY)


def _loss_and_grad(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    loss_fn: Loss,
    y: torch.Tensor,
    eot_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-sample loss, gradient of its sum w.r.t. ``x``, logits), averaged over EOT draws."""
    grad = torch.zeros_like(x)
    losses = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    logits = torch.empty(0)
    for _ in range(eot_iter):
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xg)
            loss = loss_fn(logits, y)
            (g,) = torch.autograd.grad(loss.sum(), xg)
        grad += g.detach()
        losses += loss.detach()
    return losses / eot_iter, grad / eot_iter, logits.detach()


def checkpoints(n_iter: int) -> tuple[int, int, int]:
    """``(first interval, interval decrement, minimal interval)`` in steps for ``n_iter``."""
    return max(int(0.22 * n_iter), 1), max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)


def _run(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Loss,
    *,
    epsilon: float,
    input_range: Range,
    norm: str,
    n_iter: int,
    rho: float,
    eot_iter: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from a random start: ``(x_adv, fooled)`` for the batch."""
    lo, hi = input_range
    n = x.shape[0]
    if norm == "linf":
        u = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
    else:
        u = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    x_adv = clip(x + epsilon * u / (_norm(u, norm) + _TINY), lo, hi)
    loss, grad, logits = _loss_and_grad(model, x_adv, loss_fn, y, eot_iter)
    fooled = logits.argmax(dim=1) != y
    x_found = x_adv.clone()
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss.clone()
    step = _view(torch.full((n,), 2.0 * epsilon, dtype=x.dtype, device=x.device), x)
    x_prev = x_adv.clone()

    interval, decrement, minimum = checkpoints(n_iter)
    since_check, increases = 0, torch.zeros(n, dtype=torch.long, device=x.device)
    prev_loss = loss.clone()
    best_at_check = loss_best.clone()
    halved_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
    for i in range(n_iter):
        with torch.no_grad():
            a = 0.75 if i > 0 else 1.0
            z = _project(x, x_adv + step * _direction(grad, norm), epsilon, norm, lo, hi)
            moved = x_adv + a * (z - x_adv) + (1.0 - a) * (x_adv - x_prev)
            x_prev, x_adv = x_adv, _project(x, moved, epsilon, norm, lo, hi)
        loss, grad, logits = _loss_and_grad(model, x_adv, loss_fn, y, eot_iter)
        with torch.no_grad():
            now = logits.argmax(dim=1) != y
            x_found[now] = x_adv[now]
            fooled |= now
            increases += (loss > prev_loss).long()
            prev_loss = loss
            better = loss > loss_best
            x_best[better], grad_best[better], loss_best[better] = (
                x_adv[better],
                grad[better],
                loss[better],
            )
            since_check += 1
            if since_check == interval:
                oscillating = increases.double() <= interval * rho
                stalled = ~halved_at_check & (best_at_check >= loss_best)
                halve = oscillating | stalled
                halved_at_check, best_at_check = halve, loss_best.clone()
                step[halve] /= 2.0
                x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
                interval = max(interval - decrement, minimum)
                since_check = 0
                increases.zero_()
    return x_found, fooled


def _check(norm: str, n_iter: int, n_restarts: int, eot_iter: int, rho: float) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    for name, value in (("n_iter", n_iter), ("n_restarts", n_restarts), ("eot_iter", eot_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {rho!r}")


def _untargeted(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Loss,
    *,
    epsilon: float,
    input_range: Range,
    norm: str,
    n_iter: int,
    n_restarts: int,
    rho: float,
    eot_iter: int,
    seed: int,
) -> torch.Tensor:
    _check(norm, n_iter, n_restarts, eot_iter, rho)
    x = x.detach()
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    with torch.no_grad():
        robust = model(x).argmax(dim=1) == y
    x_adv = x.clone()
    for _ in range(n_restarts):
        idx = torch.nonzero(robust).flatten()
        if idx.numel() == 0:
            break
        adv, fooled = _run(
            model,
            x[idx],
            y[idx],
            loss_fn,
            epsilon=epsilon,
            input_range=input_range,
            norm=norm,
            n_iter=n_iter,
            rho=rho,
            eot_iter=eot_iter,
            gen=gen,
        )
        x_adv[idx[fooled]] = adv[fooled]
        robust[idx[fooled]] = False
    return x_adv


def apgd_ce(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    norm: str = "linf",
    n_iter: int = 100,
    n_restarts: int = 1,
    rho: float = 0.75,
    eot_iter: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """APGD on the cross-entropy, untargeted (AutoAttack's first attack)."""
    return _untargeted(
        model,
        x,
        y,
        _ce,
        epsilon=epsilon,
        input_range=input_range,
        norm=norm,
        n_iter=n_iter,
        n_restarts=n_restarts,
        rho=rho,
        eot_iter=eot_iter,
        seed=seed,
    )


def apgd_dlr(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    norm: str = "linf",
    n_iter: int = 100,
    n_restarts: int = 1,
    rho: float = 0.75,
    eot_iter: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """APGD on the DLR loss, untargeted (needs at least 3 classes)."""
    return _untargeted(
        model,
        x,
        y,
        dlr_loss,
        epsilon=epsilon,
        input_range=input_range,
        norm=norm,
        n_iter=n_iter,
        n_restarts=n_restarts,
        rho=rho,
        eot_iter=eot_iter,
        seed=seed,
    )


def apgd_t(
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
    rho: float = 0.75,
    eot_iter: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """APGD on the targeted DLR loss, once per target class (needs at least 3 classes).

    The targets of a point are the classes its clean logits rank 2nd, 3rd, ...,
    ``n_target_classes + 1``-th (capped at the number of classes − 1); each target gets
    ``n_restarts`` runs on the points no earlier target has broken.
    """
    _check(norm, n_iter, n_restarts, eot_iter, rho)
    if isinstance(n_target_classes, bool) or not isinstance(n_target_classes, int):
        raise ValueError(f"n_target_classes must be an int >= 1, got {n_target_classes!r}")
    if n_target_classes < 1:
        raise ValueError(f"n_target_classes must be an int >= 1, got {n_target_classes!r}")
    x = x.detach()
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    with torch.no_grad():
        logits = model(x)
    robust = logits.argmax(dim=1) == y
    ranked = logits.argsort(dim=1, descending=True)
    x_adv = x.clone()
    for rank in range(1, min(n_target_classes, logits.shape[1] - 1) + 1):
        for _ in range(n_restarts):
            idx = torch.nonzero(robust).flatten()
            if idx.numel() == 0:
                return x_adv
            target = ranked[idx, rank]

            def loss_fn(
                z: torch.Tensor, yy: torch.Tensor, t: torch.Tensor = target
            ) -> torch.Tensor:
                return targeted_dlr_loss(z, yy, t)

            adv, fooled = _run(
                model,
                x[idx],
                y[idx],
                loss_fn,
                epsilon=epsilon,
                input_range=input_range,
                norm=norm,
                n_iter=n_iter,
                rho=rho,
                eot_iter=eot_iter,
                gen=gen,
            )
            x_adv[idx[fooled]] = adv[fooled]
            robust[idx[fooled]] = False
    return x_adv
