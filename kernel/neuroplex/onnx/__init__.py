"""The ONNX bridge: export, verification and an ONNX Runtime backend that is a torch module.

* :func:`export_onnx` — torch.onnx (dynamo) export with a dynamic batch, metadata, an optional
  vector-Jacobian-product graph, verified against PyTorch before the file is published.
* fused loss-gradient graphs (:data:`LOSSES`: ``ce``, ``cw``, ``dlr``, ``dlr_targeted``,
  ``selected``) beside the file: :meth:`OnnxModule.loss_and_grad` gives output, per-sample
  loss and input gradient in one ONNX Runtime call (``kernel/docs/onnx-gradients.md``).
* :func:`verify_onnx` — per-output error table (:class:`VerificationReport`).
* :class:`OnnxModule` / :func:`load_onnx` — ONNX Runtime as a ``torch.nn.Module`` with
  tiers ``"gradients"`` (autograd through the exported VJP graph) or ``"forward_only"``,
  plus :meth:`OnnxModule.activations`.
* :func:`read_metadata`, :func:`predict` — for the CLI and analysis of files alone.

Importing this package imports torch, onnx and onnxruntime; ``import neuroplex`` does not.
"""

from __future__ import annotations

from neuroplex.onnx._checks import MAX_ONNX_BYTES, MAX_OPSET, MIN_OPSET, load_checked_model
from neuroplex.onnx._losses import DEFAULT_LOSSES, LOSSES, LossSpec
from neuroplex.onnx.export import DEFAULT_OPSET, ExportResult, GraphExport, export_onnx, graph_path
from neuroplex.onnx.metadata import read_metadata
from neuroplex.onnx.runtime import InputSpec, LossGradient, OnnxModule, load_onnx, predict
from neuroplex.onnx.verify import (
    VerificationReport,
    VerificationRow,
    default_tolerances,
    verify_loss_graph,
    verify_onnx,
)

__all__ = [
    "DEFAULT_LOSSES",
    "DEFAULT_OPSET",
    "LOSSES",
    "MAX_ONNX_BYTES",
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportResult",
    "GraphExport",
    "InputSpec",
    "LossGradient",
    "LossSpec",
    "OnnxModule",
    "VerificationReport",
    "VerificationRow",
    "default_tolerances",
    "export_onnx",
    "graph_path",
    "load_checked_model",
    "load_onnx",
    "predict",
    "read_metadata",
    "verify_loss_graph",
    "verify_onnx",
]
