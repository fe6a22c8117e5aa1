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
from neuroplex.errors import CheckpointError, ConfigError, ExportError, NeuroplexError, PluginError
from neuroplex.mechanic import Mechanic, to_plain
from neuroplex.pipeline import RunResult, write_json
from neuroplex.protocols import AdversarialCrafter, Reportable, SampleReporter
from neuroplex.records import RUN_DIR, DataSplits, ModelRecord, resolve_factory
from neuroplex.registry import (
    create_analyzer,
    create_dataset,
    create_model,
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
def apply_policies(
    policies: Sequence[PolicyConfig],
    context: _Context,
) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    for policy in policies:
        if policy.name != "adversarial":
            raise ConfigError(
                f"unknown policy {policy.name!r}; policies: adversarial",
                path="feedback.policies",
            )
        rounds.extend(adversarial_policy(policy, context))
    return rounds


def adversarial_policy(policy: PolicyConfig, ctx: _Context) -> list[dict[str, Any]]:
    """While the model is vulnerable and under budget: build an adversarial dataset, fine-tune,
    re-export, re-verify and re-test. Every round becomes a ``decision`` event.

    Options: ``attack`` (analyzer name, default ``fgsm``), ``epsilon``, ``train_attack``
    (analyzer used to craft training examples, default ``attack``), ``train_epsilon``
    (default ``epsilon``), ``ratio`` (adversarial share of the new training set), ``epochs``
    (fine-tuning epochs per round), ``learning_rate`` (default: the training one),
    ``attack_options`` (extra options of the test attack, e.g. ``vulnerability_threshold``),
    ``train_attack_options`` (extra options of the crafting attack, e.g. ``steps``),
    ``backend`` (``onnx`` or ``torch`` for the test) and ``n_samples`` (test samples).
    """
    opts = dict(policy.options)
    known = {
        "attack",
        "epsilon",
        "train_attack",
        "train_epsilon",
        "ratio",
        "epochs",
        "learning_rate",
        "backend",
        "n_samples",
        "attack_options",
        "train_attack_options",
    }
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r}; options: {', '.join(sorted(known))}",
            path=f"feedback.policies.{policy.name}.options",
        )
    attack = str(opts.get("attack", "fgsm"))
    epsilon = float(opts.get("epsilon", 0.1))
    train_attack = str(opts.get("train_attack", attack))
    train_epsilon = float(opts.get("train_epsilon", epsilon))
    ratio = float(opts.get("ratio", 0.5))
    epochs = int(opts.get("epochs", max(1, ctx.spec.training.epochs // 2)))
    backend = str(opts.get("backend", "onnx"))
    n_samples = int(opts.get("n_samples", 512))
    test_spec = AnalyzerSpec(
        name=attack,
        options={**dict(opts.get("attack_options", {})), "epsilon": epsilon},
        backend=backend,  # type: ignore[arg-type]
        n_samples=n_samples,
    )
    rounds: list[dict[str, Any]] = []
    for round_ in range(policy.max_rounds + 1):
        result = run_analyses(
            [test_spec], ctx.model, ctx.onnx_path, ctx.data, ctx.mechanic, round_=round_ + 1
        )
        robustness = next(iter(result.values()))
        rec = _numbers(robustness)
        vulnerable = bool(_get(robustness, "is_vulnerable"))
        entry = {
            "round": round_,
            "attack": attack,
            "epsilon": epsilon,
            "clean_accuracy": rec.get("clean_accuracy"),
            "robust_accuracy": rec.get("robust_accuracy"),
            "is_vulnerable": vulnerable,
        }
        if not vulnerable or round_ == policy.max_rounds:
            action = "stop: robust" if not vulnerable else "stop: budget exhausted"
            ctx.mechanic.record_decision(policy.name, action, entry, round=round_)
            entry["action"] = action
            rounds.append(entry)
            break
        ctx.mechanic.record_decision(policy.name, "retrain", entry, round=round_)
        entry["action"] = "retrain"
        rounds.append(entry)
        _adversarial_finetune(ctx, train_attack, train_epsilon, ratio, epochs, opts, round_)
        ctx.mechanic.flush()
    return rounds


def _adversarial_finetune(
    ctx: _Context,
    attack: str,
    epsilon: float,
    ratio: float,
    epochs: int,
    opts: Mapping[str, Any],
    round_: int,
) -> None:
    x_train, y_train = _xy(ctx.data.train)
    if y_train is None:
        raise ConfigError(
            "the adversarial policy needs labelled training data", path="feedback.policies"
        )
    ctx.model.eval()
    crafter = create_analyzer(
        attack,
        ctx.model,
        epsilon=epsilon,
        input_range=tuple(ctx.data.input_range),
        **dict(opts.get("train_attack_options", {})),
    )
    if not isinstance(crafter, AdversarialCrafter):
        raise ConfigError(
            f"analyzer {attack!r} cannot craft adversarial examples (it has no "
            "adversarial_examples(x, y) method); choose an attack such as fgsm or pgd",
            path="feedback.policies.options.train_attack",
        )
    gen = torch.Generator().manual_seed(ctx.spec.training.seed + 1000 + round_)
    n_adv = round(ratio * len(x_train))
    idx = torch.randperm(len(x_train), generator=gen)[:n_adv]
    x_adv = crafter.adversarial_examples(x_train[idx], y_train[idx])
    x_mix = torch.cat([x_train, torch.as_tensor(x_adv).to(x_train.dtype)])
    y_mix = torch.cat([y_train, y_train[idx]])
    lr = float(opts.get("learning_rate", ctx.spec.training.learning_rate))
    config = _training_config(
        ctx.spec,
        ctx.run_dir / f"round{round_ + 1}",
        epochs=epochs,
        learning_rate=lr,
        early_stopping_patience=None,
    )
    train_model(
        ctx.model,
        ctx.record,
        config,
        (x_mix, y_mix),
        ctx.data.val,
        resume=False,
        mechanic=ctx.mechanic,
        tag=f"adversarial-round{round_ + 1}",
    )
    ctx.history_rounds.append(evaluate(ctx.model, ctx.record, ctx.data.test))
    if ctx.onnx_path is not None:
        ctx.verification = export_model(ctx.model, ctx.record, ctx.spec, ctx.data, ctx.onnx_path)


def _get(result: Any, key: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(key)
    try:
        return result[key]
    except (KeyError, TypeError, IndexError):
        return getattr(result, key, None)


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
    verification: Any = None
    history_rounds: list[dict[str, float]] = attrs.field(factory=list)


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
    if RUN_DIR in record.capabilities and "run_dir" not in options:
        options["run_dir"] = str(run_dir)
    return (name, options)


def _execute(
    spec: RunSpec, run_dir: Path, stages: _Stages, *, resume: bool, mechanic: Mechanic
) -> RunResult:
    mechanic.emit("run_started", spec.name, {"spec": spec_dict(spec)}, step=0)
    with stages.stage("data"):
        data = load_data(spec)
    with stages.stage("build"):
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
    ctx = _Context(
        spec=spec,
        run_dir=run_dir,
        data=data,
        model=model,
        record=record,
        mechanic=mechanic,
        onnx_path=onnx_path,
        verification=verification,
    )
    with stages.stage("analyze"):
        analyses = run_analyses(spec.analysis.analyzers, model, onnx_path, data, mechanic)
    rounds: list[dict[str, Any]] = []
    if spec.feedback.policies:
        with stages.stage("feedback"):
            rounds = apply_policies(spec.feedback.policies, ctx)
            if ctx.history_rounds:
                test_metrics = ctx.history_rounds[-1]
                mechanic.record_performance(spec.model.name, test_metrics, step=len(rounds))
            if rounds:
                analyses.update(
                    run_analyses(
                        spec.analysis.analyzers,
                        model,
                        onnx_path,
                        data,
                        mechanic,
                        round_=len(rounds),
                    )
                )
    with stages.stage("report"):
        report = write_results(
            run_dir,
            spec,
            history,
            test_metrics,
            ctx.verification,
            analyses,
            rounds,
            stages.seconds,
            data,
            model,
        )
    mechanic.emit(
        "run_finished", spec.name, {"status": "completed", "test_metrics": test_metrics}, step=0
    )
    return RunResult(
        run_dir=run_dir,
        run_id=str(stages.manifest["run_id"]),
        status="completed",
        test_metrics=test_metrics,
        stage_seconds=dict(stages.seconds),
        analyses={k: to_plain(v) for k, v in analyses.items()},
        rounds=rounds,
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
    if rounds:
        sections.append(
            {
                "type": "table",
                "title": "Mechanic: adversarial rounds",
                "columns": [
                    "round",
                    "attack",
                    "epsilon",
                    "clean_accuracy",
                    "robust_accuracy",
                    "action",
                ],
                "rows": [
                    [
                        r.get("round"),
                        r.get("attack"),
                        r.get("epsilon"),
                        r.get("clean_accuracy"),
                        r.get("robust_accuracy"),
                        r.get("action"),
                    ]
                    for r in rounds
                ],
            }
        )
        sections.append(
            {
                "type": "lines",
                "title": "Robustness before and after retraining",
                "x": [r["round"] for r in rounds],
                "series": {
                    "robust_accuracy": [r.get("robust_accuracy") for r in rounds],
                    "clean_accuracy": [r.get("clean_accuracy") for r in rounds],
                },
                "xlabel": "Mechanic round",
            }
        )
    if isinstance(model, SampleReporter):
        x_test, _ = _xy(data.test)
        for title, images in model.report_samples(x_test[:16]).items():
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
    if isinstance(result, Reportable):
        out = []
        for section in result.report_sections():
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
