"""Per-batch metrics, reduced once: item-weighted means over an epoch (and across processes).

The training loop, validation and :func:`~neuroplex.training.evaluate` all keep the metric
mappings their step returns, unconverted (no per-batch host sync), and reduce them once at the
end with :meth:`MetricLog.means`. The log of an unfinished epoch is part of a checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch

from neuroplex.torchutils import eval_mode
from neuroplex.training.data import BatchSource, batch_items, to_device
from neuroplex.training.distributed import Strategy
from neuroplex.training.supervised import resolve_step

__all__ = ["MetricLog", "evaluate", "evaluate_batches"]


class MetricLog:
    """The metrics (``step -> {name: 0-d tensor or float}``) and item counts of the batches
    so far; ``"n"`` in a step's metrics overrides the batch's item count."""

    def __init__(self) -> None:
        self.steps: list[Mapping[str, Any]] = []
        self.counts: list[int] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, metrics: Mapping[str, Any], items: int) -> None:
        self.steps.append(metrics)
        self.counts.append(int(metrics["n"]) if "n" in metrics else items)

    def means(self, strategy: Strategy | None = None) -> dict[str, float]:
        """Item-weighted mean of every metric (all-reduced as sums and counts under ddp)."""
        steps, counts = self.steps, self.counts
        sums: dict[str, float] = {}
        if steps:
            weights = torch.tensor(counts, dtype=torch.float64)
            for key in steps[0]:
                if key == "n":
                    continue
                column = [m[key] for m in steps]
                try:  # one stack of 0-d tensors: no per-step conversion
                    values = torch.stack(column).detach().to("cpu", torch.float64)
                except (TypeError, RuntimeError):  # floats, or tensors on mixed devices
                    values = torch.tensor([float(v) for v in column], dtype=torch.float64)
                sums[key] = float(values.reshape(len(column), -1).mean(1) @ weights)
        flat = [*sums.values(), float(sum(counts))]
        if strategy is not None:
            flat = strategy.sum_floats(flat)
        count = flat[-1]
        return {k: v / count for k, v in zip(sums, flat[:-1], strict=True)} if count else {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers (weights-only loadable)."""
        state: dict[str, Any] = {"counts": list(self.counts), "metrics": {}}
        if self.steps:
            for key in self.steps[0]:
                state["metrics"][key] = torch.stack(
                    [torch.as_tensor(m[key]).detach().cpu() for m in self.steps]
                )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts = [int(c) for c in state["counts"]]
        table = state["metrics"]
        self.steps = [{k: table[k][i] for k in table} for i in range(len(self.counts))]


@torch.no_grad()
def evaluate_batches(
    model: torch.nn.Module,
    step: Any,
    source: BatchSource,
    device: torch.device,
    autocast: AbstractContextManager[Any],
) -> MetricLog:
    """``step.eval_step`` over every batch of ``source``, the model in eval mode meanwhile."""
    log = MetricLog()
    with eval_mode(model, freeze=False), autocast:
        for batch in source.batches(0):
            batch = to_device(batch, device)
            log.add(step.eval_step(model, batch), batch_items(batch))
    return log


def evaluate(
    model: torch.nn.Module,
    data: Any,
    *,
    step: Any = None,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Item-weighted mean metrics of ``step.eval_step`` over ``data`` (``loss``, ...)."""
    step = resolve_step(model, step)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    source = BatchSource(data, batch_size=batch_size, shuffle=False, drop_last=False, seed=0)
    return evaluate_batches(model, step, source, device, contextlib.nullcontext()).means()
