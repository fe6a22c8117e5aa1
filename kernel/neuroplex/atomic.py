"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

The data goes to a temporary file in the target's directory, is fsynced and renamed over the
target; the directory is fsynced too, so the rename itself survives a power cut. A failed
write removes its temporary file and leaves the target untouched. Checkpoints, their
manifests and every JSON file of a run directory are written this way.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (``str()`` for anything JSON cannot hold), atomically."""
    atomic_write(path, json.dumps(data, indent=2, default=str).encode("utf-8"))
