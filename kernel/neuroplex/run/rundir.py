"""The run directory: where it is, its manifest, the stage timer, resume, the run's result.

A run directory holds ``spec.json`` (the resolved spec), ``manifest.json`` (status, run id,
versions, per-stage seconds, sink statistics), ``checkpoints/``, ``model.onnx`` (+
``model.vjp.onnx``), the sinks' data (``neuroplex.sqlite`` by default), ``results.json``,
``arrays.npz``, ``report.html`` and ``plots/``. Every JSON file is written atomically.
This module never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from neuroplex import __version__
from neuroplex.atomic import write_json
from neuroplex.config import RunSpec, unstructure
from neuroplex.errors import ConfigError
from neuroplex.plugins import get_plugin_manager

__all__ = ["RunDir", "RunResult", "versions", "write_json"]


@attrs.frozen(kw_only=True)
class RunResult:
    """What a run produced. ``stage_seconds`` maps stage name → wall seconds."""

    run_dir: Path
    run_id: str
    status: str
    test_metrics: dict[str, float]
    stage_seconds: dict[str, float]
    analyses: dict[str, Any] = attrs.field(factory=dict)
    rounds: list[dict[str, Any]] = attrs.field(factory=list)
    verification: dict[str, Any] | None = None
    report: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["report"] = str(self.report) if self.report else None
        return out


def versions() -> dict[str, str]:
    """Versions of Python, the kernel, every loaded plugin distribution, torch and ONNX."""
    found = {"neuroplex": __version__, "python": platform.python_version()}
    for p in get_plugin_manager().plugins():
        if p.status == "ok":
            found[p.distribution] = p.version
    for dist in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


class RunDir:
    """A run directory and its manifest: times the stages and keeps ``manifest.json`` on disk
    up to date after each one."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.seconds: dict[str, float] = dict(manifest.get("stage_seconds", {}))

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @classmethod
    def open(cls, spec: RunSpec, path: Path, *, resume: bool) -> RunDir:
        """Start a run in ``path`` (``resume``: continue the unfinished one there); writes
        ``spec.json`` and a ``running`` manifest."""
        manifest_path = path / "manifest.json"
        if resume:
            if not manifest_path.is_file():
                raise ConfigError(
                    f"--resume: {path} holds no run to resume (no manifest.json); "
                    "drop --resume to start it"
                )
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        else:
            if manifest_path.is_file():
                old = json.loads(manifest_path.read_text(encoding="utf-8"))
                if old.get("status") not in ("completed", "failed"):
                    raise ConfigError(
                        f"{path} holds an unfinished run (status {old.get('status')!r}); "
                        "continue it with --resume or choose another --output"
                    )
            path.mkdir(parents=True, exist_ok=True)
            manifest = {"run_id": uuid.uuid4().hex[:12], "created": time.time()}
        manifest.update({"status": "running", "spec_name": spec.name, "versions": versions()})
        write_json(path / "spec.json", unstructure(spec))
        run_dir = cls(path, manifest)
        run_dir.save()
        return run_dir

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage; the manifest records its seconds and that it ran last."""
        print(f"neuroplex: {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
            self.save(stage=name)

    def save(self, **updates: Any) -> None:
        self.manifest.update(updates)
        self.manifest["stage_seconds"] = self.seconds
        write_json(self.path / "manifest.json", self.manifest)


def default_path(spec: RunSpec, output: str | Path | None) -> Path:
    """``output`` when given, else ``<spec.output_dir>/<spec.name>``."""
    return Path(output) if output else Path(spec.output_dir) / spec.name


def worker_rank(spec: RunSpec) -> int:
    """This process's rank under ``torchrun`` when the spec trains with ``ddp``, else 0."""
    if spec.training.strategy != "ddp":
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"RANK={os.environ['RANK']!r} is not an integer") from None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's preemption, torchrun's agent) stops a run like Ctrl-C:
    the Trainer writes its ``interrupt`` checkpoint and the manifest says ``interrupted``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
