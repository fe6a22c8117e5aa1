"""``neuroplex run``: data → build → train → checkpoint → export → verify → analyze → feedback
→ report, in one run directory.

A run directory holds ``spec.json`` (the resolved spec), ``manifest.json`` (status, run id,
versions, per-stage seconds), ``checkpoints/``, ``model.onnx`` (+ ``model.vjp.onnx``), the
sinks' data (``neuroplex.sqlite`` by default), ``results.json``, ``arrays.npz``,
``report.html`` and ``plots/``. The pipeline names no concrete component: everything comes
from the registries, and family-specific behaviour comes from records.
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from neuroplex import __version__
from neuroplex.config import RunSpec, load_spec, unstructure
from neuroplex.errors import ComponentNotFoundError, ConfigError
from neuroplex.plugins import PluginManager, get_plugin_manager, use_plugin_manager
from neuroplex.registry import FIRST_PARTY, get_registration, missing_distributions

__all__ = ["RunResult", "required_components", "run", "run_cli"]


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


def required_components(spec: RunSpec) -> list[tuple[str, str, str]]:
    """``(dotted path, kind, name)`` of every component the spec names."""
    need = [
        ("data.name", "dataset", spec.data.name),
        ("model.name", "model", spec.model.name),
        ("training.optimizer", "optimizer", spec.training.optimizer),
        ("training.device", "device", spec.training.resolved_device()),
    ]
    if spec.training.scheduler:
        need.append(("training.scheduler", "optimizer", spec.training.scheduler))
    for i, sink in enumerate(spec.feedback.sinks):
        need.append((f"feedback.sinks[{i}].name", "feedback_sink", sink.name))
    for i, analyzer in enumerate(spec.analysis.analyzers):
        need.append((f"analysis.analyzers[{i}].name", "analyzer", analyzer.name))
    for i, policy in enumerate(spec.feedback.policies):
        attack = policy.options.get("attack")
        if isinstance(attack, str):
            need.append((f"feedback.policies[{i}].options.attack", "analyzer", attack))
    return need


def check_requirements(spec: RunSpec) -> None:
    """Fail before any work if a component is missing: one line with the pip command."""
    need = required_components(spec)
    manager = get_plugin_manager()
    pairs = [
        (kind, name)
        for _, kind, name in need
        if not (kind == "device" and name == "auto" and manager.registrations("device"))
    ]
    missing = missing_distributions(pairs)
    if missing:
        raise ConfigError(
            "this spec needs plugin distributions that are not installed: "
            f"{', '.join(missing)}; install them with: pip install {' '.join(missing)}"
        )
    for path, kind, name in need:
        if kind == "device" and name == "auto":
            if not manager.registrations("device"):
                dists = " ".join(FIRST_PARTY["device"])
                raise ConfigError(f"no device plugin is installed: pip install {dists}", path=path)
            continue
        try:
            get_registration(kind, name)
        except ComponentNotFoundError as exc:
            raise ConfigError(str(exc), path=path) from None


@contextlib.contextmanager
def _plugins_for(spec: RunSpec) -> Iterator[PluginManager]:
    cfg = spec.plugins
    if cfg.enable is None and not cfg.disable and not cfg.prefer and not cfg.strict:
        yield get_plugin_manager()
        return
    manager = PluginManager.from_env(
        enable=cfg.enable,
        disable=cfg.disable or None,
        prefer=cfg.prefer or None,
        strict=cfg.strict or None,
    )
    for failure in manager.failures():
        print(failure.failure_line(), file=sys.stderr)
    with use_plugin_manager(manager):
        yield manager


class _Stages:
    """Times stages and keeps the manifest on disk up to date (atomic writes)."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.seconds: dict[str, float] = dict(manifest.get("stage_seconds", {}))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
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
        write_json(self.run_dir / "manifest.json", self.manifest)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
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


def _versions() -> dict[str, str]:
    versions = {"neuroplex": __version__, "python": platform.python_version()}
    for p in get_plugin_manager().plugins():
        if p.status == "ok":
            versions[p.distribution] = p.version
    from importlib import metadata

    for dist in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def _worker_rank(spec: RunSpec) -> int:
    """This process's rank under ``torchrun`` when the spec trains with ``ddp``, else 0."""
    if spec.training.strategy != "ddp":
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"RANK={os.environ['RANK']!r} is not an integer") from None


