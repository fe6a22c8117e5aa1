"""AutoAttack (Croce & Hein, ICML 2020): an ensemble of parameter-free attacks run in sequence.

Each attack runs only on the points every earlier attack left classified correctly; a point's
robust accuracy counts only if it survives them all. The versions:

==========  ================================================================================
version     attacks (published parameters)
==========  ================================================================================
standard    ``apgd_ce`` (100 steps, 1 restart), ``apgd_t`` (100 steps, 9 targets),
            ``fab_t`` (100 steps, 9 targets), ``square`` (5000 queries, ``p_init`` 0.8)
rand        ``apgd_ce`` and ``apgd_dlr`` (100 steps) with ``eot_iter=20``: gradients averaged
            over 20 draws, for randomized defenses
custom      the ``attacks`` given, in that order, with the standard parameters
==========  ================================================================================

``options`` overrides an attack's parameters, e.g. ``{"square": {"n_queries": 1000}}`` (an
entry for an attack that does not run is ignored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from neuroplex.ranges import Bounds, bounds_scale, outside_bounds
from neuroplex_attacks.apgd import apgd_ce, apgd_dlr, apgd_t
from neuroplex_attacks.fab import fab_t
from neuroplex_attacks.square import square

__all__ = [
    "ENSEMBLE_ATTACKS",
    "STANDARD_PARAMETERS",
    "VERSIONS",
    "autoattack",
    "plan",
    "run_sequence",
]

#: the clip bounds: two numbers, or per-channel tensors of the input's per-sample shape
Range = Bounds

ENSEMBLE_ATTACKS: dict[str, Callable[..., torch.Tensor]] = {
    "apgd_ce": apgd_ce,
    "apgd_dlr": apgd_dlr,
    "apgd_t": apgd_t,
    "fab_t": fab_t,
    "square": square,
}

#: the parameters AutoAttack's standard version runs each attack with
STANDARD_PARAMETERS: dict[str, dict[str, Any]] = {
    "apgd_ce": {"n_iter": 100, "n_restarts": 1},
    "apgd_dlr": {"n_iter": 100, "n_restarts": 1},
    "apgd_t": {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9},
    "fab_t": {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9},
    "square": {"n_queries": 5000, "p_init": 0.8, "n_restarts": 1, "rescale_schedule": False},
}

VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd_ce", "apgd_t", "fab_t", "square"),
    "rand": ("apgd_ce", "apgd_dlr"),
}

#: attacks that need gradients of the model
GRADIENT_ENSEMBLE = frozenset({"apgd_ce", "apgd_dlr", "apgd_t", "fab_t"})

#: fewest classes each attack needs (the DLR losses divide by ``z_π1 − z_π3``)
MIN_CLASSES = {"apgd_ce": 2, "apgd_dlr": 3, "apgd_t": 3, "fab_t": 2, "square": 2}


def plan(
    version: str,
    attacks: Sequence[str] | None,
    norm: str,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    gradients: bool = True,
) -> list[tuple[str, dict[str, Any]]]:
    """``[(attack, parameters), ...]`` AutoAttack ``version`` runs (``ValueError`` if invalid).

    Without ``gradients`` (a forward-only model) the standard version runs only the attacks that
    need none (``square``); other versions naming a gradient attack are refused.
    """
    if version == "custom":
        if not attacks:
            raise ValueError("version 'custom' needs attacks, e.g. ['apgd_ce', 'square']")
        names = tuple(attacks)
    elif version in VERSIONS:
        if attacks:
            raise ValueError(
                f"attacks is only for version 'custom'; version {version!r} runs "
                f"{', '.join(VERSIONS[version])}"
            )
        names = VERSIONS[version]
    else:
        raise ValueError(
            f"unknown AutoAttack version {version!r}; choose one of standard, rand, custom"
        )
    unknown = [a for a in names if a not in ENSEMBLE_ATTACKS]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; choose from {', '.join(ENSEMBLE_ATTACKS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"attacks name one attack twice: {list(names)}")
    options = dict(options or {})
    extra = sorted(set(options) - set(ENSEMBLE_ATTACKS))
    if extra:
        raise ValueError(
            f"options name unknown attacks {extra}; choose from {', '.join(ENSEMBLE_ATTACKS)}"
        )
    steps = []
    for name in names:
        params = {**STANDARD_PARAMETERS[name], "norm": norm}
        if version == "rand":
            params["eot_iter"] = 20
        params.update(options.get(name, {}))
        steps.append((name, params))
    if not gradients:
        needing = [name for name, _ in steps if name in GRADIENT_ENSEMBLE]
        if needing and version != "standard":
            raise ValueError(
                f"{', '.join(needing)} need gradients, which this model does not give: use "
                "version 'standard' (runs square) or attacks=['square']"
            )
        steps = [(name, params) for name, params in steps if name not in GRADIENT_ENSEMBLE]
    return steps


def perturbation_norm(x: torch.Tensor, x_adv: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ``‖x_adv − x‖`` (``norm``: linf or l2), float64."""
    d = (x_adv - x).reshape(x.shape[0], -1).double()
    return d.abs().amax(dim=1) if norm == "linf" else d.norm(p=2, dim=1)


