"""Trainer overhead: median step time of ``neuroplex.training.Trainer`` vs a hand-written
PyTorch loop and vs PyTorch Lightning's ``Trainer`` on the same model, data order and optimizer
(CPU), a bitwise check of the final weights, and peak memory. The goal is a ratio <= 1.02 to
the hand loop and faster than Lightning.

    python tests/benchmarks/bench_trainer.py [--epochs 4] [--rounds 10] [--wall] [--memory]

Times are process CPU time by default (robust on a shared machine: other processes' load
counts against none of the loops); ``--wall`` uses wall-clock time. Rounds rotate which loop
runs first; each ratio is the median over rounds of the per-round ratio of median step times.

The hand-written loop is what a careful PyTorch user writes: forward, loss, zero_grad,
backward, step, and the epoch's loss (``loss.item()``) and accuracy. It visits the batches in
the Trainer's documented order (a permutation from ``seed * 1_000_003 + epoch``). Lightning
gets the same batches in the same order (a batch sampler over the same permutations, one
``x[idx]`` per batch, no per-sample collation), logs the epoch loss and accuracy with
``self.log``, and runs with logger, checkpointing, progress bar and model summary off. Lightning
is optional (``pip install -c .ci/constraints.txt -r .ci/bench-extras.txt``).

Peak memory (``--memory``, Linux): each loop trains in its own fresh subprocess, two at a
time (the hand
loop's and the Trainer's import the same modules, Lightning's also imports Lightning). Figures:
the process's peak resident memory (``VmHWM``), and the part training adds: the process first
trains a throwaway copy of the model for one epoch by hand (torch's kernels paged in alike for
every loop), then resets its high-water mark (``/proc/self/clear_refs``) and reports ``VmHWM``
after training minus ``VmRSS`` before it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    Goal,
    Options,
    Table,
    concurrently,
    iqr,
    missing,
    ratio,
    rotated,
    rss_during,
    rss_supported,
    run_json,
    verdict,
)

SEED = 0
#: process CPU time: on a shared machine, other processes' load does not count against any
#: loop (all run single-threaded); --wall switches to wall-clock time
CLOCK: Callable[[], float] = time.process_time
BATCH = 64
LR = 1e-3
Loop = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, int, int, float], list[float]]


def mlp() -> torch.nn.Module:
    """The tiny MLP: 32-64-64-10."""
    return torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )  # fmt: skip


def digits_cnn() -> torch.nn.Module:
    """The digits CNN: two 3x3 conv + pool blocks on 1x8x8."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10),
    )  # fmt: skip


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    """4096 random 32-feature samples, 10 classes."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4096, 32, generator=gen)
    return x, (x[:, :10] + 0.1 * torch.randn(4096, 10, generator=gen)).argmax(1)


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long)


@dataclass(frozen=True)
class Workload:
    """A model to train and its data."""

    name: str
    build: Callable[[], torch.nn.Module]
    data: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    needs: tuple[str, ...] = ()


WORKLOADS = {
    "mlp": Workload("tiny MLP (32-64-64-10)", mlp, mlp_data),
    "cnn": Workload("digits CNN (2 conv)", digits_cnn, digits_data, ("sklearn",)),
}


def _order(n: int, epoch: int) -> torch.Tensor:
    """The Trainer's documented shuffle of epoch ``epoch`` (1-based)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))


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
        order = _order(n, epoch)
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


class _Times:
    """Trainer callback: CPU time per step of each epoch (no per-batch hook: free per step)."""

    def __init__(self) -> None:
        self.per_step: list[float] = []
        self.t0 = 0.0

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.t0 = CLOCK()

    def on_epoch_end(self, trainer: Any, record: Any) -> None:
        self.per_step.append((CLOCK() - self.t0) / record.steps)


def trainer_loop(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int, lr: float
) -> list[float]:
    """``neuroplex.training.Trainer``; returns seconds per step of each epoch."""
    from neuroplex import TrainingConfig
    from neuroplex.training import Trainer

    times = _Times()
    config = TrainingConfig(
        epochs=epochs, batch_size=bs, learning_rate=lr, optimizer="adam", seed=SEED, progress=False
    )
    Trainer(model, config, callbacks=[times]).train((x, y))
    return times.per_step


