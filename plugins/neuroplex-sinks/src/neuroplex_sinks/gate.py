"""The ``early_reject`` Mechanic policy: fail the run when a number crosses its threshold.

A CI gate over what the run measured. Options::

    [[feedback.policies]]
    name = "early_reject"
    [feedback.policies.options]
    min = { "test_metrics.accuracy" = 0.9, "fgsm.robust_accuracy" = 0.5 }
    max = { "test_metrics.loss" = 0.5 }

A number is named ``test_metrics.<metric>`` (the model's test metrics) or
``<analyzer>.<key>`` (``<analyzer>`` the analysis entry's ``id``, else its name; a number of
that analysis's ``to_dict()``; nested keys and list items joined by dots, e.g.
``robustness_curve.robust_accuracy.2``). After a policy retrained the model, the numbers are
those of the retrained model. Every check passes: one ``pass``
decision. Any fails: one ``reject`` decision, then the run fails with one line naming each
failed number, its value and its threshold (``neuroplex run`` exits 3), after writing its
``results.json`` and report. A name that matches no number is a ``ConfigError`` listing close
matches. Imports no torch.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from neuroplex import ConfigError, PolicyContext, PolicyDecision, PolicyOutcome

__all__ = ["EarlyReject", "numbers_of"]

_BOUNDS = {"min": "below the minimum", "max": "above the maximum"}


def _thresholds(options: Mapping[str, Any], bound: str) -> dict[str, float]:
    table = options.get(bound, {})
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"option {bound} of policy 'early_reject' must be a table of number name = "
            f"threshold, got {table!r}"
        )
    out: dict[str, float] = {}
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(
                f"option {bound}.{name} of policy 'early_reject' must be a number, got {value!r}"
            )
        out[str(name)] = float(value)
    return out


def _plain(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def _flatten(value: Any, key: str, out: dict[str, float]) -> None:
    value = _plain(value)
    if isinstance(value, int | float):  # bools count as 0/1
        out[key] = float(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{key}.{k}", out)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _flatten(v, f"{key}.{i}", out)


def numbers_of(context: PolicyContext) -> dict[str, float]:
    """Every number a threshold can name: ``test_metrics.*`` and ``<analyzer>.*``."""
    out: dict[str, float] = {}
    _flatten(dict(context.test_metrics), "test_metrics", out)
    for name, result in context.analyses.items():
        _flatten(result, name, out)
    return out


class EarlyReject:
    """``factory(max_rounds=..., min={...}, max={...})`` (``max_rounds`` is ignored)."""

    def __init__(self, *, max_rounds: int = 1, **options: Any) -> None:
        unknown = sorted(set(options) - set(_BOUNDS))
        if unknown:
            raise ConfigError(
                f"unknown option {unknown[0]!r} of policy 'early_reject'; options: max, min"
            )
        self.checks = [
            (bound, name, threshold)
            for bound in _BOUNDS
            for name, threshold in _thresholds(options, bound).items()
        ]
        if not self.checks:
            raise ConfigError(
                "policy 'early_reject' has no threshold: give options.min and/or options.max, "
                'e.g. min = { "test_metrics.accuracy" = 0.9 }'
            )

    def apply(self, context: PolicyContext) -> PolicyOutcome:
        numbers = numbers_of(context)
        rows: list[dict[str, Any]] = []
        failed: list[str] = []
        for bound, name, threshold in self.checks:
            value = numbers.get(name)
            if value is None:
                raise ConfigError(_missing(name, numbers), path="feedback.policies.early_reject")
            ok = not math.isnan(value) and (
                value >= threshold if bound == "min" else value <= threshold
            )
            rows.append({"number": name, "value": value, bound: threshold, "ok": ok})
            if not ok:
                failed.append(f"{name} = {value:.4g} is {_BOUNDS[bound]} {threshold:.4g}")
        decision = PolicyDecision(
            policy=context.policy,
            action="reject" if failed else "pass",
            reason={"checks": rows},
        )
        return PolicyOutcome(
            decisions=(decision,),
            sections=(_section(context.policy, rows),),
            rejection="; ".join(failed) if failed else None,
        )


def _missing(name: str, numbers: Mapping[str, float]) -> str:
    close = difflib.get_close_matches(name, list(numbers), n=3, cutoff=0.8)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    prefixes = sorted({key.split(".")[0] for key in numbers})
    return (
        f"no number named {name!r} in this run{hint} (numbers start with: "
        f"{', '.join(prefixes)}; see results.json)"
    )


def _section(policy: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "table",
        "title": f"Mechanic: {policy} gate",
        "columns": ["number", "value", "bound", "threshold", "result"],
        "rows": [
            [
                r["number"],
                r["value"],
                "min" if "min" in r else "max",
                r.get("min", r.get("max")),
                "pass" if r["ok"] else "REJECT",
            ]
            for r in rows
        ],
    }
