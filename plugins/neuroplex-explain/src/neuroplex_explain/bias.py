"""Prediction bias: how skewed the predicted classes are, and how they differ across groups.

Definitions (``N`` samples, ``C`` classes, ``ŷ = argmax`` of the model output):

* **predicted distribution** ``p_c = #{ŷ = c} / N``.
* **reference distribution** ``q``: the label prior ``q_c = #{y = c} / N`` when labels are
  given, else uniform ``q_c = 1 / C``.
* **KL divergence** ``KL(p || q) = Σ_c p_c · ln(p_c / q_c)`` in nats, with ``0 · ln 0 = 0``;
  ``inf`` when the model predicts a class the labels never contain.
* **total variation** ``TV(p, q) = ½ Σ_c |p_c − q_c|`` (in [0, 1]).
* **mean logit per class**: ``mean_i out[i, c]`` of the raw model output.
* **accuracy**: ``#{ŷ = y} / N`` (labels only).

With ``groups`` (one group id per sample), for each group ``g``:

* selection rate ``s_c(g) = P(ŷ = c | g)``;
* **demographic parity difference** ``DPD = max_c (max_g s_c(g) − min_g s_c(g))``;
* true/false positive rates of class ``c`` (one-vs-rest, labels needed)
  ``TPR_c(g) = P(ŷ = c | y = c, g)``, ``FPR_c(g) = P(ŷ = c | y ≠ c, g)``;
* **equalized odds difference**
  ``EOD = max_c max(range_g TPR_c(g), range_g FPR_c(g))`` where ``range_g`` is max − min over
  the groups in which the rate is defined (has samples with ``y = c``, resp. ``y ≠ c``).

For two classes DPD and EOD equal the usual binary definitions (e.g. fairlearn's
``demographic_parity_difference`` and ``equalized_odds_difference``).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
import torch

from neuroplex.analysis.backend import ResolvedModel, eval_mode
from neuroplex.analysis.inputs import as_inputs, as_labels, check_logits
from neuroplex.errors import DataError

__all__ = ["BiasReport", "bias_report"]


@attrs.frozen(kw_only=True)
class BiasReport:
    """Prediction bias of a classifier on one batch (every number is defined in the module doc).

    Attributes:
        n_samples, n_classes: batch size and number of model outputs.
        predicted_distribution: ``p``, length ``C``.
        reference: ``"label_prior"`` or ``"uniform"``; ``reference_distribution`` is ``q``.
        kl_divergence: ``KL(p || q)`` in nats. total_variation: ``TV(p, q)``.
        mean_logit_per_class: length ``C``.
        accuracy: with labels, else ``None``.
        demographic_parity_difference, equalized_odds_difference: with ``groups`` (EOD also
            needs labels), else ``None``.
        group_selection_rates: ``{group: (s_0(g), ..., s_{C-1}(g))}`` with ``groups``.
    """

    n_samples: int
    n_classes: int
    predicted_distribution: tuple[float, ...]
    reference: str
    reference_distribution: tuple[float, ...]
    kl_divergence: float
    total_variation: float
    mean_logit_per_class: tuple[float, ...]
    accuracy: float | None = None
    demographic_parity_difference: float | None = None
    equalized_odds_difference: float | None = None
    group_selection_rates: dict[str, tuple[float, ...]] = attrs.field(factory=dict)
    backend: str = "torch"
    tier: str = "torch"

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        for key in ("predicted_distribution", "reference_distribution", "mean_logit_per_class"):
            data[key] = list(data[key])
        data["group_selection_rates"] = {
            g: list(rates) for g, rates in self.group_selection_rates.items()
        }
        return data


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    if bool((q[mask] == 0).any()):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _spread(values: list[float]) -> float:
    return max(values) - min(values) if values else 0.0


def _group_metrics(
    pred: np.ndarray, y: np.ndarray | None, groups: np.ndarray, n_classes: int
) -> tuple[float, float | None, dict[str, tuple[float, ...]]]:
    ids = list(dict.fromkeys(groups.tolist()))
    rates: dict[str, tuple[float, ...]] = {}
    dpd = 0.0
    eod: float | None = 0.0 if y is not None else None
    for c in range(n_classes):
        sel = [float(np.mean(pred[groups == g] == c)) for g in ids]
        dpd = max(dpd, _spread(sel))
        if y is not None and eod is not None:
            tpr, fpr = [], []
            for g in ids:
                in_g = groups == g
                pos, neg = in_g & (y == c), in_g & (y != c)
                if pos.any():
                    tpr.append(float(np.mean(pred[pos] == c)))
                if neg.any():
                    fpr.append(float(np.mean(pred[neg] == c)))
            eod = max(eod, _spread(tpr), _spread(fpr))
    for g in ids:
        in_g = groups == g
        rates[str(g)] = tuple(float(np.mean(pred[in_g] == c)) for c in range(n_classes))
    return dpd, eod, rates


def bias_report(resolved: ResolvedModel, x: Any, y: Any = None, groups: Any = None) -> BiasReport:
    """Prediction bias of the model on ``x`` (shape ``(N, ...)``); see the module doc.

    Args:
        y: optional labels, shape ``(N,)``: reference becomes the label prior; adds accuracy
            and (with ``groups``) the equalized odds difference.
        groups: optional group id per sample, shape ``(N,)`` (ints or strings).
    """
    x = as_inputs(x, resolved.device, keep_dtype=True)
    n = int(x.shape[0])
    with eval_mode(resolved.module), torch.no_grad():
        logits = check_logits(resolved.module(x)).detach().double().cpu()
    n_classes = int(logits.shape[1])
    pred = logits.argmax(dim=1).numpy()
    p = np.bincount(pred, minlength=n_classes) / n
    y_np = None
    if y is not None:
        y_np = as_labels(y, n, n_classes).cpu().numpy()
        q = np.bincount(y_np, minlength=n_classes) / n
        reference = "label_prior"
    else:
        q = np.full(n_classes, 1.0 / n_classes)
        reference = "uniform"
    dpd = eod = None
    rates: dict[str, tuple[float, ...]] = {}
    if groups is not None:
        g = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups)
        if g.ndim != 1 or g.shape[0] != n:
            raise DataError(
                f"groups must have shape ({n},) to match x's {n} samples, got {g.shape}"
            )
        dpd, eod, rates = _group_metrics(pred, y_np, g, n_classes)
    return BiasReport(
        n_samples=n,
        n_classes=n_classes,
        predicted_distribution=tuple(float(v) for v in p),
        reference=reference,
        reference_distribution=tuple(float(v) for v in q),
        kl_divergence=_kl(p, q),
        total_variation=float(0.5 * np.abs(p - q).sum()),
        mean_logit_per_class=tuple(float(v) for v in logits.mean(dim=0)),
        accuracy=float(np.mean(pred == y_np)) if y_np is not None else None,
        demographic_parity_difference=dpd,
        equalized_odds_difference=eod,
        group_selection_rates=rates,
        backend=resolved.backend,
        tier=resolved.tier,
    )
