"""The Mechanic: the feedback loop. It records results to every sink and applies policies.

Sinks are isolated: each runs calls on its own worker thread (a daemon thread: a sink hung
for good never keeps the process from exiting) with a timeout. A sink that raises or hangs
never stops the run; its events go to a spool file (JSON lines) and are
replayed, in order, on the next successful call, on :meth:`Mechanic.flush` and on
:meth:`Mechanic.close` — or by the next Mechanic opened on the same spool directory. Every
event is counted: ``delivered + pending == inherited + emitted`` per sink
(:attr:`Mechanic.stats`; ``inherited`` events were in the spool when the Mechanic started).

Seed API::

    mechanic = Mechanic(["sqlite"])
    mechanic.record_performance("deep_model", metrics)
"""

from __future__ import annotations

import functools
import json
import queue
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import attrs

from neuroplex.errors import ConfigError
from neuroplex.protocols import FeedbackSink
from neuroplex.records import Event

__all__ = ["Mechanic", "SinkStats", "to_plain"]


def to_plain(value: Any) -> Any:
    """JSON-friendly copy: records via ``to_dict()``, tensors/arrays via ``tolist()``."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_plain(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        return to_plain(value.tolist())
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


@attrs.define
class SinkStats:
    """Per-sink delivery counters. ``pending`` events sit in the spool file, not lost;
    ``inherited`` were already spooled (by an earlier process) when this Mechanic started."""

    name: str
    inherited: int = 0
    emitted: int = 0
    delivered: int = 0
    failures: int = 0
    timeouts: int = 0
    replayed: int = 0
    pending: int = 0
    last_error: str | None = None

    @property
    def lost(self) -> int:
        return self.inherited + self.emitted - self.delivered - self.pending

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "lost": self.lost}


class _SinkWorker:
    """One sink, its thread, its spool."""

    def __init__(self, name: str, sink: Any, spool: Path, timeout_s: float) -> None:
        self.name = name
        self.sink = sink
        self.spool = spool
        self.timeout_s = timeout_s
        self.stats = SinkStats(name=name)
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name=f"sink-{name}", daemon=True)
        self._thread.start()
        self._stuck: Future[Any] | None = None
        self._lock = threading.Lock()
        self.stats.pending = self.stats.inherited = len(self._read_spool())

    def _work(self) -> None:
        """The sink's thread: runs calls one at a time, in order, until told to stop."""
        while (item := self._queue.get()) is not None:
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn))
        return future

    # -- spool
    def _read_spool(self) -> list[Event]:
        if not self.spool.exists():
            return []
        events = []
        for line in self.spool.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    events.append(Event.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from a crash: the event was never acknowledged
        return events

    def _append_spool(self, event: Event) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event.to_dict(), default=str) + "\n")
            fh.flush()
        self.stats.pending += 1

    def _rewrite_spool(self, events: Sequence[Event]) -> None:
        if not events:
            self.spool.unlink(missing_ok=True)
            return
        tmp = self.spool.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps(e.to_dict(), default=str) + "\n" for e in events), encoding="utf-8"
        )
        tmp.replace(self.spool)

    # -- calls
    def _call(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` on the sink's thread; False on error, timeout or a still-stuck call."""
        if self._stuck is not None:
            if not self._stuck.done():
                return False
            self._stuck = None
        future = self._submit(fn)
        try:
            future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._stuck = future
            self.stats.timeouts += 1
            self.stats.last_error = f"timed out after {self.timeout_s:g}s"
            return False
        except Exception as exc:
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def replay(self) -> None:
        events = self._read_spool()
        if not events:
            return
        done = 0
        for event in events:
            if not self._call(functools.partial(self.sink.send, event)):
                break
            done += 1
        self._rewrite_spool(events[done:])
        self.stats.pending = len(events) - done
        self.stats.delivered += done
        self.stats.replayed += done

    def send(self, event: Event) -> bool:
        with self._lock:
            self.stats.emitted += 1
            if self.stats.pending:
                self.replay()
            if not self.stats.pending and self._call(lambda: self.sink.send(event)):
                self.stats.delivered += 1
                return True
            self._append_spool(event)
            return False

    def flush(self) -> None:
        with self._lock:
            self.replay()
            self._call(self.sink.flush)

    def close(self) -> None:
        with self._lock:
            if self._stuck is not None:  # give a hanging call one more timeout to return
                try:
                    self._stuck.result(timeout=self.timeout_s)
                    self._stuck = None
                except Exception:
                    pass
            self.replay()
            self._call(self.sink.flush)
            self._call(self.sink.close)
        self._queue.put(None)  # the thread ends after its current call (a hung one: never)


def _sink_name(sink: Any, index: int) -> str:
    from neuroplex.registry import origin_of

    origin = origin_of(sink)
    base = origin.record.name if origin is not None else type(sink).__name__.lower()
    return f"{index}-{base}"


class Mechanic:
    """Records metrics, analyses and decisions to feedback sinks, isolated and spooled.

    Args:
        sinks: sink objects, registered sink names, or ``(name, options)`` pairs.
            ``None`` uses the default sink ``sqlite``.
        run_id: key of this run's events (a resumed run reuses its id: no duplicates).
        spool_dir: where undelivered events wait (default: ``./.neuroplex-spool``).
        timeout_s: per-call limit for a sink.
    """

    def __init__(
        self,
        sinks: Iterable[Any] | None = None,
        *,
        run_id: str | None = None,
        spool_dir: str | Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.spool_dir = Path(spool_dir or ".neuroplex-spool")
        self._step = 0
        self._closed = False
        self._workers: list[_SinkWorker] = []
        for index, sink in enumerate(["sqlite"] if sinks is None else list(sinks)):
            obj = self._build(sink)
            name = _sink_name(obj, index)
            self._workers.append(
                _SinkWorker(name, obj, self.spool_dir / f"{name}.jsonl", timeout_s)
            )

    @staticmethod
    def _build(sink: Any) -> FeedbackSink:
        from neuroplex.config import SinkSpec
        from neuroplex.registry import create_sink

        if isinstance(sink, str):
            return create_sink(sink)
        if isinstance(sink, tuple) and len(sink) == 2 and isinstance(sink[0], str):
            return create_sink(sink[0], **dict(sink[1]))
        if isinstance(sink, SinkSpec):
            return create_sink(sink.name, **dict(sink.options))
        if not isinstance(sink, FeedbackSink):
            raise ConfigError(
                "a sink needs a send(event), a flush() and a close() method (the "
                f"FeedbackSink protocol); got {type(sink).__name__}"
            )
        return sink

    # ------------------------------------------------------------------ recording
    def emit(self, kind: str, name: str, payload: Any, *, step: int | None = None) -> Event:
        """Send one event to every sink (never raises because of a sink)."""
        if self._closed:
            raise ConfigError("this Mechanic is closed; create a new one")
        if step is None:
            step = self._step
            self._step += 1
        event = Event(
            run_id=self.run_id, kind=kind, name=name, step=step, payload=to_plain(payload)
        )
        for worker in self._workers:
            if not worker.send(event):
                print(
                    f"neuroplex: sink {worker.name} failed ({worker.stats.last_error}); "
                    "event spooled for replay",
                    file=sys.stderr,
                )
        return event

    def record_performance(self, name: str, metrics: Any, *, step: int | None = None) -> Event:
        """Record a model's metrics (a mapping or a record with ``to_dict()``)."""
        return self.emit("metrics", name, metrics, step=step)

    def record_analysis(
        self,
        name: str,
        result: Any,
        *,
        step: int | None = None,
        evaluated_on: Mapping[str, Any] | None = None,
    ) -> Event:
        """Record an analysis result (robustness, attributions summary, ...); ``evaluated_on``
        (e.g. ``{"split": "test", "n": 359, "backend": "onnx"}``) is added to its payload."""
        if evaluated_on is not None:
            plain = to_plain(result)
            if isinstance(plain, Mapping):
                result = {**plain, "evaluated_on": dict(evaluated_on)}
        return self.emit("analysis", name, result, step=step)

    def record_epoch(self, name: str, epoch: Any, *, step: int) -> Event:
        """Record one training epoch (an ``EpochRecord`` or a mapping)."""
        return self.emit("epoch", name, epoch, step=step)

    def record_decision(
        self, policy: str, action: str, reason: Mapping[str, Any], *, round: int
    ) -> Event:
        """Record a policy decision (e.g. ``adversarial`` → ``retrain``)."""
        payload = {"policy": policy, "action": action, "reason": dict(reason), "round": round}
        return self.emit("decision", f"{policy}:{round}", payload, step=round)

    # ------------------------------------------------------------------ lifecycle
    @property
    def stats(self) -> dict[str, SinkStats]:
        return {w.name: w.stats for w in self._workers}

    def flush(self) -> None:
        for worker in self._workers:
            worker.flush()

    def close(self) -> dict[str, SinkStats]:
        """Replay what can be replayed, close the sinks; returns the final counters."""
        if not self._closed:
            for worker in self._workers:
                worker.close()
            self._closed = True
        return self.stats

    def __enter__(self) -> Mechanic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
