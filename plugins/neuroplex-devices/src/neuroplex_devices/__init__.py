"""neuroplex-devices: cpu, cuda, mps, auto; ONNX Runtime providers; the seed's GPUHandler.

Attributes load lazily: the entry module ``neuroplex_devices.plugin`` must not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["CpuDevice", "CudaDevice", "Device", "GPUHandler", "MpsDevice", "auto"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("neuroplex_devices.devices"), name)
    raise AttributeError(f"module 'neuroplex_devices' has no attribute {name!r}")


if TYPE_CHECKING:
    from neuroplex_devices.devices import (
        CpuDevice,
        CudaDevice,
        Device,
        GPUHandler,
        MpsDevice,
        auto,
    )
