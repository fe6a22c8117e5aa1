"""Typed configuration: attrs classes, (un)structured by cattrs from TOML, JSON or dicts.

Unknown keys and bad values raise :class:`~neuroplex.ConfigError` naming the dotted path,
the bad value, what was expected and close matches. ``structure(unstructure(x)) == x``.

This module holds the spec's records (every table of a run spec) and :func:`load_spec`; the
cattrs converter behind :func:`structure` and :func:`unstructure` (strict scalars, literal
choices, one error with a dotted path) is :mod:`neuroplex._structure`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from neuroplex._structure import is_number, structure, unstructure
from neuroplex.errors import ConfigError

__all__ = [
    "AnalysisConfig",
    "AnalyzerSpec",
    "DataConfig",
    "ExportConfig",
    "FeedbackConfig",
    "ModelConfig",
    "PluginsConfig",
    "PolicyConfig",
    "RunSpec",
    "SinkSpec",
    "TrainingConfig",
    "load_spec",
    "structure",
    "unstructure",
]

PrecisionName = Literal["fp32", "bf16", "fp16"]
NonFinitePolicy = Literal["skip", "stop", "rollback"]
StrategyName = Literal["single", "ddp", "fsdp"]
Mode = Literal["min", "max"]


# ---------------------------------------------------------------- validators
def _positive(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not is_number(value) or value <= 0):
        raise ConfigError(f"must be > 0, got {value!r}", path=attribute.name)


def _non_negative(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not is_number(value) or value < 0):
        raise ConfigError(f"must be >= 0, got {value!r}", path=attribute.name)


def _fraction(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not is_number(value) or not 0.0 <= value < 1.0:
        raise ConfigError(f"must be in [0, 1), got {value!r}", path=attribute.name)


def _name(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be a non-empty name, got {value!r}", path=attribute.name)


# ---------------------------------------------------------------- records
@attrs.frozen(kw_only=False)
class ModelConfig:
    """A model family and its hyperparameters: ``ModelConfig(name="cnn", hyperparameters={...})``.

    ``name`` is a registered model name (``neuroplex list model``); ``hyperparameters`` are the
    family's own keys, validated by the family.
    """

    #: a registered model family (`neuroplex list model`), e.g. `cnn`, `mlp`
    name: str = attrs.field(validator=_name)
    #: the family's own keys (layer sizes, channels, ...), validated by the family's plugin
    hyperparameters: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """How to train: the loop, the optimizer, the device, checkpoints and what to do when
    something goes wrong. ``epochs``, ``batch_size``, ``learning_rate``, ``optimizer`` and
    ``use_gpu`` come first.

    ``use_gpu=True`` picks the best available device (``device="auto"``); ``use_gpu=False``
    forces ``cpu``. ``device`` names a registered device and overrides ``use_gpu``.
    """

    #: passes over the training data
    epochs: int = attrs.field(default=10, validator=_positive)
    #: samples per optimizer step (per process under `ddp`)
    batch_size: int = attrs.field(default=32, validator=_positive)
    #: the optimizer's learning rate
    learning_rate: float = attrs.field(default=1e-3, validator=_positive)
    #: a registered optimizer (`neuroplex list optimizer`), e.g. `adam`, `sgd`
    optimizer: str = attrs.field(default="adam", validator=_name)
    #: `true`: the best available device (`auto`); `false`: `cpu`; `device` overrides it
    use_gpu: bool = False
    #: a registered device (`cpu`, `cuda`, `mps`, `auto`); overrides `use_gpu`
    device: str | None = None
    #: extra keyword arguments of the optimizer (e.g. `momentum`, `betas`)
    optimizer_params: dict[str, Any] = attrs.field(factory=dict)
    #: weight decay handed to the optimizer
    weight_decay: float = attrs.field(default=0.0, validator=_non_negative)
    #: a learning-rate scheduler (`step`, `cosine`, `plateau`, ...) stepped once per epoch; unset: a
    #: constant rate
    scheduler: str | None = None
    #: the scheduler's options (e.g. `step_size`, `gamma`)
    scheduler_params: dict[str, Any] = attrs.field(factory=dict)
    #: clip the gradients' global L2 norm to this value; unset: no clipping
    grad_clip_norm: float | None = attrs.field(default=None, validator=_positive)
    #: clip every gradient element to +-value; unset: no clipping
    grad_clip_value: float | None = attrs.field(default=None, validator=_positive)
    #: `fp32`, or `bf16`/`fp16` autocast (`fp16` on CPU falls back to `bf16` with a warning)
    precision: PrecisionName = "fp32"
    #: micro-batches whose gradients add up to one optimizer step
    accumulate_grad_batches: int = attrs.field(default=1, validator=_positive)
    #: stop after this many epochs without improvement of `monitor`; unset: never stop early
    early_stopping_patience: int | None = attrs.field(default=None, validator=_positive)
    #: the epoch metric that early stopping and the best checkpoint watch (`val_loss`,
    #: `val_accuracy`, `train_loss`, ...)
    monitor: str = "val_loss"
    #: `min`: lower `monitor` is better; `max`: higher is better
    monitor_mode: Mode = "min"
    #: when early stopping stops the run, load the best epoch's weights back
    restore_best: bool = True
    #: one seed for Python, NumPy and torch, the data split and each epoch's shuffle
    seed: int = 0
    #: use deterministic algorithms only: a CPU run repeats bit for bit
    deterministic: bool = False
    #: shuffle the training data every epoch
    shuffle: bool = True
    #: drop each epoch's last, incomplete batch
    drop_last: bool = False
    #: data-loading worker processes (0: load in the training process)
    num_workers: int = attrs.field(default=0, validator=_non_negative)
    #: where epoch checkpoints go; unset: none (`neuroplex run` always uses `<run dir>/checkpoints`)
    checkpoint_dir: str | None = None
    #: how many of the most recent epoch checkpoints to keep
    keep_last: int = attrs.field(default=1, validator=_positive)
    #: how many of the best checkpoints (by `monitor`) to keep
    keep_best: int = attrs.field(default=1, validator=_non_negative)
    #: a NaN/inf loss or gradient: `stop` (an error naming epoch, batch and step), `skip` the batch,
    #: or `rollback` to the epoch's start with half the learning rate (at most 3 times)
    nonfinite_policy: NonFinitePolicy = "stop"
    #: `single` process; `ddp`: data parallel under torchrun (`neuroplex run SPEC --nproc N`);
    #: `fsdp`: the same, with parameters, gradients and optimizer state sharded (FSDP2)
    strategy: StrategyName = "single"
    #: ddp/fsdp: how long a collective waits for a peer before the job fails (a dead or hung rank)
    ddp_timeout_s: float = attrs.field(default=300.0, validator=_positive)
    #: ddp: tell DistributedDataParallel the graph is static (the same parameters take part
    #: in every step, no data-dependent branches): it can skip per-step bookkeeping
    ddp_static_graph: bool = False
    #: a progress bar per epoch; unset: only when stderr is a terminal
    progress: bool | None = None

    def resolved_device(self) -> str:
        """The device name this config asks for (``device`` wins over ``use_gpu``)."""
        if self.device:
            return self.device
        return "auto" if self.use_gpu else "cpu"


@attrs.frozen(kw_only=True)
class DataConfig:
    """Which dataset (a registered name), its own options, and how its samples are split."""

    #: a registered dataset (`neuroplex list dataset`), e.g. `digits`, `csv`
    name: str = attrs.field(validator=_name)
    #: the dataset's own options (e.g. `path` of a csv file); the split's seed is `training.seed`
    options: dict[str, Any] = attrs.field(factory=dict)
    #: share of the samples held out for validation
    val_fraction: float = attrs.field(default=0.15, validator=_fraction)
    #: share of the samples held out for the final test
    test_fraction: float = attrs.field(default=0.15, validator=_fraction)


@attrs.frozen(kw_only=True)
class ExportConfig:
    """ONNX export: ``enabled``, ``opset``, gradient graph, verification tolerances."""

    #: export the trained model to `model.onnx`; `false`: analyzers must use `backend = "torch"`
    enabled: bool = True
    #: ONNX opset of the exported graphs
    opset: int = attrs.field(default=18, validator=_positive)
    #: also export a gradient graph, so gradient-based analyzers run on ONNX Runtime
    gradients: bool = True
    #: compare ONNX Runtime with PyTorch before the file is published; a mismatch stops the run
    verify: bool = True
    #: absolute tolerance of the verification
    atol: float = attrs.field(default=1e-5, validator=_positive)
    #: relative tolerance of the verification
    rtol: float = attrs.field(default=1e-4, validator=_positive)


@attrs.frozen(kw_only=True)
class AnalyzerSpec:
    """One analysis to run: a registered analyzer name and its options.

    ``id`` names this entry's result (its ``results.json`` section, its sink events, its
    report section); it defaults to ``name``, so the same analyzer listed twice (e.g. once on
    ``onnx`` and once on ``torch``) needs an ``id`` on at least one of the two entries.
    """

    #: a registered analyzer (`neuroplex list analyzer`), e.g. `fgsm`, `saliency`
    name: str = attrs.field(validator=_name)
    #: the analyzer's own options (e.g. `epsilon`); `input_range` defaults to the dataset's
    options: dict[str, Any] = attrs.field(factory=dict)
    #: `onnx`: analyze the exported model on ONNX Runtime; `torch`: the PyTorch model
    backend: Literal["onnx", "torch"] = "onnx"
    #: how many test samples to analyze (the first ones)
    n_samples: int = attrs.field(default=256, validator=_positive)
    #: the name this entry's result is filed under (results.json, sinks, report); default: `name`
    id: str | None = attrs.field(default=None, validator=attrs.validators.optional(_name))
    #: `every`: the trained model, and again each model a policy returns (`<id>@roundN`);
    #: `final`: once, on the model the run ends with (after the policies), for an expensive
    #: evaluation such as `autoattack`
    models: Literal["every", "final"] = "every"

    @property
    def key(self) -> str:
        """What the entry's result is filed under: ``id``, else ``name``."""
        return self.id if self.id is not None else self.name


