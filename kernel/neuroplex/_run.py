"""The stages of ``neuroplex run`` (imports torch; :mod:`neuroplex.pipeline` stays light).

Nothing here names a model family, dataset or analyzer: components come from the
registries; what differs by family comes from records (``ModelRecord.training_step``,
``ModelRecord.export_graphs``) and from results (``report_sections()`` when a result offers
it, else a table of its numbers).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from neuroplex.config import AnalyzerSpec, ModelConfig, PolicyConfig, RunSpec, TrainingConfig
from neuroplex.errors import (
    CheckpointError,
    ConfigError,
    ExportError,
    NeuroplexError,
    PluginError,
    RunRejected,
)
from neuroplex.mechanic import Mechanic, to_plain
from neuroplex.pipeline import RunResult, write_json
from neuroplex.protocols import Policy, PolicyContext, PolicyDecision, PolicyOutcome
from neuroplex.records import DataSplits, ModelRecord, resolve_factory
from neuroplex.registry import (
    create_analyzer,
    create_dataset,
    create_model,
    create_policy,
    get_record,
    origin_of,
)

if TYPE_CHECKING:
    from neuroplex.pipeline import _Stages

__all__ = ["analyze_file", "execute", "export_checkpoint", "verify_against_checkpoint"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def plugin_errors(component: Any, kind: str, name: str, doing: str) -> Iterator[None]:
    """An exception from plugin code while ``doing`` something with ``component`` becomes a
    :class:`PluginError` naming the component, its plugin and its distribution (the original
    stays chained: ``--debug`` shows its traceback). Neuroplex's own errors pass through."""
    try:
        yield
    except NeuroplexError:
        raise
    except Exception as exc:
        reg = origin_of(component)
        where = f" from {reg.origin} (plugin {reg.plugin!r})" if reg is not None else ""
        raise PluginError(
            f"{kind} {name!r}{where} failed while {doing}: {type(exc).__name__}: {exc} "
            "(--debug shows the traceback)"
        ) from exc


# ----------------------------------------------------------------------------- data
def load_data(spec: RunSpec) -> DataSplits:
    options = dict(spec.data.options)
    for key in ("seed", "val_fraction", "test_fraction"):
        if key in options:
            raise ConfigError(
                f"set {key} in [data] (or training.seed), not in data.options",
                path=f"data.options.{key}",
            )
    splits = create_dataset(
        spec.data.name,
        seed=spec.training.seed,
        val_fraction=spec.data.val_fraction,
        test_fraction=spec.data.test_fraction,
        **options,
    )
    if not isinstance(splits, DataSplits):
        raise ConfigError(
            f"dataset {spec.data.name!r} returned {type(splits).__name__}, not DataSplits",
            path="data.name",
        )
    return splits


def _xy(split: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    x, y = split
    return torch.as_tensor(x), (None if y is None else torch.as_tensor(y))


# ----------------------------------------------------------------------------- model
def model_record(spec: ModelConfig) -> ModelRecord:
    record = get_record("model", spec.name)
    assert isinstance(record, ModelRecord)
    return record


def training_step(record: ModelRecord) -> Any:
    if record.training_step is None:
        return None
    return resolve_factory(record.training_step, component=f"model:{record.name}")()


def _training_config(spec: RunSpec, run_dir: Path, **changes: Any) -> TrainingConfig:
    return attrs.evolve(spec.training, checkpoint_dir=str(run_dir / "checkpoints"), **changes)


def train_model(
    model: torch.nn.Module,
    record: ModelRecord,
    config: TrainingConfig,
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    *,
    resume: bool,
    mechanic: Mechanic | None,
    tag: str,
) -> Any:
    from neuroplex.training import Trainer

    callbacks = []
    if mechanic is not None:
        callbacks.append(_EpochToMechanic(mechanic, tag))
    trainer = Trainer(model, config, step=training_step(record), callbacks=callbacks)
    with plugin_errors(model, "model", record.name, "training"):
        return trainer.train(train, val, resume="last" if resume else None)


class _EpochToMechanic:
    """Trainer callback: every finished epoch becomes an ``epoch`` event."""

    def __init__(self, mechanic: Mechanic, tag: str) -> None:
        self.mechanic = mechanic
        self.tag = tag

    def on_epoch_end(self, trainer: Any, epoch: Any) -> None:
        index = int(getattr(epoch, "epoch", 0))
        self.mechanic.record_epoch(self.tag, epoch, step=index)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, record: ModelRecord, split: tuple[Any, Any]
) -> dict[str, float]:
    """Test metrics through the family's ``eval_step`` (or the supervised default)."""
    from neuroplex.training import evaluate as trainer_evaluate

    with plugin_errors(model, "model", record.name, "evaluating"):
        metrics = trainer_evaluate(model, split, step=training_step(record))
    return {k: float(v) for k, v in metrics.items()}


