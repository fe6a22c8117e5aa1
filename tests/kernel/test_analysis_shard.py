"""Sharded analysis: how the points of one evaluation are split over torchrun processes."""

from __future__ import annotations

import pytest

from neuroplex import ConfigError
from neuroplex.analysis.shard import require_shardable, shard_range


@pytest.mark.parametrize("n", [1, 7, 12, 13])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_the_ranks_cover_every_point_once_in_whole_batches_numbered_globally(
    n: int, world: int
) -> None:
    size = 4
    ranges = [shard_range(n, size, rank, world) for rank in range(world)]
    covered = [i for start, stop, _ in ranges for i in range(start, stop)]
    assert covered == list(range(n))  # in rank order: gathering keeps the input order
    for start, stop, first in ranges:
        if stop > start:
            assert start == first * size  # the part starts at its first batch
            assert stop == n or (stop - start) % size == 0  # whole batches only
    batches = [-(-(stop - start) // size) for start, stop, _ in ranges]
    assert max(batches) - min(batches) <= 1  # balanced to within one batch


def test_an_analyzer_that_cannot_shard_is_named_in_one_error() -> None:
    class Plain:
        def analyze(self, x: object, y: object = None) -> object:
            return None

    with pytest.raises(ConfigError, match="analyzer 'plain' cannot be split over processes"):
        require_shardable(Plain(), "plain")
