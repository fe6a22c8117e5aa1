"""The Trainer: one loop for every model family.

``Trainer(model, config).train(train_data, val_data) -> History``. What differs by family is
the step (:mod:`neuroplex.steps`); the loop owns devices, mixed precision, gradient
accumulation, clipping, non-finite handling, schedulers, early stopping, checkpoints, resume,
callbacks, data parallelism and progress bars.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from neuroplex.config import TrainingConfig
from neuroplex.errors import CheckpointError, ConfigError, TrainingError
from neuroplex.protocols import HasTrainingStep, TrainingStep
from neuroplex.records import NEEDS_METRIC
from neuroplex.training.callbacks import CallbackList
from neuroplex.training.checkpoint import (
    CheckpointInfo,
    find_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from neuroplex.training.data import BatchSource
from neuroplex.training.distributed import Strategy, make_strategy
from neuroplex.training.history import EpochRecord, History, TrainingEvent
from neuroplex.training.supervised import SupervisedStep

__all__ = ["Trainer", "evaluate", "resolve_step", "seed_everything"]

MAX_ROLLBACKS = 3
ROLLBACK_LR_FACTOR = 0.5


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's RNGs from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_step(model: torch.nn.Module, step: Any = None) -> Any:
    """The step to train ``model`` with: ``step``, else ``model.neuroplex_training_step()``,
    else :class:`SupervisedStep`."""
    if step is not None:
        return step
    if isinstance(model, HasTrainingStep):
        return model.neuroplex_training_step()
    return SupervisedStep()


class _NonFinite(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Interrupted(Exception):
    pass


@contextlib.contextmanager
def _stop_at_safe_points(trainer: Trainer) -> Iterator[None]:
    """SIGINT and SIGTERM inside the training loop ask it to stop at the next safe point (the
    end of the batch in flight, or of the epoch's bookkeeping), where a consistent ``interrupt``
    checkpoint can be written; a second signal, or one outside the loop, stops at once.
    Installed from the main thread only; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer._stop_signal is not None or not trainer._in_loop:
            raise KeyboardInterrupt
        trainer._stop_signal = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _batch_items(batch: Any) -> int:
    first = batch
    while isinstance(first, tuple | list) and first:
        first = first[0]
    if isinstance(first, Mapping):
        first = next(iter(first.values()))
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else 1


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _reduce_metrics(
    steps: Sequence[Mapping[str, Any]], counts: Sequence[int]
) -> tuple[dict[str, float], list[float], float]:
    """Item-weighted sums per metric key: (sums, flat list for all-reduce, count)."""
    sums: dict[str, float] = {}
    if steps:
        weights = torch.tensor(counts, dtype=torch.float64)
        for key in steps[0]:
            if key == "n":
                continue
            column = [m[key] for m in steps]
            try:  # one stack of 0-d tensors: no per-step conversion
                values = torch.stack(column).detach().to("cpu", torch.float64)
            except (TypeError, RuntimeError):  # floats, or tensors on mixed devices
                values = torch.tensor([float(v) for v in column], dtype=torch.float64)
            sums[key] = float(values.reshape(len(column), -1).mean(1) @ weights)
    return sums, list(sums.values()), float(sum(counts))


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
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"Trainer needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.config = config if config is not None else TrainingConfig()
        if not isinstance(self.config, TrainingConfig):
            raise ConfigError(f"config must be a TrainingConfig, got {type(self.config).__name__}")
        self.step = resolve_step(model, step)
        if not isinstance(self.step, TrainingStep):
            raise ConfigError(
                f"step {type(self.step).__name__} lacks param_groups/train_step/eval_step "
                "(see neuroplex.steps.TrainingStep)"
            )
        self.callbacks = CallbackList(callbacks)
        self._device_override = device
        self.device = torch.device("cpu")
        self.device_object: Any = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self._metric_schedulers: set[str] = set()  # stepped with the monitored value
        self.scaler: Any = None
        self.strategy: Strategy = Strategy()
        self.epoch = 0  # completed epochs
        self.global_step = 0  # optimizer steps (batches that stepped)
        self.events: list[TrainingEvent] = []
        self.records: list[EpochRecord] = []
        self._group_params: dict[str, list[torch.nn.Parameter]] = {}
        self._best: tuple[float, int] | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._bad_epochs = 0
        self._stopped_early = False
        self._resumed_from: str | None = None
        # hot-path state
        self._boundary = True
        self._accum_items = 0
        self._item_scale: float | None = None
        self._last_norm: torch.Tensor | None = None
        self._want_norm = False
        self._check_grads = False
        self._amp_dtype: torch.dtype | None = None
        self._batch_in_epoch = 0
        self._in_batch = False
        self._in_loop = False  # signals wait for a safe point only inside the loop
        self._stop_signal: int | None = None
        self._partial: tuple[list[Mapping[str, Any]], list[int]] = ([], [])

    # ------------------------------------------------------------------ setup
    def _resolve_device(self) -> torch.device:
        override = self._device_override
        if isinstance(override, torch.device):
            return override
        name = override or self.config.resolved_device()
        from neuroplex.plugins import get_plugin_manager
        from neuroplex.registry import create_device

        if name == "cpu" and get_plugin_manager().lookup("device", "cpu") is None:
            return torch.device("cpu")  # CPU needs no plugin
        self.device_object = create_device(name)
        available = self.device_object.is_available()
        if not available:
            raise ConfigError(
                f"device {name!r} is not available here; use device = 'auto' or 'cpu'",
                path="training.device",
            )
        return torch.device(self.device_object.torch_device())

    def _build_optimizers(self) -> None:
        from neuroplex.registry import create_optimizer, create_scheduler

        cfg = self.config
        groups = dict(self.step.param_groups(self.model))
        if not groups:
            raise ConfigError("the training step returned no parameter groups")
        kwargs: dict[str, Any] = {"lr": cfg.learning_rate}
        if cfg.weight_decay:
            kwargs["weight_decay"] = cfg.weight_decay
        kwargs.update(cfg.optimizer_params)
        for name, params in groups.items():
            plist = [p for p in params if p.requires_grad]
            if not plist:
                raise ConfigError(f"parameter group {name!r} has no trainable parameters")
            self._group_params[name] = plist
            self.optimizers[name] = create_optimizer(cfg.optimizer, plist, **kwargs)
            if cfg.scheduler:
                params_s = dict(cfg.scheduler_params)
                from neuroplex.registry import get_record

                record = get_record("optimizer", cfg.scheduler)
                if NEEDS_METRIC in record.capabilities:
                    self._metric_schedulers.add(name)
                factory = record.load()
                with contextlib.suppress(TypeError, ValueError):
                    if "total_epochs" in inspect.signature(factory).parameters:
                        params_s.setdefault("total_epochs", cfg.epochs)
                self.schedulers[name] = create_scheduler(
                    cfg.scheduler, self.optimizers[name], **params_s
                )

    def _setup_precision(self) -> None:
        precision = self.config.precision
        self.scaler = None
        self._amp_dtype = None
        if precision == "fp32":
            return
        kind = self.device.type
        if precision == "fp16" and kind == "cpu":
            self._event("precision_fallback", "fp16 autocast is not supported on CPU; using bf16")
            warnings.warn(
                "precision 'fp16' is not supported on CPU; falling back to 'bf16'", stacklevel=3
            )
            precision = "bf16"
        if kind not in ("cpu", "cuda", "mps"):
            self._event("precision_fallback", f"no autocast on {kind}; training in fp32")
            warnings.warn(f"mixed precision is not supported on {kind}; using fp32", stacklevel=3)
            return
        if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            self._event("precision_fallback", "this GPU lacks bf16; using fp16 with loss scaling")
            warnings.warn("this GPU does not support bf16; falling back to fp16", stacklevel=3)
            precision = "fp16"
        self._amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        if precision == "fp16":
            self.scaler = torch.amp.GradScaler(kind)

    def _progress(self) -> bool:
        setting = self.config.progress
        if not self.strategy.is_main:
            return False
        if setting is None:
            return sys.stderr.isatty()
        return bool(setting)

    # ------------------------------------------------------------------ events
    def _event(self, kind: str, message: str) -> None:
        event = TrainingEvent(
            kind=kind, epoch=self.epoch + 1, step=self.global_step, message=message
        )
        self.events.append(event)
        self.callbacks("on_event", self, event)

    @property
    def history(self) -> History:
        """The history so far (a new frozen record each time)."""
        best_epoch, best_value = (None, None)
        if self._best is not None:
            sign = 1.0 if self.config.monitor_mode == "min" else -1.0
            best_value, best_epoch = sign * self._best[0], self._best[1]
        return History(
            epochs=tuple(self.records),
            events=tuple(self.events),
            monitor=self.config.monitor,
            best_epoch=best_epoch,
            best_value=best_value,
            stopped_early=self._stopped_early,
            restored_best=any(e.kind == "restore_best" for e in self.events),
            resumed_from=self._resumed_from,
        )

    # ------------------------------------------------------------------ the hot path
    def _optimize(self, group: str, loss: torch.Tensor) -> None:
        """Backward (scaled for AMP and item-weighted accumulation); at an accumulation
        boundary: all-reduce, unscale, clip, step, zero."""
        if not math.isfinite(loss.item()):
            raise _NonFinite(f"loss of group {group!r}")
        if self._item_scale is not None:
            loss = loss * self._item_scale
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        if self._boundary:
            self._step_group(group)

    def _step_group(self, group: str) -> None:
        opt = self.optimizers[group]
        params = self._group_params[group]
        if self._accum_items:
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                torch._foreach_div_(grads, float(self._accum_items))
        self.strategy.average_gradients(params)
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        cfg = self.config
        norm: torch.Tensor | None = None
        if cfg.grad_clip_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm)
        elif self._want_norm:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else None
        if norm is not None:
            if self._check_grads and not math.isfinite(float(norm)):
                raise _NonFinite(f"gradients of group {group!r}")
            self._last_norm = norm
        if cfg.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, cfg.grad_clip_value)
        if self.scaler is not None:
            self.scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def _zero_all(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ epochs
    def _run_epoch(
        self, source: BatchSource, epoch: int, skip: int
    ) -> tuple[list[Mapping[str, Any]], list[int], int, float]:
        """Train one epoch (1-based ``epoch``); returns step metrics, item counts, skipped
        batches and seconds spent inside the step."""
        cfg = self.config
        accum = cfg.accumulate_grad_batches
        total = len(source)
        metrics, counts = self._partial
        self._partial = (metrics, counts)
        skipped = 0
        in_step = 0.0
        step_fn = self.step.train_step
        model = self.model
        device = self.device
        on_cpu_tensors = source.tensors is not None and device.type == "cpu"
        amp = (
            torch.autocast(device.type, dtype=self._amp_dtype)
            if self._amp_dtype is not None
            else contextlib.nullcontext()
        )
        # skip and rollback must catch non-finite gradients at the step they appear, before the
        # optimizer writes them into the weights (a finite loss can still give inf gradients)
        check_every = cfg.nonfinite_policy != "stop"
        window: list[int] = []
        window_start = -1
        if accum > 1 and source.loader is None:
            sizes = [len(b) for b in source.index_batches(epoch)]
        else:
            sizes = []
        batches: Iterator[Any] = source.batches(epoch, skip)
        bar = None
        if self._progress():
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=skip, desc=f"epoch {epoch}", leave=False, unit="batch")
        optimize = self._optimize
        index = skip
        has_batch_end = self.callbacks.has_batch_end
        for batch in batches:
            if not on_cpu_tensors:
                batch = _to_device(batch, device)
            n = _batch_items(batch)
            last = index == total - 1
            self._boundary = accum == 1 or (index + 1) % accum == 0 or last
            self._want_norm = last or check_every
            if accum > 1:
                start = index - index % accum
                if start != window_start:  # a new window (or the first after a resume)
                    window_start = start
                    window = sizes[start : min(start + accum, total)] if sizes else []
                    self._accum_items = sum(window) if window else 0
                if self._accum_items:
                    self._item_scale = float(n)
                else:  # unknown window (DataLoader): mean over micro-batches
                    self._item_scale = 1.0 / accum
            self._in_batch = True
            t0 = time.perf_counter()
            try:
                with amp:
                    out = step_fn(model, batch, optimize)
                if self._boundary:
                    if self.scaler is not None:
                        self.scaler.update()
                    self.global_step += 1
            except _NonFinite as exc:
                self._zero_all()
                if cfg.nonfinite_policy == "skip":
                    skipped += 1
                    self._event(
                        "nonfinite_skip", f"non-finite {exc.what} in batch {index}; skipped"
                    )
                    index += 1
                    self._batch_in_epoch = index
                    self._in_batch = False
                    if bar is not None:
                        bar.update(1)
                    if self._stop_signal is not None:
                        raise KeyboardInterrupt from None
                    continue
                raise
            in_step += time.perf_counter() - t0
            metrics.append(out)
            counts.append(int(out["n"]) if "n" in out else n)
            index += 1
            self._batch_in_epoch = index
            self._in_batch = False
            if bar is not None:
                bar.update(1)
            if has_batch_end:
                self.callbacks("on_batch_end", self, index - 1, out)
            if self._stop_signal is not None:
                raise KeyboardInterrupt
        if bar is not None:
            bar.close()
        return metrics, counts, skipped, in_step

    @torch.no_grad()
    def _validate(self, source: BatchSource | None) -> tuple[float | None, dict[str, float]]:
        if source is None:
            return None, {}
        was_training = self.model.training
        self.model.eval()
        metrics: list[Mapping[str, Any]] = []
        counts: list[int] = []
        amp = (
            torch.autocast(self.device.type, dtype=self._amp_dtype)
            if self._amp_dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            for batch in source.batches(0):
                batch = _to_device(batch, self.device)
                out = self.step.eval_step(self.model, batch)
                metrics.append(out)
                counts.append(int(out["n"]) if "n" in out else _batch_items(batch))
        self.model.train(was_training)
        sums, flat, count = _reduce_metrics(metrics, counts)
        reduced = self.strategy.sum_floats([*flat, count])
        count = reduced[-1]
        means = {k: v / count for k, v in zip(sums, reduced[:-1], strict=True)} if count else {}
        loss = means.pop("loss", None)
        return loss, means

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
        self.strategy = make_strategy(cfg.strategy, timeout_s=cfg.ddp_timeout_s)
        self.device = self._resolve_device()
        self.model.to(self.device)
        self.strategy.setup(self.model, self.device)
        prev_det = torch.are_deterministic_algorithms_enabled()
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            with _stop_at_safe_points(self):
                return self._train(train_data, val_data, resume)
        finally:
            if cfg.deterministic:
                torch.use_deterministic_algorithms(prev_det)
            self.strategy.teardown()

    def _sources(self, train_data: Any, val_data: Any) -> tuple[BatchSource, BatchSource | None]:
        cfg = self.config
        common = {
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "num_workers": cfg.num_workers,
            "rank": self.strategy.rank,
            "world_size": self.strategy.world_size,
        }
        train = BatchSource(
            train_data, shuffle=cfg.shuffle, drop_last=cfg.drop_last, name="train", **common
        )
        val = None
        if val_data is not None:
            val = BatchSource(val_data, shuffle=False, drop_last=False, name="val", **common)
        return train, val

    def _check_monitor(self, has_val: bool) -> None:
        cfg = self.config
        needs = cfg.early_stopping_patience is not None or cfg.keep_best > 0
        if (
            needs
            and cfg.monitor.startswith("val_")
            and not has_val
            and (cfg.early_stopping_patience is not None)
        ):
            raise ConfigError(
                f"monitor {cfg.monitor!r} needs validation data; pass val_data to train() or "
                "monitor 'train_loss'",
                path="training.monitor",
            )

    def _train(self, train_data: Any, val_data: Any, resume: str | Path | None) -> History:
        cfg = self.config
        train_src, val_src = self._sources(train_data, val_data)
        self._check_monitor(val_src is not None)
        if len(train_src) == 0:
            raise ConfigError(
                f"no training batch: {train_src.n} items, batch_size {cfg.batch_size}",
                path="training.batch_size",
            )
        self._build_optimizers()
        self._setup_precision()
        self._check_grads = self.scaler is None
        ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        skip = 0
        if resume is not None:
            skip = self._resume(resume, ckpt_dir)
        else:
            seed_everything(cfg.seed)
            if ckpt_dir is not None and self.strategy.is_main:
                self._clear_stale(ckpt_dir)
        self.callbacks("on_train_start", self)
        self.model.train()
        rollbacks = 0
        snapshot = None
        self._stop_signal = None
        self._in_loop = True
        try:
            while self.epoch < cfg.epochs and not self._stopped_early:
                epoch = self.epoch + 1
                if cfg.nonfinite_policy == "rollback" and skip == 0:
                    snapshot = self._snapshot()
                self.callbacks("on_epoch_start", self, epoch)
                t0 = time.perf_counter()
                try:
                    metrics, counts, skipped, in_step = self._run_epoch(train_src, epoch, skip)
                except _NonFinite as exc:
                    if cfg.nonfinite_policy == "rollback" and snapshot is not None:
                        rollbacks += 1
                        if rollbacks > MAX_ROLLBACKS:
                            raise TrainingError(
                                f"non-finite {exc.what} again after {MAX_ROLLBACKS} rollbacks "
                                f"(epoch {epoch}, step {self.global_step}); lower the learning "
                                "rate or enable gradient clipping"
                            ) from None
                        self._restore_snapshot(snapshot)
                        self._partial = ([], [])
                        skip = 0
                        self._event(
                            "rollback",
                            f"non-finite {exc.what}; rolled back to the start of epoch {epoch} "
                            f"with learning rate x{ROLLBACK_LR_FACTOR}",
                        )
                        continue
                    raise TrainingError(
                        f"non-finite {exc.what} at epoch {epoch}, batch {self._batch_in_epoch} "
                        f"(step {self.global_step}); nonfinite_policy is {cfg.nonfinite_policy!r}: "
                        "set it to 'skip' or 'rollback', lower the learning rate, or clip gradients"
                    ) from None
                skip = 0
                train_time = time.perf_counter() - t0
                record = self._finish_epoch(
                    epoch, metrics, counts, skipped, in_step, train_time, t0, val_src
                )
                self._after_epoch(record, ckpt_dir)
                if self._stop_signal is not None:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self._in_loop = False  # a second signal while saving stops at once
            if self._in_batch:  # the batch was cut halfway: its state is not consistent
                self._event(
                    "interrupt",
                    "interrupted inside a batch; resume='last' continues from the last "
                    "epoch checkpoint",
                )
            elif (
                ckpt_dir is not None and self.strategy.world_size == 1 and self._batch_in_epoch > 0
            ):
                # under ddp the ranks stop at different safe points and rank 0 alone cannot
                # save the others' state: resume continues from the last epoch checkpoint
                self._save(ckpt_dir, "interrupt", kind="interrupt", metrics={})
                self._event("interrupt", "interrupted; resume with train(..., resume='last')")
            raise
        finally:
            self._in_loop = False
        if self._stopped_early and cfg.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
            self._event(
                "restore_best",
                f"restored the weights of epoch {self._best[1] if self._best else '?'}",
            )
        history = self.history
        self.callbacks("on_train_end", self, history)
        return history

    def _finish_epoch(
        self,
        epoch: int,
        metrics: list[Mapping[str, Any]],
        counts: list[int],
        skipped: int,
        in_step: float,
        train_time: float,
        t0: float,
        val_src: BatchSource | None,
    ) -> EpochRecord:
        sums, flat, count = _reduce_metrics(metrics, counts)
        reduced = self.strategy.sum_floats([*flat, count])
        count = reduced[-1]
        means = {k: v / count for k, v in zip(sums, reduced[:-1], strict=True)} if count else {}
        train_loss = means.pop("loss", float("nan"))
        val_loss, val_metrics = self._validate(val_src)
        opt = next(iter(self.optimizers.values()))
        lr = float(opt.param_groups[0]["lr"])
        norm = None if self._last_norm is None else float(self._last_norm)
        self._last_norm = None
        steps = len(metrics)
        return EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            train_metrics=means,
            val_metrics=val_metrics,
            learning_rate=lr,
            grad_norm=norm,
            epoch_time_s=time.perf_counter() - t0,
            overhead_fraction=max(0.0, 1.0 - in_step / train_time) if train_time > 0 else 0.0,
            steps=math.ceil(steps / self.config.accumulate_grad_batches),
            skipped_batches=skipped,
        )

    def _after_epoch(self, record: EpochRecord, ckpt_dir: Path | None) -> None:
        cfg = self.config
        self.records.append(record)
        self.epoch = record.epoch
        self._batch_in_epoch = 0
        self._partial = ([], [])
        value = record.metric(cfg.monitor)
        improved = False
        if value is not None and math.isfinite(value):
            signed = value if cfg.monitor_mode == "min" else -value
            if self._best is None or signed < self._best[0]:
                self._best = (signed, record.epoch)
                improved = True
                if cfg.restore_best and cfg.early_stopping_patience is not None:
                    self._best_state = {
                        k: v.detach().clone() for k, v in self.model.state_dict().items()
                    }
        self._bad_epochs = 0 if improved else self._bad_epochs + 1
        with warnings.catch_warnings():
            # after a resume at an epoch's end the optimizer has not stepped in this process;
            # the order was right in the run that saved the checkpoint
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self._step_schedulers(value)
        patience = cfg.early_stopping_patience
        stop = patience is not None and self._bad_epochs >= patience
        stop = self.strategy.broadcast_flag(stop)
        if stop:
            self._stopped_early = True
            self._event(
                "early_stop",
                f"{cfg.monitor} did not improve for {patience} epochs; best epoch "
                f"{self._best[1] if self._best else '?'}",
            )
        self.callbacks("on_epoch_end", self, record)
        # under ddp, every rank's RNG states (each rank's last batch may be of another size, so
        # their streams differ): a resumed ddp run draws what an uninterrupted one would
        rng_ranks = None
        if ckpt_dir is not None and self.strategy.world_size > 1:
            rng_ranks = self.strategy.gather_objects(_rng_state())
        if ckpt_dir is not None and self.strategy.is_main:
            metrics = {"train_loss": record.train_loss, "val_loss": record.val_loss}
            metrics.update({f"train_{k}": v for k, v in record.train_metrics.items()})
            metrics.update({f"val_{k}": v for k, v in record.val_metrics.items()})
            info = self._save(
                ckpt_dir,
                f"epoch-{record.epoch:04d}",
                kind="epoch",
                metrics=metrics,
                rng_ranks=rng_ranks,
            )
            prune_checkpoints(
                ckpt_dir,
                keep_last=cfg.keep_last,
                keep_best=cfg.keep_best,
                monitor=cfg.monitor,
                mode=cfg.monitor_mode,
            )
            self._event("checkpoint", f"saved {info.path.name}")

    def _step_schedulers(self, value: float | None) -> None:
        cfg = self.config
        for name, sched in self.schedulers.items():
            if name in self._metric_schedulers or isinstance(
                sched, torch.optim.lr_scheduler.ReduceLROnPlateau
            ):
                if value is None:
                    raise ConfigError(
                        f"scheduler {cfg.scheduler!r} needs the monitored metric {cfg.monitor!r}, "
                        "which this run does not record",
                        path="training.monitor",
                    )
                sched.step(value)
            else:
                sched.step()

    # ------------------------------------------------------------------ rollback
    def _snapshot(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()},
            "global_step": self.global_step,
        }

    def _restore_snapshot(self, snap: Mapping[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(snap["optimizers"][name])
            for group in opt.param_groups:
                group["lr"] = group["lr"] * ROLLBACK_LR_FACTOR
            snap["optimizers"][name] = copy.deepcopy(opt.state_dict())
        for sched in self.schedulers.values():
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [lr * ROLLBACK_LR_FACTOR for lr in sched.base_lrs]
        self.global_step = int(snap["global_step"])
        self._zero_all()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors and primitive containers only)."""
        metrics, counts = self._partial
        partial: dict[str, Any] = {"counts": list(counts), "metrics": {}}
        if metrics:
            for key in metrics[0]:
                partial["metrics"][key] = torch.stack(
                    [torch.as_tensor(m[key]).detach().cpu() for m in metrics]
                )
        grads = {
            name: [None if p.grad is None else p.grad.detach().cpu().clone() for p in params]
            for name, params in self._group_params.items()
        }
        return {
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: _plain_state(s.state_dict()) for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": _rng_state(),
            "epoch": self.epoch,
            "batch_in_epoch": self._batch_in_epoch,
            "global_step": self.global_step,
            "partial": partial,
            "grads": grads,
            "history": [r.to_dict() for r in self.records],
            "events": [e.to_dict() for e in self.events],
            "best": None if self._best is None else [self._best[0], self._best[1]],
            "best_state": self._best_state,
            "bad_epochs": self._bad_epochs,
        }

    def _save(
        self,
        directory: Path,
        stem: str,
        *,
        kind: str,
        metrics: Mapping[str, Any],
        rng_ranks: list[Any] | None = None,
    ) -> CheckpointInfo:
        from neuroplex.config import unstructure

        manifest = {
            "kind": kind,
            "epoch": self.epoch,
            "batch_in_epoch": self._batch_in_epoch,
            "global_step": self.global_step,
            "seed": self.config.seed,
            "monitor": self.config.monitor,
            "mode": self.config.monitor_mode,
            "metrics": dict(metrics),
            "config": unstructure(self.config),
            "versions": _versions(),
        }
        state = self.state_dict()
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        return save_checkpoint(directory, stem, state, manifest)

    def _clear_stale(self, directory: Path) -> None:
        stale = find_checkpoints(directory)
        if stale:
            warnings.warn(
                f"{directory} holds {len(stale)} checkpoint(s) of an earlier run; a fresh run "
                "replaces them (pass resume='last' to continue instead)",
                stacklevel=4,
            )
            for info in stale:
                info.path.with_suffix(".json").unlink(missing_ok=True)
                info.path.unlink(missing_ok=True)

    def _resume(self, resume: str | Path, ckpt_dir: Path | None) -> int:
        """Load a checkpoint; returns the number of batches of the current epoch to skip."""
        if isinstance(resume, str) and resume in ("last", "best"):
            if ckpt_dir is None:
                raise ConfigError(
                    f"resume={resume!r} needs config.checkpoint_dir", path="training.checkpoint_dir"
                )
            candidates = find_checkpoints(ckpt_dir)
            if resume == "best":
                from neuroplex.training.checkpoint import resolve_checkpoint

                candidates = [resolve_checkpoint(ckpt_dir, "best")]
            state = None
            errors: list[str] = []
            for info in reversed(candidates):
                try:
                    state = load_checkpoint(info.path, map_location=self.device)
                except CheckpointError as exc:
                    errors.append(f"{exc}; used the previous checkpoint")
                    warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=4)
                    continue
                self._resumed_from = str(info.path)
                break
            if state is None:
                for message in errors:
                    self._event("checkpoint_error", message)
                seed_everything(self.config.seed)
                return 0
        else:
            errors = []
            state = load_checkpoint(resume, map_location=self.device)
            self._resumed_from = str(resume)
        self.load_state_dict(state)
        for message in errors:
            self._event("checkpoint_error", message)
        self._event("resume", f"resumed from {self._resumed_from}")
        return int(state["batch_in_epoch"])

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (optimizers must already exist)."""
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self._batch_in_epoch = int(state["batch_in_epoch"])
        self.global_step = int(state["global_step"])
        partial = state["partial"]
        counts = [int(c) for c in partial["counts"]]
        keys = list(partial["metrics"])
        metrics: list[Mapping[str, Any]] = [
            {k: partial["metrics"][k][i] for k in keys} for i in range(len(counts))
        ]
        self._partial = (metrics, counts)
        for name, params in self._group_params.items():
            for p, g in zip(params, state["grads"][name], strict=True):
                p.grad = None if g is None else g.to(p.device)
        self.records = [EpochRecord.from_dict(r) for r in state["history"]]
        self.events = [TrainingEvent(**e) for e in state["events"]]
        best = state["best"]
        self._best = None if best is None else (float(best[0]), int(best[1]))
        self._best_state = state.get("best_state")
        self._bad_epochs = int(state["bad_epochs"])
        ranks = state.get("rng_ranks")
        rank, world = self.strategy.rank, self.strategy.world_size
        if ranks is not None and len(ranks) == world:
            _set_rng_state(ranks[rank])
        else:
            _set_rng_state(state["rng"])
            if world > 1:
                self._event(
                    "resume",
                    f"the checkpoint holds the RNG states of {len(ranks or [0])} process(es), "
                    f"this run has {world}: every rank continues with rank 0's",
                )


# ---------------------------------------------------------------------- helpers
def _plain_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A scheduler's state without the registry's ``neuroplex_origin`` (LR schedulers save
    their whole ``__dict__``; a checkpoint holds only weights-only-loadable values)."""
    return {k: v for k, v in state.items() if k != "neuroplex_origin"}


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "python": [int(version), list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(i) for i in internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npst["keys"].numpy().astype(np.uint32),
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def _versions() -> dict[str, str]:
    import neuroplex

    versions = {"neuroplex": neuroplex.__version__, "torch": torch.__version__}
    with contextlib.suppress(Exception):
        from neuroplex.plugins import get_plugin_manager

        for info in get_plugin_manager().plugins():
            versions[info.distribution] = info.version
    return versions


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: Any,
    *,
    step: Any = None,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Item-weighted mean metrics of ``step.eval_step`` over ``data`` (``loss``, ...)."""
    step = resolve_step(model, step)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    source = BatchSource(data, batch_size=batch_size, shuffle=False, drop_last=False, seed=0)
    was_training = model.training
    model.eval()
    metrics: list[Mapping[str, Any]] = []
    counts: list[int] = []
    for batch in source.batches(0):
        batch = _to_device(batch, device)
        out = step.eval_step(model, batch)
        metrics.append(out)
        counts.append(int(out["n"]) if "n" in out else _batch_items(batch))
    model.train(was_training)
    sums, _flat, count = _reduce_metrics(metrics, counts)
    return {k: v / count for k, v in sums.items()} if count else {}
