"""What neuroplex writes into an ONNX file's ``metadata_props``, and how to read it back.

Every key is prefixed ``neuroplex.`` and every value is JSON, so analysis of a ``model.onnx``
needs no Python model object:

========================  =====================================================================
key                       value
========================  =====================================================================
``format``                metadata format version (``1``)
``graph``                 which graph of the model this file holds (``"model"``, ``"generator"``)
``opset``                 the default-domain ONNX opset of the graph
``config``                the model's config (``model.to_config()``), or ``null``
``input_spec``            ``{"name", "shape" (null = dynamic batch), "dtype", "range"}``
``input_range``           ``[min, max]`` of the inputs, or ``null``
``class_names``           list of class names (may be empty)
``output_names``          names of the graph outputs
``versions``              versions of neuroplex, torch, onnx, onnxruntime and neuroplex plugins
``tier``                  ``"gradients"`` or ``"forward_only"``
``tier_reason``           why the tier is what it is (one line)
``gradient_graph``        file name of the VJP graph beside this file, or ``null``
``gradient_sha256``       SHA-256 of that file (a mismatched file is not used)
``loss_graphs``           ``{loss: {"file", "sha256"}}``: the verified fused loss-gradient graphs
                          beside this file (see :mod:`neuroplex.onnx._losses`)
``loss_graphs_dropped``   ``{loss: reason}``: requested loss graphs that were not written
``user``                  extra metadata passed to ``export_onnx(metadata=...)``
========================  =====================================================================
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["PREFIX", "decode_metadata", "encode_metadata", "package_versions", "read_metadata"]

PREFIX = "neuroplex."
FORMAT_VERSION = 1


def package_versions() -> dict[str, str]:
    """Versions of the kernel, the ONNX stack and every installed neuroplex plugin."""
    versions: dict[str, str] = {}
    for dist in ("neuroplex", "torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    for ep in importlib.metadata.entry_points(group="neuroplex"):
        if ep.dist is not None:
            versions[ep.dist.name] = ep.dist.version
    return versions


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:  # attrs classes (ModelConfig) without to_dict
        import attrs

        if attrs.has(type(value)):
            return _jsonable(attrs.asdict(value))
    except ImportError:  # pragma: no cover - attrs is a kernel dependency
        pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """``{"neuroplex.<key>": JSON}`` for every key (non-JSON values become strings)."""
    return {
        PREFIX + key: json.dumps(_jsonable(value), sort_keys=True) for key, value in values.items()
    }


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Decode ``metadata_props``: neuroplex keys lose their prefix and are JSON-decoded; foreign
    keys are kept as strings. ``input_range`` comes back as a ``(min, max)`` tuple or ``None``."""
    out: dict[str, Any] = {}
    for key, raw in props.items():
        if key.startswith(PREFIX):
            try:
                out[key[len(PREFIX) :]] = json.loads(raw)
            except json.JSONDecodeError:
                out[key[len(PREFIX) :]] = raw
        else:
            out[key] = raw
    rng = out.get("input_range")
    out["input_range"] = (
        (float(rng[0]), float(rng[1])) if isinstance(rng, list) and len(rng) == 2 else None
    )
    out.setdefault("class_names", [])
    out.setdefault("tier", "forward_only")
    return out


def read_metadata(source: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """The decoded neuroplex metadata of an ONNX file (see the module docstring for the keys).

    The file is validated first (see :func:`neuroplex.onnx.load_checked_model`); a file
    exported by another tool gives a dict with only its own keys plus ``input_range=None``,
    ``class_names=[]`` and ``tier="forward_only"``.
    """
    from neuroplex.onnx._checks import load_checked_model

    model = load_checked_model(source)
    return decode_metadata({p.key: p.value for p in model.metadata_props})
