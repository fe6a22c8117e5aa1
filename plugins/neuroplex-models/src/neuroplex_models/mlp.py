"""``mlp``: the seed's ``BaseNeuralNetwork``, a stack of dense layers."""

from __future__ import annotations

from typing import Any, ClassVar

from neuroplex_layers import build_layers, get_activation
from torch import Tensor, nn

from neuroplex.errors import ConfigError, DataError
from neuroplex_models.base import NeuroplexModel, strip_path

__all__ = ["BaseNeuralNetwork"]


class BaseNeuralNetwork(NeuroplexModel):
    """A multi-layer perceptron: hidden ``Layer``\\ s then a linear output.

    Hyperparameters:
        input_size: features per sample ``F`` (inputs ``(N, *)`` are flattened to ``(N, F)``).
        output_size: outputs (class logits or regression targets).
        hidden_layers: list of dicts in the layer builder's format, e.g.
            ``{"out_features": 64, "activation": "relu", "dropout": 0.1}`` (any layer type
            works; sizes are inferred).
        activation, dropout, norm: defaults for hidden layers that leave them out.
        output_activation: activation after the output layer (``None``: raw logits).

    Shape: ``(N, input_size) -> (N, output_size)``.
    """

    family: ClassVar[str] = "mlp"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "input_size": 64,
        "output_size": 10,
        "hidden_layers": [{"out_features": 64}],
        "activation": "relu",
        "dropout": 0.0,
        "norm": None,
        "output_activation": None,
    }

    def _build(self, hp: dict[str, Any]) -> None:
        for key in ("input_size", "output_size"):
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise self.error(key, f"{key} must be a positive integer, got {value!r}")
        self.input_size: int = hp["input_size"]
        self.output_size: int = hp["output_size"]
        defaults = {"activation": hp["activation"], "dropout": hp["dropout"], "norm": hp["norm"]}
        self.hidden, shape = build_layers(
            hp["hidden_layers"], (self.input_size,), path="mlp.hidden_layers", defaults=defaults
        )
        try:
            self.output_activation = get_activation(hp["output_activation"])
        except ConfigError as exc:
            raise self.error("output_activation", strip_path(exc)) from None
        if len(shape) != 1:
            raise self.error(
                "hidden_layers", f"hidden layers must end with a flat (F,) shape, they give {shape}"
            )
        self.output = nn.Linear(shape[0], self.output_size)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, input_size)`` (or ``(N, *)`` flattening to it) -> ``(N, output_size)``."""
        if x.ndim != 2:
            x = x.flatten(1)
        if x.shape[1] != self.input_size:
            raise DataError(
                f"mlp: inputs must have input_size = {self.input_size} features, got "
                f"{tuple(x.shape)}"
            )
        out: Tensor = self.output_activation(self.output(self.hidden(x)))
        return out
