"""Square attack (Andriushchenko et al., ECCV 2020): score-based random search, L∞ and L2.

Needs forward passes only, so it runs on forward-only ONNX files. Inputs are viewed as
``(N, C, H, W)`` (``(N, D)`` as ``(N, 1, 1, D)``, ``(N, C, L)`` as ``(N, C, 1, L)``). It minimises
the margin ``z_y − max_{j≠y} z_j`` and stops for a sample as soon as it is misclassified.

* **L∞**: start from vertical stripes ``x ± ε`` (one random sign per column and channel). Each
  query changes one window covering a fraction ``p`` of the ``H·W`` positions: per channel it is
  set to ``x ± ε`` (random sign), clipped to ``input_range``.
* **L2**: start from a grid of "meta-squares" (nested rectangles weighted ``1/(r+1)²``, positive
  in one half and negative in the other) with random signs, scaled to norm ε. Each query moves
  the perturbation mass of a second window, and the budget not used yet, into a first window
  (a fresh meta-square plus the window's old content), then rescales the whole perturbation to
  norm ε.

A proposal is kept when it lowers the margin or misclassifies. ``p`` starts at ``p_init`` and is
halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 queries (with
``rescale_schedule``, those counts are out of 10 000 and scaled to ``n_queries``). Every window is
shared by the batch; its signs are drawn per sample. ``n_queries`` bounds the forward passes per
sample and restart (the start counts as one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neuroplex.ranges import Bounds, clip

__all__ = ["square", "square_fraction"]

#: the clip bounds: two numbers, or per-channel tensors of the input's per-sample shape
Range = Bounds
_TINY = 1e-12
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, it: int, n_queries: int, rescale: bool = True) -> float:
    """Fraction of the positions a window covers at query ``it`` (the paper's schedule)."""
    if rescale:
        it = int(it / max(n_queries, 1) * 10000)
    return p_init / 2.0 ** sum(it > b for b in _SCHEDULE)


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x.unsqueeze(2)
    return x.reshape(x.shape[0], 1, 1, -1)


def _window(p: float, h: int, w: int, minimum: int = 1) -> tuple[int, int]:
    """Window height and width covering about ``p·H·W`` positions (square when it fits)."""
    area = p * h * w
    side = max(minimum, round(area**0.5))
    s_h = min(h, side)
    s_w = min(w, max(minimum, round(area / s_h)))
    return s_h, s_w


def _rings(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``h × w`` nested rectangles around the centre, ring ``r`` weighted ``Σ_{k≥r} 1/(k+1)²``."""
    ch, cw = (h - 1) // 2, (w - 1) // 2
    rows = (torch.arange(h, device=device) - ch).abs()
    cols = (torch.arange(w, device=device) - cw).abs()
    ring = torch.maximum(rows[:, None], cols[None, :])
    levels = torch.arange(max(h, w), device=device, dtype=dtype)
    weight = (1.0 / (levels + 1) ** 2).flip(0).cumsum(0).flip(0)  # weight[r] = Σ_{k≥r}
    out: torch.Tensor = weight[ring]
    return torch.div(out, out.norm().clamp_min(_TINY))


def _meta_square(
    h: int, w: int, flip: bool, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The L2 attack's unit-norm ``h × w`` update: rings, positive on top, negative below."""
    if flip and h == w:
        return _meta_square(h, w, False, device, dtype).T.contiguous()
    top = h // 2
    out = torch.zeros(h, w, device=device, dtype=dtype)
    if top:
        out[:top] = _rings(top, w, device, dtype)
    out[top:] = -_rings(h - top, w, device, dtype)
    return torch.div(out, out.norm().clamp_min(_TINY))


def _l2(t: torch.Tensor) -> torch.Tensor:
    norms: torch.Tensor = torch.linalg.vector_norm(t.reshape(t.shape[0], -1), ord=2, dim=1)
    return norms.view(-1, 1, 1, 1)


def _signs(gen: torch.Generator, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=gen, device=like.device)
    return (bits * 2 - 1).to(like.dtype)


def _randint(gen: torch.Generator, high: int, device: torch.device) -> int:
    """Uniform in ``[0, high]``."""
    return int(torch.randint(0, high + 1, (1,), generator=gen, device=device))


def _run(
    model: Callable[[torch.Tensor], torch.Tensor],
    x4: torch.Tensor,
    y: torch.Tensor,
    shape: torch.Size,
    *,
    epsilon: float,
    input_range: Range,
    norm: str,
    n_queries: int,
    p_init: float,
    rescale: bool,
    gen: torch.Generator,
) -> torch.Tensor:
    lo, hi = (_as_4d(b) if isinstance(b, torch.Tensor) else b for b in input_range)
    n, c, h, w = x4.shape

    def margin_of(batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _margin(model(batch.reshape(batch.shape[0], *shape[1:])), labels)

    if norm == "linf":
        best = clip(x4 + epsilon * _signs(gen, (n, c, 1, w), x4), lo, hi)
    else:
        s = max(1, min(h, w) // 5)
        delta = torch.zeros_like(x4)
        meta = _meta_square(s, s, False, x4.device, x4.dtype)
        start_h, start_w = (h - s * (h // s)) // 2, (w - s * (w // s)) // 2
        for i in range(h // s):
            for j in range(w // s):
                r, q = start_h + i * s, start_w + j * s
                delta[:, :, r : r + s, q : q + s] += meta * _signs(gen, (n, c, 1, 1), x4)
        best = clip(x4 + epsilon * delta / _l2(delta).clamp_min(_TINY), lo, hi)
    best_margin = margin_of(best, y)
    for it in range(n_queries - 1):
        active = torch.nonzero(best_margin > 0).flatten()
        if active.numel() == 0:
            break
        k = active.numel()
        p = square_fraction(p_init, it, n_queries, rescale)
        base, current = x4[active], best[active]
        if norm == "linf":
            s_h, s_w = _window(p, h, w)
            r, q = _randint(gen, h - s_h, x4.device), _randint(gen, w - s_w, x4.device)
            candidate = current.clone()
            win = (slice(None), slice(None), slice(r, r + s_h), slice(q, q + s_w))
            window = base[win] + epsilon * _signs(gen, (k, c, 1, 1), x4)
            candidate[win] = clip(
                window, *(b[win] if isinstance(b, torch.Tensor) else b for b in (lo, hi))
            )
        else:
            candidate = _l2_proposal(base, current, epsilon, p, (lo, hi), gen)
        cand_margin = margin_of(candidate, y[active])
        keep = (cand_margin < best_margin[active]) | (cand_margin <= 0)
        best[active[keep]] = candidate[keep]
        best_margin[active[keep]] = cand_margin[keep]
    return best


def _l2_proposal(
    base: torch.Tensor,
    current: torch.Tensor,
    epsilon: float,
    p: float,
    input_range: Range,
    gen: torch.Generator,
) -> torch.Tensor:
    k, c, h, w = base.shape
    s_h, s_w = _window(p, h, w, minimum=min(3, h, w))
    if s_h == s_w and s_h % 2 == 0 and s_h < min(h, w):
        s_h = s_w = s_h + 1
    device = base.device
    r1, q1 = _randint(gen, h - s_h, device), _randint(gen, w - s_w, device)
    r2, q2 = _randint(gen, h - s_h, device), _randint(gen, w - s_w, device)
    delta = current - base
    win1 = (slice(None), slice(None), slice(r1, r1 + s_h), slice(q1, q1 + s_w))
    win2 = (slice(None), slice(None), slice(r2, r2 + s_h), slice(q2, q2 + s_w))
    mask = torch.zeros_like(delta[:1])
    mask[win1] = 1.0
    mask[win2] = 1.0
    in_windows = _l2(delta * mask)  # mass the proposal may move
    spare = (epsilon**2 - _l2(delta) ** 2).clamp_min(0.0)  # budget not used yet
    old = delta[win1]
    old = old / old.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(_TINY)
    flip = bool(torch.randint(0, 2, (1,), generator=gen, device=device))
    meta = _meta_square(s_h, s_w, flip, device, base.dtype)
    new = meta * _signs(gen, (k, c, 1, 1), base) + old
    new_norm = new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(_TINY)
    new = new / new_norm * (spare / c + in_windows**2).sqrt()
    delta = delta.clone()
    delta[win2] = 0.0
    delta[win1] = new
    lo, hi = input_range
    return clip(base + epsilon * delta / _l2(delta).clamp_min(_TINY), lo, hi)


def square(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    norm: str = "linf",
    n_queries: int = 5000,
    p_init: float = 0.8,
    n_restarts: int = 1,
    rescale_schedule: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Square attack, untargeted; returns ``x_adv`` (``x`` where no restart broke a point)."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    for name, value in (("n_queries", n_queries), ("n_restarts", n_restarts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")
    x0 = x.detach()
    x4 = _as_4d(x0)
    gen = torch.Generator(device=x0.device).manual_seed(int(seed))
    out = x4.clone()
    with torch.no_grad():
        robust = model(x0).argmax(dim=1) == y
        for _ in range(n_restarts):
            idx = torch.nonzero(robust).flatten()
            if idx.numel() == 0:
                break
            adv = _run(
                model,
                x4[idx],
                y[idx],
                x0.shape,
                epsilon=epsilon,
                input_range=input_range,
                norm=norm,
                n_queries=n_queries,
                p_init=p_init,
                rescale=rescale_schedule,
                gen=gen,
            )
            fooled = model(adv.reshape(adv.shape[0], *x0.shape[1:])).argmax(dim=1) != y[idx]
            out[idx[fooled]] = adv[fooled]
            robust[idx[fooled]] = False
    return out.view_as(x0)
