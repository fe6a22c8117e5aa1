"""SIGINT and SIGTERM during training: stop at the next safe point.

Inside the loop a signal only raises a flag; the loop checks it at safe points (the end of the
batch in flight, or of the epoch's bookkeeping), where a consistent ``interrupt`` checkpoint
can be written. A second signal, or one outside the loop, stops at once
(``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["SafeStop"]


class SafeStop:
    """The flag a signal raises; ``armed`` while the loop can reach a safe point."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.armed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None or not self.armed:
            raise KeyboardInterrupt
        self.signal = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM (main thread only); the previous handlers come back
        afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        sigs = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._handler) for sig in sigs}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