# ----------------------------------------------------------------------------- export
def export_model(
    model: torch.nn.Module,
    record: ModelRecord,
    spec: RunSpec,
    data: DataSplits,
    path: Path,
) -> Any:
    from neuroplex.onnx import export_onnx

    x_train, _ = _xy(data.train)
    example = x_train[: max(2, min(8, len(x_train)))]
    metadata = {
        "input_range": tuple(data.input_range),
        "class_names": list(data.class_names),
        "dataset": data.name or spec.data.name,
        "model_name": spec.model.name,
        "hyperparameters": json.dumps(to_plain(spec.model.hyperparameters)),
    }
    return export_onnx(
        model,
        example,
        path,
        graphs=record.export_graphs,
        metadata=metadata,
        opset=spec.export.opset,
        gradients=spec.export.gradients,
        verify=spec.export.verify,
        atol=spec.export.atol,
        rtol=spec.export.rtol,
        progress=spec.training.progress,
    )


# ----------------------------------------------------------------------------- analysis
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
    mechanic: Mechanic,
    *,
    round_: int = 0,
) -> dict[str, Any]:
    x_test, y_test = _xy(data.test)
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
        with plugin_errors(analyzer, "analyzer", spec.name, "analyzing"):
            result = analyzer.analyze(x_test[:n], None if y_test is None else y_test[:n])
        key = spec.name if round_ == 0 else f"{spec.name}@round{round_}"
        results[key] = result
        mechanic.record_analysis(spec.name, result, step=round_)
    return results


def analyze_file(onnx: Path, analyzers: Sequence[str], data: str, n_samples: int) -> dict[str, Any]:
    """``neuroplex analyze``: run analyzers on an ONNX file with no Python model object."""
    from neuroplex.onnx import load_onnx, read_metadata

    module = load_onnx(onnx)
    meta = read_metadata(onnx)
    x, y = _load_inputs(data, meta)
    out: dict[str, Any] = {}
    for name in analyzers:
        # analyzers read the input range from the OnnxModule's metadata themselves
        analyzer = create_analyzer(name, module)
        out[name] = to_plain(analyzer.analyze(x[:n_samples], None if y is None else y[:n_samples]))
    return out


