"""One analysis over the processes of a ``torchrun`` group (``neuroplex analyze --nproc N``, and
the analyze stage of a run under ``--nproc N``).

An analyzer that is a :class:`~neuroplex.protocols.ShardableAnalyzer` evaluates independent,
seeded batches of ``shard_size`` points (batch ``b`` seeded with ``seed + b``). Each process
takes a contiguous run of whole batches (:func:`shard_range`), evaluates it with its own model
(its own ONNX Runtime session), and the parts are gathered in input order; rank 0 merges them
into the result one process gives, and only rank 0 writes anything.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from neuroplex.errors import ConfigError, DataError, NeuroplexError
from neuroplex.protocols import AnalysisResult, ShardableAnalyzer

if TYPE_CHECKING:
    from neuroplex.training.distributed import Strategy

__all__ = [
    "analysis_group",
    "analyze_sharded",
    "require_shardable",
    "require_shardable_record",
    "shard_range",
]


def shard_range(n: int, shard_size: int, rank: int, world_size: int) -> tuple[int, int, int]:
    """``(start, stop, first_batch)``: the points ``[start, stop)`` of ``n`` that process
    ``rank`` of ``world_size`` evaluates, whole batches of ``shard_size`` from global batch
    ``first_batch`` (the first ``batches % world_size`` ranks take one batch more; a rank
    left without a batch gets ``start == stop``)."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}", path="batch_size")
    batches = math.ceil(n / shard_size)
    per, extra = divmod(batches, world_size)
    first = rank * per + min(rank, extra)
    count = per + (1 if rank < extra else 0)
    return min(n, first * shard_size), min(n, (first + count) * shard_size), first


def require_shardable(analyzer: Any, name: str) -> ShardableAnalyzer:
    """``analyzer`` as a :class:`ShardableAnalyzer`, else a :class:`ConfigError` naming it."""
    if not isinstance(analyzer, ShardableAnalyzer):
        raise ConfigError(
            f"analyzer {name!r} cannot be split over processes (it is no ShardableAnalyzer "
            "and its record lacks the 'shards' capability): drop --nproc, or run it alone "
            "without --nproc",
            path="--nproc",
        )
    return analyzer


def require_shardable_record(name: str) -> None:
    """Before any process starts: analyzer ``name``'s record declares the
    :data:`~neuroplex.records.SHARDS` capability, else a :class:`ConfigError` naming it."""
    from neuroplex.records import SHARDS
    from neuroplex.registry import get_record

    record = get_record("analyzer", name)
    if SHARDS not in record.capabilities:
        raise ConfigError(
            f"analyzer {record.name!r} cannot be split over processes (its record lacks the "
            f"'shards' capability): drop --nproc, or run {record.name!r} in a separate call "
            "without --nproc",
            path="--nproc",
        )


def analyze_sharded(
    analyzer: ShardableAnalyzer, x: Any, y: Any, group: Strategy
) -> AnalysisResult | None:
    """Evaluate this rank's share of ``(x, y)`` and gather every rank's: the merged result on
    rank 0, ``None`` on the others. A failure on any rank fails every rank (one line naming
    the rank), instead of leaving the others waiting."""
    rank, world = group.rank, group.world_size
    start, stop, first = shard_range(len(x), int(analyzer.shard_size), rank, world)
    part: Any = None
    failure: tuple[bool, str] | None = None
    error: BaseException | None = None
    if stop > start:
        try:
            part = analyzer.analyze_shard(
                x[start:stop], None if y is None else y[start:stop], first_batch=first
            )
        except Exception as exc:  # sent to every rank, then re-raised here
            error = exc
            failure = (isinstance(exc, NeuroplexError), f"{type(exc).__name__}: {exc}")
    gathered = group.gather_objects((part, failure), "gathering analysis results")
    if error is not None:
        raise error
    for other, (_, failed) in enumerate(gathered):
        if failed is not None:
            user_error, message = failed
            text = f"analysis rank {other}/{world} failed: {message}"
            raise DataError(text) if user_error else RuntimeError(text)
    if rank != 0:
        return None
    return analyzer.merge_shards([p for p, _ in gathered if p is not None])


@contextlib.contextmanager
def analysis_group(timeout_s: float) -> Iterator[Strategy]:
    """A gloo group of the ``torchrun`` processes for analysis (its own rendezvous keys, so a
    run's training group before it leaves nothing it could read); released on exit.
    ``timeout_s`` bounds every wait, joining included."""
    import torch

    from neuroplex.training.distributed import DDPStrategy

    group = DDPStrategy(timeout_s, scope="analysis")
    group.setup(torch.nn.Module(), torch.device("cpu"))
    try:
        yield group
    finally:
        group.teardown()
