"""Every neuroplex hook, in one module.

Plugins implement these with :data:`neuroplex.hookimpl`; the spec marker is private (only the
kernel adds hooks). Every hook is a *registration* hook: it takes no arguments and returns an
iterable of records of its kind. All results are collected (none "wins"); two distributions
registering the same name of the same kind is an error resolved by an explicit preference.

A plugin is a module named by an entry point in group ``"neuroplex"``::

    # pyproject.toml
    [project.entry-points.neuroplex]
    my_plugin = "my_plugin.plugin"

Entry modules must stay import-light: no torch at import time. Put heavy code behind
``"module:attr"`` factories, which the kernel imports on first use.

Hook API version: :data:`HOOK_API_VERSION` (its major number is bumped on any incompatible
change). An entry module declares the version it was built for in a module attribute::

    NEUROPLEX_HOOK_API_VERSION = 1        # or "1.0"; only the major number is compared

and the kernel refuses a plugin built for another major version with one line saying why (the
plugin's status is ``failed``; strict mode raises). A module without the attribute is taken
to be built for the current version.

What each factory returns is a typed protocol of :mod:`neuroplex.protocols`, named in each
hook's docstring below; the conformance kit (:mod:`neuroplex.testing`) checks it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from neuroplex.records import (
    AnalyzerRecord,
    DatasetRecord,
    DeviceRecord,
    FeedbackSinkRecord,
    LayerRecord,
    ModelRecord,
    OptimizerRecord,
    PolicyRecord,
)

PROJECT_NAME = "neuroplex"
HOOK_API_VERSION = 1
#: the entry-module attribute that declares the hook API version a plugin was built for
HOOK_API_ATTRIBUTE = "NEUROPLEX_HOOK_API_VERSION"

_hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


def hook_api_mismatch(declared: object) -> str | None:
    """Why a plugin declaring hook API ``declared`` cannot load here, or ``None`` if it can.

    ``declared`` is an int (``1``) or a ``"MAJOR[.MINOR]"`` string; only the major numbers
    must match.
    """
    text = str(declared).strip()
    major_text = text.split(".", 1)[0]
    if isinstance(declared, bool) or not major_text.isdigit():
        return (
            f"{HOOK_API_ATTRIBUTE} = {declared!r} is not a version: use an int such as "
            f"{HOOK_API_VERSION}"
        )
    major = int(major_text)
    if major == HOOK_API_VERSION:
        return None
    newer = "a newer" if major > HOOK_API_VERSION else "an older"
    fix = "upgrade neuroplex" if major > HOOK_API_VERSION else "upgrade the plugin"
    return (
        f"built for neuroplex hook API {text}, but this neuroplex has hook API "
        f"{HOOK_API_VERSION} ({newer} major version); {fix}"
    )


#: hook name for each component kind
HOOK_FOR_KIND: dict[str, str] = {
    "layer": "neuroplex_register_layers",
    "model": "neuroplex_register_models",
    "optimizer": "neuroplex_register_optimizers",
    "device": "neuroplex_register_devices",
    "analyzer": "neuroplex_register_analyzers",
    "feedback_sink": "neuroplex_register_feedback_sinks",
    "dataset": "neuroplex_register_datasets",
    "policy": "neuroplex_register_policies",
}


@_hookspec
def neuroplex_register_layers() -> Iterable[LayerRecord]:
    """Register layers and activations.

    Called once when plugins load. Return (or yield) :class:`~neuroplex.LayerRecord` s; the
    factory is called as ``factory(**config)`` and returns a ``torch.nn.Module``. Activations
    carry the ``"activation"`` capability.

    Example plugin::

        from neuroplex import LayerRecord, hookimpl

        @hookimpl
        def neuroplex_register_layers():
            yield LayerRecord(
                name="scaled_tanh",
                factory="my_plugin.layers:ScaledTanh",
                summary="tanh(x) * scale",
                capabilities={"activation"},
                example_config={"scale": 2.0},
                example_input=(4, 8),
            )
    """


@_hookspec
def neuroplex_register_models() -> Iterable[ModelRecord]:
    """Register model families.

    Return :class:`~neuroplex.ModelRecord` s; the factory is called as
    ``factory(config: ModelConfig)`` and returns a ``torch.nn.Module``. A family with its own
    training step names a factory of a :class:`~neuroplex.protocols.TrainingStep` in
    ``training_step``. Optional model behaviours are declared protocols the kernel tests with
    ``isinstance``: :class:`~neuroplex.protocols.Exportable` (``export_examples(batch)``, example
    inputs of the sub-graphs in ``export_graphs``), :class:`~neuroplex.protocols.Configurable`
    (``to_config()``, stored in the ONNX metadata), :class:`~neuroplex.protocols.SampleReporter`
    (``report_samples(x)``, images in the report) and
    :class:`~neuroplex.protocols.HasTrainingStep`.

    Example plugin::

        from neuroplex import ModelRecord, hookimpl

        @hookimpl
        def neuroplex_register_models():
            return [
                ModelRecord(
                    name="tiny_mlp",
                    factory="my_plugin.models:TinyMLP",
                    summary="one hidden layer",
                    example_config={"input_size": 8, "output_size": 3},
                    example_input=(4, 8),
                )
            ]
    """


@_hookspec
def neuroplex_register_optimizers() -> Iterable[OptimizerRecord]:
    """Register optimizers (``role="optimizer"``) and LR schedulers (``role="scheduler"``).

    Optimizer factories are called as ``factory(params, **config)`` and return a
    ``torch.optim.Optimizer``; scheduler factories as ``factory(optimizer, **config)`` and return
    a :class:`~neuroplex.protocols.Scheduler`. A scheduler stepped with the monitored metric
    declares the ``"needs_metric"`` capability (:data:`neuroplex.records.NEEDS_METRIC`).

    Example plugin::

        from neuroplex import OptimizerRecord, hookimpl

        @hookimpl
        def neuroplex_register_optimizers():
            yield OptimizerRecord(
                name="sgd_plain",
                factory="torch.optim:SGD",
                summary="plain SGD",
                example_config={"lr": 0.1},
            )
    """


@_hookspec
def neuroplex_register_devices() -> Iterable[DeviceRecord]:
    """Register devices. The factory is called as ``factory(**config)`` and returns a
    :class:`~neuroplex.protocols.Device`: ``is_available()`` (never raises), ``torch_device()``,
    ``ort_providers()`` and ``info()``. ``priority`` decides the ``auto`` choice.

    Example plugin::

        from neuroplex import DeviceRecord, hookimpl

        @hookimpl
        def neuroplex_register_devices():
            yield DeviceRecord(
                name="my_npu", factory="my_plugin.device:NPU", summary="an NPU", priority=50
            )
    """


@_hookspec
def neuroplex_register_analyzers() -> Iterable[AnalyzerRecord]:
    """Register analyzers (explanations, attacks). The factory is called as
    ``factory(model, **config)`` and returns an :class:`~neuroplex.protocols.Analyzer`, whose
    ``analyze(x, y=None)`` returns an :class:`~neuroplex.protocols.AnalysisResult` (a frozen
    record with ``to_dict()``). A result that is :class:`~neuroplex.protocols.Reportable` draws
    its own report sections; an attack that is an
    :class:`~neuroplex.protocols.AdversarialCrafter` can feed adversarial training.

    Example plugin::

        from neuroplex import AnalyzerRecord, hookimpl

        @hookimpl
        def neuroplex_register_analyzers():
            yield AnalyzerRecord(
                name="mean_logit",
                factory="my_plugin.analysis:MeanLogit",
                summary="mean logit per class",
            )
    """


@_hookspec
def neuroplex_register_feedback_sinks() -> Iterable[FeedbackSinkRecord]:
    """Register feedback sinks. The factory is called as ``factory(**config)`` and returns
    a :class:`~neuroplex.protocols.FeedbackSink` (``send(event)``, ``flush()``, ``close()``).
    A sink that writes files declares the ``"run_dir"`` capability
    (:data:`neuroplex.records.RUN_DIR`) and then receives ``run_dir=`` from ``neuroplex run``.

    Example plugin::

        from neuroplex import FeedbackSinkRecord, hookimpl

        @hookimpl
        def neuroplex_register_feedback_sinks():
            yield FeedbackSinkRecord(
                name="stdout_json",
                factory="my_plugin.sinks:StdoutJson",
                summary="one JSON line per event on stdout",
            )
    """


@_hookspec
def neuroplex_register_datasets() -> Iterable[DatasetRecord]:
    """Register datasets. The factory is called as ``factory(**config)`` (``seed``,
    ``val_fraction``, ``test_fraction`` always accepted) and returns
    :class:`~neuroplex.DataSplits`.

    Example plugin::

        from neuroplex import DatasetRecord, hookimpl

        @hookimpl
        def neuroplex_register_datasets():
            yield DatasetRecord(
                name="xor",
                factory="my_plugin.data:xor",
                summary="the XOR problem",
                example_config={"n": 64},
            )
    """


@_hookspec
def neuroplex_register_policies() -> Iterable[PolicyRecord]:
    """Register Mechanic policies: what the feedback stage of ``neuroplex run`` does once the
    model is trained, exported and analysed (retrain while vulnerable, fail the run below a
    threshold, ...). A spec names them in ``[[feedback.policies]]``; they run in that order.

    The factory is called as ``factory(max_rounds=int, **options)`` and returns a
    :class:`~neuroplex.protocols.Policy`: ``apply(context: PolicyContext) -> PolicyOutcome``.
    The context holds the run (spec, run directory, data splits, model, test metrics, the
    latest analyses, the Mechanic) and the kernel functions a policy acts with
    (``analyze``, ``retrain``, ``evaluate``, ``export``, ``decide``); the outcome holds the
    policy's :class:`~neuroplex.protocols.PolicyDecision` s and, when it acted, the new model
    (the kernel then re-evaluates and re-analyses it), report sections, or a rejection that
    fails the run. Options naming other components go in ``component_options`` so a run
    checks them before it starts.

    Example plugin::

        from neuroplex import PolicyRecord, hookimpl

        @hookimpl
        def neuroplex_register_policies():
            yield PolicyRecord(
                name="accuracy_floor",
                factory="my_plugin.policies:AccuracyFloor",
                summary="fail the run when test accuracy is below a floor",
                example_config={"floor": 0.5},
            )
    """