class _EpochBatches(torch.utils.data.Sampler[torch.Tensor]):
    """Index batches in the Trainer's order; each ``iter()`` is the next epoch."""

    def __init__(self, n: int, bs: int) -> None:
        self.n, self.bs, self.epoch = n, bs, 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.epoch += 1
        order = _order(self.n, self.epoch)
        return iter([order[s : s + self.bs] for s in range(0, self.n, self.bs)])

    def __len__(self) -> int:
        return (self.n + self.bs - 1) // self.bs


class _Indexed(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``dataset[index_batch]`` is one whole batch: no per-sample fetch and collation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]

    def __len__(self) -> int:
        return len(self.x)


def _lightning_module(net: torch.nn.Module, lr: float) -> Any:
    """The idiomatic LightningModule around ``net``: loss and accuracy logged per epoch."""
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.loss_fn = torch.nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            xb, yb = batch
            out = self.net(xb)
            loss = self.loss_fn(out, yb)
            n = len(yb)
            self.log("loss", loss, on_step=False, on_epoch=True, batch_size=n)
            acc = (out.argmax(1) == yb).float().mean()
            self.log("acc", acc, on_step=False, on_epoch=True, batch_size=n)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.net.parameters(), lr=lr)

    return Module()


def lightning_loop(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int, lr: float
) -> list[float]:
    """PyTorch Lightning's ``Trainer``; returns seconds per step of each epoch."""
    import lightning.pytorch as pl

    per_step: list[float] = []
    loader = torch.utils.data.DataLoader(
        _Indexed(x, y), sampler=_EpochBatches(len(x), bs), batch_size=None
    )

    class Times(pl.Callback):
        t0 = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            Times.t0 = CLOCK()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            per_step.append((CLOCK() - Times.t0) / len(loader))

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("lightning")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # no banners on stdout
    threads = torch.get_num_threads()
    torch.manual_seed(SEED)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Times()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_lightning_module(model, lr), loader)
    torch.set_num_threads(threads)  # in case Lightning changed it
    return per_step


LOOPS: dict[str, Loop] = {"hand": hand_loop, "trainer": trainer_loop, "lightning": lightning_loop}


def lightning_installed() -> bool:
    """Whether PyTorch Lightning can be imported."""
    return importlib.util.find_spec("lightning") is not None


@dataclass
class Result:
    """Step times per loop and round, and whether each loop's weights equal the hand loop's."""

    workload: str
    steps: int
    rounds: dict[str, list[float]]
    identical: dict[str, bool]

    def ms(self, kind: str) -> float:
        """Median over rounds of the loop's median step time, in seconds."""
        return statistics.median(self.rounds[kind])

    def ratios(self, kind: str, ref: str) -> list[float]:
        """Per-round ratios of median step times kind / ref."""
        return [a / b for a, b in zip(self.rounds[kind], self.rounds[ref], strict=True)]

    def ratio(self, kind: str, ref: str) -> float:
        """Median over rounds of kind / ref."""
        return statistics.median(self.ratios(kind, ref))