def _unique_ids(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    seen: dict[str, int] = {}
    for i, spec in enumerate(value):
        first = seen.setdefault(spec.key, i)
        if first != i:
            other = value[first]
            raise ConfigError(
                f"{spec.key!r} is also the id of {attribute.name}[{first}] ({other.name} on "
                f"{other.backend}); an entry's id defaults to its analyzer name, so give one "
                f'of the two its own id, e.g. id = "{spec.name}-{spec.backend}"',
                path=f"{attribute.name}[{i}].id",
            )


@attrs.frozen(kw_only=True)
class AnalysisConfig:
    """The analyses (explanations, attacks) to run on the trained model."""

    #: the analyses to run after training, in order; two entries need distinct ids
    analyzers: list[AnalyzerSpec] = attrs.field(factory=list, validator=_unique_ids)


@attrs.frozen(kw_only=True)
class SinkSpec:
    """One feedback sink: a registered sink name and its options."""

    #: a registered feedback sink (`neuroplex list feedback_sink`), e.g. `sqlite`, `jsonl`
    name: str = attrs.field(validator=_name)
    #: the sink's own options; a sink that keeps files also gets `run_dir` unless set here
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PolicyConfig:
    """A Mechanic policy (a plugin, see policies.md), e.g. ``adversarial``: retrain while
    vulnerable, under budget; ``early_reject``: fail the run (exit 3) past a threshold."""

    #: a policy, e.g. `adversarial` or `early_reject` (`neuroplex list policy`)
    name: str = attrs.field(validator=_name)
    #: the policy's own options (its plugin's README or policies.md)
    options: dict[str, Any] = attrs.field(factory=dict)
    #: the most rounds in which the policy may act (retrain, re-export, re-test)
    max_rounds: int = attrs.field(default=3, validator=_positive)


@attrs.frozen(kw_only=True)
class FeedbackConfig:
    """Where the run's events go (sinks) and which policies act on its results."""

    #: where events go; the default is one `sqlite` sink
    sinks: list[SinkSpec] = attrs.field(factory=lambda: [SinkSpec(name="sqlite")])
    #: policies the Mechanic applies after the analyses, in order
    policies: list[PolicyConfig] = attrs.field(factory=list)
    #: seconds a sink may take per call before its event is spooled for replay
    sink_timeout_s: float = attrs.field(default=10.0, validator=_positive)


@attrs.frozen(kw_only=True)
class PluginsConfig:
    """Plugin selection by entry-point name: ``enable`` (allow list; ``None`` = all),
    ``disable`` (deny list), ``prefer`` (``{"kind:name": "distribution"}`` resolving a name
    registered by two distributions), ``strict`` (failures are errors)."""

    #: allow list of plugin (entry-point) names; unset: all
    enable: list[str] | None = None
    #: deny list of plugin names; a denied plugin is never imported
    disable: list[str] = attrs.field(factory=list)
    #: `{"kind:name" = "distribution"}`: which distribution wins a name two of them register
    prefer: dict[str, str] = attrs.field(factory=dict)
    #: any plugin failure is an error (exit 2) instead of a one-line warning
    strict: bool = False


@attrs.frozen(kw_only=True)
class RunSpec:
    """A whole run: data → model → training → export → analysis → feedback."""

    #: the dataset and its split
    data: DataConfig
    #: the model family and its hyperparameters
    model: ModelConfig
    #: how to train
    training: TrainingConfig = attrs.field(factory=TrainingConfig)
    #: ONNX export and verification
    export: ExportConfig = attrs.field(factory=ExportConfig)
    #: analyses after training
    analysis: AnalysisConfig = attrs.field(factory=AnalysisConfig)
    #: sinks and policies
    feedback: FeedbackConfig = attrs.field(factory=FeedbackConfig)
    #: which plugins load
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    #: the run's name: its directory is `<output_dir>/<name>`
    name: str = "run"
    #: where run directories go (`--output DIR` overrides the whole path)
    output_dir: str = "runs"


def load_spec(source: str | Path | Mapping[str, Any]) -> RunSpec:
    """Load a :class:`RunSpec` from a TOML or JSON file path, or a dict."""
    if isinstance(source, Mapping):
        return structure(source, RunSpec)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"spec file not found: {path} (give the path to a .toml or .json spec)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read spec {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # decode errors; ints past the digit limit
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    return structure(data, RunSpec)