@attrs.frozen
class SequenceOutcome:
    """What :func:`run_sequence` found for one batch."""

    x_adv: torch.Tensor
    clean_correct: torch.Tensor  # bool (N,)
    broken_by: torch.Tensor  # long (N,): attack index, -1 robust, -2 misclassified when clean
    seconds: tuple[float, ...]  # per attack


def run_sequence(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    epsilon: float,
    input_range: Range,
    seed: int,
) -> SequenceOutcome:
    """Run ``steps`` one after another, each on the points still classified correctly.

    Every attack's output is checked: inside ``input_range`` and within ``epsilon`` in its norm
    (a violation is a bug and raises ``RuntimeError``).
    """
    tol = 1e-5 * max(1.0, bounds_scale(input_range), epsilon)
    x = x.detach()
    with torch.no_grad():
        clean = model(x).argmax(dim=1) == y
    broken_by = torch.full(y.shape, -1, dtype=torch.long, device=y.device)
    broken_by[~clean] = -2
    x_adv = x.clone()
    seconds = []
    for i, (name, params) in enumerate(steps):
        started = time.perf_counter()
        idx = torch.nonzero(broken_by == -1).flatten()
        if idx.numel():
            fn = ENSEMBLE_ATTACKS[name]
            adv = fn(
                model,
                x[idx],
                y[idx],
                epsilon=epsilon,
                input_range=input_range,
                **{**params, "seed": seed},
            ).detach()
            size = perturbation_norm(x[idx], adv, str(params["norm"]))
            if float(size.max()) > epsilon + tol:
                raise RuntimeError(f"{name}: perturbation {float(size.max())} > epsilon {epsilon}")
            if outside_bounds(adv, input_range, tol):
                raise RuntimeError(f"{name}: adversarial input leaves input_range")
            with torch.no_grad():
                fooled = model(adv).argmax(dim=1) != y[idx]
            x_adv[idx[fooled]] = adv[fooled]
            broken_by[idx[fooled]] = i
        seconds.append(time.perf_counter() - started)
    return SequenceOutcome(x_adv, clean, broken_by, tuple(seconds))


def autoattack(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    input_range: Range = (0.0, 1.0),
    norm: str = "linf",
    version: str = "standard",
    attacks: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    gradients: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """AutoAttack ``version`` on ``(x, y)``; returns ``x_adv`` (``x`` where every attack failed).

    ``gradients=False`` is for models without gradients (forward-only ONNX files): see
    :func:`plan`.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    steps = plan(version, attacks, norm, options, gradients)
    return run_sequence(
        model, x, y, steps, epsilon=epsilon, input_range=input_range, seed=seed
    ).x_adv