def bench(
    work: Workload, epochs: int, rounds: int, kinds: Sequence[str], bs: int = BATCH
) -> Result:
    """Train ``work`` with each loop in ``kinds`` for ``rounds`` rotating rounds."""
    x, y = work.data()
    medians: dict[str, list[float]] = {k: [] for k in kinds}
    models: dict[str, torch.nn.Module] = {}
    for r in range(rounds):  # rotating order: machine drift hits every loop alike
        for kind in rotated(kinds, r):
            torch.manual_seed(123)
            model = work.build()
            times = LOOPS[kind](model, x, y, epochs, bs, LR)[1:]  # epoch 1 warms caches
            medians[kind].append(statistics.median(times))
            models[kind] = model
    ref = list(models["hand"].state_dict().values())
    identical = {
        kind: all(torch.equal(a, b) for a, b in zip(ref, m.state_dict().values(), strict=True))
        for kind, m in models.items()
    }
    return Result(work.name, (len(x) + bs - 1) // bs, medians, identical)


def _memory_child(kind: str, workload: str, epochs: int, threads: int) -> dict[str, float]:
    """In a fresh process: the process's peak resident memory and the part training adds, MB
    (the high-water mark reset through ``/proc/self/clear_refs`` just before training)."""
    torch.set_num_threads(threads)
    import neuroplex.training  # noqa: F401  the hand loop's process imports it too

    if kind == "lightning":
        import lightning.pytorch  # noqa: F401
    work = WORKLOADS[workload]
    x, y = work.data()
    hand_loop(work.build(), x, y, 1, BATCH, LR)  # page in torch's kernels: same for every loop
    torch.manual_seed(123)
    model = work.build()
    return rss_during(lambda: LOOPS[kind](model, x, y, epochs, BATCH, LR))


def peak_memory(kind: str, workload: str, epochs: int, threads: int = 1) -> dict[str, float]:
    """Run :func:`_memory_child` in a fresh subprocess."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", kind, workload]
    result: dict[str, float] = run_json([*cmd, "--epochs", str(epochs), "--threads", str(threads)])
    return result


TITLE = "1. Trainer overhead vs a hand-written loop and PyTorch Lightning (CPU)"
COLUMNS = [
    "model",
    "figure",
    "ours",
    "reference",
    "ratio (ours / reference)",
    "weights bit-identical to the hand loop",
    "goal",
    "status",
]
CAUSES = {
    ("time", "hand"): "the general loop's per-step Python work (finite-loss check, a metrics "
    "dict per batch, accumulation/AMP/strategy branches) shows when a step takes under 1 ms",
    ("time", "lightning"): "Lightning's per-step hooks and logging cost less than ours here",
    ("memory", "hand"): "what the Trainer loads on first use (plugin registry, optimizer "
    "plugin) and keeps (per-batch metrics, history)",
    ("memory", "lightning"): "Lightning's process holds less resident memory here",
}
GOALS = {
    ("time", "hand"): Goal("<=", 1.02),
    ("time", "lightning"): Goal("<=", 1.0),
    ("memory", "hand"): Goal("<=", 1.05),
    ("memory", "lightning"): Goal("<=", 1.0),
}
REF_NAMES = {"hand": "hand loop", "lightning": "Lightning"}


def trainer_cause(hand_step_s: float) -> str:
    """Why the Trainer may miss its goal against a hand loop whose step takes this long."""
    if hand_step_s < 1e-3:
        return CAUSES["time", "hand"]
    return (
        f"the Trainer's fixed per-step Python work is a small share of a {1e3 * hand_step_s:.1f} "
        "ms step that runs the same kernels in both loops: the difference is load on the "
        "shared cores, not the loop"
    )


def _method(opts: Options, epochs: int, rounds: int) -> str:
    """How section 1 measures."""
    return (
        f"Process CPU time, {opts.threads} thread(s), batch {BATCH}, Adam lr {LR:g}, {epochs} "
        f"epochs per fit (epoch 1 dropped), {rounds} rounds rotating which loop runs first; a "
        "loop's figure is the median over rounds of its median step time, the ratio the median "
        "over rounds of the per-round ratio. Same initial weights and batch order for all loops "
        "(Lightning through a batch sampler over the Trainer's permutations). Peak memory: one "
        "fresh subprocess per loop (two at a time); the process's peak RSS (`VmHWM`), and in "
        "brackets what training adds beyond a one-epoch hand-loop warm-up on a copy of the "
        "model (high-water mark reset via `/proc/self/clear_refs`)"
    )


def _time_row(table: Table, res: Result, ref: str) -> None:
    """The step-time row of ``res`` against loop ``ref``."""
    goal = GOALS["time", ref]
    value = res.ratio("trainer", ref)
    spread = iqr(res.ratios("trainer", ref))
    table.add(
        res.workload,
        f"step time vs {REF_NAMES[ref]}",
        f"{1e3 * res.ms('trainer'):.4f} ms",
        f"{1e3 * res.ms(ref):.4f} ms",
        ratio(value),
        _identical(res, ref),
        goal.text,
        verdict(
            value,
            goal,
            trainer_cause(res.ms(ref)) if ref == "hand" else CAUSES["time", ref],
            spread,
        ),
    )


def _identical(res: Result, ref: str) -> str:
    """Whether the Trainer's (and Lightning's) final weights equal the hand loop's."""
    mark = {True: "yes", False: "NO"}
    if ref == "hand":
        return mark[res.identical["trainer"]]
    return f"Trainer {mark[res.identical['trainer']]}, Lightning {mark[res.identical[ref]]}"


