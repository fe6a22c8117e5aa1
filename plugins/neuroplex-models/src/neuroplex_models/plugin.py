"""Entry module of neuroplex-models: registers the model families (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import ModelRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1


@hookimpl
def neuroplex_register_models() -> Iterator[ModelRecord]:
    yield ModelRecord(
        name="mlp",
        factory="neuroplex_models.mlp:BaseNeuralNetwork",
        sharding="neuroplex_models.sharding:mlp",
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
        sharding="neuroplex_models.sharding:cnn",
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
    yield ModelRecord(
        name="transformer",
        factory="neuroplex_models.transformer:TransformerModel",
        sharding="neuroplex_models.sharding:transformer",
        summary="pre-norm transformer encoder on fixed-length sequences, pooled or per-token head",
        capabilities={"classification", "sequences", "attention"},
        example_config={
            "input_dim": 4,
            "seq_len": 6,
            "d_model": 8,
            "nhead": 2,
            "num_layers": 2,
            "dim_feedforward": 16,
            "dropout": 0.1,
            "num_classes": 3,
        },
        example_input=(4, 6, 4),
    )
    yield ModelRecord(
        name="gan",
        factory="neuroplex_models.gan:GANModel",
        summary="generative adversarial network (dense, optionally class-conditional); "
        "forward(x) gives discriminator logits",
        capabilities={"generation"},
        example_config={
            "latent_dim": 4,
            "data_dim": 16,
            "generator_layers": [8, 12],
            "discriminator_layers": [12],
            "image_shape": [4, 4],
        },
        example_input=(4, 16),
        training_step="neuroplex_models.steps:GANStep",
        export_graphs=("generator", "discriminator"),
    )
    yield ModelRecord(
        name="autoencoder",
        factory="neuroplex_models.autoencoder:AutoencoderModel",
        summary="dense autoencoder (optionally variational): encode, decode, anomaly scores",
        capabilities={"reconstruction", "anomaly_detection"},
        example_config={
            "input_dim": 16,
            "encoder_layers": [8],
            "latent_dim": 3,
            "variational": True,
            "image_shape": [4, 4],
        },
        example_input=(4, 16),
        training_step="neuroplex_models.steps:AutoencoderStep",
        export_graphs=("encoder", "decoder", "model"),
        aliases=("vae",),
    )
