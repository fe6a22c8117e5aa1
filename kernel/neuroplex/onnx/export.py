"""Export of PyTorch models to verified ONNX files (torch.onnx dynamo exporter).

:func:`export_onnx` writes, for each graph of a model, ``<name>.onnx`` with a dynamic batch
dimension and neuroplex metadata (see :mod:`neuroplex.onnx.metadata`), plus - when the model
allows it - ``<name>.vjp.onnx``, the vector-Jacobian-product graph that gives the
``OnnxModule`` its gradients. Every file is written to a temporary name, verified against
PyTorch (:func:`~neuroplex.onnx.verify_onnx`) and only then renamed into place: a failed
verification raises :class:`~neuroplex.errors.ExportError` with the comparison table and
leaves no file behind.

This module checks the arguments and gathers the metadata every graph shares; the conversion
(torch.export + torch.onnx) is :mod:`neuroplex.onnx._convert`, writing, verifying and publishing
one graph is :mod:`neuroplex.onnx._publish`, and the result records are in
:mod:`neuroplex.onnx.results`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from neuroplex.errors import ExportError
from neuroplex.onnx._convert import batch_at_least_two, graph_examples
from neuroplex.onnx._publish import export_graph
from neuroplex.onnx.metadata import package_versions
from neuroplex.onnx.results import ExportResult, GraphExport
from neuroplex.protocols import Configurable
from neuroplex.records import ModelRecord
from neuroplex.registry import origin_of
from neuroplex.torchutils import eval_mode

__all__ = ["DEFAULT_OPSET", "ExportResult", "GraphExport", "export_onnx", "graph_path"]

#: opset used when none is given
DEFAULT_OPSET = 18


def graph_path(path: str | os.PathLike[str], graph: str) -> Path:
    """Where graph ``graph`` of an export to ``path`` goes: ``model`` → ``path`` itself,
    others → ``<stem>.<graph>.onnx`` beside it."""
    path = Path(path)
    return path if graph == "model" else path.with_name(f"{path.stem}.{graph}.onnx")


def _check_losses(losses: Sequence[str] | None) -> tuple[str, ...]:
    from neuroplex.onnx._losses import DEFAULT_LOSSES, LOSSES

    if losses is None:
        return DEFAULT_LOSSES
    chosen = tuple(dict.fromkeys(losses))
    unknown = [name for name in chosen if name not in LOSSES]
    if unknown:
        raise ExportError(
            f"unknown loss graph(s) {unknown} in losses=: choose from {', '.join(LOSSES)} "
            "(or losses=() for none)"
        )
    return chosen


def _model_config(model: nn.Module) -> Any:
    if isinstance(model, Configurable):
        try:
            return model.to_config()
        except Exception as exc:  # a broken to_config must not block the export
            return {"error": f"to_config() failed: {type(exc).__name__}: {exc}"}
    return None


def _origin(model: nn.Module) -> dict[str, str] | None:
    reg = origin_of(model)
    if reg is None:
        return None
    return {
        "component": reg.record.name,
        "distribution": reg.distribution,
        "version": reg.version,
    }


def _default_graphs(model: nn.Module) -> tuple[str, ...]:
    reg = origin_of(model)
    if reg is not None and isinstance(reg.record, ModelRecord) and reg.record.export_graphs:
        return tuple(reg.record.export_graphs)
    return ("model",)


def _progress(enabled: bool | None, total: int) -> Any:
    from tqdm.auto import tqdm

    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return tqdm(total=total, desc="onnx export", unit="step", disable=disable, leave=False)


def export_onnx(
    model: nn.Module,
    example_input: Any,
    path: str | os.PathLike[str],
    *,
    graphs: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    gradients: bool = True,
    verify: bool = True,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    contrib_ops: bool = True,
    progress: bool | None = None,
    losses: Sequence[str] | None = None,
) -> ExportResult:
    """Export ``model`` to ONNX, verify it against PyTorch, and publish the files.

    Args:
        model: the PyTorch model. It is exported in eval mode (dropout off, BatchNorm running
            statistics); its own mode is restored afterwards.
        example_input: an example batch ``(N, ...)`` (a tensor or tuple of tensors), or a
            dict ``{graph: batch}``. A batch of 1 is repeated to 2 (batch 1 would be baked in).
        path: the forward file of graph ``"model"``; other graphs go to
            ``<stem>.<graph>.onnx`` and gradient graphs to ``<stem>.vjp.onnx``.
        graphs: graph names (default: the model record's ``export_graphs``, else
            ``("model",)``); ``"model"`` is the model itself, others name sub-modules.
        metadata: stored in the file; keys ``input_range`` (``(min, max)``) and
            ``class_names`` are understood, everything else is kept under ``user``.
        opset: the ONNX opset (default 18).
        gradients: also export the VJP graph (tier ``"gradients"``) when the graph has one
            floating-point tensor input and one tensor output and the trace succeeds.
        verify: verify against PyTorch before publishing (strongly recommended).
        input_names, output_names: graph IO names (default ``input`` / ``output``).
        atol, rtol: verification tolerances (default CPU ``1e-5``/``1e-4``).
        contrib_ops: let forward graphs use ONNX Runtime contrib kernels where they are faster
            (``com.microsoft.MultiHeadAttention`` for plain self-attention); ``False`` keeps
            standard ONNX ops only (for other runtimes).
        progress: show a progress bar (default: when stderr is a terminal).
        losses: the fused loss-gradient graphs ``(input, labels) -> (output, loss,
            grad_input)`` to write beside the file as ``<stem>.loss-<name>.onnx`` (names from
            :data:`neuroplex.onnx.LOSSES`; default ``("ce", "selected")``, ``()`` for none).
            Written only with the gradient tier and a ``(N, C)`` output; each is verified
            against autograd, and one that fails is dropped with the reason in the metadata
            (``loss_graphs_dropped``).

    Returns:
        an :class:`ExportResult` with one :class:`GraphExport` per graph.

    Raises:
        ExportError: tracing or conversion failed (naming the operator and module when an
            operator has no ONNX translation) or verification failed (with the table).
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"export_onnx needs a torch.nn.Module, got {type(model).__name__}")
    if not 7 <= opset <= 23:
        raise ExportError(f"opset {opset} is not supported by the exporter: use 18 (7..23)")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"export path {str(path)!r} must end in '.onnx'")
    path.parent.mkdir(parents=True, exist_ok=True)
    graphs = tuple(graphs) if graphs else _default_graphs(model)
    loss_names = _check_losses(losses) if gradients else ()
    meta = dict(metadata or {})
    input_range = meta.pop("input_range", None)
    class_names = list(meta.pop("class_names", []) or [])
    if input_range is not None:
        input_range = (float(input_range[0]), float(input_range[1]))
    common = {
        "format": 1,
        "config": _model_config(model),
        "origin": _origin(model),
        "input_range": input_range,
        "class_names": class_names,
        "versions": package_versions(),
        "user": meta,
    }
    results = []
    bar = _progress(progress, total=len(graphs) * 3)
    try:
        with eval_mode(model, freeze=False):
            examples = graph_examples(model, example_input, graphs)
            for graph in graphs:
                results.append(
                    export_graph(
                        model,
                        graph,
                        batch_at_least_two(examples[graph]),
                        graph_path(path, graph),
                        common=common,
                        opset=opset,
                        gradients=gradients,
                        verify=verify,
                        input_names=input_names,
                        output_names=output_names,
                        atol=atol,
                        rtol=rtol,
                        contrib_ops=contrib_ops,
                        losses=loss_names,
                        bar=bar,
                    )
                )
    finally:
        bar.close()
    return ExportResult(graphs=tuple(results))
