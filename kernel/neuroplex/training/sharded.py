"""Sharded checkpoints (``fsdp``): every rank writes its shards with torch.distributed.checkpoint.

A sharded epoch checkpoint is the usual ``<stem>.pt`` + ``<stem>.json`` pair (rank 0: position,
RNG states, history, ...) plus a directory ``<stem>.dcp`` holding the model, optimizer and
best-epoch weights as DCP shards. The ranks write into ``<stem>.dcp.partial``; once every rank
has finished, rank 0 renames it to ``<stem>.dcp`` and records the size and sha256 of each of
its files in the manifest, which is written last: a crash at any point leaves either no
listed checkpoint or a complete one. Loading first checks every file against the manifest,
and DCP's pickled ``.metadata`` is read by an unpickler that admits only DCP's own metadata
records and torch's sizes, dtypes and layouts: no code in a checkpoint runs.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroplex.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from neuroplex.training.loop import Trainer

__all__ = [
    "load_sharded",
    "load_sharded_model",
    "remove_sharded",
    "save_sharded",
    "sharded_weights",
    "verify_sharded",
]

SUFFIX = ".dcp"
PARTIAL = ".dcp.partial"


def save_sharded(directory: Path, stem: str, trainer: Trainer) -> dict[str, Any] | None:
    """Write the trainer's model, optimizers and best weights as ``<stem>.dcp`` (a collective:
    every rank calls it). Returns, on rank 0, the manifest entry (``dir`` and each file's
    size and sha256); ``None`` on the other ranks."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import save

    strategy = trainer.strategy
    final, partial = directory / f"{stem}{SUFFIX}", directory / f"{stem}{PARTIAL}"
    if strategy.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)  # a crashed attempt's leftovers
        partial.mkdir()
    strategy.barrier()
    save(_states(trainer, best=True), storage_writer=FileSystemWriter(partial, sync_files=True))
    strategy.barrier()  # every rank's files are on disk
    if not strategy.is_main:
        return None
    files = {f.name: _digest(f) for f in sorted(partial.iterdir())}
    shutil.rmtree(final, ignore_errors=True)  # a crash after the rename, before the manifest
    os.replace(partial, final)
    _fsync_dir(directory)
    return {"dir": final.name, "files": files}


def verify_sharded(pt: Path, entry: Any) -> Path:
    """The ``.dcp`` directory of checkpoint ``pt`` after checking each file against the
    manifest ``entry``; a :class:`CheckpointError` if one is missing, extra or changed."""
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
        raise CheckpointError(f"{pt}: malformed 'sharded' entry in the manifest")
    root = pt.parent / str(entry.get("dir", ""))
    if root.parent != pt.parent or not root.name.endswith(SUFFIX) or not root.is_dir():
        raise CheckpointError(f"{pt}: its shards {root.name!r} are missing")
    expected: dict[str, Any] = entry["files"]
    present = {f.name for f in root.iterdir()}
    if present != set(expected):
        raise CheckpointError(
            f"{root}: files differ from the manifest (missing {sorted(set(expected) - present)},"
            f" unexpected {sorted(present - set(expected))})"
        )
    for name, want in expected.items():
        if _digest(root / name) != want:
            raise CheckpointError(f"{root / name}: size or sha256 differs from the manifest")
    return root


