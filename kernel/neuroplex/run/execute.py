"""The line of ``neuroplex run``: each stage once, in order, each fed the previous stage's
result; the Mechanic (events → sinks) is open for the whole run."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from neuroplex.config import RunSpec, unstructure
from neuroplex.errors import RunRejected
from neuroplex.mechanic import Mechanic
from neuroplex.records import RUN_DIR
from neuroplex.registry import get_record
from neuroplex.run.analyze import analyze, analyze_worker
from neuroplex.run.build import build
from neuroplex.run.data import load
from neuroplex.run.export import export
from neuroplex.run.feedback import feedback
from neuroplex.run.report import report, result
from neuroplex.run.rundir import RunDir, RunResult
from neuroplex.run.train import test, train
from neuroplex.training import seed_everything

__all__ = ["execute", "execute_worker"]


def execute(spec: RunSpec, run_dir: RunDir, *, resume: bool) -> RunResult:
    """Run every stage of ``spec`` in ``run_dir`` (rank 0 of a ``ddp`` run, or the only
    process); the manifest gets each stage's seconds and the sinks' delivery statistics."""
    seed_everything(spec.training.seed)
    mechanic = _open_mechanic(spec, run_dir)
    try:
        return _stages(spec, run_dir, mechanic, resume=resume)
    finally:
        stats = mechanic.close()
        run_dir.save(sinks={k: v.to_dict() for k, v in stats.items()})


def _stages(spec: RunSpec, run_dir: RunDir, mechanic: Mechanic, *, resume: bool) -> RunResult:
    mechanic.emit("run_started", spec.name, {"spec": dict(unstructure(spec))}, step=0)
    with run_dir.stage("data"):
        loaded = load(spec, run_dir.path)
    with run_dir.stage("build"):
        built = build(loaded)
    with run_dir.stage("train"):
        trained = train(built, resume=resume, mechanic=mechanic)
    with run_dir.stage("evaluate"):
        tested = test(trained, mechanic)
    with _stage_if(spec.export.enabled, run_dir, "export"):
        exported = export(tested, mechanic)
    with run_dir.stage("analyze"):
        analyzed = analyze(exported, mechanic)
    with _stage_if(bool(spec.feedback.policies), run_dir, "feedback"):
        fed = feedback(analyzed, mechanic)
    with run_dir.stage("report"):
        report_path = report(fed, run_dir.seconds)
    status = "rejected" if fed.rejection is not None else "completed"
    mechanic.emit(
        "run_finished", spec.name, {"status": status, "test_metrics": fed.test_metrics}, step=0
    )
    if fed.rejection is not None:  # a CI gate: the run fails once its report is written
        raise RunRejected(f"{fed.rejection} (results: {run_dir.path / 'results.json'})")
    return result(fed, run_dir.run_id, run_dir.seconds, report_path)


def _stage_if(timed: bool, run_dir: RunDir, name: str) -> contextlib.AbstractContextManager[None]:
    """A stage that has nothing to do (no export, no policy) is not timed."""
    return run_dir.stage(name) if timed else contextlib.nullcontext()


def execute_worker(spec: RunSpec, path: Path, *, resume: bool) -> RunResult:
    """A ``torchrun`` worker of rank > 0: the same data, model and training as rank 0 (the
    gradients are averaged across the group), then its share of the shardable analyzers
    (:func:`~neuroplex.run.analyze.analyze_worker`), and nothing else: rank 0 alone owns the
    run directory (manifest, checkpoints, sinks, export, analysis results, report)."""
    seed_everything(spec.training.seed)
    built = build(load(spec, path))
    start = time.perf_counter()
    train(built, resume=resume, mechanic=None)
    seconds = {"train": round(time.perf_counter() - start, 3)}
    start = time.perf_counter()
    analyze_worker(spec, built.model, path, built.loaded.data)
    seconds["analyze"] = round(time.perf_counter() - start, 3)
    return RunResult(
        run_dir=path, run_id="", status="worker", test_metrics={}, stage_seconds=seconds
    )


def _open_mechanic(spec: RunSpec, run_dir: RunDir) -> Mechanic:
    """The run's event bus, one sink per ``[[feedback.sinks]]``; a sink whose record has the
    ``run_dir`` capability gets ``run_dir`` unless its options set one."""
    sinks: list[tuple[str, dict[str, Any]]] = []
    for sink in spec.feedback.sinks:
        options = dict(sink.options)
        if RUN_DIR in get_record("feedback_sink", sink.name).capabilities:
            options.setdefault("run_dir", str(run_dir.path))
        sinks.append((sink.name, options))
    return Mechanic(
        sinks,
        run_id=run_dir.run_id,
        spool_dir=run_dir.path / "spool",
        timeout_s=spec.feedback.sink_timeout_s,
    )
