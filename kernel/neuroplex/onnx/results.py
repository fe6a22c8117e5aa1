"""The records of the ONNX bridge (frozen attrs records).

* :class:`InputSpec`: one graph input of an :class:`~neuroplex.onnx.OnnxModule`;
  :class:`LossGradient`: one call of :meth:`~neuroplex.onnx.OnnxModule.loss_and_grad`;
* :class:`VerificationRow` / :class:`VerificationReport`: one comparison of ONNX Runtime with
  PyTorch, and the table :func:`~neuroplex.onnx.verify_onnx` returns;
* :class:`GraphExport` / :class:`ExportResult`: what :func:`~neuroplex.onnx.export_onnx`
  wrote, per graph, with its tier and verification report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch

__all__ = [
    "ExportResult",
    "GraphExport",
    "InputSpec",
    "LossGradient",
    "VerificationReport",
    "VerificationRow",
]


@attrs.frozen
class InputSpec:
    """One graph input: ``shape`` has ``None`` for dynamic dimensions (the batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: torch.dtype

    def describe(self) -> str:
        dims = ", ".join("N" if d is None else str(d) for d in self.shape)
        return f"{self.name}: ({dims}) {str(self.dtype).removeprefix('torch.')}"


@attrs.frozen(kw_only=True)
class LossGradient:
    """One call of a fused loss-gradient graph (:meth:`OnnxModule.loss_and_grad`).

    Attributes:
        output: the model output ``(N, C)``.
        loss: the per-sample loss ``(N,)``.
        grad: ``d sum(loss) / d input``, the input's shape (row ``i`` is the gradient of
            ``loss[i]`` alone: samples are independent in eval mode).
    """

    output: torch.Tensor
    loss: torch.Tensor
    grad: torch.Tensor


@attrs.frozen(kw_only=True)
class VerificationRow:
    """One output of one test case.

    Attributes:
        graph: the graph name (``"model"``, ``"generator"`` ...).
        case: ``random``, ``zeros``, ``min``, ``max``, ``ones``, ``minus_ones`` or ``gradient``.
        batch: batch size of the case.
        output: the ONNX output name (``grad_input`` for the gradient graph).
        max_abs: maximum absolute error.
        max_rel: maximum relative error (``|d| / max(|torch|, 1e-12)``).
        argmax_agreement: fraction of rows whose argmax agrees (``None`` when not a score matrix).
        sign_agreement: gradient rows: fraction of significant entries whose signs agree.
        passed: the row is within tolerance.
    """

    graph: str
    case: str
    batch: int
    output: str
    max_abs: float
    max_rel: float
    argmax_agreement: float | None = None
    sign_agreement: float | None = None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class VerificationReport:
    """Result of :func:`verify_onnx`: one row per (case, batch, output).

    Attributes:
        source: the ONNX file verified (or ``<bytes>``).
        rows: the comparisons.
        atol, rtol: forward tolerances; grad_atol: gradient tolerance.
        device: where ONNX Runtime ran; providers: its active execution providers.
    """

    source: str
    rows: tuple[VerificationRow, ...]
    atol: float
    rtol: float
    grad_atol: float
    device: str
    providers: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    @property
    def failures(self) -> tuple[VerificationRow, ...]:
        return tuple(row for row in self.rows if not row.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "grad_atol": self.grad_atol,
            "device": self.device,
            "providers": list(self.providers),
            "rows": [row.to_dict() for row in self.rows],
        }

    def to_markdown(self) -> str:
        """A Markdown table of every row, headed by the tolerances and the verdict."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"ONNX verification of {self.source}: **{verdict}** (atol={self.atol:g}, "
            f"rtol={self.rtol:g}, gradient atol={self.grad_atol:g}, device={self.device}, "
            f"providers={', '.join(self.providers)})",
            "",
            "| graph | case | batch | output | max abs err | max rel err | argmax agree "
            "| sign agree | ok |",
            "|---|---|---:|---|---:|---:|---:|---:|---|",
        ]
        for r in self.rows:
            argmax = "" if r.argmax_agreement is None else f"{r.argmax_agreement:.3f}"
            sign = "" if r.sign_agreement is None else f"{r.sign_agreement:.4f}"
            lines.append(
                f"| {r.graph} | {r.case} | {r.batch} | {r.output} | {r.max_abs:.3g} | "
                f"{r.max_rel:.3g} | {argmax} | {sign} | {'yes' if r.passed else '**NO**'} |"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


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
