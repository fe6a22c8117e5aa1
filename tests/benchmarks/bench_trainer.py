"""Trainer overhead: median step time of ``neuroplex.training.Trainer`` vs a hand-written
PyTorch loop on the same model, data order and optimizer (CPU), plus a bitwise check of the
final weights. Prints a Markdown table; the goal is a ratio <= 1.02.

    python tests/benchmarks/bench_trainer.py [--epochs 4] [--rounds 10] [--wall]

Times are process CPU time by default (robust on a shared machine: other processes' load
counts against neither loop); ``--wall`` uses wall-clock time. Rounds alternate which loop runs
first; the ratio is the median over rounds of trainer/hand.

The hand-written loop is what a careful PyTorch user writes: forward, loss, zero_grad,
backward, step, and the epoch's loss (``loss.item()``) and accuracy. It visits the batches in
the Trainer's documented order (a permutation from ``seed * 1_000_003 + epoch``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from neuroplex import TrainingConfig
from neuroplex.training import Callback, Trainer

SEED = 0
#: process CPU time: on a shared machine, other processes' load does not count against either
#: loop (both run single-threaded); --wall switches to wall-clock time
CLOCK = time.process_time


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )  # fmt: skip


def digits_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10),
    )  # fmt: skip


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4096, 32, generator=gen)
    return x, (x[:, :10] + 0.1 * torch.randn(4096, 10, generator=gen)).argmax(1)


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long)


def hand_loop(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int, lr: float
) -> list[float]:
    """Plain PyTorch; returns seconds per step of each epoch."""
    torch.manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    per_step = []
    n = len(x)
    for epoch in range(1, epochs + 1):
        t0 = CLOCK()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))
        total, correct, steps = 0.0, torch.zeros(()), 0
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum()
            steps += 1
        _ = (total / n, float(correct) / n)
        per_step.append((CLOCK() - t0) / steps)
    return per_step


class _Times(Callback):
    """CPU time per step of each epoch (no per-batch hook: costs nothing per step)."""

    def __init__(self) -> None:
        self.per_step: list[float] = []
        self.t0 = 0.0

    def on_epoch_start(self, trainer, epoch) -> None:
        self.t0 = CLOCK()

    def on_epoch_end(self, trainer, record) -> None:
        self.per_step.append((CLOCK() - self.t0) / record.steps)


def trainer_loop(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int, lr: float
) -> list[float]:
    times = _Times()
    config = TrainingConfig(
        epochs=epochs, batch_size=bs, learning_rate=lr, optimizer="adam", seed=SEED, progress=False
    )
    Trainer(model, config, callbacks=[times]).train((x, y))
    return times.per_step


def bench(
    name: str,
    build: Callable[[], torch.nn.Module],
    data: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    rounds: int,
    bs: int,
) -> dict[str, object]:
    x, y = data
    runs: dict[str, list[float]] = {"hand": [], "trainer": []}
    ratios: list[float] = []
    models: dict[str, torch.nn.Module] = {}
    loops = [("hand", hand_loop), ("trainer", trainer_loop)]
    for r in range(rounds):  # interleaved, alternating order: machine drift hits both alike
        medians: dict[str, float] = {}
        for kind, loop in loops if r % 2 == 0 else loops[::-1]:
            torch.manual_seed(123)
            model = build()
            times = loop(model, x, y, epochs, bs, 1e-3)[1:]  # epoch 1 warms caches
            runs[kind].extend(times)
            medians[kind] = statistics.median(times)
            models[kind] = model
        ratios.append(medians["trainer"] / medians["hand"])
    identical = all(
        torch.equal(a, b)
        for a, b in zip(
            models["hand"].state_dict().values(),
            models["trainer"].state_dict().values(),
            strict=True,
        )
    )
    return {
        "model": name,
        "steps/epoch": (len(x) + bs - 1) // bs,
        "hand (ms/step)": statistics.median(runs["hand"]) * 1e3,
        "trainer (ms/step)": statistics.median(runs["trainer"]) * 1e3,
        "ratio (median of paired rounds)": statistics.median(ratios),
        "weights bit-identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args()
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    torch.set_num_threads(args.threads)
    rows = [
        bench("tiny MLP (32-64-64-10)", mlp, mlp_data(), args.epochs, args.rounds, 64),
        bench("digits CNN (2 conv)", digits_cnn, digits_data(), args.epochs, args.rounds, 64),
    ]
    cols = list(rows[0])
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), "
        f"{'wall-clock' if args.wall else 'CPU'} time, {args.epochs} epochs x {args.rounds} rounds,"
        " batch 64, Adam; median of per-epoch step times "
        "(epoch 1 dropped); ratio: median over rounds of trainer/hand"
    )
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