def _load_inputs(data: str, meta: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    path = Path(data)
    if path.suffix == ".npz":
        if not path.is_file():
            raise ConfigError(f"--data: file not found: {path}")
        with np.load(path, allow_pickle=False) as arrays:
            if "X" not in arrays.files:
                raise ConfigError(f"--data: {path} has no array 'X' (found: {arrays.files})")
            x = torch.from_numpy(arrays["X"].astype(np.float32))
            y = torch.from_numpy(arrays["y"].astype(np.int64)) if "y" in arrays.files else None
        return x, y
    splits = create_dataset(data, seed=0, val_fraction=0.15, test_fraction=0.15)
    return _xy(splits.test)


# ----------------------------------------------------------------------------- policies
def build_policies(policies: Sequence[PolicyConfig]) -> list[tuple[str, Policy]]:
    """The spec's policies, built from the registry before any work (bad options fail early)."""
    built: list[tuple[str, Policy]] = []
    for i, cfg in enumerate(policies):
        try:
            built.append(
                (cfg.name, create_policy(cfg.name, max_rounds=cfg.max_rounds, **cfg.options))
            )
        except ConfigError as exc:
            if exc.path:
                raise
            raise ConfigError(str(exc), path=f"feedback.policies[{i}]") from None
    return built


def apply_policies(policies: Sequence[tuple[str, Policy]], ctx: _Context) -> None:
    """Apply each policy in turn to the run so far (see :mod:`neuroplex.protocols`).

    A policy that returns a new model has it evaluated on the test split and the spec's
    analyses re-run on it (keyed ``name@roundN``, N the number of decisions so far) before the
    next policy; a rejection stops the policies (the run fails once its report is written)."""
    for name, policy in policies:
        sent: list[PolicyDecision] = []
        with plugin_errors(policy, "policy", name, "deciding"):
            outcome = policy.apply(_policy_context(name, ctx, sent))
            if not isinstance(outcome, PolicyOutcome):
                raise TypeError(f"apply() returned a {type(outcome).__name__}, not a PolicyOutcome")
        for decision in outcome.decisions:
            if decision not in sent:
                _decide(ctx.mechanic, decision, sent)
        ctx.rows.extend(d.row() for d in outcome.decisions)
        ctx.sections.extend(outcome.sections)
        if outcome.model is not None:
            ctx.model = outcome.model
            ctx.test_metrics = evaluate(ctx.model, ctx.record, ctx.data.test)
            ctx.mechanic.record_performance(
                ctx.spec.model.name, ctx.test_metrics, step=len(ctx.rows)
            )
            analyzers = ctx.spec.analysis.analyzers
            ctx.analyses.update(
                run_analyses(
                    analyzers, ctx.model, ctx.onnx_path, ctx.data, ctx.mechanic,
                    round_=len(ctx.rows),
                )
            )  # fmt: skip
        if outcome.rejection is not None:
            ctx.rejection = f"policy {name!r} rejected the run: {outcome.rejection}"
            return


def _decide(mechanic: Mechanic, decision: PolicyDecision, sent: list[PolicyDecision]) -> None:
    mechanic.record_decision(
        decision.policy, decision.action, decision.reason, round=decision.round
    )
    sent.append(decision)


def _policy_context(policy: str, ctx: _Context, sent: list[PolicyDecision]) -> PolicyContext:
    """The run so far and the kernel functions a policy acts with, bound to ``ctx``."""

    def analyze(
        name: str,
        model: Any,
        *,
        options: Mapping[str, Any] | None = None,
        backend: str = "onnx",
        n_samples: int = 256,
        round: int = 0,
    ) -> Any:
        if backend not in ("onnx", "torch"):
            raise ConfigError(f"analyze: backend must be 'onnx' or 'torch', got {backend!r}")
        spec = AnalyzerSpec(
            name=name,
            options=dict(options or {}),
            backend=backend,  # type: ignore[arg-type]
            n_samples=n_samples,
        )
        results = run_analyses([spec], model, ctx.onnx_path, ctx.data, ctx.mechanic, round_=round)
        return next(iter(results.values()))

    def retrain(
        model: Any, train: tuple[Any, Any], *, tag: str, run_subdir: str, **changes: Any
    ) -> Any:
        config = _training_config(ctx.spec, ctx.run_dir / run_subdir, **changes)
        return train_model(
            model, ctx.record, config, train, ctx.data.val, resume=False, mechanic=ctx.mechanic,
            tag=tag,
        )  # fmt: skip

    def export(model: Any) -> Any:
        if ctx.onnx_path is not None:
            ctx.verification = export_model(model, ctx.record, ctx.spec, ctx.data, ctx.onnx_path)
            return ctx.verification
        return None

    return PolicyContext(
        policy=policy,
        spec=ctx.spec,
        run_dir=ctx.run_dir,
        data=ctx.data,
        model=ctx.model,
        model_record=ctx.record,
        test_metrics=dict(ctx.test_metrics),
        analyses={key.split("@round")[0]: v for key, v in ctx.analyses.items()},  # latest
        mechanic=ctx.mechanic,
        onnx_path=ctx.onnx_path,
        analyze=analyze,
        retrain=retrain,
        evaluate=lambda model: evaluate(model, ctx.record, ctx.data.test),
        export=export,
        decide=lambda decision: _decide(ctx.mechanic, decision, sent),
    )


def _numbers(result: Any, prefix: str = "") -> dict[str, float]:
    """Numeric scalar leaves of a result, flattened with dotted keys."""
    plain = to_plain(result)
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            if math.isfinite(float(value)):
                out[key] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))

    walk(plain, prefix)
    return out


