"""The Trainer: one short loop for every model family, plus callbacks for the rest.

``Trainer(model, config).train(train_data, val_data) -> History``. What differs by family is
the step (:mod:`neuroplex.steps`). The loop owns devices, backpropagation, gradient clipping,
accumulation (:mod:`~neuroplex.training.precision`), schedulers, exact resume and data
parallelism (:mod:`~neuroplex.training.distributed`); early stopping, checkpoints, the
non-finite guard and progress are built-in callbacks (:mod:`~neuroplex.training.callbacks`).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from neuroplex.config import TrainingConfig
from neuroplex.errors import ConfigError
from neuroplex.protocols import ShardingPolicy
from neuroplex.steps import TrainingStep
from neuroplex.training.callbacks import (
    CallbackList,
    Checkpointing,
    EarlyStopping,
    NonFinite,
    NonFiniteGuard,
    ProgressBar,
)
from neuroplex.training.callbacks.checkpointing import resume_from
from neuroplex.training.components import (
    build_optimizers,
    make_strategy,
    resolve_device,
    step_optimizer,
    step_schedulers,
)
from neuroplex.training.data import BatchSource, batch_items, make_sources, to_device
from neuroplex.training.distributed import Strategy
from neuroplex.training.history import EpochRecord, History, TrainingEvent
from neuroplex.training.metrics import MetricLog, evaluate, evaluate_batches
from neuroplex.training.precision import Accumulation, Precision
from neuroplex.training.rng import deterministic_algorithms, seed_everything
from neuroplex.training.signals import SafeStop
from neuroplex.training.state import load_trainer_state, trainer_state
from neuroplex.training.supervised import resolve_step

__all__ = ["Trainer", "evaluate", "resolve_step", "seed_everything"]


class Trainer:
    """Train ``model`` as ``config`` says.

    Args:
        model: any ``torch.nn.Module``.
        config: a :class:`~neuroplex.TrainingConfig` (defaults if ``None``).
        step: the family's :class:`~neuroplex.steps.TrainingStep`; ``None`` uses
            ``model.neuroplex_training_step()`` if the model has one, else
            :class:`~neuroplex.training.SupervisedStep`.
        callbacks: objects with any of the :class:`~neuroplex.training.Callback` methods.
        device: a ``torch.device`` or registered device name overriding the config's.
        sharding: the :class:`~neuroplex.protocols.ShardingPolicy` of ``strategy="fsdp"``
            (the run pipeline passes the model family's ``ModelRecord.sharding``).

    ``train`` accepts DataLoaders, Datasets, tensors or ``(X, y)`` pairs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainingConfig | None = None,
        *,
        step: Any = None,
        callbacks: Iterable[Any] = (),
        device: torch.device | str | None = None,
        sharding: ShardingPolicy | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"Trainer needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model  # under fsdp: the sharded twin while train() runs
        self.user_model = model
        self.sharding = sharding
        self.config = cfg = config if config is not None else TrainingConfig()
        if not isinstance(cfg, TrainingConfig):
            raise ConfigError(f"config must be a TrainingConfig, got {type(cfg).__name__}")
        self.step = resolve_step(model, step)
        if not isinstance(self.step, TrainingStep):
            raise ConfigError(
                f"step {type(self.step).__name__} lacks param_groups/train_step/eval_step "
                "(see neuroplex.steps.TrainingStep)"
            )
        self.user_callbacks = list(callbacks)
        self.callbacks = CallbackList(self.user_callbacks)  # + the built-ins, in train()
        self.early_stopping = EarlyStopping.from_config(cfg)
        self.guard = NonFiniteGuard(cfg.nonfinite_policy)
        self.checkpointing: Checkpointing | None = None
        self._device_override = device
        self.device = torch.device("cpu")
        self.device_object: Any = None
        self.strategy: Strategy = Strategy()
        self.train_model: torch.nn.Module = model  # what the step gets (a ddp wrapper or model)
        self._backward_guard: Any = self.strategy.backward_guard()
        self.precision = Precision()
        self.scaler: Any = None
        self.accumulation = Accumulation()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.metric_schedulers: set[str] = set()  # stepped with the monitored value
        self.epoch = 0  # completed epochs
        self.global_step = 0  # optimizer steps (batches that stepped)
        self.batch_in_epoch = 0  # batches of the current epoch done
        self.batches_per_epoch = 0
        self.should_stop = False  # a callback sets it to end training after this epoch
        self.resumed_from: str | None = None
        self.events: list[TrainingEvent] = []
        self.records: list[EpochRecord] = []
        self.group_params: dict[str, list[torch.nn.Parameter]] = {}
        self.metric_log = MetricLog()  # the current epoch's training metrics
        self._last_norm: torch.Tensor | None = None
        self._want_norm = self._check_grads = False
        self._in_batch = False
        self._stop = SafeStop()

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        groups = dict(self.step.param_groups(self.model))
        built = build_optimizers(groups, self.config)
        self.group_params, self.optimizers, self.schedulers, self.metric_schedulers = built
        self.precision = Precision.resolve(self.config.precision, self.device, self.event)
        self.scaler = self.precision.scaler
        self._check_grads = self.scaler is None

    def _assemble_callbacks(self, resume: str | Path | None) -> None:
        """Built-ins around the user's callbacks: progress, early stopping and the guard
        first, checkpointing last (it saves what every other callback did)."""
        cfg = self.config
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        before: list[Any] = [ProgressBar()] if show and self.strategy.is_main else []
        before += [self.early_stopping, self.guard]
        self.checkpointing = Checkpointing.from_config(cfg, fresh=resume is None)
        after = [] if self.checkpointing is None else [self.checkpointing]
        self.callbacks = CallbackList([*before, *self.user_callbacks, *after])

    def event(self, kind: str, message: str) -> None:
        """Record a :class:`TrainingEvent` and tell every callback's ``on_event``."""
        event = TrainingEvent(
            kind=kind, epoch=self.epoch + 1, step=self.global_step, message=message
        )
        self.events.append(event)
        self.callbacks("on_event", self, event)

    @property
    def history(self) -> History:
        """The history so far (a new frozen record each time)."""
        early = self.early_stopping
        return History(
            epochs=tuple(self.records),
            events=tuple(self.events),
            monitor=self.config.monitor,
            best_epoch=early.best_epoch,
            best_value=early.best_value,
            stopped_early=early.stopped,
            restored_best=any(e.kind == "restore_best" for e in self.events),
            resumed_from=self.resumed_from,
        )

    # ------------------------------------------------------------------ the hot path
    def _optimize(self, group: str, loss: torch.Tensor) -> None:
        """Backward (scaled for AMP and item-weighted accumulation); at an accumulation
        boundary: all-reduce, unscale, clip, step, zero."""
        if not math.isfinite(loss.item()):
            raise NonFinite(f"loss of group {group!r}")
        acc = self.accumulation
        if acc.scale is not None:
            loss = loss * acc.scale
        with self._backward_guard:  # a wrapper's bucketed all-reduce runs in backward
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()  # type: ignore[no-untyped-call]
        if acc.boundary:
            self._step_group(group)

    def _step_group(self, group: str) -> None:
        norm = step_optimizer(
            group, self.optimizers[group], self.group_params[group], self.config,
            items=self.accumulation.items, strategy=self.strategy, scaler=self.scaler,
            want_norm=self._want_norm, check_finite=self._check_grads,
        )  # fmt: skip
        self._last_norm = self._last_norm if norm is None else norm

    def zero_grad(self) -> None:
        """Drop every group's gradients (e.g. after a non-finite batch)."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def _run_epoch(self, source: BatchSource, epoch: int, skip: int) -> tuple[int, float]:
        """Train one epoch (1-based) from batch ``skip``; returns the skipped batches and the
        seconds spent inside the step."""
        accum = self.config.accumulate_grad_batches
        total = self.batches_per_epoch
        sizes = []
        if accum > 1 and source.loader is None:
            sizes = [len(b) for b in source.index_batches(epoch)]
        acc = self.accumulation = Accumulation(accum, total, sizes)
        tensors = source.tensors is not None
        on_device = tensors and self.device.type == "cpu"
        device, model, optimize = self.device, self.train_model, self._optimize
        step_fn, scaler, stop = self.step.train_step, self.scaler, self._stop
        amp = self.precision.autocast() if self.precision.dtype is not None else None
        check_every, guard = self.guard.checks_every_step, self.guard
        callbacks, batch_end = self.callbacks, self.callbacks.has_batch_end
        add_metrics, add_count = self.metric_log.steps.append, self.metric_log.counts.append
        perf = time.perf_counter
        no_sync = self.strategy.no_sync if accum > 1 else None
        skipped, in_step, index = 0, 0.0, skip
        for batch in source.batches(epoch, skip):
            if not on_device:
                batch = to_device(batch, device)
            n = batch[0].shape[0] if tensors else batch_items(batch)
            self._want_norm = check_every or index == total - 1
            if accum > 1:
                acc.at(index, n)
            self._in_batch = True
            t0 = perf()
            try:
                if no_sync is not None and not acc.boundary:
                    # one all-reduce per accumulation window, at its boundary
                    with no_sync(), amp if amp is not None else contextlib.nullcontext():
                        out = step_fn(model, batch, optimize)
                elif amp is None:
                    out = step_fn(model, batch, optimize)
                else:
                    with amp:
                        out = step_fn(model, batch, optimize)
                if acc.boundary:
                    if scaler is not None:
                        scaler.update()
                    self.global_step += 1
            except NonFinite as exc:
                self.zero_grad()
                if not guard.skip(self, exc, index):
                    raise
                skipped += 1
                index += 1
                self.batch_in_epoch = index
                self._in_batch = False
                if stop.signal is not None:
                    raise KeyboardInterrupt from None
                continue
            in_step += perf() - t0
            add_metrics(out)
            add_count(int(out["n"]) if "n" in out else n)
            index += 1
            self.batch_in_epoch = index
            self._in_batch = False
            if batch_end:
                callbacks("on_batch_end", self, index - 1, out)
            if stop.signal is not None:
                raise KeyboardInterrupt
        return skipped, in_step

    # ------------------------------------------------------------------ public API
    def train(
        self,
        train_data: Any,
        val_data: Any = None,
        *,
        resume: str | Path | None = None,
    ) -> History:
        """Train for ``config.epochs`` epochs; returns the :class:`History`.

        ``resume="last"`` (or ``"best"``, or a checkpoint path) continues a run from its
        checkpoint in ``config.checkpoint_dir``: weights, optimizer, scheduler, scaler, RNG
        states, epoch and position in the epoch. With ``"last"`` and no checkpoint yet, training
        starts afresh; a corrupt checkpoint is reported and the previous good one used.
        """
        cfg = self.config
        self.strategy = make_strategy(
            cfg.strategy, timeout_s=cfg.ddp_timeout_s, static_graph=cfg.ddp_static_graph,
            sharding=self.sharding, family=type(self.model).__name__,
        )  # fmt: skip
        self.device, self.device_object = resolve_device(self._device_override, cfg)
        self.model.to(self.device)
        try:
            self.strategy.setup(self.model, self.device)
            self.model = self.strategy.shard(self.model, self.step)
            self.train_model = self.strategy.wrap(self.model, self.step)
            self._backward_guard = self.strategy.backward_guard()
            with deterministic_algorithms(cfg.deterministic), self._stop.installed():
                history = self._train(train_data, val_data, resume)
            self.strategy.unshard(self.model, self.user_model, self.optimizers.values())
            return history
        finally:
            self.model = self.train_model = self.user_model
            self.strategy.teardown()

    def _train(self, train_data: Any, val_data: Any, resume: str | Path | None) -> History:
        cfg = self.config
        train_src, val_src = make_sources(train_data, val_data, cfg, self.strategy)
        self.batches_per_epoch = len(train_src)
        self._build()
        self._assemble_callbacks(resume)
        skip = 0
        if resume is not None:
            ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
            skip = resume_from(self, resume, ckpt_dir)
        else:
            seed_everything(cfg.seed)
        self.callbacks("on_train_start", self)
        self.model.train()
        self._stop.signal = None
        self._stop.armed = True
        try:
            while self.epoch < cfg.epochs and not self.should_stop:
                epoch = self.epoch + 1
                self.batch_in_epoch = skip
                self.callbacks("on_epoch_start", self, epoch)
                t0 = time.perf_counter()
                try:
                    skipped, in_step = self._run_epoch(train_src, epoch, skip)
                except NonFinite as exc:
                    self.guard.recover(self, exc, epoch)  # raises unless it rolled back
                    self.metric_log = MetricLog()
                    skip = 0
                    continue
                skip = 0
                self._end_epoch(epoch, skipped, in_step, t0, val_src)
                if self._stop.signal is not None:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self._stop.armed = False  # a second signal while saving stops at once
            if self._in_batch:  # the batch was cut halfway: its state is not consistent
                self.event(
                    "interrupt",
                    "interrupted inside a batch; resume='last' continues from the last "
                    "epoch checkpoint",
                )
            elif self.checkpointing is not None:
                self.checkpointing.on_interrupt(self)
            raise
        finally:
            self._stop.armed = False
        self.early_stopping.restore(self)
        history = self.history
        self.callbacks("on_train_end", self, history)
        return history

    def _end_epoch(
        self, epoch: int, skipped: int, in_step: float, t0: float, val_src: BatchSource | None
    ) -> None:
        """Reduce the epoch's metrics (once), validate, record, step the schedulers and hand
        the record to the callbacks."""
        train_time = time.perf_counter() - t0
        log, self.metric_log = self.metric_log, MetricLog()
        means = log.means(self.strategy)
        train_loss = means.pop("loss", float("nan"))
        val_loss, val_metrics = None, {}
        if val_src is not None:
            val = evaluate_batches(
                self.model, self.step, val_src, self.device, self.precision.autocast()
            )
            val_metrics = val.means(self.strategy)
            val_loss = val_metrics.pop("loss", None)
        opt = next(iter(self.optimizers.values()))
        norm, self._last_norm = self._last_norm, None
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            train_metrics=means,
            val_metrics=val_metrics,
            learning_rate=float(opt.param_groups[0]["lr"]),
            grad_norm=None if norm is None else float(norm),
            epoch_time_s=time.perf_counter() - t0,
            overhead_fraction=max(0.0, 1.0 - in_step / train_time) if train_time > 0 else 0.0,
            steps=math.ceil(len(log) / self.config.accumulate_grad_batches),
            skipped_batches=skipped,
        )
        self.records.append(record)
        self.epoch = epoch
        self.batch_in_epoch = 0
        step_schedulers(
            self.schedulers,
            record.metric(self.config.monitor),
            self.config,
            self.metric_schedulers,
        )
        self.callbacks("on_epoch_end", self, record)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors and primitive containers only)."""
        return trainer_state(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (optimizers must already exist)."""
        load_trainer_state(self, state)
