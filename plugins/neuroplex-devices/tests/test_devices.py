"""neuroplex-devices: auto by priority, GPUHandler fallback, providers."""

from __future__ import annotations

import warnings

import pytest
import torch

import neuroplex
from neuroplex import DeviceRecord, hookimpl


def test_cpu_device() -> None:
    cpu = neuroplex.create_device("cpu")
    assert cpu.is_available() and cpu.torch_device() == torch.device("cpu")
    assert cpu.ort_providers() == ["CPUExecutionProvider"]
    assert cpu.info()["name"] == "cpu"


def test_cuda_device_never_raises_and_falls_back() -> None:
    cuda = neuroplex.create_device("cuda")
    assert cuda.is_available() is torch.cuda.is_available()
    assert cuda.ort_providers()[-1] == "CPUExecutionProvider"
    assert isinstance(cuda.info(), dict)


class _FakeNpu:
    def is_available(self) -> bool:
        return True

    def torch_device(self) -> torch.device:
        return torch.device("cpu")

    def ort_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def info(self) -> dict[str, str]:
        return {"name": "fake_npu"}


class _FakePlugin:
    @hookimpl
    def neuroplex_register_devices(self):
        yield DeviceRecord(name="fake_npu", factory=_FakeNpu, summary="fake", priority=500)
        yield DeviceRecord(name="fake_low", factory=_FakeNpu, summary="fake", priority=-5)


def test_auto_follows_priority_not_hook_order(register_plugin) -> None:
    import neuroplex_devices.plugin as ours

    register_plugin(_FakePlugin(), name="fake", distribution="fake-dist")
    register_plugin(ours, name="devices", distribution="neuroplex-devices")
    assert isinstance(neuroplex.create_device("auto"), _FakeNpu)


def test_auto_without_gpu_is_cpu() -> None:
    device = neuroplex.create_device("auto")
    expected = "cuda" if torch.cuda.is_available() else device.torch_device().type
    assert device.torch_device().type == expected
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert device.torch_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU fallback")
def test_gpu_handler_falls_back_to_cpu_with_one_warning() -> None:
    from neuroplex_devices import GPUHandler

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler = GPUHandler(device="cuda")
        device = handler.get_device()
        handler.get_device()
    assert device == torch.device("cpu")
    messages = [str(w.message) for w in caught]
    assert messages == ["device 'cuda' is not available here; falling back to the CPU"]
    assert handler.ort_providers() == ["CPUExecutionProvider"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_handler_on_cuda() -> None:
    from neuroplex_devices import GPUHandler

    handler = GPUHandler(device="cuda")
    assert handler.get_device().type == "cuda"
    assert handler.ort_providers()[0] == "CUDAExecutionProvider"
    assert handler.info()["memory_bytes"] > 0


def test_entry_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, neuroplex_devices.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
