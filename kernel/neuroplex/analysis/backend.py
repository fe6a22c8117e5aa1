"""Which engine runs an analysis: a PyTorch module, an ``OnnxModule`` or a ``.onnx`` file.

Every analysis result names its ``backend`` (``"torch"`` or ``"onnx"``) and ``tier``
(``"torch"``, ``"forward_only"`` or ``"gradients"``); :attr:`ResolvedModel.provenance` joins them
as ``"torch"``, ``"onnx/forward_only"`` or ``"onnx/gradients"``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch

from neuroplex.errors import ConfigError
from neuroplex.ranges import InputRange, check_input_range
from neuroplex.torchutils import eval_mode, torch_device

__all__ = [
    "ResolvedModel",
    "eval_mode",
    "fused_loss_gradient",
    "on_device",
    "require_gradients",
    "resolve_device",
    "resolve_model",
]


@attrs.frozen
class ResolvedModel:
    """A model ready for analysis.

    Attributes:
        module: a ``torch.nn.Module`` (for ONNX: the ``OnnxModule`` wrapping ONNX Runtime).
        backend: ``"torch"`` or ``"onnx"``.
        tier: ``"torch"``; for ONNX ``"gradients"`` (exported VJP graph) or ``"forward_only"``.
        input_range: ``(min, max)`` of the inputs, or per channel ``(mins, maxs)`` (the
            ``OnnxModule``'s ``input_range`` argument, else the ONNX metadata), ``None`` if
            unknown.
        foreign: an ONNX file written by another tool (no neuroplex metadata): analyzers that
            clip to the input range have no default for it.
        output_note: how the file's output was changed for analysis ("" when it was not),
            e.g. a final Softmax analysed as log-probabilities; results record it.
        tier_reason: why the ONNX model has its tier (e.g. the operator without a gradient
            rule), "" for PyTorch models.
    """

    module: torch.nn.Module
    backend: str
    tier: str
    input_range: InputRange | None = None
    foreign: bool = False
    output_note: str = ""
    tier_reason: str = ""

    @property
    def provenance(self) -> str:
        """``"torch"``, ``"onnx/forward_only"`` or ``"onnx/gradients"``."""
        return "torch" if self.backend == "torch" else f"{self.backend}/{self.tier}"

    @property
    def has_gradients(self) -> bool:
        return self.tier in ("torch", "gradients")

    @property
    def device(self) -> torch.device:
        """Where inputs go: the PyTorch model's device, or the OnnxModule's (CPU or CUDA)."""
        if self.backend == "torch":
            return resolve_device(None, self.module)
        return torch.device(getattr(self.module, "device", "cpu"))


def _onnx_module_type() -> Any:
    """``neuroplex.onnx.OnnxModule`` if the bridge is already imported (never imports it)."""
    module = sys.modules.get("neuroplex.onnx")
    return getattr(module, "OnnxModule", None) if module is not None else None


def _resolved_onnx(module: Any) -> ResolvedModel:
    """A resolved ``neuroplex.onnx.OnnxModule`` (its declared attributes)."""
    value = module.input_range
    input_range = None if value is None else check_input_range(value)
    return ResolvedModel(
        module,
        "onnx",
        str(module.tier),
        input_range,
        foreign=bool(module.foreign),
        output_note=str(module.output_note),
        tier_reason=str(module.tier_reason),
    )


def _load_onnx_file(path: Path) -> ResolvedModel:
    if path.suffix.lower() != ".onnx":
        raise ConfigError(
            f"model path {str(path)!r} is not an ONNX file: pass a torch.nn.Module, an "
            "OnnxModule or a path ending in '.onnx'",
            path="model",
        )
    if not path.is_file():
        raise ConfigError(f"ONNX file {str(path)!r} does not exist", path="model")
    try:
        from neuroplex import onnx as nx_onnx
    except ImportError as exc:  # the kernel's ONNX bridge is missing or broken
        raise ConfigError(
            f"analysing {str(path)!r} needs the kernel's ONNX bridge (neuroplex.onnx), which "
            f"cannot be imported: {exc}",
            path="model",
        ) from exc
    return _resolved_onnx(nx_onnx.load_onnx(path))


def resolve_model(model: Any) -> ResolvedModel:
    """Wrap ``model`` (``torch.nn.Module``, ``OnnxModule`` or ``.onnx`` path) for analysis."""
    if isinstance(model, ResolvedModel):
        return model
    if isinstance(model, str | os.PathLike):
        return _load_onnx_file(Path(model))
    onnx_type = _onnx_module_type()
    if onnx_type is not None and isinstance(model, onnx_type):
        return _resolved_onnx(model)
    if isinstance(model, torch.nn.Module):
        return ResolvedModel(model, "torch", "torch", None)
    raise ConfigError(
        f"cannot analyse a {type(model).__name__}: pass a torch.nn.Module, an OnnxModule "
        "or a path to a '.onnx' file",
        path="model",
    )


def fused_loss_gradient(
    module: torch.nn.Module, loss: str, x: torch.Tensor, *labels: torch.Tensor
) -> torch.Tensor | None:
    """``d sum_i loss_i / d x`` (shape of ``x``) from the model's fused loss-gradient graph, or
    ``None`` when ``module`` is not an ``OnnxModule`` with a ``loss`` graph (then use autograd).

    One ONNX Runtime call (forward, loss and backward together); ``loss`` and ``labels`` as in
    :meth:`neuroplex.onnx.OnnxModule.loss_and_grad`. The gradient is of the *sum* of the
    per-sample losses: divide by ``N`` for the batch mean.
    """
    onnx_type = _onnx_module_type()
    if onnx_type is None or not isinstance(module, onnx_type):
        return None
    if not module.has_loss_graph(loss):
        return None
    grad: torch.Tensor = module.loss_and_grad(x, *labels, loss=loss).grad
    return grad


def require_gradients(resolved: ResolvedModel, method: str) -> None:
    """Raise a :class:`ConfigError` when ``method`` needs gradients the model cannot give."""
    if not resolved.has_gradients:
        why = f" ({resolved.tier_reason})" if resolved.tier_reason else ""
        raise ConfigError(
            f"{method} needs gradients, but this ONNX model is forward-only{why}: use a "
            "perturbation method (occlusion, feature_ablation, square, noise), or re-export "
            "it with neuroplex.onnx.export_onnx (gradient graph enabled)",
            path="method",
        )


def resolve_device(device: Any, module: torch.nn.Module) -> torch.device:
    """A ``torch.device`` from ``None`` (the model's) or anything
    :func:`neuroplex.torchutils.torch_device` takes (a string, a device, a neuroplex Device)."""
    if device is None:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device
        return torch.device("cpu")
    return torch_device(device)


@contextlib.contextmanager
def on_device(resolved: ResolvedModel, device: torch.device) -> Iterator[torch.nn.Module]:
    """Run a PyTorch model on ``device`` for the duration, then move it back where it was.

    ONNX modules are left alone (ONNX Runtime picks its own execution provider).
    """
    module = resolved.module
    if resolved.backend != "torch":
        yield module
        return
    original = resolve_device(None, module)
    moved = original != device
    if moved:
        module.to(device)
    try:
        yield module
    finally:
        if moved:
            module.to(original)
