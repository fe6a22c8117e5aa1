"""Validation of ONNX files before anything runs them.

A file is refused (with an :class:`~neuroplex.errors.ExportError` naming the file and the fix)
when it is missing, larger than the size limit, not a protobuf ONNX model (random bytes,
truncated downloads), fails ``onnx.checker``, uses an opset outside the supported range, or
keeps tensors in external-data files whose paths escape the model's directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from neuroplex.errors import ExportError

__all__ = ["MAX_ONNX_BYTES", "MAX_OPSET", "MIN_OPSET", "load_checked_model"]

#: refuse model files larger than this (bytes) unless the caller raises the limit
MAX_ONNX_BYTES = 2 * 1024**3
#: supported range of the default-domain opset (inclusive)
MIN_OPSET = 13
#: older files down to this opset are upgraded to MIN_OPSET in memory (onnx.version_converter)
MIN_UPGRADABLE_OPSET = 7
MAX_OPSET = 23


def _describe(source: str | os.PathLike[str] | bytes) -> str:
    return "<bytes>" if isinstance(source, bytes | bytearray) else repr(str(source))


def _read_source(
    source: str | os.PathLike[str] | bytes, max_bytes: int
) -> tuple[bytes, Path | None]:
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        base: Path | None = None
    else:
        path = Path(source)
        if not path.is_file():
            raise ExportError(f"ONNX file {str(path)!r} does not exist (or is not a file)")
        size = path.stat().st_size
        if size > max_bytes:
            raise ExportError(
                f"ONNX file {str(path)!r} is {size} bytes, over the {max_bytes}-byte limit: "
                "pass a larger max_bytes if you trust this file"
            )
        data = path.read_bytes()
        base = path.resolve().parent
    if len(data) > max_bytes:
        raise ExportError(f"ONNX model {_describe(source)} is over the {max_bytes}-byte limit")
    if not data:
        raise ExportError(f"ONNX model {_describe(source)} is empty")
    return data, base


def _check_external_data(model: Any, base: Path | None, what: str) -> None:
    import onnx

    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if base is None:
            raise ExportError(
                f"ONNX model {what} refers to external data {location!r}, which an in-memory "
                "model cannot load: load it from its file path instead"
            )
        target = (base / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(base):
            raise ExportError(
                f"ONNX model {what} refers to external data {location!r} outside its directory "
                f"{str(base)!r}: refused (external-data paths must stay inside the model's folder)"
            )
        if not target.is_file():
            raise ExportError(f"ONNX model {what}: external data file {str(target)!r} is missing")


def _upgraded(model: Any, opset: int, what: str) -> Any:
    from neuroplex.onnx.autodiff import UnsupportedGraph, upgrade_opset

    try:
        return upgrade_opset(model, MIN_OPSET)
    except UnsupportedGraph as exc:
        raise ExportError(
            f"{what} uses ONNX opset {opset}, outside the supported range "
            f"{MIN_OPSET}..{MAX_OPSET}, and {exc.reason}: re-export with opset={MAX_OPSET}"
        ) from None


def load_checked_model(
    source: str | os.PathLike[str] | bytes, *, max_bytes: int = MAX_ONNX_BYTES
) -> Any:
    """Load and validate an ONNX model; return its ``onnx.ModelProto`` (external data loaded).

    Raises:
        ExportError: the file is missing, too large, not ONNX, invalid or unsafe.
    """
    import onnx

    what = _describe(source)
    data, base = _read_source(source, max_bytes)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ExportError(
            f"{what} is not a valid ONNX model (truncated, corrupt or another format): {exc}"
        ) from None
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise ExportError(
            f"{what} is not a valid ONNX model (no IR version, nodes or outputs): the file is "
            "truncated, corrupt or another format"
        )
    opsets = {imp.domain: imp.version for imp in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset is not None and MIN_UPGRADABLE_OPSET <= opset < MIN_OPSET:
        model = _upgraded(model, opset, what)
        opset = MIN_OPSET
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"{what} uses ONNX opset {opset}, outside the supported range "
            f"{MIN_OPSET}..{MAX_OPSET}: re-export with opset={MAX_OPSET if opset else 18}"
        )
    _check_external_data(model, base, what)
    if base is not None:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{what}: cannot load external data: {exc}") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{what} failed the ONNX checker: {first}") from None
    return model
