"""neuroplex-layers: the seed's ``Layer``, activations by name, ``Neuron`` and dynamic layer
building from config dicts (``build_sequential``).

Attributes load lazily: importing the package (as the plugin entry module does) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ACTIVATIONS": "neuroplex_layers.activations",
    "activation_names": "neuroplex_layers.activations",
    "get_activation": "neuroplex_layers.activations",
    "LAYER_KINDS": "neuroplex_layers.builder",
    "LayerManager": "neuroplex_layers.builder",
    "build_layers": "neuroplex_layers.builder",
    "build_sequential": "neuroplex_layers.builder",
    "output_shape": "neuroplex_layers.builder",
    "ConvBlock": "neuroplex_layers.layers",
    "Layer": "neuroplex_layers.layers",
    "Residual": "neuroplex_layers.layers",
    "SelfAttention": "neuroplex_layers.layers",
    "TransformerBlock": "neuroplex_layers.layers",
    "Neuron": "neuroplex_layers.neuron",
    "NeuronStats": "neuroplex_layers.neuron",
}

__all__ = [
    "ACTIVATIONS",
    "ConvBlock",
    "LAYER_KINDS",
    "LayerManager",
    "Layer",
    "Neuron",
    "NeuronStats",
    "Residual",
    "SelfAttention",
    "TransformerBlock",
    "activation_names",
    "build_layers",
    "build_sequential",
    "get_activation",
    "output_shape",
]

if TYPE_CHECKING:
    from neuroplex_layers.activations import ACTIVATIONS, activation_names, get_activation
    from neuroplex_layers.builder import (
        LAYER_KINDS,
        LayerManager,
        build_layers,
        build_sequential,
        output_shape,
    )
    from neuroplex_layers.layers import (
        ConvBlock,
        Layer,
        Residual,
        SelfAttention,
        TransformerBlock,
    )
    from neuroplex_layers.neuron import Neuron, NeuronStats


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'neuroplex_layers' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
