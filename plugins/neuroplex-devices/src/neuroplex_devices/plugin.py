"""Entry module of neuroplex-devices: registers devices (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import DeviceRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_DEV = "neuroplex_devices.devices"


@hookimpl
def neuroplex_register_devices() -> Iterator[DeviceRecord]:
    yield DeviceRecord(
        name="cuda",
        factory=f"{_DEV}:CudaDevice",
        summary="NVIDIA GPU through CUDA (ONNX Runtime: CUDA then CPU provider)",
        capabilities={"gpu", "amp_fp16", "amp_bf16", "ddp_nccl"},
        example_config={"index": 0},
        priority=100,
    )
    yield DeviceRecord(
        name="mps",
        factory=f"{_DEV}:MpsDevice",
        summary="Apple GPU through Metal (ONNX Runtime: CoreML then CPU provider)",
        capabilities={"gpu"},
        priority=50,
    )
    yield DeviceRecord(
        name="cpu",
        factory=f"{_DEV}:CpuDevice",
        summary="the CPU (always available)",
        capabilities={"amp_bf16", "ddp_gloo"},
        priority=0,
    )
    yield DeviceRecord(
        name="auto",
        factory=f"{_DEV}:auto",
        summary="the available device of highest priority (cuda > mps > cpu, plugins included)",
        priority=-1000,
    )
