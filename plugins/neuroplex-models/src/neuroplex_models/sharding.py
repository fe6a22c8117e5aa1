"""FSDP sharding policies (``ModelRecord.sharding``): which sub-modules ``fsdp`` shards as units.

Each factory returns a :class:`neuroplex.protocols.ShardingPolicy`: one unit per block of the
family's stacks (a dense layer, a convolution block, an encoder block), so that under ``fsdp``
a rank holds only its shards plus the one block being computed. The kernel shards the root
last (output head, embeddings, norms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["cnn", "mlp", "transformer"]

Policy = Callable[[Any], Iterable[Any]]


def _blocks_of(*stacks: str) -> Policy:
    def policy(model: Any) -> list[Any]:
        units: list[Any] = []
        for name in stacks:
            blocks = model.get_submodule(name).children()
            units += [m for m in blocks if next(m.parameters(), None) is not None]
        return units

    return policy


def mlp() -> Policy:
    """Every hidden layer of a ``BaseNeuralNetwork``."""
    return _blocks_of("hidden")


def cnn() -> Policy:
    """Every convolution block and every dense hidden layer of a ``CNNModel``."""
    return _blocks_of("features", "hidden")


def transformer() -> Policy:
    """Every encoder block of a ``TransformerModel``."""
    return _blocks_of("blocks")