# ----------------------------------------------------------------------------- execute
@attrs.define
class _Context:
    spec: RunSpec
    run_dir: Path
    data: DataSplits
    model: torch.nn.Module
    record: ModelRecord
    mechanic: Mechanic
    onnx_path: Path | None
    test_metrics: dict[str, float]
    analyses: dict[str, Any]
    verification: Any = None
    rows: list[dict[str, Any]] = attrs.field(factory=list)
    sections: list[dict[str, Any]] = attrs.field(factory=list)
    rejection: str | None = None


def execute(spec: RunSpec, run_dir: Path, stages: _Stages, *, resume: bool) -> RunResult:
    seed_everything(spec.training.seed)
    run_id = str(stages.manifest["run_id"])
    sinks = [_sink_with_defaults(s.name, dict(s.options), run_dir) for s in spec.feedback.sinks]
    mechanic = Mechanic(
        sinks, run_id=run_id, spool_dir=run_dir / "spool", timeout_s=spec.feedback.sink_timeout_s
    )
    try:
        return _execute(spec, run_dir, stages, resume=resume, mechanic=mechanic)
    finally:
        stats = mechanic.close()
        stages.save(sinks={k: v.to_dict() for k, v in stats.items()})


def _train_spec(
    spec: RunSpec,
    run_dir: Path,
    model: torch.nn.Module,
    record: ModelRecord,
    data: DataSplits,
    *,
    resume: bool,
    mechanic: Mechanic | None,
) -> Any:
    """Train ``model`` as the spec says, checkpointing into ``run_dir/checkpoints``."""
    config = _training_config(spec, run_dir)
    return train_model(
        model, record, config, data.train, data.val, resume=resume, mechanic=mechanic,
        tag=spec.model.name,
    )  # fmt: skip


def execute_worker(spec: RunSpec, run_dir: Path, *, resume: bool) -> RunResult:
    """A ``torchrun`` worker of rank > 0: the same data, model and training as rank 0 (the
    gradients are averaged across the group), and nothing else: rank 0 alone owns the run
    directory (manifest, checkpoints, sinks, export, analysis, report)."""
    seed_everything(spec.training.seed)
    data = load_data(spec)
    seed_everything(spec.training.seed)
    record = model_record(spec.model)
    model = create_model(spec.model)
    start = time.perf_counter()
    _train_spec(spec, run_dir, model, record, data, resume=resume, mechanic=None)
    return RunResult(
        run_dir=run_dir,
        run_id="",
        status="worker",
        test_metrics={},
        stage_seconds={"train": round(time.perf_counter() - start, 3)},
    )


def _sink_with_defaults(
    name: str, options: dict[str, Any], run_dir: Path
) -> tuple[str, dict[str, Any]]:
    record = get_record("feedback_sink", name)
    if "run_dir" in record.capabilities and "run_dir" not in options:
        options["run_dir"] = str(run_dir)
    return (name, options)


