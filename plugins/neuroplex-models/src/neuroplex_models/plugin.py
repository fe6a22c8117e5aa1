"""Entry module of neuroplex-models: registers the model families (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import ModelRecord, hookimpl


@hookimpl
def neuroplex_register_models() -> Iterator[ModelRecord]:
    yield ModelRecord(
        name="mlp",
        factory="neuroplex_models.mlp:BaseNeuralNetwork",
        summary="the seed's BaseNeuralNetwork: dense hidden layers, linear output",
        capabilities={"classification", "regression"},
        example_config={
            "input_size": 12,
            "output_size": 3,
            "hidden_layers": [
                {"out_features": 16, "activation": "relu", "dropout": 0.1},
                {"out_features": 8, "activation": "tanh", "norm": "layer"},
            ],
        },
        example_input=(4, 12),
        aliases=("base_neural_network", "dense"),
    )
    yield ModelRecord(
        name="cnn",
        factory="neuroplex_models.cnn:CNNModel",
        summary="2-D convolution blocks (norm, pool), global pooling or flatten, dense classifier",
        capabilities={"classification", "images"},
        example_config={
            "input_channels": 1,
            "input_size": [8, 8],
            "conv_layers": [
                {"out_channels": 4, "kernel_size": 3, "padding": 1, "norm": "batch"},
                {"out_channels": 6, "kernel_size": 3, "padding": 1, "pool": 2},
            ],
            "hidden": [16],
            "num_classes": 3,
            "dropout": 0.1,
        },
        example_input=(4, 1, 8, 8),
    )
