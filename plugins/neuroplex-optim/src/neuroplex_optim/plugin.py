"""Entry module of neuroplex-optim: registers optimizers and schedulers (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import OptimizerRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_OPT = "neuroplex_optim.optimizers"
_SCHED = "neuroplex_optim.schedulers"


@hookimpl
def neuroplex_register_optimizers() -> Iterator[OptimizerRecord]:
    yield OptimizerRecord(
        name="sgd",
        factory=f"{_OPT}:sgd",
        summary="SGD with momentum and Nesterov; no weight decay on biases and norms",
        example_config={"lr": 0.1, "momentum": 0.9, "nesterov": True},
    )
    yield OptimizerRecord(
        name="adam",
        factory=f"{_OPT}:adam",
        summary="Adam (L2 weight decay, not on biases and norms)",
        example_config={"lr": 0.05},
    )
    yield OptimizerRecord(
        name="adamw",
        factory=f"{_OPT}:adamw",
        summary="AdamW (decoupled weight decay, not on biases and norms)",
        example_config={"lr": 0.05, "weight_decay": 0.01},
    )
    yield OptimizerRecord(
        name="rmsprop",
        factory=f"{_OPT}:rmsprop",
        summary="RMSprop; no weight decay on biases and norms",
        example_config={"lr": 0.01},
    )
    yield OptimizerRecord(
        name="step",
        factory=f"{_SCHED}:step",
        role="scheduler",
        summary="multiply the learning rate by gamma every step_size epochs",
        example_config={"step_size": 1, "gamma": 0.5},
    )
    yield OptimizerRecord(
        name="cosine",
        factory=f"{_SCHED}:cosine",
        role="scheduler",
        summary="linear warm-up, then cosine decay to min_lr over the run",
        example_config={"total_epochs": 6, "warmup_epochs": 2},
    )
    yield OptimizerRecord(
        name="plateau",
        factory=f"{_SCHED}:plateau",
        role="scheduler",
        summary="reduce the learning rate when the monitored metric stops improving",
        capabilities={"needs_metric"},
        example_config={"patience": 0, "factor": 0.5},
    )
