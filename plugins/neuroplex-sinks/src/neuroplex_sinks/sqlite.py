"""The default sink: SQLite tables a user can query with ``sqlite3``.

Schema (every table keyed so that re-sending an event — a resumed run, a replayed spool —
replaces its rows instead of duplicating them):

* ``events(run_id, kind, name, step, time, payload)`` — every event, raw JSON payload;
* ``runs(run_id, name, started, finished, status, spec)``;
* ``metrics(run_id, kind, name, step, metric, value)`` — finite numeric leaves of ``epoch``,
  ``metrics`` and ``analysis`` events (nested keys dotted: ``metrics.accuracy``; booleans 0/1);
* ``analyses(run_id, name, step, backend, tier, payload)`` — the full result as JSON, its key
  numbers in ``metrics`` (``kind = 'analysis'``);
* ``decisions(run_id, policy, round, action, reason)`` — the Mechanic's decisions.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from neuroplex import Event
from neuroplex.errors import SinkError
from neuroplex_sinks._flatten import default_path, numeric_leaves

__all__ = ["SCHEMA", "SqliteSink"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL,
    time REAL, payload TEXT, PRIMARY KEY (run_id, kind, name, step));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT, started REAL, finished REAL, status TEXT, spec TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, kind, name, step, metric));
CREATE TABLE IF NOT EXISTS analyses (
    run_id TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, backend TEXT, tier TEXT,
    payload TEXT, PRIMARY KEY (run_id, name, step));
CREATE TABLE IF NOT EXISTS decisions (
    run_id TEXT NOT NULL, policy TEXT NOT NULL, round INTEGER NOT NULL, action TEXT,
    reason TEXT, PRIMARY KEY (run_id, policy, round));
"""


class SqliteSink:
    """Writes events to ``path`` (default ``<run_dir>/neuroplex.sqlite``), WAL mode.

    A locked, read-only or full database raises :class:`~neuroplex.SinkError`; the Mechanic
    spools the event and replays it later.
    """

    def __init__(
        self, path: str | None = None, run_dir: str | None = None, timeout_s: float = 5.0
    ) -> None:
        self.path = default_path(path, run_dir, "neuroplex.sqlite")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout_s, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(
                f"sqlite sink: cannot open {self.path}: {exc}; set options.path to a writable file"
            ) from exc

    def send(self, event: Event) -> None:
        payload = _json(event.payload)
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                    (event.run_id, event.kind, event.name, event.step, event.time, payload),
                )
                self._index(event, payload)
        except sqlite3.Error as exc:
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc

    def _index(self, event: Event, payload: str) -> None:
        db, p = self._db, event.payload
        if event.kind == "run_started":
            # a resumed run starts again (status back to running); a replayed start that is
            # older than the recorded finish leaves the finished status alone
            db.execute(
                "INSERT INTO runs (run_id, name, started, status, spec) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET name = excluded.name, "
                "started = COALESCE(runs.started, excluded.started), spec = excluded.spec, "
                "status = CASE WHEN runs.finished IS NULL OR excluded.started >= runs.finished "
                "THEN excluded.status ELSE runs.status END",
                (event.run_id, event.name, event.time, "running", _json(p.get("spec", {}))),
            )
        elif event.kind == "run_finished":
            db.execute(
                "INSERT INTO runs (run_id, name, finished, status) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET finished = excluded.finished, "
                "status = CASE WHEN runs.started IS NULL OR excluded.finished >= runs.started "
                "THEN excluded.status ELSE runs.status END",
                (event.run_id, event.name, event.time, str(p.get("status", "finished"))),
            )
        if event.kind in ("epoch", "metrics", "analysis"):
            # the event's rows are replaced as a whole: a re-sent event with fewer numbers
            # leaves none of the old ones behind
            db.execute(
                "DELETE FROM metrics WHERE run_id = ? AND kind = ? AND name = ? AND step = ?",
                event.key,
            )
            db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (event.run_id, event.kind, event.name, event.step, k, v)
                    for k, v in numeric_leaves(p)
                ],
            )
        if event.kind == "analysis":
            db.execute(
                "INSERT OR REPLACE INTO analyses VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.run_id,
                    event.name,
                    event.step,
                    _str(p.get("backend")),
                    _str(p.get("tier")),
                    payload,
                ),
            )
        elif event.kind == "decision":
            db.execute(
                "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?)",
                (
                    event.run_id,
                    str(p.get("policy", event.name)),
                    _int(p.get("round"), event.step),
                    _str(p.get("action")),
                    _json(p.get("reason", {})),
                ),
            )
        # unknown kinds: kept in `events` only

    def row_count(self) -> int:
        """Rows over all tables (the conformance kit checks re-sends add none)."""
        with self._lock:
            tables = ("events", "runs", "metrics", "analyses", "decisions")
            return sum(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)

    def flush(self) -> None:
        try:
            with self._lock:
                self._db.commit()
        except sqlite3.Error as exc:
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _finite(value: Any) -> Any:
    """NaN and inf as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``: SQLite's JSON
    functions reject the bare tokens Python's ``json`` writes for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(_finite(value), default=str, sort_keys=True, allow_nan=False)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
