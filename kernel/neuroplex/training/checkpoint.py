"""Checkpoints: atomic files with a manifest, verified on load, safe to load.

A checkpoint is two files in ``checkpoint_dir``: ``<stem>.pt`` (``torch.save`` of tensors and
primitive containers only, loaded with ``torch.load(..., weights_only=True)``) and
``<stem>.json``, its manifest (kind, epoch, step, seed, metrics, config, versions of the kernel
and plugins, size and sha256 of the ``.pt`` file). Both are written to a temporary file,
fsynced and renamed, so a crash leaves either the old or the new file, never half of one.
The manifest is written last: a ``.pt`` without a manifest is never picked up.

Stems: ``epoch-0003`` (end of epoch 3), ``interrupt`` (a run stopped mid-epoch).

Under ``fsdp`` the model, optimizers and best weights are a directory of shards beside the
``.pt`` file, listed file by file (size, sha256) in the manifest
(:mod:`neuroplex.training.sharded`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuroplex.atomic import atomic_write
from neuroplex.errors import CheckpointError
from neuroplex.training.sharded import remove_sharded, sharded_weights, verify_sharded

__all__ = [
    "CheckpointInfo",
    "atomic_write",
    "find_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "read_manifest",
    "remove_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1


class CheckpointInfo:
    """A checkpoint on disk: its ``path`` (the ``.pt`` file) and its manifest."""

    def __init__(self, path: Path, manifest: Mapping[str, Any]) -> None:
        self.path = path
        self.manifest = dict(manifest)

    @property
    def global_step(self) -> int:
        return int(self.manifest.get("global_step", 0))

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", ""))

    def metric(self, name: str) -> float | None:
        value = self.manifest.get("metrics", {}).get(name)
        return None if value is None else float(value)

    def __repr__(self) -> str:
        return f"CheckpointInfo({str(self.path)!r}, step={self.global_step})"


def save_checkpoint(
    directory: Path,
    stem: str,
    state: Mapping[str, Any],
    manifest: Mapping[str, Any],
    *,
    sharded: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Write ``state`` as ``<stem>.pt`` plus its manifest ``<stem>.json`` (both atomically);
    ``sharded``: the manifest entry of the shards already written beside it."""
    import torch

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data = buffer.getvalue()
    path = directory / f"{stem}.pt"
    atomic_write(path, data)
    full = {
        "format": FORMAT_VERSION,
        "file": path.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "created": time.time(),
        **dict(manifest),
    }
    if sharded is not None:
        full["sharded"] = dict(sharded)
    atomic_write(path.with_suffix(".json"), json.dumps(full, indent=2, default=str).encode())
    return CheckpointInfo(path, full)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of checkpoint ``path`` (the ``.pt`` file) or a :class:`CheckpointError`."""
    manifest_path = Path(path).with_suffix(".json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no manifest {manifest_path.name} beside it") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{manifest_path}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise CheckpointError(f"{manifest_path}: not a neuroplex checkpoint manifest")
    return manifest


def load_checkpoint(
    path: str | Path, *, map_location: Any = "cpu", full_weights: bool = True
) -> dict[str, Any]:
    """Load and verify a checkpoint (size and sha256 against its manifest).

    ``path`` is a ``.pt`` file or a checkpoint directory (its newest valid checkpoint).
    Loading uses ``torch.load(weights_only=True)``: no code in a checkpoint runs. A sharded
    (``fsdp``) checkpoint gets ``state["sharded"]``, the path of its verified shards, and with
    ``full_weights`` its full model weights as ``state["model"]`` (read in this process).

    Raises:
        CheckpointError: missing, truncated, corrupt, or not a neuroplex checkpoint.
    """
    import torch

    target = Path(path)
    if target.is_dir():
        target = resolve_checkpoint(target, "last").path
    manifest = read_manifest(target)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{target}: cannot read checkpoint: {exc}") from None
    if len(data) != int(manifest.get("size", -1)):
        raise CheckpointError(
            f"{target}: truncated or replaced ({len(data)} bytes, manifest says "
            f"{manifest.get('size')})"
        )
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise CheckpointError(f"{target}: sha256 mismatch, the file is corrupt")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors of every kind
        raise CheckpointError(f"{target}: cannot load: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{target}: not a neuroplex training checkpoint (no 'model' key)")
    state.pop("sharded", None)  # only the manifest says where shards are
    if "sharded" in manifest:
        root = verify_sharded(target, manifest["sharded"])
        state["sharded"] = str(root)
        if full_weights:
            state["model"] = sharded_weights(root)
    return state


def find_checkpoints(directory: str | Path) -> list[CheckpointInfo]:
    """Checkpoints with a readable manifest in ``directory``, oldest step first."""
    found: list[CheckpointInfo] = []
    root = Path(directory)
    if not root.is_dir():
        return found
    for manifest_path in root.glob("*.json"):
        pt = manifest_path.with_suffix(".pt")
        if not pt.is_file():
            continue
        try:
            found.append(CheckpointInfo(pt, read_manifest(pt)))
        except CheckpointError:
            continue
    found.sort(key=lambda c: (c.global_step, c.kind == "epoch", c.path.name))
    return found


def resolve_checkpoint(directory: str | Path, which: str = "last") -> CheckpointInfo:
    """The newest (``"last"``) or best (``"best"``) checkpoint in ``directory``."""
    found = find_checkpoints(directory)
    if which == "best":
        found = [c for c in found if c.kind == "epoch" and _score(c) is not None]
        found.sort(key=lambda c: (-(_score(c) or 0.0), c.global_step))
    elif which != "last":
        raise CheckpointError(
            f"unknown checkpoint selector {which!r}; use 'last', 'best' or a path"
        )
    if not found:
        raise CheckpointError(f"no {which} checkpoint in {directory}")
    return found[-1]


def _score(info: CheckpointInfo) -> float | None:
    """Lower is better: the monitored value, negated for ``mode="max"``."""
    value = info.metric(str(info.manifest.get("monitor", "")))
    if value is None:
        return None
    return value if info.manifest.get("mode", "min") == "min" else -value


def remove_checkpoint(info: CheckpointInfo) -> None:
    """Delete a checkpoint: its manifest first (never half-listed), then its data."""
    info.path.with_suffix(".json").unlink(missing_ok=True)
    info.path.unlink(missing_ok=True)
    remove_sharded(info.path)


def prune_checkpoints(
    directory: Path, *, keep_last: int, keep_best: int, monitor: str, mode: str
) -> list[Path]:
    """Keep the newest ``keep_last`` epoch checkpoints and the ``keep_best`` best by
    ``monitor``; drop interrupt checkpoints older than the newest epoch one. Returns removed."""
    found = find_checkpoints(directory)
    epochs = [c for c in found if c.kind == "epoch"]
    keep = {c.path for c in epochs[-keep_last:]} if keep_last > 0 else set()
    scored = [c for c in epochs if c.metric(monitor) is not None]
    sign = 1.0 if mode == "min" else -1.0
    scored.sort(key=lambda c: (sign * (c.metric(monitor) or 0.0), c.global_step))
    keep |= {c.path for c in scored[:keep_best]}
    newest = epochs[-1].global_step if epochs else -1
    removed: list[Path] = []
    for c in found:
        stale_interrupt = c.kind != "epoch" and c.global_step <= newest
        if (c.kind == "epoch" and c.path not in keep) or stale_interrupt:
            remove_checkpoint(c)
            removed.append(c.path)
    return removed
