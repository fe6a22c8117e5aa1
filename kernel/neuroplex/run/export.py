"""Stage 4, export: ``model.onnx`` (+ its gradient graphs), verified against PyTorch; also
what ``neuroplex export`` and ``neuroplex verify`` do with a run's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.config import RunSpec, load_spec
from neuroplex.errors import CheckpointError, ExportError
from neuroplex.mechanic import Mechanic, to_plain
from neuroplex.records import DataSplits, ModelRecord
from neuroplex.registry import create_model
from neuroplex.run.build import model_record
from neuroplex.run.data import _xy, load_data
from neuroplex.run.train import Tested
from neuroplex.training import load_checkpoint

__all__ = ["Exported", "export", "export_checkpoint", "export_model", "verify_against_checkpoint"]


@attrs.frozen(kw_only=True)
class Exported:
    """The export stage's result: the tested model, and its ONNX file with the verification
    report (both ``None`` when ``[export]`` is disabled)."""

    tested: Tested
    onnx_path: Path | None
    verification: Any


def export(tested: Tested, mechanic: Mechanic) -> Exported:
    """Export to ``<run_dir>/model.onnx`` when ``[export]`` is enabled."""
    built = tested.trained.built
    spec, run_dir = built.loaded.spec, built.loaded.run_dir
    if not spec.export.enabled:
        return Exported(tested=tested, onnx_path=None, verification=None)
    onnx_path = run_dir / "model.onnx"
    verification = export_model(built.model, built.record, spec, built.loaded.data, onnx_path)
    mechanic.emit("artifact", "model.onnx", {"path": str(onnx_path), "type": "onnx"}, step=0)
    return Exported(tested=tested, onnx_path=onnx_path, verification=verification)


def export_model(
    model: torch.nn.Module,
    record: ModelRecord,
    spec: RunSpec,
    data: DataSplits,
    path: Path,
) -> Any:
    from neuroplex.onnx import export_onnx  # onnx and onnxruntime load only when needed

    x_train, _ = _xy(data.train)
    example = x_train[: max(2, min(8, len(x_train)))]
    metadata = {
        "input_range": tuple(data.input_range),
        "class_names": list(data.class_names),
        "dataset": data.name or spec.data.name,
        "model_name": spec.model.name,
        "hyperparameters": json.dumps(to_plain(spec.model.hyperparameters)),
    }
    return export_onnx(
        model,
        example,
        path,
        graphs=record.export_graphs,
        metadata=metadata,
        opset=spec.export.opset,
        gradients=spec.export.gradients,
        verify=spec.export.verify,
        atol=spec.export.atol,
        rtol=spec.export.rtol,
        progress=spec.training.progress,
    )


def _load_checkpoint_model(checkpoint: Path) -> tuple[torch.nn.Module, ModelRecord, RunSpec]:
    state = load_checkpoint(checkpoint)
    run_dir = checkpoint.parent.parent
    spec_path = run_dir / "spec.json"
    if not spec_path.is_file():
        raise CheckpointError(f"{checkpoint}: no spec.json in its run directory {run_dir}")
    spec = load_spec(spec_path)
    record = model_record(spec.model)
    model = create_model(spec.model)
    model.load_state_dict(state["model"])
    model.eval()
    return model, record, spec


def export_checkpoint(checkpoint: Path, output: Path) -> Path:
    """``neuroplex export CHECKPOINT -o model.onnx`` (verified, or an ExportError)."""
    model, record, spec = _load_checkpoint_model(checkpoint)
    data = load_data(spec)
    export_model(model, record, spec, data, output)
    return output


def verify_against_checkpoint(onnx: Path, checkpoint: Path) -> str:
    """``neuroplex verify model.onnx --against CHECKPOINT``: the parity table (Markdown)."""
    from neuroplex.onnx import verify_onnx

    model, _record, spec = _load_checkpoint_model(checkpoint)
    report = verify_onnx(onnx, model, atol=spec.export.atol, rtol=spec.export.rtol)
    text = report.to_markdown()
    if not report.passed:
        raise ExportError(f"verification failed:\n{text}")
    return text
