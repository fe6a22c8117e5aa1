"""The result records of the ONNX bridge (frozen attrs records).

* :class:`GraphExport` / :class:`ExportResult`: what :func:`~neuroplex.onnx.export_onnx`
  wrote, per graph, with its tier and verification report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from neuroplex.onnx.verify import VerificationReport

__all__ = ["ExportResult", "GraphExport"]


@attrs.frozen(kw_only=True)
class GraphExport:
    """One exported graph.

    Attributes:
        graph: ``"model"`` or the sub-module name (``"generator"`` ...).
        path: the forward ONNX file.
        gradient_path: the VJP graph file, ``None`` on the forward-only tier.
        tier: ``"gradients"`` or ``"forward_only"``; tier_reason: why.
        report: the verification against PyTorch (``None`` when ``verify=False``).
        seconds: wall time of export and verification.
    """

    graph: str
    path: Path
    gradient_path: Path | None
    tier: str
    tier_reason: str
    report: VerificationReport | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "path": str(self.path),
            "gradient_path": None if self.gradient_path is None else str(self.gradient_path),
            "tier": self.tier,
            "tier_reason": self.tier_reason,
            "report": None if self.report is None else self.report.to_dict(),
            "seconds": self.seconds,
        }


@attrs.frozen(kw_only=True)
class ExportResult:
    """Everything :func:`export_onnx` wrote, one :class:`GraphExport` per graph."""

    graphs: tuple[GraphExport, ...]

    @property
    def path(self) -> Path:
        """The forward file of the first graph (``model.onnx`` for single-graph models)."""
        return self.graphs[0].path

    def __getitem__(self, graph: str) -> GraphExport:
        for item in self.graphs:
            if item.graph == graph:
                return item
        raise KeyError(f"no graph {graph!r}; exported: {[g.graph for g in self.graphs]}")

    def to_dict(self) -> dict[str, Any]:
        return {"graphs": [g.to_dict() for g in self.graphs]}

    def report_sections(self) -> list[dict[str, Any]]:
        """The parity table for ``report.html`` (typed sections, see :mod:`neuroplex.report`)."""
        rows = [
            [
                r.graph,
                r.case,
                r.batch,
                r.output,
                r.max_abs,
                r.max_rel,
                "" if r.argmax_agreement is None else r.argmax_agreement,
                "" if r.sign_agreement is None else r.sign_agreement,
                "yes" if r.passed else "NO",
            ]
            for g in self.graphs
            if g.report is not None
            for r in g.report.rows
        ]
        tiers = [[g.graph, g.path.name, g.tier, g.tier_reason] for g in self.graphs]
        return [
            {
                "type": "table",
                "title": "graphs and tiers",
                "columns": ["graph", "file", "tier", "reason"],
                "rows": tiers,
            },
            {
                "type": "table",
                "title": "ONNX Runtime vs PyTorch",
                "columns": [
                    "graph",
                    "case",
                    "batch",
                    "output",
                    "max_abs",
                    "max_rel",
                    "argmax_agree",
                    "sign_agree",
                    "passed",
                ],
                "rows": rows,
            },
        ]

    def to_markdown(self) -> str:
        parts = [
            f"- `{g.graph}` → {g.path.name} (tier {g.tier}: {g.tier_reason})" for g in self.graphs
        ]
        for g in self.graphs:
            if g.report is not None:
                parts += ["", g.report.to_markdown()]
        return "\n".join(parts)
