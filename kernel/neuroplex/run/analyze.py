"""Stage 5, analyze: every analyzer of the spec, on ONNX Runtime (``backend = "onnx"``) or on
the PyTorch model, over the held-out test split (never training or validation data); each
result's provenance (analyzer, split, n, backend) goes with it to the sinks and ``results.json``.
``neuroplex analyze`` on an ONNX file alone lives in :mod:`neuroplex.run.analyze_file`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from neuroplex.analysis.shard import analyze_sharded, require_shardable
from neuroplex.config import AnalyzerSpec, RunSpec
from neuroplex.errors import ConfigError
from neuroplex.mechanic import Mechanic
from neuroplex.records import SHARDS, DataSplits
from neuroplex.registry import create_analyzer, get_record
from neuroplex.run.build import plugin_errors
from neuroplex.run.data import _xy
from neuroplex.run.export import Exported

if TYPE_CHECKING:
    from neuroplex.training.distributed import Strategy

__all__ = [
    "SPLITS",
    "Analyzed",
    "analyze",
    "analyze_worker",
    "final_analyzers",
    "now_analyzers",
    "run_analyses",
    "sharded_specs",
    "shards_analysis",
]

#: the held-out splits an analysis may run on
SPLITS = ("test", "val")


@attrs.frozen(kw_only=True)
class Analyzed:
    """The analyze stage's result: the export stage's, plus each analyzer's result by key."""

    exported: Exported
    analyses: dict[str, Any]
    #: per analysis key: ``{"analyzer", "split", "n", "backend"}`` (where it was evaluated)
    evaluations: dict[str, dict[str, Any]] = attrs.field(factory=dict)


def analyze(exported: Exported, mechanic: Mechanic) -> Analyzed:
    """The spec's analyzers on rank 0 (or the only process); under ``--nproc N`` on one node,
    each analyzer with the ``shards`` capability is evaluated by every rank
    (:func:`analyze_worker` on ranks > 0). Those marked ``models = "final"`` wait for the
    feedback stage when the spec has policies (one may replace the model)."""
    built = exported.tested.trained.built
    spec = built.loaded.spec
    evaluations: dict[str, dict[str, Any]] = {}
    with _analysis_group(spec) as group:
        analyses = run_analyses(
            _now(spec),
            built.model,
            exported.onnx_path,
            built.loaded.data,
            mechanic,
            evaluations=evaluations,
            group=group,
        )
    return Analyzed(exported=exported, analyses=analyses, evaluations=evaluations)


def sharded_specs(specs: Sequence[AnalyzerSpec]) -> list[AnalyzerSpec]:
    """The analyzers every rank of a run evaluates together (their records declare
    :data:`~neuroplex.records.SHARDS`)."""
    return [s for s in specs if SHARDS in get_record("analyzer", s.name).capabilities]


def shards_analysis(spec: RunSpec) -> bool:
    """Whether this process's run shares its analyze stage with the other ranks: a ``ddp`` or
    ``fsdp`` run of several processes on one node (several nodes: rank 0 alone analyses, as
    the ONNX file is on node 0 only) with at least one shardable analyzer."""
    if spec.training.strategy not in ("ddp", "fsdp"):
        return False
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        return False
    return world > 1 and local == world and bool(sharded_specs(_now(spec)))


@contextlib.contextmanager
def _analysis_group(spec: RunSpec) -> Iterator[Strategy | None]:
    if not shards_analysis(spec):
        yield None
        return
    from neuroplex.analysis.shard import analysis_group

    with analysis_group(spec.training.ddp_timeout_s) as group:
        yield group


def analyze_worker(spec: RunSpec, model: torch.nn.Module, run_dir: Path, data: DataSplits) -> None:
    """A rank > 0 of a run under ``--nproc N``: its share of every shardable analyzer, once
    rank 0 reaches its analyze stage (after test and export: the ONNX file is written)."""
    if not shards_analysis(spec):
        return
    onnx_path = run_dir / "model.onnx" if spec.export.enabled else None
    with _analysis_group(spec) as group:
        run_analyses(sharded_specs(_now(spec)), model, onnx_path, data, None, group=group)


