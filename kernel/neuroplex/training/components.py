"""What a Trainer builds from its config through the registries, and how it steps them: the
device, one optimizer (and scheduler) per parameter group of the step, the optimizer step at
an accumulation boundary and the schedulers' epoch step."""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Collection, Mapping
from typing import Any

import torch

from neuroplex.config import TrainingConfig
from neuroplex.errors import ConfigError
from neuroplex.protocols import ShardingPolicy, TorchPlacement
from neuroplex.records import NEEDS_METRIC
from neuroplex.torchutils import registered_device, torch_device
from neuroplex.training.callbacks.nonfinite import NonFinite
from neuroplex.training.distributed import DDPStrategy, Strategy
from neuroplex.training.fsdp import FSDPStrategy

__all__ = [
    "build_optimizers",
    "make_strategy",
    "plain_state",
    "resolve_device",
    "step_optimizer",
    "step_schedulers",
]


def resolve_device(override: Any, config: TrainingConfig) -> tuple[torch.device, Any]:
    """The torch device to train on, and the registered device object (``None`` for a plain
    ``torch.device``, or for CPU without a device plugin).

    ``override`` (the ``Trainer``'s ``device``) wins over the config. A name is a registered
    device (``neuroplex list device``); anything else goes through
    :func:`neuroplex.torchutils.torch_device`, the resolver every other entry point uses.
    """
    if override is not None and not isinstance(override, str):
        device = torch_device(override)
        return device, override if isinstance(override, TorchPlacement) else None
    name = override or config.resolved_device()
    from neuroplex.plugins import get_plugin_manager

    if name == "cpu" and get_plugin_manager().lookup("device", "cpu") is None:
        return torch.device("cpu"), None  # CPU needs no plugin
    return registered_device(name, path="training.device")


Groups = dict[str, list[torch.nn.Parameter]]


def build_optimizers(
    groups: Mapping[str, Any], config: TrainingConfig
) -> tuple[Groups, dict[str, torch.optim.Optimizer], dict[str, Any], set[str]]:
    """One ``config.optimizer`` (and ``config.scheduler``) per group of the step's
    ``param_groups``; a scheduler taking ``total_epochs`` gets ``config.epochs``. The last
    item names the groups whose scheduler's record declares the ``needs_metric`` capability
    (:data:`~neuroplex.records.NEEDS_METRIC`): they are stepped with the monitored value."""
    from neuroplex.registry import create_optimizer, create_scheduler, get_record

    params_of: Groups = {}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, Any] = {}
    metric_schedulers: set[str] = set()
    if not groups:
        raise ConfigError("the training step returned no parameter groups")
    kwargs: dict[str, Any] = {"lr": config.learning_rate}
    if config.weight_decay:
        kwargs["weight_decay"] = config.weight_decay
    kwargs.update(config.optimizer_params)
    for name, params in groups.items():
        plist = [p for p in params if p.requires_grad]
        if not plist:
            raise ConfigError(f"parameter group {name!r} has no trainable parameters")
        params_of[name] = plist
        optimizers[name] = create_optimizer(config.optimizer, plist, **kwargs)
        if config.scheduler:
            params_s = dict(config.scheduler_params)
            record = get_record("optimizer", config.scheduler)
            if NEEDS_METRIC in record.capabilities:
                metric_schedulers.add(name)
            factory = record.load()
            with contextlib.suppress(TypeError, ValueError):
                if "total_epochs" in inspect.signature(factory).parameters:
                    params_s.setdefault("total_epochs", config.epochs)
            schedulers[name] = create_scheduler(config.scheduler, optimizers[name], **params_s)
    return params_of, optimizers, schedulers, metric_schedulers


def step_optimizer(
    group: str,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    config: TrainingConfig,
    *,
    items: int,
    strategy: Strategy,
    scaler: Any,
    want_norm: bool,
    check_finite: bool,
) -> torch.Tensor | None:
    """Parameter group ``group``'s optimizer step at an accumulation boundary: divide the
    summed gradients by ``items`` (item-weighted accumulation; 0: already means), all-reduce,
    unscale (AMP), clip, step, zero. Returns the total gradient norm when it was computed
    (clipping by norm, or ``want_norm``), else ``None``.

    Raises:
        NonFinite: ``check_finite`` and the norm is not finite (nothing was stepped).
    """
    if items:
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_div_(grads, float(items))
    strategy.average_gradients(params)
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm: torch.Tensor | None = None
    if config.grad_clip_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
    elif want_norm:
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else None
    if norm is not None:
        norm = strategy.full_norm(norm)  # sharded parameters: the norm over every rank
        if check_finite and not math.isfinite(float(norm)):
            raise NonFinite(f"gradients of group {group!r}")
    if config.grad_clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, config.grad_clip_value)
    if scaler is not None:
        scaler.step(optimizer)
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def step_schedulers(
    schedulers: Mapping[str, Any],
    value: float | None,
    config: TrainingConfig,
    metric_schedulers: Collection[str] = (),
) -> None:
    """The epoch's scheduler step; plateau schedulers and those named in
    ``metric_schedulers`` (their record declares ``needs_metric``) get the monitored
    ``value``."""
    with warnings.catch_warnings():
        # after a resume at an epoch's end the optimizer has not stepped in this process; the
        # order was right in the run that saved the checkpoint
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        _step_schedulers(schedulers, value, config, metric_schedulers)


def _step_schedulers(
    schedulers: Mapping[str, Any],
    value: float | None,
    config: TrainingConfig,
    metric_schedulers: Collection[str],
) -> None:
    for name, sched in schedulers.items():
        if name in metric_schedulers or isinstance(
            sched, torch.optim.lr_scheduler.ReduceLROnPlateau
        ):
            if value is None:
                raise ConfigError(
                    f"scheduler {config.scheduler!r} needs the monitored metric "
                    f"{config.monitor!r}, which this run does not record",
                    path="training.monitor",
                )
            sched.step(value)
        else:
            sched.step()


def plain_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A scheduler's state without the registry's ``neuroplex_origin`` (LR schedulers save
    their whole ``__dict__``; a checkpoint holds only weights-only-loadable values)."""
    return {k: v for k, v in state.items() if k != "neuroplex_origin"}


def make_strategy(
    name: str,
    *,
    timeout_s: float = 300.0,
    sharding: ShardingPolicy | None = None,
    family: str | None = None,
    static_graph: bool = False,
) -> Strategy:
    """``"single"``, ``"ddp"`` or ``"fsdp"`` (``timeout_s``: the collectives' timeout;
    ``sharding``: the fsdp policy; ``family``: the model's name in errors; ``static_graph``:
    DistributedDataParallel's)."""
    if name == "single":
        return Strategy()
    if name == "ddp":
        return DDPStrategy(timeout_s, static_graph)
    if name == "fsdp":
        return FSDPStrategy(timeout_s, sharding, family)
    raise ConfigError(
        f"unknown strategy {name!r}; strategies: single, ddp, fsdp", path="training.strategy"
    )
