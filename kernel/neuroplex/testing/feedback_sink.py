"""Conformance checks for feedback sinks: the canonical event stream, unknown fields, dedupe.

Capabilities the checks read from a :class:`FeedbackSinkRecord`:

* ``run_dir`` — the factory takes ``run_dir=`` (the pipeline passes the run directory; the
  checks pass a temporary one) and writes its files there by default;
* ``idempotent`` — re-sending an event with the same key stores nothing new; the sink exposes
  ``row_count() -> int`` (rows stored over all its tables) for the check;
* ``optional`` — the sink needs an extra; when it is missing the factory raises ConfigError
  saying ``pip install ...`` and the checks skip it.

A sink whose example config needs a file path and that has no ``run_dir`` capability should
point its example at a temporary directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neuroplex.errors import ConfigError
from neuroplex.protocols import FeedbackSink
from neuroplex.records import RUN_DIR, Event, FeedbackSinkRecord

__all__ = ["CHECKS", "canonical_events"]


def canonical_events(run_id: str = "conformance") -> list[Event]:
    """One event of every kind the kernel sends, plus an unknown kind and unknown fields."""
    return [
        Event(run_id=run_id, kind="run_started", name="run", payload={"spec": {"a": 1}}),
        Event(
            run_id=run_id,
            kind="epoch",
            name="model",
            step=1,
            payload={
                "epoch": 1,
                "train_loss": 0.5,
                "val_loss": 0.6,
                "metrics": {"accuracy": 0.9},
                "future_field": [1, 2],
            },
        ),
        Event(
            run_id=run_id,
            kind="metrics",
            name="deep_model",
            payload={"accuracy": 0.97, "loss": 0.1},
        ),
        Event(
            run_id=run_id,
            kind="analysis",
            name="fgsm",
            payload={
                "robust_accuracy": 0.4,
                "is_vulnerable": True,
                "backend": "onnx",
                "tier": "gradients",
                "nested": {"x": [1.0, 2.0]},
            },
        ),
        Event(
            run_id=run_id,
            kind="decision",
            name="adversarial:0",
            payload={
                "policy": "adversarial",
                "action": "retrain",
                "round": 0,
                "reason": {"robust_accuracy": 0.4},
            },
        ),
        Event(
            run_id=run_id,
            kind="artifact",
            name="model.onnx",
            payload={"path": "/nonexistent/model.onnx", "type": "onnx"},
        ),
        Event(run_id=run_id, kind="a_kind_from_the_future", name="x", payload={"k": "v"}),
        Event(run_id=run_id, kind="run_finished", name="run", payload={"status": "completed"}),
    ]


def _build(record: FeedbackSinkRecord, tmp: str) -> Any:
    """The sink from its example config; a sink with the ``run_dir`` capability writes in ``tmp``.

    A sink with the ``optional`` capability whose extra is not installed (a ConfigError that
    says ``pip install``) is skipped.
    """
    config: dict[str, Any] = dict(record.example_config)
    if RUN_DIR in record.capabilities:
        config.setdefault("run_dir", tmp)
    try:
        return record.load()(**config)
    except ConfigError as exc:
        if "optional" not in record.capabilities or "pip install" not in str(exc):
            raise
        import pytest

        pytest.skip(f"optional sink {record.name!r} not usable here: {exc}")


@contextmanager
def built(record: FeedbackSinkRecord) -> Iterator[Any]:
    """The sink built in a temporary directory (see :func:`_build`), closed on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = _build(record, tmp)
        try:
            yield sink
        finally:
            sink.close()


def check_accepts_canonical_stream(record: FeedbackSinkRecord) -> None:
    """send() takes every canonical event (unknown kinds and fields too); flush() and close()
    succeed; a sink with the ``run_dir`` capability writes into its run directory."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = _build(record, tmp)
        try:
            missing = [m for m in ("send", "flush", "close") if not hasattr(sink, m)]
            assert isinstance(sink, FeedbackSink), (
                f"sink {type(sink).__name__} is not a neuroplex.protocols.FeedbackSink "
                f"(lacks {', '.join(f'{m}()' for m in missing)})"
            )
            for event in canonical_events():
                sink.send(event)
            sink.flush()
        except BaseException:
            sink.close()
            raise
        sink.close()
        if RUN_DIR in record.capabilities:
            assert any(Path(tmp).iterdir()), (
                f"sink {record.name!r} has the run_dir capability but wrote nothing into the "
                "run_dir it was given"
            )


def check_resend_is_idempotent(record: FeedbackSinkRecord) -> None:
    """Sinks with the ``idempotent`` capability store a re-sent event once."""
    if "idempotent" not in record.capabilities:
        return
    with built(record) as sink:
        rows = getattr(sink, "row_count", None)
        assert callable(rows), "an idempotent sink exposes row_count() for this check"
        for event in canonical_events():
            sink.send(event)
        first = rows()
        for event in canonical_events():
            sink.send(event)
        assert rows() == first, f"re-sending the stream grew the store: {first} -> {rows()}"


CHECKS: list[Callable[[FeedbackSinkRecord], None]] = [
    check_accepts_canonical_stream,
    check_resend_is_idempotent,
]