def now_analyzers(specs: Sequence[AnalyzerSpec], *, has_policies: bool) -> list[AnalyzerSpec]:
    """The entries the analyze stage runs (and re-runs on each model a policy returns): all of
    them without policies (the trained model is the final one), else those that run on every
    model (``models = "every"``); the others are :func:`final_analyzers`."""
    return [s for s in specs if not has_policies or s.models == "every"]


def final_analyzers(specs: Sequence[AnalyzerSpec]) -> list[AnalyzerSpec]:
    """The entries that run once, after the policies, on the model the run ends with
    (``models = "final"``; without policies the analyze stage runs them)."""
    return [s for s in specs if s.models == "final"]


def _now(spec: RunSpec) -> list[AnalyzerSpec]:
    return now_analyzers(spec.analysis.analyzers, has_policies=bool(spec.feedback.policies))


def _analysis_target(spec: AnalyzerSpec, model: torch.nn.Module, onnx_path: Path | None) -> Any:
    if spec.backend == "onnx":
        if onnx_path is None or not onnx_path.is_file():
            raise ConfigError(
                f"analyzer {spec.name!r} asks for backend 'onnx' but export is disabled; "
                "enable [export] or set backend = 'torch'",
                path="analysis.analyzers",
            )
        from neuroplex.onnx import load_onnx

        return load_onnx(onnx_path)
    return model


def run_analyses(
    specs: Sequence[AnalyzerSpec],
    model: torch.nn.Module,
    onnx_path: Path | None,
    data: DataSplits,
    mechanic: Mechanic | None,
    *,
    round_: int = 0,
    split: str = "test",
    evaluations: dict[str, dict[str, Any]] | None = None,
    group: Strategy | None = None,
) -> dict[str, Any]:
    """Run ``specs`` on the first ``n_samples`` points of ``split`` (``test`` or ``val``);
    returns the results by key and, when given, fills ``evaluations`` with their provenance.

    ``group`` (the ranks of a run under ``--nproc N``): each analyzer with the ``shards``
    capability is evaluated by every rank, whole seeded batches each, and merged on rank 0
    (the result of one process); the others run on rank 0 alone. Ranks > 0 pass only the
    shardable ``specs`` and get no results."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    x_test, y_test = _xy(data.test if split == "test" else data.val)
    results: dict[str, Any] = {}
    model.eval()
    for spec in specs:
        target = _analysis_target(spec, model, onnx_path)
        options = dict(spec.options)
        options.setdefault("input_range", tuple(data.input_range))
        try:
            analyzer = create_analyzer(spec.name, target, **options)
        except ConfigError:
            options.pop("input_range")
            analyzer = create_analyzer(spec.name, target, **options)
        n = min(spec.n_samples, len(x_test))
        xs, ys = x_test[:n], None if y_test is None else y_test[:n]
        where = {"analyzer": spec.name, "split": split, "n": n, "backend": spec.backend}
        shared = group is not None and SHARDS in get_record("analyzer", spec.name).capabilities
        with plugin_errors(analyzer, "analyzer", spec.name, "analyzing"):
            if group is not None and shared:
                found = analyze_sharded(require_shardable(analyzer, spec.name), xs, ys, group)
                where["processes"] = group.world_size
            else:
                found = analyzer.analyze(xs, ys)
        if found is None or mechanic is None:  # a rank > 0: rank 0 keeps the result
            continue
        result = found
        key = spec.key if round_ == 0 else f"{spec.key}@round{round_}"
        results[key] = result
        mechanic.record_analysis(spec.key, result, step=round_, evaluated_on=where)
        if evaluations is not None:
            evaluations[key] = where
    return results
