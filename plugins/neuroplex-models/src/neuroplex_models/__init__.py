"""neuroplex-models: model families built from ``ModelConfig`` (mlp, cnn, transformer, gan,
autoencoder); each is also constructible directly, as in the seed."""

from __future__ import annotations

from neuroplex.config import ModelConfig
from neuroplex_models.base import ModelMetrics, NeuroplexModel
from neuroplex_models.cnn import CNNModel
from neuroplex_models.mlp import BaseNeuralNetwork

__all__ = [
    "BaseNeuralNetwork",
    "CNNModel",
    "ModelConfig",
    "ModelMetrics",
    "NeuroplexModel",
]
