"""neuroplex-models: model families built from ``ModelConfig`` (mlp, cnn, transformer, gan,
autoencoder); each is also constructible directly, as in the seed.

Attributes load lazily: importing the package (as the plugin entry module does) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ModelConfig": "neuroplex.config",
    "AutoencoderModel": "neuroplex_models.autoencoder",
    "ModelMetrics": "neuroplex_models.base",
    "NeuroplexModel": "neuroplex_models.base",
    "CNNModel": "neuroplex_models.cnn",
    "GANModel": "neuroplex_models.gan",
    "BaseNeuralNetwork": "neuroplex_models.mlp",
    "AutoencoderStep": "neuroplex_models.steps",
    "GANStep": "neuroplex_models.steps",
    "TransformerModel": "neuroplex_models.transformer",
}

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

if TYPE_CHECKING:
    from neuroplex.config import ModelConfig
    from neuroplex_models.autoencoder import AutoencoderModel
    from neuroplex_models.base import ModelMetrics, NeuroplexModel
    from neuroplex_models.cnn import CNNModel
    from neuroplex_models.gan import GANModel
    from neuroplex_models.mlp import BaseNeuralNetwork
    from neuroplex_models.steps import AutoencoderStep, GANStep
    from neuroplex_models.transformer import TransformerModel


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'neuroplex_models' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
