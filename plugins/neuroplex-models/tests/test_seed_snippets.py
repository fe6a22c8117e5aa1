"""The seed guide's snippets run as written (with our module names)."""

from __future__ import annotations

import torch


def test_core_snippet() -> None:
    from neuroplex_layers import Layer
    from neuroplex_models import BaseNeuralNetwork

    # Create layer
    layer = Layer(
        in_features=128,
        out_features=64,
        activation="relu",
        dropout=0.2,
    )

    # Create network
    network = BaseNeuralNetwork(
        input_size=128,
        output_size=1,
        hidden_layers=[
            {"out_features": 64, "activation": "relu"},
            {"out_features": 32, "activation": "relu"},
        ],
    )
    assert layer(torch.rand(3, 128)).shape == (3, 64)
    assert network(torch.rand(3, 128)).shape == (3, 1)
    assert [m.out_features for m in network.hidden] == [64, 32]


def test_cnn_snippet() -> None:
    from neuroplex_models import CNNModel, ModelConfig

    config = ModelConfig(
        name="cnn",
        hyperparameters={
            "input_channels": 1,
            "conv_layers": [
                {"out_channels": 32, "kernel_size": 3},
                {"out_channels": 64, "kernel_size": 3},
            ],
        },
    )

    cnn = CNNModel(config)
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_transformer_snippet() -> None:
    from neuroplex_models import ModelConfig, TransformerModel

    config = ModelConfig(
        name="transformer",
        hyperparameters={
            "d_model": 512,
            "nhead": 8,
            "num_layers": 6,
        },
    )

    transformer = TransformerModel(config)
    assert len(transformer.blocks) == 6
    with torch.no_grad():
        out = transformer.eval()(torch.rand(2, transformer.seq_len, transformer.input_dim))
    assert out.shape == (2, 2) and torch.isfinite(out).all()


def test_gan_snippet() -> None:
    from neuroplex_models import GANModel, ModelConfig

    device = torch.device("cpu")
    config = ModelConfig(
        name="gan",
        hyperparameters={
            "latent_dim": 100,
            "data_dim": 784,
        },
    )

    gan = GANModel(config)
    # Generate synthetic data
    synthetic_data = gan.generate(num_samples=100, device=device)
    assert synthetic_data.shape == (100, 784)
    assert float(synthetic_data.min()) >= 0.0 and float(synthetic_data.max()) <= 1.0