def load_sharded(trainer: Trainer, root: Path, *, best: bool) -> None:
    """Load ``root`` (verified) into the trainer's model and optimizers, and the best-epoch
    weights when the checkpoint holds them (a collective under ``fsdp``; any number of ranks
    can read what another number wrote)."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    states = _states(trainer, best=best)
    if best:  # a template of the right shapes and placements, filled by the load
        states["best"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    try:
        _load(states, storage_reader=safe_reader(root))
    except CheckpointError:
        raise
    except Exception as exc:  # DCP reports a mismatch as one of many error types
        raise CheckpointError(
            f"{root}: cannot load the shards: {type(exc).__name__}: {exc}"
        ) from None
    set_model_state_dict(trainer.model, states["model"])
    for name, opt in trainer.optimizers.items():
        set_optimizer_state_dict(trainer.model, opt, states["optim"][name])
    trainer.early_stopping.best_state = states.get("best")


def load_sharded_model(model: torch.nn.Module, root: Path) -> None:
    """Load the model weights of the verified ``.dcp`` directory ``root`` into a full,
    unsharded ``model`` in one process (e.g. to export a ``fsdp`` run's checkpoint)."""
    state = {"model": model.state_dict()}
    try:
        _load(state, storage_reader=safe_reader(root), no_dist=True)
    except Exception as exc:
        raise CheckpointError(
            f"{root}: cannot load the shards: {type(exc).__name__}: {exc}"
        ) from None
    model.load_state_dict(state["model"])


def sharded_weights(root: Path) -> dict[str, torch.Tensor]:
    """The full model weights of the verified ``.dcp`` directory ``root``, read in one
    process without a model (shapes and dtypes from the shards' metadata)."""
    import torch
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = safe_reader(root).read_metadata()
    template: dict[str, torch.Tensor] = {}
    for key, meta in metadata.state_dict_metadata.items():
        if key.startswith("model.") and isinstance(meta, TensorStorageMetadata):
            template[key[len("model.") :]] = torch.empty(meta.size, dtype=meta.properties.dtype)
    state = {"model": template}
    try:
        _load(state, storage_reader=safe_reader(root), no_dist=True)
    except Exception as exc:
        raise CheckpointError(
            f"{root}: cannot load the shards: {type(exc).__name__}: {exc}"
        ) from None
    return template


def remove_sharded(pt: Path) -> None:
    """Remove the shards of checkpoint ``pt`` (and a partial write of them), if any."""
    stem = pt.with_suffix("")
    shutil.rmtree(stem.with_name(stem.name + SUFFIX), ignore_errors=True)
    shutil.rmtree(stem.with_name(stem.name + PARTIAL), ignore_errors=True)


def _load(state: dict[str, Any], **kwargs: Any) -> None:
    import warnings

    from torch.distributed.checkpoint.state_dict_loader import load

    with warnings.catch_warnings():  # no_dist: one process reads, as asked
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        load(state, **kwargs)


def _states(trainer: Trainer, *, best: bool) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    model = trainer.model
    states: dict[str, Any] = {
        "model": get_model_state_dict(model),
        "optim": {n: get_optimizer_state_dict(model, o) for n, o in trainer.optimizers.items()},
    }
    best_state = trainer.early_stopping.best_state
    if best and best_state is not None:
        states["best"] = best_state
    return states


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest()}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_PATHS = {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}
_PATH_MODULES = ("pathlib", "pathlib._local")
_ALLOWED = {("torch.serialization", "_get_layout")}


class _MetadataUnpickler(pickle.Unpickler):
    """DCP's ``.metadata`` records, torch sizes/dtypes/layouts and paths; nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if module == "torch":
            obj = getattr(torch, name, None)
            if obj is torch.Size or isinstance(obj, torch.dtype | torch.layout):
                return obj
        elif (module, name) in _ALLOWED or (module in _PATH_MODULES and name in _PATHS):
            return super().find_class(module, name)
        elif module.startswith("torch.distributed.checkpoint."):
            obj = super().find_class(module, name)
            if isinstance(obj, type) and (
                dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum)
            ):
                return obj
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in checkpoint metadata")


def _reader_class() -> type:
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class _SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            rank = kwargs.get("rank")
            name = ".metadata" if rank is None else f"__{rank}.metadata"
            try:
                with open(Path(self.path) / name, "rb") as f:
                    metadata = _MetadataUnpickler(f).load()
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
                raise CheckpointError(f"{self.path}: unreadable shard metadata: {exc}") from None
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return _SafeReader


def safe_reader(root: Path) -> Any:
    """A DCP ``FileSystemReader`` of ``root`` whose metadata goes through the safe unpickler."""
    return _reader_class()(root)