def _execute(
    spec: RunSpec, run_dir: Path, stages: _Stages, *, resume: bool, mechanic: Mechanic
) -> RunResult:
    mechanic.emit("run_started", spec.name, {"spec": spec_dict(spec)}, step=0)
    with stages.stage("data"):
        data = load_data(spec)
    with stages.stage("build"):
        policies = build_policies(spec.feedback.policies)
        seed_everything(spec.training.seed)
        record = model_record(spec.model)
        model = create_model(spec.model)
    with stages.stage("train"):
        history = _train_spec(spec, run_dir, model, record, data, resume=resume, mechanic=mechanic)
    with stages.stage("evaluate"):
        test_metrics = evaluate(model, record, data.test)
        mechanic.record_performance(spec.model.name, test_metrics, step=0)
    onnx_path: Path | None = None
    verification = None
    if spec.export.enabled:
        with stages.stage("export"):
            onnx_path = run_dir / "model.onnx"
            verification = export_model(model, record, spec, data, onnx_path)
            mechanic.emit(
                "artifact", "model.onnx", {"path": str(onnx_path), "type": "onnx"}, step=0
            )
    with stages.stage("analyze"):
        analyses = run_analyses(spec.analysis.analyzers, model, onnx_path, data, mechanic)
    ctx = _Context(
        spec=spec,
        run_dir=run_dir,
        data=data,
        model=model,
        record=record,
        mechanic=mechanic,
        onnx_path=onnx_path,
        test_metrics=test_metrics,
        analyses=analyses,
        verification=verification,
    )
    if policies:
        with stages.stage("feedback"):
            apply_policies(policies, ctx)
    with stages.stage("report"):
        report = write_results(
            run_dir,
            spec,
            history,
            ctx.test_metrics,
            ctx.verification,
            ctx.analyses,
            ctx.rows,
            stages.seconds,
            data,
            ctx.model,
            policy_sections=ctx.sections,
        )
    status = "rejected" if ctx.rejection is not None else "completed"
    mechanic.emit(
        "run_finished", spec.name, {"status": status, "test_metrics": ctx.test_metrics}, step=0
    )
    if ctx.rejection is not None:
        raise RunRejected(f"{ctx.rejection} (results: {run_dir / 'results.json'})")
    return RunResult(
        run_dir=run_dir,
        run_id=str(stages.manifest["run_id"]),
        status="completed",
        test_metrics=ctx.test_metrics,
        stage_seconds=dict(stages.seconds),
        analyses={k: to_plain(v) for k, v in ctx.analyses.items()},
        rounds=ctx.rows,
        verification=to_plain(ctx.verification) if ctx.verification is not None else None,
        report=report,
    )


def spec_dict(spec: RunSpec) -> dict[str, Any]:
    from neuroplex.config import unstructure

    return dict(unstructure(spec))


# ----------------------------------------------------------------------------- results/report
def write_results(
    run_dir: Path,
    spec: RunSpec,
    history: Any,
    test_metrics: Mapping[str, float],
    verification: Any,
    analyses: Mapping[str, Any],
    rounds: Sequence[Mapping[str, Any]],
    stage_seconds: Mapping[str, float],
    data: DataSplits,
    model: torch.nn.Module,
    *,
    policy_sections: Sequence[Mapping[str, Any]] = (),
) -> Path:
    from neuroplex.report import build_report

    sections: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in test_metrics.items())
    sections.append(
        {
            "type": "text",
            "title": "Summary",
            "text": f"{spec.model.name} on {spec.data.name}: test {metrics}",
        }
    )
    sections.extend(_history_sections(history))
    sections.append(
        {
            "type": "table",
            "title": "Test metrics",
            "columns": ["metric", "value"],
            "rows": [[k, v] for k, v in test_metrics.items()],
        }
    )
    if verification is not None:
        sections.extend(_sections_of("ONNX parity", verification, arrays))
    for name, result in analyses.items():
        sections.extend(_sections_of(name, result, arrays))
    sections.extend(dict(section) for section in policy_sections)
    samples = getattr(model, "report_samples", None)
    if callable(samples):
        x_test, _ = _xy(data.test)
        for title, images in samples(x_test[:16]).items():
            key = f"samples_{len(arrays)}"
            arrays[key] = np.asarray(images)
            sections.append({"type": "images", "title": title, "array": key})
    sections.append(
        {
            "type": "table",
            "title": "Time per stage",
            "columns": ["stage", "seconds"],
            "rows": [[k, v] for k, v in stage_seconds.items()],
        }
    )
    results = {
        "title": f"neuroplex run: {spec.name}",
        "subtitle": f"model {spec.model.name}, data {spec.data.name}",
        "test_metrics": dict(test_metrics),
        "rounds": list(rounds),
        "stage_seconds": dict(stage_seconds),
        "sections": sections,
    }
    if arrays:
        np.savez_compressed(run_dir / "arrays.npz", **arrays)
    write_json(run_dir / "results.json", to_plain(results))
    return build_report(run_dir)


