"""Conformance checks for optimizers and learning-rate schedulers.

Optimizers: built from ``example_config`` over a quadratic's parameters, a few steps lower the
loss; ``state_dict`` round-trips. Schedulers: stepping changes the learning rate and
``state_dict`` round-trips into a fresh scheduler that then behaves the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuroplex.protocols import Scheduler
from neuroplex.records import NEEDS_METRIC, OptimizerRecord

__all__ = ["CHECKS"]


def _quadratic() -> tuple[Any, Callable[[], Any]]:
    import torch

    gen = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4, 3, generator=gen))
    bias = torch.nn.Parameter(torch.randn(3, generator=gen))
    target_w = torch.randn(4, 3, generator=gen)

    def loss() -> Any:
        return ((weight - target_w) ** 2).sum() + (bias**2).sum()

    return [weight, bias], loss


def _build_optimizer(record: OptimizerRecord, params: list[Any]) -> Any:
    return record.load()(params, **record.example_config)


def _sgd(params: list[Any]) -> Any:
    import torch

    return torch.optim.SGD(params, lr=0.1)


def check_optimizer_reduces_quadratic(record: OptimizerRecord) -> None:
    if record.role != "optimizer":
        return
    params, loss_fn = _quadratic()
    opt = _build_optimizer(record, params)
    start = float(loss_fn().detach())
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    end = float(loss_fn().detach())
    assert end < start, (
        f"optimizer {record.name!r} with {record.example_config} did not reduce a quadratic in "
        f"20 steps ({start:.4f} -> {end:.4f})"
    )


def check_optimizer_state_round_trip(record: OptimizerRecord) -> None:
    if record.role != "optimizer":
        return
    import torch

    params, loss_fn = _quadratic()
    opt = _build_optimizer(record, params)
    for _ in range(3):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    import copy

    state = copy.deepcopy(opt.state_dict())
    params2 = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = _build_optimizer(record, params2)
    opt2.load_state_dict(state)
    for o, ps in ((opt, params), (opt2, params2)):
        o.zero_grad()
        ((ps[0] ** 2).sum() + (ps[1] ** 2).sum()).backward()
        o.step()
    for a, b in zip(params, params2, strict=True):
        assert torch.equal(a, b), f"optimizer {record.name!r}: state_dict does not round-trip"


def check_scheduler_changes_lr(record: OptimizerRecord) -> None:
    if record.role != "scheduler":
        return
    params, _ = _quadratic()
    opt = _sgd(params)
    sched = record.load()(opt, **record.example_config)
    assert isinstance(sched, Scheduler), (
        f"scheduler {record.name!r}: {type(sched).__name__} is not a neuroplex.protocols.Scheduler "
        "(step(), state_dict(), load_state_dict())"
    )
    seen = {opt.param_groups[0]["lr"]}
    needs_metric = NEEDS_METRIC in record.capabilities
    for _ in range(4):
        opt.step()
        sched.step(1.0) if needs_metric else sched.step()
        seen.add(opt.param_groups[0]["lr"])
    assert len(seen) > 1, (
        f"scheduler {record.name!r} with {record.example_config} never changed the learning "
        f"rate in 4 steps (lr stayed {seen})"
    )


def check_scheduler_state_round_trip(record: OptimizerRecord) -> None:
    if record.role != "scheduler":
        return
    needs_metric = NEEDS_METRIC in record.capabilities
    runs = []
    for resume in (False, True):
        params, _ = _quadratic()
        opt = _sgd(params)
        sched = record.load()(opt, **record.example_config)
        for _ in range(2):
            opt.step()
            sched.step(1.0) if needs_metric else sched.step()
        if resume:
            state, opt_state = sched.state_dict(), opt.state_dict()
            params, _ = _quadratic()
            opt = _sgd(params)
            sched = record.load()(opt, **record.example_config)
            opt.load_state_dict(opt_state)
            sched.load_state_dict(state)
        lrs = []
        for _ in range(3):
            opt.step()
            sched.step(1.0) if needs_metric else sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        runs.append(lrs)
    assert runs[0] == runs[1], (
        f"scheduler {record.name!r}: after a state_dict round trip the learning rates differ "
        f"({runs[0]} vs {runs[1]})"
    )


CHECKS: list[Callable[[OptimizerRecord], None]] = [
    check_optimizer_reduces_quadratic,
    check_optimizer_state_round_trip,
    check_scheduler_changes_lr,
    check_scheduler_state_round_trip,
]
