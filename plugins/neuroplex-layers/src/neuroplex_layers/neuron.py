"""``Neuron``: a view of one unit of a :class:`~neuroplex_layers.Layer` (the seed's expert)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from neuroplex.errors import ConfigError, DataError
from neuroplex.torchutils import eval_mode

if TYPE_CHECKING:
    from neuroplex_layers.layers import Layer

__all__ = ["Neuron", "NeuronStats"]


@attrs.frozen(kw_only=True)
class NeuronStats:
    """Statistics of one unit's activation over a batch of inputs."""

    index: int
    count: int
    mean: float
    std: float
    min: float
    max: float
    fraction_active: float  # share of inputs with activation > 0

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class Neuron:
    """Unit ``index`` of ``layer``: its weights ``(F_in,)``, bias, activation and statistics.

    A view, not a copy: ``weights`` and ``bias`` follow the layer's parameters.
    """

    def __init__(self, layer: Layer, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ConfigError(f"neuron index must be an int, got {index!r}", path="index")
        if not 0 <= index < layer.out_features:
            raise ConfigError(
                f"neuron index {index} out of range: the layer has {layer.out_features} units "
                f"(0..{layer.out_features - 1})",
                path="index",
            )
        self.layer = layer
        self.index = index

    @property
    def weights(self) -> Tensor:
        """Incoming weights, shape ``(in_features,)``."""
        return self.layer.linear.weight[self.index]

    @property
    def bias(self) -> Tensor | None:
        """The bias (a 0-d tensor), ``None`` when the layer has no bias."""
        b = self.layer.linear.bias
        return None if b is None else b[self.index]

    @property
    def activation(self) -> str:
        return self.layer.activation_name

    @torch.no_grad()
    def activations(self, x: Tensor) -> Tensor:
        """This unit's activation for each input (eval mode, no dropout): ``(N, F_in) -> (N,)``."""
        if x.ndim != 2 or x.shape[1] != self.layer.in_features:
            raise DataError(
                f"Neuron.activations needs inputs (N, {self.layer.in_features}), got "
                f"{tuple(x.shape)}"
            )
        with eval_mode(self.layer, freeze=False):
            out = self.layer.activation(self.layer.pre_activation(x))
        column: Tensor = out[:, self.index]
        return column

    def statistics(self, x: Tensor) -> NeuronStats:
        """Mean, std, range and active fraction of this unit over the batch ``x``."""
        a = self.activations(x).float()
        if a.numel() == 0:
            raise DataError("Neuron.statistics needs at least one input")
        return NeuronStats(
            index=self.index,
            count=int(a.numel()),
            mean=float(a.mean()),
            std=float(a.std(unbiased=False)),
            min=float(a.min()),
            max=float(a.max()),
            fraction_active=float((a > 0).float().mean()),
        )

    def __repr__(self) -> str:
        return (
            f"Neuron({self.index} of Layer {self.layer.in_features} -> "
            f"{self.layer.out_features}, activation={self.activation})"
        )
