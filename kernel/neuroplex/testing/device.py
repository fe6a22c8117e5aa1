"""Conformance checks for devices: ``is_available`` never raises, ``info`` is a dict, an
available device gives a usable torch device and ONNX Runtime providers ending on CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuroplex.protocols import Device
from neuroplex.records import DeviceRecord

__all__ = ["CHECKS"]


def _build(record: DeviceRecord) -> Any:
    return record.load()(**record.example_config)


def check_is_a_device(record: DeviceRecord) -> None:
    """The factory builds a :class:`neuroplex.protocols.Device`."""
    device = _build(record)
    missing = [
        m
        for m in ("is_available", "torch_device", "ort_providers", "info")
        if not hasattr(device, m)
    ]
    assert isinstance(device, Device), (
        f"device {record.name!r}: {type(device).__name__} is not a neuroplex.protocols.Device "
        f"(lacks {', '.join(f'{m}()' for m in missing)})"
    )


def check_is_available_never_raises(record: DeviceRecord) -> None:
    device = _build(record)
    try:
        available = device.is_available()
    except Exception as exc:  # the contract: never raises
        raise AssertionError(
            f"device {record.name!r}: is_available() raised {type(exc).__name__}: {exc}"
        ) from exc
    assert isinstance(available, bool), (
        f"device {record.name!r}: is_available() returned {available!r}, not a bool"
    )


def check_info_is_dict(record: DeviceRecord) -> None:
    info = _build(record).info()
    assert isinstance(info, dict), f"device {record.name!r}: info() returned {type(info).__name__}"
    assert "name" in info, f"device {record.name!r}: info() has no 'name' key ({sorted(info)})"


def check_available_device_is_usable(record: DeviceRecord) -> None:
    import torch

    device = _build(record)
    if not device.is_available():
        return
    target = torch.device(device.torch_device())
    x = torch.arange(6.0, device=target).reshape(2, 3)
    got = (x @ x.T).cpu()
    want = torch.arange(6.0).reshape(2, 3) @ torch.arange(6.0).reshape(2, 3).T
    assert torch.allclose(got, want), f"device {record.name!r}: wrong arithmetic {got} != {want}"
    providers = list(device.ort_providers())
    assert providers and all(isinstance(p, str) for p in providers), (
        f"device {record.name!r}: ort_providers() must be a non-empty list of names"
    )
    assert providers[-1] == "CPUExecutionProvider", (
        f"device {record.name!r}: ort_providers() should end with the CPU fallback, got {providers}"
    )


CHECKS: list[Callable[[DeviceRecord], None]] = [
    check_is_a_device,
    check_is_available_never_raises,
    check_info_is_dict,
    check_available_device_is_usable,
]
