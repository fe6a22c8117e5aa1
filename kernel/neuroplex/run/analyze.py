"""Stage 5, analyze: every analyzer of the spec, on ONNX Runtime (``backend = "onnx"``) or on
the PyTorch model, over the test split; also ``neuroplex analyze`` on an ONNX file alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from neuroplex.config import AnalyzerSpec
from neuroplex.errors import ConfigError
from neuroplex.mechanic import Mechanic, to_plain
from neuroplex.records import DataSplits
from neuroplex.registry import create_analyzer, create_dataset
from neuroplex.run.build import plugin_errors
from neuroplex.run.data import _xy
from neuroplex.run.export import Exported

__all__ = ["Analyzed", "analyze", "analyze_file", "run_analyses"]


@attrs.frozen(kw_only=True)
class Analyzed:
    """The analyze stage's result: the export stage's, plus each analyzer's result by key."""

    exported: Exported
    analyses: dict[str, Any]


def analyze(exported: Exported, mechanic: Mechanic) -> Analyzed:
    built = exported.tested.trained.built
    analyses = run_analyses(
        built.loaded.spec.analysis.analyzers,
        built.model,
        exported.onnx_path,
        built.loaded.data,
        mechanic,
    )
    return Analyzed(exported=exported, analyses=analyses)


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
) -> dict[str, Any]:
    x_test, y_test = _xy(data.test)
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
        mechanic.record_analysis(spec.key, result, step=round_)
    return results


def analyze_file(
    onnx: Path,
    analyzers: Sequence[str],
    data: str,
    n_samples: int,
    *,
    input_range: Sequence[float] | None = None,
) -> dict[str, Any]:
    """``neuroplex analyze``: run analyzers on an ONNX file with no Python model object.

    ``input_range`` (``--input-range MIN MAX``) overrides the file's metadata; files from
    other tools have none, and attacks then need it.
    """
    from neuroplex.onnx import load_onnx, read_metadata
    from neuroplex.onnx.runtime import check_input_range

    if input_range is not None:
        input_range = check_input_range(input_range)  # before loading: a bad value fails fast
    module = load_onnx(onnx, input_range=input_range)
    meta = read_metadata(onnx)
    x, y = _load_inputs(data, meta)
    out: dict[str, Any] = {}
    for name in analyzers:
        # analyzers read the input range from the OnnxModule's metadata themselves
        analyzer = create_analyzer(name, module)
        out[name] = to_plain(analyzer.analyze(x[:n_samples], None if y is None else y[:n_samples]))
    return out


def _load_inputs(data: str, meta: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    path = Path(data)
    if path.suffix == ".npz":
        if not path.is_file():
            raise ConfigError(f"--data: file not found: {path}")
        with np.load(path, allow_pickle=False) as arrays:
            if "X" not in arrays.files:
                raise ConfigError(f"--data: {path} has no array 'X' (found: {arrays.files})")
            x = torch.from_numpy(arrays["X"].astype(np.float32))
            y = torch.from_numpy(arrays["y"].astype(np.int64)) if "y" in arrays.files else None
        return x, y
    splits = create_dataset(data, seed=0, val_fraction=0.15, test_fraction=0.15)
    return _xy(splits.test)
