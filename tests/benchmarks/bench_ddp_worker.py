"""Run by bench_scaling.py (directly, or under torchrun): train an MLP, time each epoch.

usage: bench_ddp_worker.py OUT STRATEGY PER_RANK_BATCH EPOCHS SAMPLES WIDTH

Rank 0 writes ``OUT.json`` (wall seconds of each epoch, seconds of it in the gradient
all-reduce, steps) and ``OUT.pt`` (the final weights).
Every process runs torch with one thread.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import torch

from neuroplex import TrainingConfig
from neuroplex.training import Trainer


class EpochTimes:
    """Trainer callback: wall seconds of each epoch, steps, and seconds spent averaging
    gradients across processes (the all-reduce, including waiting for the other rank)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.allreduce: list[float] = []
        self.steps: list[int] = []
        self.t0 = 0.0
        self.in_allreduce = 0.0

    def on_train_start(self, trainer: Any) -> None:
        average = trainer.strategy.average_gradients

        def timed(params: Any) -> None:
            start = time.perf_counter()
            average(params)
            self.in_allreduce += time.perf_counter() - start

        trainer.strategy.average_gradients = timed

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.in_allreduce = 0.0
        self.t0 = time.perf_counter()

    def on_epoch_end(self, trainer: Any, record: Any) -> None:
        self.seconds.append(time.perf_counter() - self.t0)
        self.allreduce.append(self.in_allreduce)
        self.steps.append(record.steps)


def train(out: str, strategy: str, batch: int, epochs: int, samples: int, width: int) -> None:
    """Train the MLP with ``strategy``; rank 0 writes ``OUT.json`` and ``OUT.pt``."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 64, generator=gen)
    y = x[:, :10].argmax(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
        torch.nn.ReLU(), torch.nn.Linear(width, 10),
    )  # fmt: skip
    config = TrainingConfig(
        epochs=epochs,
        batch_size=batch,
        learning_rate=0.05,
        optimizer="sgd",
        optimizer_params={"momentum": 0.9},
        strategy=strategy,
        seed=5,
        progress=False,
    )
    times = EpochTimes()
    Trainer(model, config, callbacks=[times]).train((x, y))
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(model.state_dict(), out + ".pt")
        with open(out + ".json", "w", encoding="utf-8") as f:
            json.dump(
                {"epoch_s": times.seconds, "allreduce_s": times.allreduce, "steps": times.steps},
                f,
            )


def main() -> None:
    """Train as the command line says."""
    out, strategy = sys.argv[1], sys.argv[2]
    train(out, strategy, *(int(v) for v in sys.argv[3:7]))


if __name__ == "__main__":
    main()
