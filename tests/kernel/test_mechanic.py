"""The Mechanic: sinks are isolated; failed events are spooled, replayed and never lost."""

from __future__ import annotations

import threading

import pytest

from neuroplex import ConfigError, Event
from neuroplex.mechanic import Mechanic, to_plain


class MemorySink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def send(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FlakySink(MemorySink):
    """Raises until ``healthy`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = False

    def send(self, event: Event) -> None:
        if not self.healthy:
            raise OSError("database is locked")
        super().send(event)


class HangingSink(MemorySink):
    """Blocks on send until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send(self, event: Event) -> None:
        self.release.wait(30)
        super().send(event)


def test_seed_api_records_metrics(tmp_path) -> None:
    sink = MemorySink()
    with Mechanic([sink], run_id="r1", spool_dir=tmp_path) as mechanic:
        mechanic.record_performance("deep_model", {"accuracy": 0.97, "loss": 0.1})
    (event,) = sink.events
    assert (event.run_id, event.kind, event.name) == ("r1", "metrics", "deep_model")
    assert event.payload == {"accuracy": 0.97, "loss": 0.1}
    assert sink.closed


def test_a_raising_sink_never_stops_the_others_and_loses_nothing(tmp_path, capsys) -> None:
    good, flaky = MemorySink(), FlakySink()
    mechanic = Mechanic([good, flaky], run_id="r", spool_dir=tmp_path, timeout_s=1)
    for i in range(5):
        mechanic.record_performance("m", {"i": i})
    assert len(good.events) == 5 and flaky.events == []
    stats = mechanic.stats["1-flakysink"]
    assert (stats.emitted, stats.delivered, stats.pending, stats.lost) == (5, 0, 5, 0)
    assert "sink 1-flakysink failed (OSError: database is locked); event spooled" in (
        capsys.readouterr().err
    )
    flaky.healthy = True
    mechanic.record_performance("m", {"i": 5})
    final = mechanic.close()["1-flakysink"]
    assert [e.payload["i"] for e in flaky.events] == [0, 1, 2, 3, 4, 5]  # order kept
    assert (final.emitted, final.delivered, final.replayed, final.pending, final.lost) == (
        6,
        6,
        5,
        0,
        0,
    )
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_hanging_sink_times_out_and_is_replayed(tmp_path) -> None:
    hanging = HangingSink()
    mechanic = Mechanic([hanging], run_id="r", spool_dir=tmp_path, timeout_s=0.2)
    mechanic.record_performance("m", {"i": 0})
    mechanic.record_performance("m", {"i": 1})  # does not wait: the sink is still stuck
    stats = mechanic.stats["0-hangingsink"]
    assert stats.timeouts == 1 and stats.pending == 2
    hanging.release.set()
    final = mechanic.close()["0-hangingsink"]
    assert final.pending == 0 and final.lost == 0
    # the stuck call finished too: the event arrived (sinks dedupe by event key)
    assert {e.key for e in hanging.events} == {("r", "metrics", "m", 0), ("r", "metrics", "m", 1)}


def test_spool_survives_the_process_and_is_replayed_by_the_next_mechanic(tmp_path) -> None:
    flaky = FlakySink()
    first = Mechanic([flaky], run_id="r", spool_dir=tmp_path, timeout_s=1)
    first.record_performance("m", {"i": 0})
    assert first.close()["0-flakysink"].pending == 1
    assert (tmp_path / "0-flakysink.jsonl").exists()
    flaky.healthy = True
    second = Mechanic([flaky], run_id="r", spool_dir=tmp_path, timeout_s=1)
    second.flush()
    assert [e.payload for e in flaky.events] == [{"i": 0}]
    assert second.close()["0-flakysink"].pending == 0


def test_a_torn_spool_line_is_skipped(tmp_path) -> None:
    (tmp_path / "0-memorysink.jsonl").write_text('{"run_id": "r", "kind": "metrics", "na')
    sink = MemorySink()
    Mechanic([sink], spool_dir=tmp_path).close()
    assert sink.events == []


def test_decisions_and_steps(tmp_path) -> None:
    sink = MemorySink()
    with Mechanic([sink], run_id="r", spool_dir=tmp_path) as m:
        m.record_decision("adversarial", "retrain", {"robust_accuracy": 0.2}, round=1)
        m.record_epoch("train", {"loss": 1.0}, step=3)
    assert [e.key for e in sink.events] == [
        ("r", "decision", "adversarial:1", 1),
        ("r", "epoch", "train", 3),
    ]


def test_bad_sink_objects_and_timeouts_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="a sink needs a send"):
        Mechanic([object()], spool_dir=tmp_path)
    with pytest.raises(ConfigError, match="timeout_s must be > 0"):
        Mechanic([], timeout_s=0)


def test_to_plain_handles_records_and_arrays() -> None:
    import numpy as np

    class Rec:
        def to_dict(self):
            return {"a": np.array([1.0, 2.0]), "b": (1, "x")}

    assert to_plain({"r": Rec()}) == {"r": {"a": [1.0, 2.0], "b": [1, "x"]}}
