"""``neuroplex run``: one spec, one run directory, the stages in the order they run.

========== ===================================================================
module     stage (each a function of the previous stage's result)
========== ===================================================================
data       ``load(spec, run_dir) -> Loaded``: the dataset's train/val/test splits
build      ``build(loaded) -> Built``: the seeded model and its record
train      ``train(built) -> Trained``, ``test(trained) -> Tested``
export     ``export(tested) -> Exported``: ``model.onnx``, verified against PyTorch
analyze    ``analyze(exported) -> Analyzed``: every analyzer of the spec
feedback   ``feedback(analyzed) -> FedBack``: the spec's policies (plugins)
report     ``report(fed_back) -> RunResult``: ``results.json``, ``report.html``
========== ===================================================================

:mod:`~neuroplex.run.execute` calls them in that order; :mod:`~neuroplex.run.rundir` owns the
run directory (manifest, atomic writes, resume). This package is cheap to import: torch loads
only when a run starts, after every component the spec names was found.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from neuroplex.config import RunSpec, load_spec
from neuroplex.errors import ComponentNotFoundError, ConfigError
from neuroplex.plugins import PluginManager, get_plugin_manager, use_plugin_manager
from neuroplex.records import PolicyRecord
from neuroplex.registry import get_registration, missing_distributions
from neuroplex.run.rundir import RunDir, RunResult, locate, sigterm_as_interrupt, worker_rank

__all__ = ["RunResult", "check_requirements", "required_components", "run"]


def run(
    spec: RunSpec | str | Path | Mapping[str, Any],
    *,
    output: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    epochs: int | None = None,
) -> RunResult:
    """Run a spec end to end; returns a :class:`RunResult` (also in ``results.json``).

    ``output``: the run directory (default: a new ``<output_dir>/<name>/version_N``);
    ``resume``: continue the unfinished run in ``output`` (default: the newest unfinished
    version); ``overwrite``: replace a finished run in ``output`` instead of refusing.
    """
    if not isinstance(spec, RunSpec):
        spec = load_spec(spec)
    if epochs is not None:
        spec = attrs.evolve(spec, training=attrs.evolve(spec.training, epochs=epochs))
    with _plugins_for(spec):
        check_requirements(spec)
        from neuroplex.run.execute import execute, execute_worker  # imports torch

        rank = worker_rank(spec)  # under torchrun, rank 0 alone makes and owns the directory
        if output is not None:  # a worker torchrun restarted continues the run on its own
            from neuroplex.launch import elastic_resume

            resume = elastic_resume(resume, Path(output), rank)
        path = locate(spec, output, resume=resume, overwrite=overwrite, create=rank == 0)
        if rank > 0:
            with sigterm_as_interrupt():
                return execute_worker(spec, path, resume=resume)
        run_dir = RunDir.open(spec, path, resume=resume)
        with sigterm_as_interrupt() as term:
            try:
                result = execute(spec, run_dir, resume=resume)
            except KeyboardInterrupt:
                term.quiet()  # a second SIGTERM must not cut the status and message short
                run_dir.save(status="interrupted")
                print(
                    "neuroplex: interrupted; resume with: neuroplex run SPEC --resume --output "
                    f"{path}",
                    file=sys.stderr,
                )
                raise
            except BaseException as exc:
                term.quiet()
                run_dir.save(status="failed", error=f"{type(exc).__name__}: {exc}")
                raise
        run_dir.save(status=result.status)
        return result


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
        need.append((f"feedback.policies[{i}].name", "policy", policy.name))
        reg = get_plugin_manager().lookup("policy", policy.name)
        record = reg.record if reg is not None else None
        option_kinds = record.component_options if isinstance(record, PolicyRecord) else {}
        for option, kind in option_kinds.items():
            value = policy.options.get(option)
            if isinstance(value, str):
                need.append((f"feedback.policies[{i}].options.{option}", kind, value))
    return need


def check_requirements(spec: RunSpec) -> None:
    """Fail before any work if a component is missing: one line with the pip command."""
    need = required_components(spec)
    missing = missing_distributions([(kind, name) for _, kind, name in need])
    if missing:
        raise ConfigError(
            "this spec needs plugin distributions that are not installed: "
            f"{', '.join(missing)}; install them with: pip install {' '.join(missing)}"
        )
    for path, kind, name in need:
        try:
            get_registration(kind, name)
        except ComponentNotFoundError as exc:
            raise ConfigError(str(exc), path=path) from None


@contextlib.contextmanager
def _plugins_for(spec: RunSpec) -> Iterator[PluginManager]:
    """The plugin manager the spec's ``[plugins]`` table asks for (the process's by default)."""
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
