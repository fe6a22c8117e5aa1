"""neuroplex-models: model families built from ``ModelConfig`` (mlp, cnn, transformer, gan,
autoencoder); each is also constructible directly, as in the seed."""

from __future__ import annotations

from neuroplex.config import ModelConfig
from neuroplex_models.autoencoder import AutoencoderModel
from neuroplex_models.base import ModelMetrics, NeuroplexModel
from neuroplex_models.cnn import CNNModel
from neuroplex_models.gan import GANModel
from neuroplex_models.mlp import BaseNeuralNetwork
from neuroplex_models.steps import AutoencoderStep, GANStep
from neuroplex_models.transformer import TransformerModel

__all__ = [
    "AutoencoderModel",
    "AutoencoderStep",
    "BaseNeuralNetwork",
    "CNNModel",
    "GANModel",
    "GANStep",
    "ModelConfig",
    "ModelMetrics",
    "NeuroplexModel",
    "TransformerModel",
]
