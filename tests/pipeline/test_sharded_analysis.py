"""The analyze stage of a run under ``--nproc N`` (neuroplex.run.analyze.run_analyses with a
group): two ranks, simulated by two threads exchanging their parts, give rank 0 exactly the
results of one process; rank 1 gets none, records nothing, and skips what cannot shard."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.requires_plugins("neuroplex-attacks")


class ThreadGroup:
    """Rank ``rank`` of ``world`` threads: ``gather_objects`` as torch.distributed's, in rank
    order, for every rank."""

    def __init__(self, rank: int, world: int, barrier: threading.Barrier, slots: list) -> None:
        self.rank, self.world_size, self.barrier, self.slots = rank, world, barrier, slots

    def gather_objects(self, obj: Any, what: str = "") -> list[Any]:
        self.slots[self.rank] = obj
        self.barrier.wait(timeout=60)
        out = list(self.slots)
        self.barrier.wait(timeout=60)
        return out


class Recorder:
    """What the run's Mechanic is asked to record (rank 0 only)."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, dict[str, Any]]] = []

    def record_analysis(self, name: str, result: Any, **where: Any) -> None:
        self.recorded.append((name, where["evaluated_on"]))


def test_two_ranks_give_rank_0_the_one_process_results() -> None:
    from neuroplex.config import AnalyzerSpec
    from neuroplex.records import DataSplits
    from neuroplex.run.analyze import run_analyses

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(11, 8, generator=gen)
    y = torch.arange(11) % 3
    data = DataSplits(train=(x, y), val=(x, y), test=(x, y), input_shape=(8,), num_classes=3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    specs = [
        AnalyzerSpec(
            name="apgd_ce",
            options={"epsilon": 0.2, "n_iter": 3, "batch_size": 3},
            backend="torch",
            n_samples=10,
        ),
        AnalyzerSpec(name="noise", options={"noise_levels": [0.1]}, backend="torch", n_samples=10),
    ]
    one = run_analyses(specs, model, None, data, Recorder())  # type: ignore[arg-type]

    barrier, slots = threading.Barrier(2), [None, None]
    found: list[Any] = [None, None]
    recorders = [Recorder(), None]

    def rank(r: int) -> None:
        mine = specs if r == 0 else specs[:1]  # a worker runs only the shardable ones
        group = ThreadGroup(r, 2, barrier, slots)
        found[r] = run_analyses(mine, model, None, data, recorders[r], group=group)  # type: ignore[arg-type]

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert found[1] == {}
    two = found[0]
    assert set(two) == set(one) == {"apgd_ce", "noise"}
    a, b = one["apgd_ce"].to_dict(), two["apgd_ce"].to_dict()
    for key in ("seconds", "attack_seconds"):
        a.pop(key), b.pop(key)
    assert b == a  # per-sample flags, norms, accuracies: exactly one process's
    assert two["noise"].to_dict() == one["noise"].to_dict()
    where = dict(recorders[0].recorded)  # type: ignore[union-attr]
    assert where["apgd_ce"]["processes"] == 2 and "processes" not in where["noise"]
