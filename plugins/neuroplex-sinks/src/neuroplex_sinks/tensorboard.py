"""TensorBoard event files (extra ``neuroplex-sinks[tensorboard]``): scalars per step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuroplex import Event
from neuroplex.errors import ConfigError
from neuroplex_sinks._flatten import numeric_leaves

__all__ = ["TensorBoardSink"]


class TensorBoardSink:
    """Writes ``epoch``, ``metrics`` and ``analysis`` numbers as scalars under
    ``<log_dir>/<run_id>`` (default ``log_dir``: ``<run_dir>/tensorboard``)."""

    def __init__(self, log_dir: str | None = None, run_dir: str | None = None) -> None:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "the tensorboard sink needs TensorBoard: pip install 'neuroplex-sinks[tensorboard]'"
            ) from None
        self._writer_cls = SummaryWriter
        self.log_dir = Path(log_dir) if log_dir else Path(run_dir or ".") / "tensorboard"
        self._writers: dict[str, Any] = {}

    def _writer(self, run_id: str) -> Any:
        if run_id not in self._writers:
            self._writers[run_id] = self._writer_cls(log_dir=str(self.log_dir / run_id))
        return self._writers[run_id]

    def send(self, event: Event) -> None:
        if event.kind not in ("epoch", "metrics", "analysis"):
            return
        writer = self._writer(event.run_id)
        for key, value in numeric_leaves(event.payload):
            writer.add_scalar(f"{event.kind}/{event.name}/{key}", value, global_step=event.step)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