def _run_dir(spec: RunSpec, output: str | Path | None) -> Path:
    return Path(output) if output else Path(spec.output_dir) / spec.name


def run(
    spec: RunSpec | str | Path | Mapping[str, Any],
    *,
    output: str | Path | None = None,
    resume: bool = False,
    epochs: int | None = None,
) -> RunResult:
    """Run a spec end to end; returns a :class:`RunResult` (also in ``results.json``)."""
    if not isinstance(spec, RunSpec):
        spec = load_spec(spec)
    if epochs is not None:
        spec = attrs.evolve(spec, training=attrs.evolve(spec.training, epochs=epochs))
    with _plugins_for(spec):
        check_requirements(spec)
        from neuroplex._run import execute, execute_worker

        run_dir = _run_dir(spec, output)
        from neuroplex.launch import elastic_resume

        resume = elastic_resume(resume, run_dir, _worker_rank(spec))
        if _worker_rank(spec) > 0:
            with _sigterm_as_interrupt():
                return execute_worker(spec, run_dir, resume=resume)
        manifest_path = run_dir / "manifest.json"
        if resume:
            if not manifest_path.is_file():
                raise ConfigError(
                    f"--resume: {run_dir} holds no run to resume (no manifest.json); "
                    "drop --resume to start it"
                )
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        else:
            if manifest_path.is_file():
                old = json.loads(manifest_path.read_text(encoding="utf-8"))
                if old.get("status") not in ("completed", "failed"):
                    raise ConfigError(
                        f"{run_dir} holds an unfinished run (status {old.get('status')!r}); "
                        "continue it with --resume or choose another --output"
                    )
            run_dir.mkdir(parents=True, exist_ok=True)
            import uuid

            manifest = {"run_id": uuid.uuid4().hex[:12], "created": time.time()}
        manifest.update({"status": "running", "spec_name": spec.name, "versions": _versions()})
        write_json(run_dir / "spec.json", unstructure(spec))
        stages = _Stages(run_dir, manifest)
        stages.save()
        try:
            with _sigterm_as_interrupt():
                result = execute(spec, run_dir, stages, resume=resume)
        except KeyboardInterrupt:
            stages.save(status="interrupted")
            print(
                f"neuroplex: interrupted; resume with: neuroplex run SPEC --resume "
                f"--output {run_dir}",
                file=sys.stderr,
            )
            raise
        except BaseException as exc:
            stages.save(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        stages.save(status=result.status)
        return result


# ----------------------------------------------------------------------------- CLI glue
def run_cli(args: Any) -> int:
    from neuroplex.launch import launch, plan_launch

    plan = plan_launch(args)
    if plan.distributed and "LOCAL_RANK" not in os.environ:
        return launch(args, plan)
    result = run(args.spec, output=args.output, resume=args.resume, epochs=args.epochs)
    if int(os.environ.get("RANK", "0")) == 0:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.test_metrics.items())
        print(f"run {result.run_id}: {result.status}; test {metrics}")
        print(f"run directory: {result.run_dir}")
        if result.report:
            print(f"report: {result.report}")
    return 0


def export_cli(args: Any) -> int:
    from neuroplex._run import export_checkpoint

    path = export_checkpoint(Path(args.checkpoint), Path(args.output))
    print(f"exported and verified: {path}")
    return 0


def verify_cli(args: Any) -> int:
    from neuroplex._run import verify_against_checkpoint

    report = verify_against_checkpoint(Path(args.onnx), Path(args.against))
    print(report)
    return 0


def predict_cli(args: Any) -> int:
    import numpy as np

    from neuroplex.onnx import load_onnx

    path = Path(args.input)
    if not path.is_file():
        raise ConfigError(f"input file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a .npy array: {exc}") from None
    import torch

    module = load_onnx(Path(args.onnx))
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    if args.output:
        np.save(args.output, out)
        print(f"wrote {args.output} {out.shape}")
    else:
        pred = out.argmax(axis=-1) if out.ndim == 2 else out
        print(json.dumps(pred.tolist()))
    return 0


def analyze_cli(args: Any) -> int:
    from neuroplex._run import analyze_file

    results = analyze_file(Path(args.onnx), args.analyzer, args.data, args.n_samples)
    print(json.dumps(results, indent=2, default=str))
    return 0


def report_cli(args: Any) -> int:
    from neuroplex.report import build_report

    print(build_report(Path(args.run_dir)))
    return 0
