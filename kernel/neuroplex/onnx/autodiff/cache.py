"""Gradient graphs derived from an ONNX file, verified once and cached by the file's SHA-256.

:func:`derive_gradient_graph` builds the VJP model of a forward model
(:func:`~neuroplex.onnx.autodiff.build_gradient_model`), checks it against central finite
differences (:func:`~neuroplex.onnx.autodiff.verify.check_gradient_model`) and writes it

* beside the file, as ``<file name>.<sha256[:16]>.vjp<engine version>.onnx``, or
* when that folder is read-only, into ``$NEUROPLEX_CACHE_DIR/onnx-gradients/`` as
  ``<sha256>.vjp<engine version>.onnx`` (default ``~/.cache/neuroplex``).

Only a graph that passed verification is written; a later load finds it by the digest of the
forward file and skips building and checking. A graph that cannot be built or fails the check
gives ``model=None`` and the reason.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from neuroplex.onnx.autodiff import UnsupportedGraph, build_gradient_model
from neuroplex.onnx.autodiff.verify import GradientCheck, check_gradient_model

__all__ = ["DerivedGradient", "cache_root", "derive_gradient_graph"]

_BATCH = 2
#: part of every cache file name: a new engine version never reads an older engine's graphs
ENGINE_VERSION = 1


@attrs.frozen
class DerivedGradient:
    """The outcome of :func:`derive_gradient_graph`.

    Attributes:
        model: the VJP ``onnx.ModelProto`` (``None`` when it could not be built or verified).
        reason: one line: where it came from, or why there is none.
        path: the cache file it was read from or written to (``None``: in memory only).
        check: the finite-difference table (``None`` when read from the cache).
    """

    model: Any
    reason: str
    path: Path | None = None
    check: GradientCheck | None = None


def cache_root() -> Path:
    """``$NEUROPLEX_CACHE_DIR/onnx-gradients`` (default ``~/.cache/neuroplex/onnx-gradients``)."""
    base = os.environ.get("NEUROPLEX_CACHE_DIR") or str(Path.home() / ".cache" / "neuroplex")
    return Path(base) / "onnx-gradients"


def _candidates(source: Path | None, digest: str) -> list[Path]:
    paths = []
    if source is not None:
        paths.append(source.parent / f"{source.name}.{digest[:16]}.vjp{ENGINE_VERSION}.onnx")
    paths.append(cache_root() / f"{digest}.vjp{ENGINE_VERSION}.onnx")
    return paths


def _probe_input(model: Any) -> np.ndarray:
    """A random input of the model's input shape (dynamic dimensions: 2), seeded by nothing
    but a fixed seed so verification is reproducible."""
    import onnx

    initializers = {t.name for t in model.graph.initializer}
    info = next(i for i in model.graph.input if i.name not in initializers)
    tensor = info.type.tensor_type
    dims = [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else _BATCH
        for d in tensor.shape.dim
    ]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    return np.random.default_rng(0).standard_normal(dims).astype(dtype)


def _write(model: Any, targets: list[Path]) -> Path | None:
    data = model.SerializeToString()
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
            return target
        except OSError:  # read-only folder: try the next place
            continue
    return None


def derive_gradient_graph(
    model: Any, source: Path | None, *, digest: str | None = None
) -> DerivedGradient:
    """The verified VJP model of ``model`` (from the cache when present).

    Args:
        model: the forward ``onnx.ModelProto`` (already validated).
        source: the file it came from (``None``: loaded from bytes; only the cache folder).
        digest: the SHA-256 of the forward file (default: of ``source``, else of the model).
    """
    from neuroplex.errors import ExportError
    from neuroplex.onnx._checks import load_checked_model

    if digest is None:
        data = source.read_bytes() if source is not None else model.SerializeToString()
        digest = hashlib.sha256(data).hexdigest()
    candidates = _candidates(source, digest)
    for path in candidates:
        if path.is_file():
            try:
                cached = load_checked_model(path)
            except ExportError:
                continue  # a corrupt cache entry: rebuild
            return DerivedGradient(cached, f"ONNX-derived VJP graph (cached, {path.name})", path)
    try:
        vjp = build_gradient_model(model)
    except UnsupportedGraph as exc:
        return DerivedGradient(
            None, f"no gradient graph can be derived from the ONNX graph: {exc.reason}"
        )
    check = check_gradient_model(model, vjp, _probe_input(model), directions=3)
    if not check.passed:
        return DerivedGradient(
            None, f"the ONNX-derived gradient graph was dropped: {check.summary()}", check=check
        )
    written = _write(vjp, candidates)
    where = f"cached as {str(written)!r}" if written else "not cached: no writable folder"
    return DerivedGradient(
        vjp, f"ONNX-derived VJP graph, verified ({check.summary()}; {where})", written, check
    )
