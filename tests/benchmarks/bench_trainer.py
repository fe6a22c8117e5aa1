"""Trainer overhead: median step time of ``neuroplex.training.Trainer`` vs a hand-written
PyTorch loop on the same model, data order and optimizer (CPU), plus a bitwise check of the
final weights. Prints a Markdown table; the goal is a ratio <= 1.02.

    python tests/benchmarks/bench_trainer.py [--epochs 6] [--rounds 3]

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
        t0 = time.perf_counter()
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
        per_step.append((time.perf_counter() - t0) / steps)
    return per_step


class _Times(Callback):
    def __init__(self) -> None:
        self.per_step: list[float] = []

    def on_epoch_end(self, trainer, record) -> None:
        self.per_step.append(record.epoch_time_s / record.steps)


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
    models: dict[str, torch.nn.Module] = {}
    for _ in range(rounds):  # interleaved, so drifts of a shared machine hit both alike
        for kind, loop in (("hand", hand_loop), ("trainer", trainer_loop)):
            torch.manual_seed(123)
            model = build()
            times = loop(model, x, y, epochs, bs, 1e-3)
            runs[kind].extend(times[1:])  # the first epoch warms caches and allocators
            models[kind] = model
    identical = all(
        torch.equal(a, b)
        for a, b in zip(
            models["hand"].state_dict().values(),
            models["trainer"].state_dict().values(),
            strict=True,
        )
    )
    hand = statistics.median(runs["hand"])
    ours = statistics.median(runs["trainer"])
    return {
        "model": name,
        "steps/epoch": (len(x) + bs - 1) // bs,
        "hand (ms/step)": hand * 1e3,
        "trainer (ms/step)": ours * 1e3,
        "ratio": ours / hand,
        "weights bit-identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        bench("tiny MLP (32-64-64-10)", mlp, mlp_data(), args.epochs, args.rounds, 64),
        bench("digits CNN (2 conv)", digits_cnn, digits_data(), args.epochs, args.rounds, 64),
    ]
    cols = list(rows[0])
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs x "
        f"{args.rounds} rounds, batch 64, Adam; median of per-epoch step times "
        "(epoch 1 dropped)"
    )
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
