"""Stage 7, report: ``results.json`` (the sections of the report: summary, training curves,
test metrics, ONNX parity, each analysis, the policies' own sections, samples, time per
stage), ``arrays.npz`` and ``report.html`` with its plots; and the run's :class:`RunResult`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroplex.analysis.robustness import robustness_rows, robustness_section
from neuroplex.atomic import write_json
from neuroplex.config import RunSpec
from neuroplex.mechanic import to_plain
from neuroplex.protocols import Reportable, SampleReporter
from neuroplex.records import DataSplits
from neuroplex.report import build_report
from neuroplex.run.data import _xy
from neuroplex.run.feedback import FedBack
from neuroplex.run.rundir import RunResult

__all__ = ["report", "result", "write_results"]


def report(fed: FedBack, stage_seconds: Mapping[str, float]) -> Path:
    """Write the run's results and report; returns the path of ``report.html``."""
    exported = fed.analyzed.exported
    trained = exported.tested.trained
    loaded = trained.built.loaded
    return write_results(
        loaded.run_dir,
        loaded.spec,
        trained.history,
        fed.test_metrics,
        fed.verification,
        fed.analyses,
        fed.rounds,
        stage_seconds,
        loaded.data,
        fed.model,
        policy_sections=fed.sections,
        evaluations=fed.evaluations,
    )


def result(
    fed: FedBack, run_id: str, stage_seconds: Mapping[str, float], report: Path
) -> RunResult:
    """What :func:`neuroplex.run.run` returns for a completed run (one no policy rejected)."""
    return RunResult(
        run_dir=fed.analyzed.exported.tested.trained.built.loaded.run_dir,
        run_id=run_id,
        status="completed",
        test_metrics=fed.test_metrics,
        stage_seconds=dict(stage_seconds),
        analyses={k: to_plain(v) for k, v in fed.analyses.items()},
        rounds=fed.rounds,
        verification=to_plain(fed.verification) if fed.verification is not None else None,
        report=report,
    )


def write_results(
    run_dir: Path,
    spec: RunSpec,
    history: Any,
    test_metrics: Mapping[str, float],
    verification: Any,
    analyses: Mapping[str, Any],
    rounds: Sequence[Mapping[str, Any]],
    stage_seconds: Mapping[str, float],
    data: DataSplits,
    model: torch.nn.Module,
    *,
    policy_sections: Sequence[Mapping[str, Any]] = (),
    evaluations: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    sections: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in test_metrics.items())
    sections.append(
        {
            "type": "text",
            "title": "Summary",
            "text": f"{spec.model.name} on {spec.data.name}: test {metrics}",
        }
    )
    sections.extend(_history_sections(history))
    sections.append(
        {
            "type": "table",
            "title": "Test metrics",
            "columns": ["metric", "value"],
            "rows": [[k, v] for k, v in test_metrics.items()],
        }
    )
    evaluations = dict(evaluations or {})
    robustness = robustness_rows(analyses, evaluations)
    sections.extend(robustness_section(robustness))
    if verification is not None:
        sections.extend(_sections_of("ONNX parity", verification, arrays))
    for name, result in analyses.items():
        sections.extend(_sections_of(name, result, arrays))
    sections.extend(dict(section) for section in policy_sections)
    if isinstance(model, SampleReporter):
        x_test, _ = _xy(data.test)
        for title, images in model.report_samples(x_test[:16]).items():
            key = f"samples_{len(arrays)}"
            arrays[key] = np.asarray(images)
            sections.append({"type": "images", "title": title, "array": key})
    sections.append(
        {
            "type": "table",
            "title": "Time per stage",
            "columns": ["stage", "seconds"],
            "rows": [[k, v] for k, v in stage_seconds.items()],
        }
    )
    results = {
        "title": f"neuroplex run: {spec.name}",
        "subtitle": f"model {spec.model.name}, data {spec.data.name}",
        "test_metrics": dict(test_metrics),
        "rounds": list(rounds),
        "robustness": robustness,
        "evaluations": evaluations,
        "stage_seconds": dict(stage_seconds),
        "sections": sections,
    }
    if arrays:
        np.savez_compressed(run_dir / "arrays.npz", **arrays)
    write_json(run_dir / "results.json", to_plain(results))
    return build_report(run_dir)


def _history_sections(history: Any) -> list[dict[str, Any]]:
    epochs = [to_plain(e) for e in getattr(history, "epochs", [])]
    if not epochs:
        return []
    series: dict[str, list[Any]] = {}
    for epoch in epochs:
        flat = _numbers(epoch)
        for key in flat:
            if "loss" in key or "accuracy" in key:
                series.setdefault(key, [])
    for key in series:
        series[key] = [_numbers(e).get(key) for e in epochs]
    x = [int(_numbers(e).get("epoch", i + 1)) for i, e in enumerate(epochs)]
    return [
        {"type": "lines", "title": "Training curves", "x": x, "series": series, "xlabel": "epoch"}
    ]


def _sections_of(title: str, result: Any, arrays: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(result, Reportable):
        out = []
        for section in result.report_sections():
            section = dict(section)
            section["title"] = f"{title}: {section.get('title', '')}".rstrip(": ")
            if section.get("type") == "images" and "data" in section:
                key = f"a{len(arrays)}"
                arrays[key] = np.asarray(section.pop("data"))
                section["array"] = key
            out.append(section)
        return out
    numbers = _numbers(result)
    if not numbers:
        return []
    return [
        {
            "type": "table",
            "title": title,
            "columns": ["quantity", "value"],
            "rows": [[k, v] for k, v in list(numbers.items())[:60]],
        }
    ]


def _numbers(result: Any, prefix: str = "") -> dict[str, float]:
    """Numeric scalar leaves of a result, flattened with dotted keys."""
    plain = to_plain(result)
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            if math.isfinite(float(value)):
                out[key] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))

    walk(plain, prefix)
    return out
