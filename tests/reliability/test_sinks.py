"""Feedback sinks that raise, hang, or write to a locked or full database, inside a real
``neuroplex run``: the run completes, undelivered events are spooled and replayed, and every
event is accounted for — counted both in ``manifest.json`` (emitted / delivered / pending /
lost per sink) and in what the sink really stored."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ._helpers import (
    REPO,
    SUBPROCESS_TIMEOUT_S,
    cli_env,
    finish,
    manifest,
    run_cli,
    spawn_cli,
    tiny_spec,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.requires_plugins(
    "neuroplex-models", "neuroplex-datasets", "neuroplex-optim", "neuroplex-sinks"
)

EPOCHS = 4


def _run(
    tmp_path: Path, sinks: list[dict[str, Any]], *, step_sleep: float = 0.0, **feedback: Any
) -> tuple[Path, Any]:
    spec = tiny_spec(training={"epochs": EPOCHS}, feedback={"sinks": sinks, **feedback})
    out = tmp_path / "run"
    env = cli_env(site=True, NPREL_STEP_SLEEP_S=str(step_sleep))
    done = run_cli("run", write_spec(tmp_path / "spec.json", spec), "--output", out, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert manifest(out)["status"] == "completed"
    return out, done


def _stored(path: Path) -> set[tuple[str, str, str, int]]:
    """Distinct events a fault sink stored (a replay after a late answer may store twice)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["run_id"], r["kind"], r["name"], r["step"]) for r in rows}


