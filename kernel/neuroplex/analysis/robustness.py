"""The robustness table of a run or of ``neuroplex analyze``: one row per threat model that an
analysis result reports (:class:`~neuroplex.protocols.RobustnessReporter`), with the data split
and the engine it was evaluated on; reference evaluations first, weaker attacks labelled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neuroplex.protocols import ROBUSTNESS_KEYS, RobustnessReporter

__all__ = ["COLUMNS", "robustness_rows", "robustness_section"]

#: the columns of the table, in order
COLUMNS = ("analysis", *ROBUSTNESS_KEYS[:4], "split", *ROBUSTNESS_KEYS[4:])


def robustness_rows(
    analyses: Mapping[str, Any], evaluations: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rows (dicts keyed by :data:`COLUMNS`) of every result that reports robustness; rows of
    ``strength == "reference"`` first, otherwise in the order of ``analyses``."""
    rows = []
    for key, result in analyses.items():
        if not isinstance(result, RobustnessReporter):
            continue
        split = evaluations.get(key, {}).get("split")
        for row in result.robustness_rows():
            rows.append(
                {"analysis": key, **{k: row.get(k) for k in ROBUSTNESS_KEYS}, "split": split}
            )
    rows.sort(key=lambda r: r["strength"] != "reference")
    return [{c: r[c] for c in COLUMNS} for r in rows]


def robustness_section(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's table of ``rows`` (none when there are no rows)."""
    if not rows:
        return []
    return [
        {
            "type": "table",
            "title": "Robustness on held-out data (reference evaluations first; "
            "'weaker' attacks overstate robustness)",
            "columns": list(COLUMNS),
            "rows": [[r[c] for c in COLUMNS] for r in rows],
        }
    ]
