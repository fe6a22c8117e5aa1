"""Batches for the loop: tensors, Datasets or DataLoaders, with a reproducible order.

For tensors and map-style Datasets the Trainer owns the order: epoch ``e`` shuffles with a
generator seeded from ``(seed, e)``, so a resumed run can replay an epoch exactly and skip the
batches it already consumed. Under data parallelism every global batch of
``batch_size * world_size`` items is split into one contiguous share per rank, so ``N``
processes see exactly the global batches a single process with ``N``-times the batch size sees.
A user's DataLoader is iterated as given (skip-on-resume is exact only if its order is seeded).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from neuroplex.config import TrainingConfig
from neuroplex.errors import ConfigError, DataError
from neuroplex.training.distributed import Strategy

__all__ = ["BatchSource", "as_source", "batch_items", "make_sources", "to_device"]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


class BatchSource:
    """Yields batches (tuples of tensors, or whatever a DataLoader yields) for one epoch."""

    def __init__(
        self,
        data: Any,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        name: str = "train",
    ) -> None:
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.loader: Any = None
        self.tensors: tuple[torch.Tensor, ...] | None = None
        self.dataset: Any = None
        if isinstance(data, torch.utils.data.DataLoader):
            self.loader = data
            self.n = _safe_len(data.dataset)
        elif isinstance(data, torch.Tensor | tuple | list):
            self.tensors = _as_tensors(data, name)
            self.n = int(self.tensors[0].shape[0])
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.dataset = data
            self.n = len(data)
        else:
            raise DataError(
                f"{name} data: expected a DataLoader, a Dataset or (X, y) tensors, "
                f"got {type(data).__name__}"
            )
        if self.loader is None:
            if self.n == 0:
                raise DataError(f"{name} data is empty")
            if drop_last and self.n < batch_size * world_size:
                raise ConfigError(
                    f"batch_size {batch_size} (x{world_size} processes) is larger than the "
                    f"{self.n} {name} items and drop_last is set, so no batch would be left; "
                    "lower batch_size or set drop_last = false",
                    path="training.batch_size",
                )

    def index_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's index batches of ``epoch`` (tensor and Dataset data)."""
        if self.shuffle:
            order = torch.randperm(self.n, generator=_epoch_generator(self.seed, epoch))
        else:
            order = torch.arange(self.n)
        global_batch = self.batch_size * self.world_size
        batches = []
        for start in range(0, self.n, global_batch):
            chunk = order[start : start + global_batch]
            if len(chunk) < global_batch and (self.drop_last or len(chunk) < self.world_size):
                break
            batches.append(
                chunk if self.world_size == 1 else chunk.tensor_split(self.world_size)[self.rank]
            )
        return batches

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        full, rest = divmod(self.n, self.batch_size * self.world_size)
        return full + int(rest >= self.world_size and not self.drop_last)

    def batches(self, epoch: int, skip: int = 0) -> Iterator[Any]:
        """Batches of ``epoch`` after the first ``skip`` ones."""
        if self.loader is not None:
            sampler = getattr(self.loader, "sampler", None)
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for i, batch in enumerate(self.loader):
                if i >= skip:
                    yield batch
            return
        index = self.index_batches(epoch)[skip:]
        if self.tensors is not None and len(self.tensors) == 2:
            x, y = self.tensors  # the common (X, y) case without a per-batch generator
            for idx in index:
                yield x[idx], y[idx]
            return
        if self.tensors is not None:
            tensors = self.tensors
            for idx in index:
                yield tuple(t[idx] for t in tensors)
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[i.tolist() for i in index], num_workers=self.num_workers
        )
        yield from loader


def _safe_len(dataset: Any) -> int:
    try:
        return len(dataset)
    except TypeError:
        return 0


def _as_tensors(data: Any, name: str) -> tuple[torch.Tensor, ...]:
    parts: Sequence[Any] = (data,) if isinstance(data, torch.Tensor) else data
    tensors = []
    for part in parts:
        if part is None:
            continue
        try:
            tensors.append(torch.as_tensor(part))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(
                f"{name} data: cannot make a tensor of {type(part).__name__}: {exc}"
            ) from None
    if not tensors:
        raise DataError(f"{name} data: no tensors given")
    n = int(tensors[0].shape[0]) if tensors[0].ndim else -1
    for t in tensors:
        if t.ndim == 0 or int(t.shape[0]) != n:
            shapes = ", ".join(str(tuple(x.shape)) for x in tensors)
            raise DataError(
                f"{name} data: X and y must have the same first dimension, got {shapes}"
            )
    return tuple(tensors)


def as_source(data: Any, **kwargs: Any) -> BatchSource:
    """Wrap ``data`` (DataLoader, Dataset, tensor, or ``(X, y)``) as a :class:`BatchSource`."""
    return BatchSource(data, **kwargs)


def batch_items(batch: Any) -> int:
    """Items in ``batch``: the first dimension of its first tensor (1 if it has none)."""
    first = batch
    while isinstance(first, tuple | list) and first:
        first = first[0]
    if isinstance(first, Mapping):
        first = next(iter(first.values()))
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else 1


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (tensors in tuples, lists and mappings) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def make_sources(
    train_data: Any, val_data: Any, config: TrainingConfig, strategy: Strategy
) -> tuple[BatchSource, BatchSource | None]:
    """The Trainer's training and (optional) validation sources, this rank's share of each."""
    common: dict[str, Any] = {
        "batch_size": config.batch_size,
        "seed": config.seed,
        "num_workers": config.num_workers,
        "rank": strategy.rank,
        "world_size": strategy.world_size,
    }
    train = BatchSource(
        train_data, shuffle=config.shuffle, drop_last=config.drop_last, name="train", **common
    )
    patience, monitor = config.early_stopping_patience, config.monitor
    if patience is not None and monitor.startswith("val_") and val_data is None:
        raise ConfigError(
            f"monitor {monitor!r} needs validation data; pass val_data to train() "
            "or monitor 'train_loss'",
            path="training.monitor",
        )
    if len(train) == 0:
        raise ConfigError(
            f"no training batch: {train.n} items, batch_size {config.batch_size}",
            path="training.batch_size",
        )
    if val_data is None:
        return train, None
    return train, BatchSource(val_data, shuffle=False, drop_last=False, name="val", **common)
