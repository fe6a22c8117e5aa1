"""neuroplex-layers: the seed's ``Layer``, activations by name, ``Neuron`` and dynamic layer
building from config dicts (``build_sequential``)."""

from __future__ import annotations

from neuroplex_layers.activations import ACTIVATIONS, activation_names, get_activation
from neuroplex_layers.builder import LAYER_KINDS, build_layers, build_sequential, output_shape
from neuroplex_layers.layers import ConvBlock, Layer, Residual, SelfAttention, TransformerBlock
from neuroplex_layers.neuron import Neuron, NeuronStats

__all__ = [
    "ACTIVATIONS",
    "LAYER_KINDS",
    "ConvBlock",
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
