"""Sinks: data readable back with the tools users have (sqlite3, MLflow, TensorBoard)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

import pytest

import neuroplex
from neuroplex import ConfigError, Event, SinkError
from neuroplex.mechanic import Mechanic
from neuroplex.testing.feedback_sink import canonical_events


def test_sqlite_tables_are_queryable(tmp_path) -> None:
    sink = neuroplex.create_sink("sqlite", run_dir=str(tmp_path))
    for event in canonical_events("r1"):
        sink.send(event)
    sink.close()
    db = sqlite3.connect(tmp_path / "neuroplex.sqlite")
    assert db.execute("SELECT status FROM runs WHERE run_id='r1'").fetchone() == ("completed",)
    metrics = dict(db.execute("SELECT metric, value FROM metrics WHERE kind='metrics'"))
    assert metrics == {"accuracy": 0.97, "loss": 0.1}
    assert db.execute(
        "SELECT value FROM metrics WHERE kind='epoch' AND metric='metrics.accuracy'"
    ).fetchone() == (0.9,)
    assert db.execute("SELECT backend, tier FROM analyses").fetchone() == ("onnx", "gradients")
    assert db.execute("SELECT policy, round, action FROM decisions").fetchone() == (
        "adversarial",
        0,
        "retrain",
    )
    assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (8,)


def test_sqlite_resend_writes_no_duplicates(tmp_path) -> None:
    sink = neuroplex.create_sink("sqlite", path=str(tmp_path / "x.sqlite"))
    for _ in range(3):
        for event in canonical_events("r"):
            sink.send(event)
    # events 8, runs 1, metrics 8 (4 from the epoch, 2 from metrics, 2 from the analysis),
    # analyses 1, decisions 1
    assert sink.row_count() == 8 + 1 + 8 + 1 + 1
    # a re-sent event replaces its rows as a whole
    sink.send(Event(run_id="r", kind="metrics", name="deep_model", payload={"accuracy": 0.5}))
    sink.close()
    db = sqlite3.connect(tmp_path / "x.sqlite")
    rows = db.execute("SELECT metric, value FROM metrics WHERE kind='metrics'").fetchall()
    assert rows == [("accuracy", 0.5)]


def test_sqlite_analysis_numbers_and_non_finite_payloads(tmp_path) -> None:
    sink = neuroplex.create_sink("sqlite", run_dir=str(tmp_path))
    payload = {"robust_accuracy": 0.25, "loss": float("nan"), "per_eps": {"0.1": 0.5}}
    sink.send(Event(run_id="r", kind="analysis", name="fgsm", step=2, payload=payload))
    sink.close()
    db = sqlite3.connect(tmp_path / "neuroplex.sqlite")
    rows = db.execute("SELECT metric, value FROM metrics WHERE kind='analysis' AND step=2")
    assert dict(rows) == {"robust_accuracy": 0.25, "per_eps.0.1": 0.5}  # NaN is not a number
    # the JSON stays readable by SQLite's JSON functions (no bare NaN token)
    assert db.execute(
        "SELECT json_extract(payload, '$.loss'), json_extract(payload, '$.robust_accuracy') "
        "FROM analyses"
    ).fetchone() == ("NaN", 0.25)


def test_sqlite_run_status_with_resume_and_out_of_order_replay(tmp_path) -> None:
    sink = neuroplex.create_sink("sqlite", run_dir=str(tmp_path))

    db = sqlite3.connect(tmp_path / "neuroplex.sqlite")

    def status() -> tuple[str, float, float]:
        return db.execute("SELECT status, started, finished FROM runs").fetchone()

    start = Event(run_id="r", kind="run_started", name="run", time=10.0)
    sink.send(
        Event(run_id="r", kind="run_finished", name="run", payload={"status": "failed"}, time=20.0)
    )
    sink.send(start)  # replayed from a spool after the finish: the run stays failed
    assert status() == ("failed", 10.0, 20.0)
    sink.send(Event(run_id="r", kind="run_started", name="run", time=30.0))  # resumed
    assert status()[0] == "running"
    sink.send(
        Event(
            run_id="r", kind="run_finished", name="run", payload={"status": "completed"}, time=40.0
        )
    )
    assert status() == ("completed", 10.0, 40.0)
    sink.close()


def test_sqlite_unwritable_path_is_a_sink_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SinkError, match="cannot open .*set options.path to a writable file"):
        neuroplex.create_sink("sqlite", path=str(blocker / "sub" / "db.sqlite"))


def test_sqlite_locked_database_is_a_sink_error_and_the_mechanic_replays(tmp_path) -> None:
    path = tmp_path / "locked.sqlite"
    sink = neuroplex.create_sink("sqlite", path=str(path), timeout_s=0.1)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(SinkError, match="database is locked"):
        sink.send(Event(run_id="r", kind="metrics", name="m", payload={"a": 1.0}))
    mechanic = Mechanic([sink], run_id="r", spool_dir=tmp_path / "spool", timeout_s=5)
    mechanic.record_performance("m", {"a": 2.0}, step=1)
    assert mechanic.stats["0-sqlite"].pending == 1
    blocker.rollback()
    blocker.close()
    final = mechanic.close()["0-sqlite"]
    assert (final.delivered, final.pending, final.lost) == (1, 0, 0)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM metrics WHERE step=1").fetchone() == (2.0,)


def test_jsonl_and_console(tmp_path, capsys) -> None:
    sink = neuroplex.create_sink("jsonl", run_dir=str(tmp_path))
    for event in canonical_events("r"):
        sink.send(event)
    sink.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "run_started"
    assert len(lines) == 8
    console = neuroplex.create_sink("console")
    console.send(canonical_events("r")[2])
    assert capsys.readouterr().err == "[r] metrics deep_model #0: accuracy=0.97 loss=0.1\n"


def test_mlflow_run_is_readable_with_the_mlflow_client(tmp_path, monkeypatch) -> None:
    """The default store is MLflow's database (sqlite:///<run_dir>/mlflow.db): a plain client,
    with no MLflow setting in the environment, reads the run back."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the current directory either
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    model = run_dir / "model.onnx"
    model.write_bytes(b"onnx")
    sink = neuroplex.create_sink("mlflow", run_dir=str(run_dir))
    events = canonical_events("r")
    events[5] = Event(
        run_id="r", kind="artifact", name="model.onnx", payload={"path": str(model), "type": "onnx"}
    )
    for event in events:
        sink.send(event)
    sink.close()
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sink.tracking_uri == f"sqlite:///{(run_dir / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("neuroplex").experiment_id])
    assert run.data.params["a"] == "1"
    assert run.data.metrics["deep_model.accuracy"] == 0.97
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.onnx"]
    assert run.data.tags["decision.adversarial.0"] == "retrain"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5)]
    assert (run_dir / "mlartifacts").is_dir()


