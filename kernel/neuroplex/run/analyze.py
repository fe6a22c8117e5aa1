"""Stage 5, analyze: every analyzer of the spec, on ONNX Runtime (``backend = "onnx"``) or on
the PyTorch model, over the held-out test split (never training or validation data); each
result's provenance (analyzer, split, n, backend) goes with it to the sinks and ``results.json``.
``neuroplex analyze`` on an ONNX file alone lives in :mod:`neuroplex.run.analyze_file`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.config import AnalyzerSpec
from neuroplex.errors import ConfigError
from neuroplex.mechanic import Mechanic
from neuroplex.records import DataSplits
from neuroplex.registry import create_analyzer
from neuroplex.run.build import plugin_errors
from neuroplex.run.data import _xy
from neuroplex.run.export import Exported

__all__ = ["SPLITS", "Analyzed", "analyze", "now_analyzers", "run_analyses"]

#: the held-out splits an analysis may run on
SPLITS = ("test", "val")


@attrs.frozen(kw_only=True)
class Analyzed:
    """The analyze stage's result: the export stage's, plus each analyzer's result by key."""

    exported: Exported
    analyses: dict[str, Any]
    #: per analysis key: ``{"analyzer", "split", "n", "backend"}`` (where it was evaluated)
    evaluations: dict[str, dict[str, Any]] = attrs.field(factory=dict)


def analyze(exported: Exported, mechanic: Mechanic) -> Analyzed:
    """Run the spec's analyses on the trained model; those marked ``models = "final"`` wait
    for the feedback stage when the spec has policies (one may replace the model)."""
    built = exported.tested.trained.built
    spec = built.loaded.spec
    evaluations: dict[str, dict[str, Any]] = {}
    analyses = run_analyses(
        now_analyzers(spec.analysis.analyzers, has_policies=bool(spec.feedback.policies)),
        built.model,
        exported.onnx_path,
        built.loaded.data,
        mechanic,
        evaluations=evaluations,
    )
    return Analyzed(exported=exported, analyses=analyses, evaluations=evaluations)


def now_analyzers(specs: Sequence[AnalyzerSpec], *, has_policies: bool) -> list[AnalyzerSpec]:
    """The entries the analyze stage runs: all of them without policies (the trained model is
    the final one), else those that run on every model (``models = "every"``)."""
    return [s for s in specs if not has_policies or s.models == "every"]


def _analysis_target(spec: AnalyzerSpec, model: torch.nn.Module, onnx_path: Path | None) -> Any:
    if spec.backend == "onnx":
        if onnx_path is None or not onnx_path.is_file():
            raise ConfigError(
                f"analyzer {spec.name!r} asks for backend 'onnx' but export is disabled; "
                "enable [export] or set backend = 'torch'",
                path="analysis.analyzers",
            )
        from neuroplex.onnx import load_onnx

        return load_onnx(onnx_path)
    return model


def run_analyses(
    specs: Sequence[AnalyzerSpec],
    model: torch.nn.Module,
    onnx_path: Path | None,
    data: DataSplits,
    mechanic: Mechanic,
    *,
    round_: int = 0,
    split: str = "test",
    evaluations: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``specs`` on the first ``n_samples`` points of ``split`` (``test`` or ``val``);
    returns the results by key and, when given, fills ``evaluations`` with their provenance."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    x_test, y_test = _xy(data.test if split == "test" else data.val)
    results: dict[str, Any] = {}
    model.eval()
    for spec in specs:
        target = _analysis_target(spec, model, onnx_path)
        options = dict(spec.options)
        options.setdefault("input_range", tuple(data.input_range))
        try:
            analyzer = create_analyzer(spec.name, target, **options)
        except ConfigError:
            options.pop("input_range")
            analyzer = create_analyzer(spec.name, target, **options)
        n = min(spec.n_samples, len(x_test))
        with plugin_errors(analyzer, "analyzer", spec.name, "analyzing"):
            result = analyzer.analyze(x_test[:n], None if y_test is None else y_test[:n])
        key = spec.key if round_ == 0 else f"{spec.key}@round{round_}"
        results[key] = result
        where = {"analyzer": spec.name, "split": split, "n": n, "backend": spec.backend}
        mechanic.record_analysis(spec.key, result, step=round_, evaluated_on=where)
        if evaluations is not None:
            evaluations[key] = where
    return results