def _sqlite_events(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _stats(out: Path, suffix: str) -> dict[str, Any]:
    sinks = manifest(out)["sinks"]
    (name,) = [k for k in sinks if k.endswith(suffix)]
    return dict(sinks[name])


def _emitted_everywhere_equal(out: Path) -> int:
    counts = {s["emitted"] for s in manifest(out)["sinks"].values()}
    assert len(counts) == 1, counts
    return counts.pop()


@pytest.mark.reliability("fault", "feedback sink raises on its first calls")
def test_a_raising_sink_loses_nothing(tmp_path: Path, reliability) -> None:
    store = tmp_path / "flaky.jsonl"
    out, done = _run(
        tmp_path,
        [{"name": "flaky", "options": {"path": str(store), "fail_first": 3}}, {"name": "sqlite"}],
    )
    emitted = _emitted_everywhere_equal(out)
    flaky, db = _stats(out, "flaky"), _stats(out, "sqlite")
    assert flaky["failures"] == 3 and "injected failure" in flaky["last_error"]
    assert "sink 0-flaky failed" in done.stderr and "event spooled for replay" in done.stderr
    assert flaky["replayed"] >= 1
    assert flaky["delivered"] == emitted and flaky["pending"] == 0 and flaky["lost"] == 0
    assert db["delivered"] == emitted and db["failures"] == 0  # the other sink never noticed
    assert len(_stored(store)) == emitted  # counted at the receiving end too
    assert _sqlite_events(out / "neuroplex.sqlite") == emitted
    assert not list((out / "spool").glob("*.jsonl"))  # the spool drained
    reliability.tried(flaky["failures"])
    reliability.lost(emitted - len(_stored(store)))


@pytest.mark.reliability("fault", "feedback sink down for the whole run: spooled, replayed later")
def test_a_sink_down_all_run_spools_everything_and_a_later_run_replays_it(
    tmp_path: Path, reliability
) -> None:
    store = tmp_path / "flaky.jsonl"
    out, _ = _run(tmp_path, [{"name": "flaky", "options": {"path": str(store), "fail_first": -1}}])
    stats = _stats(out, "flaky")
    emitted = stats["emitted"]
    assert stats["delivered"] == 0 and stats["pending"] == emitted and stats["lost"] == 0
    spool = out / "spool" / "0-flaky.jsonl"
    assert len(spool.read_text().splitlines()) == emitted
    assert not store.exists()
    # the sink comes back: the next Mechanic on this spool replays everything, in order
    script = (
        "import json, sys\n"
        "from neuroplex.mechanic import Mechanic\n"
        "m = Mechanic([('flaky', {'path': sys.argv[1], 'fail_first': 0})], "
        "run_id=sys.argv[3], spool_dir=sys.argv[2])\n"
        "print(json.dumps({k: v.to_dict() for k, v in m.close().items()}))\n"
    )
    replay = subprocess.run(
        [sys.executable, "-c", script, str(store), str(out / "spool"), manifest(out)["run_id"]],
        env=cli_env(site=True),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        cwd=REPO,
    )
    assert replay.returncode == 0, replay.stderr
    (after,) = json.loads(replay.stdout).values()
    assert after["inherited"] == emitted and after["replayed"] == emitted
    assert after["pending"] == 0 and after["lost"] == 0
    kinds = [json.loads(line)["kind"] for line in store.read_text().splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert len(_stored(store)) == emitted
    assert not spool.exists()
    reliability.tried(emitted)
    reliability.lost(emitted - len(_stored(store)))


@pytest.mark.reliability("fault", "feedback sink hangs for a while, then answers")
def test_a_hanging_sink_times_out_and_is_replayed(tmp_path: Path, reliability) -> None:
    store = tmp_path / "hanging.jsonl"
    out, _ = _run(
        tmp_path,
        [{"name": "hanging", "options": {"path": str(store), "hang_first": 1, "hang_s": 1.0}}],
        sink_timeout_s=0.3,
        step_sleep=0.01,  # about 0.7 s more per epoch: the run outlives the hang
    )
    stats = _stats(out, "hanging")
    emitted = stats["emitted"]
    assert stats["timeouts"] >= 1 and "timed out after 0.3s" in stats["last_error"]
    assert stats["delivered"] == emitted and stats["pending"] == 0 and stats["lost"] == 0
    assert len(_stored(store)) == emitted
    reliability.tried(stats["timeouts"])
    reliability.lost(emitted - len(_stored(store)))


@pytest.mark.reliability("fault", "feedback sink hangs forever: the process still exits")
def test_a_sink_hanging_forever_does_not_hang_the_run(tmp_path: Path, reliability) -> None:
    store = tmp_path / "hanging.jsonl"
    sinks = [{"name": "hanging", "options": {"path": str(store), "hang_first": -1, "hang_s": 3600}}]
    spec = tiny_spec(training={"epochs": 2}, feedback={"sinks": sinks, "sink_timeout_s": 0.3})
    out = tmp_path / "run"
    start = time.monotonic()
    done = run_cli(
        "run",
        write_spec(tmp_path / "spec.json", spec),
        "--output",
        out,
        env=cli_env(site=True),
        timeout=300,  # far below the sink's 3600 s hang, far above a loaded machine's run
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - start < 300
    stats = _stats(out, "hanging")
    assert stats["delivered"] == 0 and stats["pending"] == stats["emitted"] and stats["lost"] == 0
    spool = out / "spool" / "0-hanging.jsonl"
    assert len(spool.read_text().splitlines()) == stats["emitted"]
    reliability.lost(stats["lost"])


def _hold_lock(db: Path, release: threading.Event, held: threading.Event) -> None:
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN EXCLUSIVE")
    held.set()
    release.wait(SUBPROCESS_TIMEOUT_S)
    con.execute("COMMIT")
    con.close()


@pytest.mark.reliability("fault", "sqlite sink database locked by another process")
def test_a_locked_database_is_retried_until_it_unlocks(tmp_path: Path, reliability) -> None:
    db = tmp_path / "shared.sqlite"
    from neuroplex_sinks.sqlite import SqliteSink

    SqliteSink(path=str(db)).close()  # the shared database exists (another tool made it)
    release, held = threading.Event(), threading.Event()
    locker = threading.Thread(target=_hold_lock, args=(db, release, held), daemon=True)
    locker.start()
    assert held.wait(10)
    sinks = [{"name": "sqlite", "options": {"path": str(db), "timeout_s": 0.1}}]
    spec = tiny_spec(training={"epochs": EPOCHS}, feedback={"sinks": sinks})
    out = tmp_path / "run"
    proc = spawn_cli(
        "run",
        write_spec(tmp_path / "spec.json", spec),
        "--output",
        out,
        env=cli_env(NPREL_STEP_SLEEP_S="0.003"),
    )
    spool = out / "spool" / "0-sqlite.jsonl"
    try:  # locked until two events are spooled, then the other process lets go
        assert wait_for(
            lambda: (
                proc.poll() is not None
                or (spool.exists() and len(spool.read_text().splitlines()) >= 2)
            )
        )
    finally:
        release.set()
        locker.join(10)
    _, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    stats = _stats(out, "sqlite")
    emitted = stats["emitted"]
    assert stats["failures"] >= 2 and "database is locked" in stats["last_error"]
    assert stats["delivered"] == emitted and stats["pending"] == 0 and stats["lost"] == 0
    assert _sqlite_events(db) == emitted
    reliability.tried(stats["failures"])
    reliability.lost(emitted - _sqlite_events(db))


@pytest.mark.reliability("fault", "sqlite sink database full (SQLITE_FULL), then space frees")
def test_a_full_database_is_retried_until_there_is_room(tmp_path: Path, reliability) -> None:
    out, _ = _run(tmp_path, [{"name": "full_sqlite", "options": {"full_for": 3}}])
    stats = _stats(out, "full_sqlite")
    emitted = stats["emitted"]
    assert stats["failures"] == 3 and "database or disk is full" in stats["last_error"]
    assert stats["delivered"] == emitted and stats["pending"] == 0 and stats["lost"] == 0
    assert _sqlite_events(out / "neuroplex.sqlite") == emitted
    reliability.tried(stats["failures"])
    reliability.lost(emitted - _sqlite_events(out / "neuroplex.sqlite"))
