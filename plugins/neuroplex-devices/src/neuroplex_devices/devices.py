"""Device objects: ``is_available()`` (never raises), ``torch_device()``, ``ort_providers()``
and ``info()``; plus ``auto`` (by registered priority) and the seed's ``GPUHandler``."""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from typing import Any

import torch

from neuroplex import ConfigError
from neuroplex.protocols import Device as DeviceProtocol

__all__ = ["CpuDevice", "CudaDevice", "Device", "GPUHandler", "MpsDevice", "auto"]


def _ort_available() -> list[str]:
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:
        return []


class Device:
    """Base class: a named torch device."""

    name = "device"

    def is_available(self) -> bool:
        raise NotImplementedError

    def torch_device(self) -> torch.device:
        raise NotImplementedError

    def ort_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "available": self.is_available()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CpuDevice(Device):
    """The CPU; ``threads`` sets torch's intra-op thread count when given."""

    name = "cpu"

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"must be a positive int, got {threads!r}", path="device.threads")
        self.threads = threads

    def is_available(self) -> bool:
        return True

    def torch_device(self) -> torch.device:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return torch.device("cpu")

    def info(self) -> dict[str, Any]:
        memory = None
        with contextlib.suppress(ValueError, OSError, AttributeError):
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return {
            "name": "cpu",
            "available": True,
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "memory_bytes": memory,
        }


class CudaDevice(Device):
    """CUDA GPU ``index``."""

    name = "cuda"

    def __init__(self, index: int = 0) -> None:
        if not isinstance(index, int) or index < 0:
            raise ConfigError(f"must be an int >= 0, got {index!r}", path="device.index")
        self.index = index

    def is_available(self) -> bool:
        try:
            return bool(torch.cuda.is_available()) and self.index < torch.cuda.device_count()
        except Exception:
            return False

    def torch_device(self) -> torch.device:
        if not self.is_available():
            raise ConfigError(f"CUDA device {self.index} is not available", path="device")
        return torch.device("cuda", self.index)

    def ort_providers(self) -> list[str]:
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in _ort_available():
            providers.insert(0, "CUDAExecutionProvider")
        return providers

    def info(self) -> dict[str, Any]:
        if not self.is_available():
            return {"name": f"cuda:{self.index}", "available": False}
        props = torch.cuda.get_device_properties(self.index)
        return {
            "name": props.name,
            "available": True,
            "index": self.index,
            "memory_bytes": int(props.total_memory),
            "capability": f"{props.major}.{props.minor}",
            "bf16": bool(torch.cuda.is_bf16_supported()),
        }


class MpsDevice(Device):
    """Apple Metal GPU."""

    name = "mps"

    def is_available(self) -> bool:
        try:
            return bool(torch.backends.mps.is_available())
        except Exception:
            return False

    def torch_device(self) -> torch.device:
        if not self.is_available():
            raise ConfigError("MPS is not available on this machine", path="device")
        return torch.device("mps")

    def ort_providers(self) -> list[str]:
        providers = ["CPUExecutionProvider"]
        if "CoreMLExecutionProvider" in _ort_available():
            providers.insert(0, "CoreMLExecutionProvider")
        return providers

    def info(self) -> dict[str, Any]:
        return {"name": "mps", "available": self.is_available()}


def auto(**config: Any) -> DeviceProtocol:
    """The available registered device of highest ``DeviceRecord.priority`` (not hook order)."""
    from neuroplex.records import DeviceRecord
    from neuroplex.registry import create_device, list_components

    records = [
        r
        for r in list_components("device")
        if isinstance(r, DeviceRecord) and r.name.lower() != "auto"
    ]
    for record in sorted(records, key=lambda r: (-r.priority, r.name)):
        try:
            device = create_device(record.name, **(config if record.name == "cuda" else {}))
            if device.is_available():
                return device
        except Exception:
            continue
    return CpuDevice()


class GPUHandler:
    """The seed's GPU handle: ``GPUHandler(device="cuda").get_device() -> torch.device``.

    Asking for a GPU that does not exist falls back to the CPU with one warning.
    """

    def __init__(self, device: str = "cuda") -> None:
        from neuroplex.registry import create_device

        self.requested = device
        self.device = create_device(device)
        if not self.device.is_available():
            warnings.warn(
                f"device {device!r} is not available here; falling back to the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
            self.device = CpuDevice()

    def get_device(self) -> torch.device:
        return torch.device(self.device.torch_device())

    def ort_providers(self) -> list[str]:
        return list(self.device.ort_providers())

    def info(self) -> dict[str, Any]:
        return dict(self.device.info())

    @property
    def is_gpu(self) -> bool:
        return self.get_device().type in ("cuda", "mps")
