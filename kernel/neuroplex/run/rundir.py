"""The run directory: where it is, its manifest, the stage timer, resume, the run's result.

Every run keeps its own directory. Without ``--output``, a run of spec ``NAME`` gets a new
``<output_dir>/NAME/version_N/`` (N = 0, 1, ... as Lightning numbers its versions) and
``<output_dir>/NAME/latest`` points at it (a symlink; a one-line file naming the version where
symlinks cannot be made); ``--resume`` continues the newest version that did not finish. With
``--output DIR`` the run uses ``DIR`` itself and refuses to replace a run already there unless
``--overwrite`` is given. A run directory holds ``spec.json``, ``manifest.json``,
``checkpoints/``, ``model.onnx`` (+ ``model.vjp.onnx``), the sinks' data, ``results.json``,
``arrays.npz``, ``report.html`` and ``plots/`` (kernel/docs/run-directory.md). Every JSON
file is written atomically. This module never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
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
from neuroplex.atomic import atomic_write, write_json
from neuroplex.config import RunSpec, unstructure
from neuroplex.errors import ConfigError
from neuroplex.plugins import get_plugin_manager

__all__ = ["LATEST", "RunDir", "RunResult", "latest", "locate", "versions", "write_json"]

#: the name of the pointer to the newest run of a spec
LATEST = "latest"
_VERSION = re.compile(r"version_(\d+)")
_FINISHED = ("completed", "failed")


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
                if old.get("status") not in _FINISHED:
                    raise ConfigError(
                        f"{path} holds an unfinished run (status {old.get('status')!r}); "
                        "continue it with --resume, replace it with --overwrite or choose "
                        "another --output"
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


def locate(
    spec: RunSpec,
    output: str | Path | None,
    *,
    resume: bool,
    overwrite: bool = False,
    create: bool = True,
) -> Path:
    """The directory of this run: ``output`` when given (emptied first with ``overwrite``, and
    never silently replacing a finished run), else the newest unfinished version of the spec
    (``resume``) or a new one (made, and ``latest`` pointed at it, when ``create``)."""
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: pass only one")
    if output:
        path = Path(output)
        if create:
            _claim(path, resume=resume, overwrite=overwrite)
        return path
    base = Path(spec.output_dir) / spec.name
    if resume:
        return _newest_unfinished(base)
    if not create:
        return base / f"version_{_next_version(base)}"
    return _new_version(base)


def latest(base: Path) -> Path | None:
    """The run that ``<base>/latest`` points at, or ``None``."""
    link = base / LATEST
    if link.is_symlink():
        return base / os.readlink(link)
    if link.is_file():
        return base / link.read_text(encoding="utf-8").strip()
    return None


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _claim(path: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over a finished one in ``path``; ``overwrite`` deletes the
    run there (finished or not) first."""
    old = None if resume else _manifest(path)
    if old is not None and overwrite:
        shutil.rmtree(path)
        return
    if old is None or old.get("status") not in _FINISHED:
        return  # nothing there, or an unfinished run (RunDir.open says: --resume)
    raise ConfigError(
        f"{path} holds a {old.get('status')} run (id {old.get('run_id')}); pass "
        "--overwrite to replace it (its checkpoints, model.onnx and report are deleted), "
        "choose another --output, or drop --output to keep every run as "
        "<output_dir>/<name>/version_N"
    )


def _versions_of(base: Path) -> list[tuple[int, Path]]:
    found = []
    if base.is_dir():
        for child in base.iterdir():
            match = _VERSION.fullmatch(child.name)
            if match and child.is_dir() and not child.is_symlink():
                found.append((int(match.group(1)), child))
    return sorted(found)


def _next_version(base: Path) -> int:
    return max((n for n, _ in _versions_of(base)), default=-1) + 1


def _new_version(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    n = _next_version(base)
    newest = _versions_of(base)[-1][1] if n else None
    status = (_manifest(newest) or {}).get("status") if newest is not None else None
    if newest is not None and status not in (*_FINISHED, None):
        print(
            f"neuroplex: {newest} did not finish ({status}); this run starts a new version "
            "(--resume continues that one)",
            file=sys.stderr,
            flush=True,
        )
    while True:
        path = base / f"version_{n}"
        try:
            path.mkdir()  # exclusive: two runs started together get two versions
        except FileExistsError:
            n += 1
            continue
        _point_latest(base, path.name)
        return path


def _point_latest(base: Path, name: str) -> None:
    """Point ``<base>/latest`` at ``name``: an atomically replaced symlink, or a file naming it
    where symlinks cannot be made."""
    tmp = base / f".{LATEST}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(name, tmp, target_is_directory=True)
        os.replace(tmp, base / LATEST)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write(base / LATEST, f"{name}\n".encode())


def _newest_unfinished(base: Path) -> Path:
    runs = [path for _, path in reversed(_versions_of(base))]
    for path in [*runs, base]:  # ``base`` itself: a run made before runs had versions
        found = _manifest(path)
        if found is not None and found.get("status") not in _FINISHED:
            print(f"neuroplex: resuming {path}", file=sys.stderr, flush=True)
            return path
    raise ConfigError(
        f"--resume: {base} holds no unfinished run; drop --resume to start "
        f"{base / f'version_{_next_version(base)}'}, or name the run with --output"
    )


def worker_rank(spec: RunSpec) -> int:
    """This process's rank under ``torchrun`` when the spec trains with ``ddp`` or ``fsdp``,
    else 0."""
    if spec.training.strategy not in ("ddp", "fsdp"):
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"RANK={os.environ['RANK']!r} is not an integer") from None


class TermHandler:
    """SIGTERM as ``KeyboardInterrupt``, once: when the run is already stopping (interrupted,
    or failing and saving its status), a further SIGTERM is ignored, so the last bookkeeping
    and its one-line message are not cut short (torchrun's agent sends SIGTERM to every worker
    the moment one dies, while rank 0 is writing why it failed)."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise KeyboardInterrupt

    def quiet(self) -> None:
        """The run is stopping on its own: ignore SIGTERM until the context ends."""
        self.stopping = True


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[TermHandler]:
    """SIGTERM (``kill``, a scheduler's preemption, torchrun's agent) stops a run like Ctrl-C:
    the Trainer writes its ``interrupt`` checkpoint and the manifest says ``interrupted``
    (see :class:`TermHandler`; outside the main thread nothing is installed)."""
    term = TermHandler()
    if threading.current_thread() is not threading.main_thread():
        yield term
        return
    previous = signal.signal(signal.SIGTERM, term)
    try:
        yield term
    finally:
        signal.signal(signal.SIGTERM, previous)
