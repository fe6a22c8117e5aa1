"""Entry module of neuroplex-sinks: registers the feedback sinks and the ``early_reject`` policy
(imports nothing heavy)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import FeedbackSinkRecord, PolicyRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1


@hookimpl
def neuroplex_register_feedback_sinks() -> Iterator[FeedbackSinkRecord]:
    yield FeedbackSinkRecord(
        name="sqlite",
        factory="neuroplex_sinks.sqlite:SqliteSink",
        summary="runs, metrics, analyses and decisions in SQLite tables (the default sink)",
        capabilities={"run_dir", "idempotent", "default"},
    )
    yield FeedbackSinkRecord(
        name="jsonl",
        factory="neuroplex_sinks.basic:JsonlSink",
        summary="one JSON line per event",
        capabilities={"run_dir"},
    )
    yield FeedbackSinkRecord(
        name="console",
        factory="neuroplex_sinks.basic:ConsoleSink",
        summary="one short line per event on stderr",
    )
    yield FeedbackSinkRecord(
        name="mlflow",
        factory="neuroplex_sinks.mlflow:MlflowSink",
        summary="MLflow tracking: params, metrics per step, artifacts (extra: [mlflow])",
        capabilities={"run_dir", "optional"},
    )
    yield FeedbackSinkRecord(
        name="tensorboard",
        factory="neuroplex_sinks.tensorboard:TensorBoardSink",
        summary="TensorBoard event files with scalars per step (extra: [tensorboard])",
        capabilities={"run_dir", "optional"},
    )


@hookimpl
def neuroplex_register_policies() -> Iterator[PolicyRecord]:
    yield PolicyRecord(
        name="early_reject",
        factory="neuroplex_sinks.gate:EarlyReject",
        summary="fail the run when a test metric or analysis number crosses its threshold",
        capabilities={"gate"},
        example_config={"min": {"test_metrics.accuracy": 0.0}},
    )
