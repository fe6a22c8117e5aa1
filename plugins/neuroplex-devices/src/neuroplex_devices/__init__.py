"""neuroplex-devices: cpu, cuda, mps, auto; ONNX Runtime providers; the seed's GPUHandler."""

from neuroplex_devices.devices import CpuDevice, CudaDevice, Device, GPUHandler, MpsDevice, auto

__all__ = ["CpuDevice", "CudaDevice", "Device", "GPUHandler", "MpsDevice", "auto"]
