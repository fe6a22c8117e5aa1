"""The console and JSON-lines sinks."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from neuroplex import Event
from neuroplex_sinks._flatten import default_path, numeric_leaves

__all__ = ["ConsoleSink", "JsonlSink"]


class ConsoleSink:
    """One short line per event: ``[run] kind name step: a=1 b=2`` (first 6 numbers)."""

    def __init__(self, stream: str = "stderr") -> None:
        if stream not in ("stderr", "stdout"):
            from neuroplex import ConfigError

            raise ConfigError(f"stream must be 'stderr' or 'stdout', got {stream!r}")
        self.stream: TextIO = sys.stderr if stream == "stderr" else sys.stdout

    def send(self, event: Event) -> None:
        numbers = list(numeric_leaves(event.payload))[:6]
        shown = " ".join(f"{k}={v:.4g}" for k, v in numbers)
        print(
            f"[{event.run_id}] {event.kind} {event.name} #{event.step}: {shown}".rstrip(),
            file=self.stream,
        )

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


class JsonlSink:
    """Appends ``event.to_dict()`` as one JSON line; ``flush()`` fsyncs."""

    def __init__(self, path: str | None = None, run_dir: str | None = None) -> None:
        self.path = default_path(path, run_dir, "events.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: Any = self.path.open("a", encoding="utf-8")

    def send(self, event: Event) -> None:
        self._fh.write(json.dumps(event.to_dict(), default=str) + "\n")

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