def test_mlflow_without_database_packages_says_how_to_get_them(tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # as if not installed
    with pytest.raises(
        ConfigError, match=r"sqlalchemy and alembic: pip install 'neuroplex-sinks\[mlflow\]'"
    ):
        neuroplex.create_sink("mlflow", run_dir=str(tmp_path))


def test_mlflow_errors_are_sink_errors(tmp_path) -> None:
    pytest.importorskip("mlflow")
    sink = neuroplex.create_sink("mlflow", run_dir=str(tmp_path))
    spec = {"spec": {"lr": 0.1}}
    sink.send(Event(run_id="r", kind="run_started", name="run", payload=spec))
    changed = {"spec": {"lr": 0.2}}  # MLflow refuses to change a logged param
    with pytest.raises(SinkError, match="mlflow sink .*lr"):
        sink.send(Event(run_id="r", kind="run_started", name="run", payload=changed))


def test_tensorboard_scalars_are_readable(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = neuroplex.create_sink("tensorboard", run_dir=str(tmp_path))
    for event in canonical_events("r"):
        sink.send(event)
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard" / "r"))
    acc.Reload()
    assert "metrics/deep_model/accuracy" in acc.Tags()["scalars"]
    (scalar,) = acc.Scalars("epoch/model/train_loss")
    assert (scalar.step, scalar.value) == (1, 0.5)