def _memory_row(table: Table, name: str, mem: dict[str, dict[str, float]], ref: str) -> None:
    """The peak-memory row against loop ``ref``."""
    goal = GOALS["memory", ref]
    value = mem["trainer"]["peak_mb"] / mem[ref]["peak_mb"]

    def cell(kind: str) -> str:
        return f"{mem[kind]['peak_mb']:.1f} MB (+{mem[kind]['added_mb']:.1f})"

    table.add(
        name,
        f"peak memory vs {REF_NAMES[ref]}",
        cell("trainer"),
        cell(ref),
        ratio(value),
        "—",
        goal.text,
        verdict(value, goal, CAUSES["memory", ref]),
    )


def _skip_row(table: Table, name: str, figure: str, reason: str) -> None:
    """A row that was not measured, with the reason."""
    table.add(name, figure, "—", "—", "—", "—", "—", f"skipped: {reason}")


def section(opts: Options) -> Table:
    """Section 1 of the suite: Trainer vs hand loop and Lightning, time and memory."""
    epochs, rounds = opts.pick(4, 2), opts.pick(16, 1)
    table = Table("trainer", TITLE, _method(opts, epochs, rounds), COLUMNS)
    gone = missing(["neuroplex-optim"])
    if gone:
        _skip_row(table, "all", "Trainer", f"needs {', '.join(gone)} (not installed)")
        return table
    lightning = lightning_installed() and not opts.smoke
    kinds = ["hand", "trainer"] + (["lightning"] if lightning else [])
    torch.set_num_threads(opts.threads)
    for key, work in WORKLOADS.items():
        gone = missing(modules=work.needs)
        if gone:
            _skip_row(table, work.name, "all", f"needs {', '.join(gone)} (not installed)")
            continue
        res = bench(work, epochs, rounds, kinds)
        _time_row(table, res, "hand")
        if not lightning:
            reason = LIGHTNING_MISSING if not lightning_installed() else LIGHTNING_SMOKE
            _skip_row(table, work.name, "step time vs Lightning", reason)
        else:
            _time_row(table, res, "lightning")
        if opts.smoke and key != "mlp":
            continue  # smoke mode: memory of the MLP only (each loop costs a fresh process)
        if not rss_supported():
            _skip_row(table, work.name, "peak memory", "needs Linux's /proc/self/clear_refs")
            continue
        jobs = [partial(peak_memory, k, key, epochs, opts.threads) for k in kinds]
        mem = dict(zip(kinds, concurrently(jobs), strict=True))
        _memory_row(table, work.name, mem, "hand")
        if "lightning" in mem:
            _memory_row(table, work.name, mem, "lightning")
    return table


LIGHTNING_SMOKE = "smoke mode: importing Lightning alone takes seconds (full run only)"
LIGHTNING_MISSING = (
    "lightning not installed (benchmark extra: "
    "`pip install -c .ci/constraints.txt -r .ci/bench-extras.txt`)"
)


def main() -> None:
    """The stand-alone CLI: a Markdown table of step times, ratios and bitwise checks."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    parser.add_argument("--memory", action="store_true", help="also peak RSS per loop")
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("LOOP", "MODEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(_memory_child(*args.memory_child, args.epochs, args.threads)))
        return
    kinds = ["hand", "trainer"] + (["lightning"] if lightning_installed() else [])
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), "
        f"{'wall-clock' if args.wall else 'CPU'} time, {args.epochs} epochs x {args.rounds} rounds,"
        f" batch {BATCH}, Adam; median of per-epoch step times (epoch 1 dropped); ratios: median"
        " over rounds\n"
    )
    cols = ["model", "steps/epoch", *(f"{k} ms/step" for k in kinds), "trainer/hand"]
    cols += ["lightning/trainer"] if "lightning" in kinds else []
    cols += ["weights bit-identical (trainer, lightning)"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for key, work in WORKLOADS.items():
        res = bench(work, args.epochs, args.rounds, kinds)
        cells = [work.name, str(res.steps), *(f"{1e3 * res.ms(k):.4f}" for k in kinds)]
        cells.append(f"{res.ratio('trainer', 'hand'):.4f}")
        if "lightning" in kinds:
            cells.append(f"{res.ratio('lightning', 'trainer'):.3f}")
        cells.append(", ".join(str(res.identical[k]) for k in kinds[1:]))
        if args.memory:
            mem = {k: peak_memory(k, key, args.epochs, args.threads)["added_mb"] for k in kinds}
            cells[0] += " (peak RSS added, MB: " + ", ".join(f"{mem[k]:.1f}" for k in kinds) + ")"
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
