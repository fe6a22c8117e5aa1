"""ONNX Runtime plumbing of :class:`~neuroplex.onnx.OnnxModule`: execution providers,
session options, graph input specs, input checks, the CUDA IO-binding run and the map from
PyTorch module names to ONNX values (for :meth:`~neuroplex.onnx.OnnxModule.activations`).

Everything here is a function of a session, a graph or a tensor; the state lives in the module.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from typing import Any

import torch

from neuroplex.errors import DataError, ExportError
from neuroplex.onnx.results import InputSpec
from neuroplex.torchutils import torch_device

__all__ = [
    "DEFAULT_DISABLED_OPTIMIZERS",
    "activation_map",
    "explain_bad_inputs",
    "input_spec",
    "numpy_dtype",
    "providers_for",
    "resolve_device",
    "run_cuda",
    "session_options",
]

_ORT_DTYPES: dict[str, torch.dtype] = {
    "tensor(float)": torch.float32,
    "tensor(double)": torch.float64,
    "tensor(float16)": torch.float16,
    "tensor(bfloat16)": torch.bfloat16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(int16)": torch.int16,
    "tensor(int8)": torch.int8,
    "tensor(uint8)": torch.uint8,
    "tensor(bool)": torch.bool,
}
#: ORT fusions left off by default: on this CPU build ``SkipLayerNormFusion`` made exported
#: transformer encoders slower (d=64: 3.05 -> 2.06 ms, d=256: 41.9 -> 34.1 ms per batch of 64
#: when disabled, 1 thread), so OnnxModule turns it off; pass ``disabled_optimizers=()`` to keep it
DEFAULT_DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)
_FLOAT_ELEM_TYPES = {1, 10, 11, 16}  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def input_spec(arg: Any) -> InputSpec:
    """The :class:`InputSpec` of one ``session.get_inputs()`` entry (dynamic dims ``None``)."""
    dtype = _ORT_DTYPES.get(arg.type)
    if dtype is None:
        raise ExportError(f"graph input {arg.name!r} has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    return InputSpec(arg.name, shape, dtype)


def resolve_device(device: Any) -> torch.device:
    """The requested device; ``None``: CUDA when a GPU and the CUDA provider are there; with
    several GPUs, a ``torchrun`` process takes the one of its ``LOCAL_RANK`` (each process of
    ``neuroplex analyze --nproc N`` runs its session on its own GPU)."""
    if device is None:
        import onnxruntime as ort

        cuda = torch.cuda.is_available() and "CUDAExecutionProvider" in (
            ort.get_available_providers()
        )
        if not cuda:
            return torch.device("cpu")
        local = os.environ.get("LOCAL_RANK", "")
        count = torch.cuda.device_count()
        if local.isdigit() and count > 1:
            return torch.device("cuda", int(local) % count)
        return torch.device("cuda")
    return torch_device(device)


def providers_for(device: torch.device, tf32: bool) -> list[Any]:
    """ONNX Runtime execution providers for ``device`` (CUDA falls back to CPU)."""
    if device.type == "cuda":
        options = {"device_id": device.index or 0, "use_tf32": int(tf32)}
        return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(intra_op_threads: int | None, spin: bool) -> Any:
    """Session options: every graph optimization, sequential, quiet, spinning as asked."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # without spinning, idle ORT worker threads do not steal cores from the PyTorch code that
    # runs between calls (attacks, attributions); spin=True trades that for lower latency
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    return options


def _name_scope(node: Any) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return [str(s) for s in scopes] if isinstance(scopes, list) else None
    return None


def activation_map(model: Any) -> dict[str, str]:
    """``{PyTorch module name: ONNX value name}`` of each module's output, in graph order.

    A module's output is the first output of the last node (in topological order) the
    exporter attributed to it or to its children that yields a floating-point tensor.
    Modules the exporter fused away (a BatchNorm folded into a Conv) have no entry.
    """
    import onnx

    types: dict[str, int] = {}
    graph = model.graph
    for info in (*graph.value_info, *graph.output, *graph.input):
        types[info.name] = info.type.tensor_type.elem_type
    if not graph.value_info:
        inferred = onnx.shape_inference.infer_shapes(model)
        for info in inferred.graph.value_info:
            types[info.name] = info.type.tensor_type.elem_type
    last: dict[str, str] = {}
    for node in graph.node:
        scopes = _name_scope(node)
        if not scopes or not node.output or types.get(node.output[0]) not in _FLOAT_ELEM_TYPES:
            continue
        for module in scopes[1:-1]:
            if module:
                last[module] = node.output[0]
    return last


def explain_bad_inputs(specs: Sequence[InputSpec], inputs: Sequence[Any]) -> None:
    """Raise the DataError that says which input is wrong and how (the fast checks of
    ``OnnxModule`` found a mismatch)."""
    expected = ", ".join(spec.describe() for spec in specs)
    if len(inputs) != len(specs):
        raise DataError(
            f"the ONNX model takes {len(specs)} input(s) [{expected}], got {len(inputs)}"
        )
    for tensor, spec in zip(inputs, specs, strict=True):
        if not isinstance(tensor, torch.Tensor):
            raise DataError(
                f"input {spec.name!r} must be a torch.Tensor [{spec.describe()}], "
                f"got {type(tensor).__name__}"
            )
        if tensor.dtype != spec.dtype:
            raise DataError(
                f"input {spec.name!r} has dtype {tensor.dtype}, expected {spec.dtype} "
                f"[{spec.describe()}]: convert it with .to({spec.dtype})"
            )
        shape = tuple(tensor.shape)
        if len(shape) != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise DataError(
                f"input {spec.name!r} has shape {shape}, expected [{spec.describe()}] "
                "(N = any batch size)"
            )


def run_cuda(
    session: Any, inputs: Sequence[torch.Tensor], device: torch.device
) -> list[torch.Tensor]:
    """Run ``session`` on CUDA ``device`` through IO binding; outputs on the inputs' device."""
    # IO binding: inputs and outputs stay in device memory (no host round trip)
    binding = session.io_binding()
    index = device.index or 0
    keep = []
    for arg, tensor in zip(session.get_inputs(), inputs, strict=True):
        t = tensor.detach().to(device).contiguous()
        keep.append(t)
        binding.bind_input(
            arg.name,
            "cuda",
            index,
            numpy_dtype(t.dtype),
            list(t.shape),
            t.data_ptr(),
        )
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", index)
    # ORT runs on its own stream: make PyTorch's pending writes to the inputs visible
    torch.cuda.current_stream(device).synchronize()
    session.run_with_iobinding(binding)
    outputs = [torch.utils.dlpack.from_dlpack(value) for value in binding.get_outputs()]
    target = inputs[0].device if inputs else device
    # outputs follow the inputs: CPU tensors in, CPU tensors out
    return outputs if target.type == "cuda" else [o.to(target) for o in outputs]


def numpy_dtype(dtype: torch.dtype) -> Any:
    """The NumPy dtype of a torch dtype."""
    return torch.empty((), dtype=dtype).numpy().dtype
