"""Distributed training on CPU (gloo, 2 processes under torchrun): how much of DDP's gradient
all-reduce hides behind the backward pass, and FSDP's peak memory per rank against DDP's.

    python tests/benchmarks/bench_distributed.py [--smoke]

7c. DDP overlap: the suite's MLP 64-512-512-10 in the ``ddp`` strategy's own
DistributedDataParallel wrapper; each round times, side by side and after a barrier, a
forward+backward with gradient sync, the same under ``no_sync`` (no communication), and one
blocking all-reduce of a tensor as large as all gradients. The sync step's extra time over
the no-sync step is the communication left exposed; the rest of the all-reduce time was
hidden behind backward: ``hidden = 1 - (sync - no_sync) / all_reduce`` (clamped to 0..1).

7d. FSDP memory: a wide MLP (64 -> W, L hidden W x W layers, -> 10; W=2048, L=12: 50.5 M
parameters) trained a few Adam steps by the Trainer with ``ddp`` and with ``fsdp`` (each
Linear a unit); per rank, the peak resident memory the run adds over the process's memory
before the model is built (``ru_maxrss`` minus ``VmRSS``); the larger rank of each. Measured
twice: with glibc's default allocator, which keeps freed blocks below its (growing) mmap
threshold in the heap, so resident memory overstates what the tensors hold at once, and with
``MALLOC_MMAP_THRESHOLD_=1048576`` (every block of 1 MiB or more is mapped and unmapped), where
resident memory follows the live tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
OVERLAP = "7c. DDP: share of the gradient all-reduce hidden behind backward (CPU, gloo, 2 procs)"
MEMORY = "7d. FSDP vs DDP: peak memory added per rank, wide MLP (CPU, gloo, 2 procs)"
MEMORY_GOAL = 0.6  # fsdp / ddp, at most
TEARDOWN_ABORT = "terminate called without an active exception"


def _torchrun(*args: str, attempts: int = 2, **extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(
            [*cmd, str(HERE), *args], capture_output=True, text=True, timeout=900, env=env
        )
        if proc.returncode == 0:
            return
        if TEARDOWN_ABORT not in proc.stderr or attempt == attempts:
            raise RuntimeError(f"worker failed ({proc.returncode}): {proc.stderr[-3000:]}")


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _mlp(width: int, layers: int, inputs: int = 64) -> Any:
    import torch

    mods: list[torch.nn.Module] = [torch.nn.Linear(inputs, width), torch.nn.ReLU()]
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*mods, torch.nn.Linear(width, 10))


# ---------------------------------------------------------------------------- workers
def overlap_worker(out: str, width: int, batch: int, rounds: int) -> None:
    """Under torchrun: rank 0 writes the median seconds of sync, no-sync and all-reduce."""
    import torch
    import torch.distributed as dist

    from neuroplex.training import SupervisedStep
    from neuroplex.training.distributed import DDPStrategy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = _mlp(width, 1)
    strategy = DDPStrategy(timeout_s=120)
    strategy.setup(model, torch.device("cpu"))
    ddp = strategy.wrap(model, SupervisedStep())
    x = torch.randn(batch, 64)
    y = x[:, :10].argmax(1)
    flat = torch.zeros(sum(p.numel() for p in model.parameters()))

    def step(sync: bool) -> float:
        dist.barrier()
        t0 = time.perf_counter()
        ctx = strategy.no_sync() if not sync else torch.enable_grad()
        with ctx:
            torch.nn.functional.cross_entropy(ddp(x), y).backward()
        took = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        return took

    def all_reduce() -> float:
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(flat)
        return time.perf_counter() - t0

    for _ in range(3):  # warm-up
        step(True), step(False), all_reduce()
    times: dict[str, list[float]] = {"sync": [], "no_sync": [], "all_reduce": []}
    for _ in range(rounds):
        times["sync"].append(step(True))
        times["no_sync"].append(step(False))
        times["all_reduce"].append(all_reduce())
    if strategy.rank == 0:
        Path(out).write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}))
    strategy.teardown()


def memory_worker(out: str, strategy: str, width: int, layers: int, batch: int) -> None:
    """Under torchrun: each rank writes the MB its run added at peak (``OUT.<rank>``)."""
    import torch

    from neuroplex import TrainingConfig
    from neuroplex.training import Trainer

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4 * batch, 64, generator=gen)  # 2 steps of 2 x batch (2 ranks)
    y = x[:, :10].argmax(1)
    before = _rss_mb()
    torch.manual_seed(0)
    model = _mlp(width, layers)
    params = sum(p.numel() for p in model.parameters())
    config = TrainingConfig(
        epochs=1,
        batch_size=batch,
        learning_rate=1e-4,
        optimizer="adam",
        strategy=strategy,  # type: ignore[arg-type]
        seed=0,
        progress=False,
        ddp_timeout_s=600,
    )

    def every_linear(m: torch.nn.Module) -> list[torch.nn.Module]:
        return [u for u in m.children() if isinstance(u, torch.nn.Linear)]

    Trainer(model, config, sharding=every_linear).train((x, y))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rank = os.environ.get("RANK", "0")
    Path(f"{out}.{rank}").write_text(json.dumps({"added_mb": peak - before, "params": params}))


# ---------------------------------------------------------------------------- tables
def overlap(smoke: bool) -> list[str]:
    width, batch, rounds = 512, 256, (3 if smoke else 30)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "overlap.json"
        _torchrun("--overlap", str(out), str(width), str(batch), str(rounds))
        t = json.loads(out.read_text())
    exposed = max(0.0, t["sync"] - t["no_sync"])
    hidden = min(1.0, max(0.0, 1.0 - exposed / t["all_reduce"])) if t["all_reduce"] else 0.0
    return [
        f"## {OVERLAP}",
        f"MLP 64-{width}-{width}-10, batch {batch} per rank, {rounds} rounds (median, rank 0), "
        "one thread per process; load average {:.2f}".format(os.getloadavg()[0]),
        "",
        "| fwd+bwd with sync ms | fwd+bwd no_sync ms | blocking all-reduce ms | exposed ms | "
        "hidden share |",
        "|---|---|---|---|---|",
        f"| {1e3 * t['sync']:.2f} | {1e3 * t['no_sync']:.2f} | {1e3 * t['all_reduce']:.2f} | "
        f"{1e3 * exposed:.2f} | {hidden:.0%} |",
    ]


def memory(smoke: bool) -> list[str]:
    width, layers, batch = (256, 2, 8) if smoke else (2048, 12, 32)
    rows: list[str] = []
    params = 0
    for allocator, env in (
        ("glibc default", {}),
        ("mmap threshold 1 MiB", {"MALLOC_MMAP_THRESHOLD_": "1048576"}),
    ):
        added: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for strategy in ("ddp", "fsdp"):
                out = Path(tmp) / strategy
                sizes = (str(width), str(layers), str(batch))
                _torchrun("--memory", str(out), strategy, *sizes, **env)
                ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)]
                added[strategy] = max(r["added_mb"] for r in ranks)
                params = ranks[0]["params"]
        value = added["fsdp"] / added["ddp"]
        status = "ok" if value <= MEMORY_GOAL else "MISSED"
        rows.append(
            f"| {allocator} | {added['ddp']:.0f} | {added['fsdp']:.0f} | {value:.2f}x | "
            f"<= {MEMORY_GOAL}x | {status} |"
        )
    state_mb = 16 * params / 2**20
    return [
        f"## {MEMORY}",
        f"MLP 64-{width}x{layers + 1}-10 ({params / 1e6:.1f} M parameters; parameters, "
        f"gradients and Adam moments = {state_mb:.0f} MB unsharded), Adam, 2 steps of "
        f"{batch} per rank, each Linear an fsdp unit; load average {os.getloadavg()[0]:.2f}",
        "",
        "| allocator | ddp MB added (max rank) | fsdp MB added (max rank) | ratio fsdp / ddp | "
        "goal | status |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", choices=["overlap", "memory"], default=None)
    parser.add_argument("--overlap", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.overlap:
        out, *sizes = args.overlap
        overlap_worker(out, *(int(v) for v in sizes))
        return
    if args.memory:
        out, strategy, *sizes = args.memory
        memory_worker(out, strategy, *(int(v) for v in sizes))
        return
    if args.only in (None, "overlap"):
        print("\n".join(overlap(args.smoke)) + "\n")
    if args.only in (None, "memory"):
        print("\n".join(memory(args.smoke)) + "\n")


if __name__ == "__main__":
    main()
