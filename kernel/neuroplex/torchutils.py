"""Two torch helpers that training, the ONNX bridge and analysis share, kept in one copy.

- :func:`eval_mode`: a model in eval mode for the duration of a ``with`` block, every module's
  own training flag (and, with ``freeze``, every parameter's ``requires_grad``) restored after.
- :func:`torch_device`: the one device resolver. Every entry point that takes a device (the
  ``Trainer``, ``OnnxModule``, the analysis backend) turns the user's value into a
  ``torch.device`` through it, so the same bad value gives the same error everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from neuroplex.errors import ConfigError
from neuroplex.protocols import TorchPlacement

__all__ = ["eval_mode", "torch_device"]


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module, *, freeze: bool = True) -> Iterator[torch.nn.Module]:
    """Put ``module`` in eval mode (and, with ``freeze``, stop parameter gradients) for the
    duration; each submodule's training flag and each parameter's ``requires_grad`` are
    restored after, as they were (a submodule the user froze in eval mode stays so)."""
    modes = [(m, m.training) for m in module.modules()]
    grads = [(p, p.requires_grad) for p in module.parameters()] if freeze else []
    module.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in grads:
            p.requires_grad_(flag)


def torch_device(device: Any, *, path: str = "device") -> torch.device:
    """A ``torch.device`` from a ``torch.device``, a neuroplex Device (anything with
    ``torch_device()``), a torch device string (``"cpu"``, ``"cuda:1"``) or a registered
    device name (``"auto"``: ``neuroplex list device``).

    Raises:
        ConfigError: the value is none of these. For a string it is the registry's
            :class:`~neuroplex.errors.ComponentNotFoundError` (one line: the value, the
            installed devices, close matches, the ``pip install`` hint), the same error a
            ``Trainer`` gives for that name.
    """
    if isinstance(device, torch.device):
        return device
    if isinstance(device, TorchPlacement):
        return torch.device(device.torch_device())
    if isinstance(device, str):
        with contextlib.suppress(RuntimeError):
            return torch.device(device)
        return registered_device(device, path=path)[0]
    raise ConfigError(
        f"device {device!r} ({type(device).__name__}) is not a device: use a name such as "
        "'cpu', 'cuda:0' or 'auto', a torch.device or a neuroplex Device",
        path=path,
    )


def registered_device(name: str, *, path: str = "device") -> tuple[torch.device, Any]:
    """The registered device ``name`` (``neuroplex list device``) and its torch device; a
    :class:`ConfigError` when it is unknown or not available on this machine."""
    from neuroplex.registry import create_device

    device = create_device(name)
    if not device.is_available():
        raise ConfigError(
            f"device {name!r} is not available here; use device = 'auto' or 'cpu'", path=path
        )
    return torch.device(device.torch_device()), device