def _history_sections(history: Any) -> list[dict[str, Any]]:
    epochs = [to_plain(e) for e in getattr(history, "epochs", [])]
    if not epochs:
        return []
    series: dict[str, list[Any]] = {}
    for epoch in epochs:
        flat = _numbers(epoch)
        for key in flat:
            if "loss" in key or "accuracy" in key:
                series.setdefault(key, [])
    for key in series:
        series[key] = [_numbers(e).get(key) for e in epochs]
    x = [int(_numbers(e).get("epoch", i + 1)) for i, e in enumerate(epochs)]
    return [
        {"type": "lines", "title": "Training curves", "x": x, "series": series, "xlabel": "epoch"}
    ]


def _sections_of(title: str, result: Any, arrays: dict[str, Any]) -> list[dict[str, Any]]:
    sections = getattr(result, "report_sections", None)
    if callable(sections):
        out = []
        for section in sections():
            section = dict(section)
            section["title"] = f"{title}: {section.get('title', '')}".rstrip(": ")
            if section.get("type") == "images" and "data" in section:
                key = f"a{len(arrays)}"
                arrays[key] = np.asarray(section.pop("data"))
                section["array"] = key
            out.append(section)
        return out
    numbers = _numbers(result)
    if not numbers:
        return []
    return [
        {
            "type": "table",
            "title": title,
            "columns": ["quantity", "value"],
            "rows": [[k, v] for k, v in list(numbers.items())[:60]],
        }
    ]


# ----------------------------------------------------------------------------- CLI helpers
def _load_checkpoint_model(checkpoint: Path) -> tuple[torch.nn.Module, ModelRecord, RunSpec]:
    from neuroplex.training import load_checkpoint

    state = load_checkpoint(checkpoint)
    run_dir = checkpoint.parent.parent
    spec_path = run_dir / "spec.json"
    if not spec_path.is_file():
        raise CheckpointError(f"{checkpoint}: no spec.json in its run directory {run_dir}")
    from neuroplex.config import load_spec

    spec = load_spec(spec_path)
    record = model_record(spec.model)
    model = create_model(spec.model)
    model.load_state_dict(state["model"])
    model.eval()
    return model, record, spec


def export_checkpoint(checkpoint: Path, output: Path) -> Path:
    """``neuroplex export CHECKPOINT -o model.onnx`` (verified, or an ExportError)."""
    model, record, spec = _load_checkpoint_model(checkpoint)
    data = load_data(spec)
    export_model(model, record, spec, data, output)
    return output


def verify_against_checkpoint(onnx: Path, checkpoint: Path) -> str:
    from neuroplex.onnx import verify_onnx

    model, _record, spec = _load_checkpoint_model(checkpoint)
    report = verify_onnx(onnx, model, atol=spec.export.atol, rtol=spec.export.rtol)
    text = report.to_markdown()
    if not report.passed:
        raise ExportError(f"verification failed:\n{text}")
    return text
