"""Entry module of neuroplex-layers: registers layers and activations (imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator

from neuroplex import LayerRecord, hookimpl

#: the neuroplex hook API this plugin is built for (the kernel refuses another major version)
NEUROPLEX_HOOK_API_VERSION = 1

_ACT = "neuroplex_layers.activations"
_BUILD = "neuroplex_layers.builder"
_LAYERS = "neuroplex_layers.layers"

_ACTIVATIONS: list[tuple[str, str, dict[str, object], tuple[str, ...]]] = [
    ("relu", "max(0, x)", {}, ()),
    ("leaky_relu", "max(0, x) + negative_slope * min(0, x)", {"negative_slope": 0.1}, ()),
    ("elu", "x if x > 0 else alpha * (exp(x) - 1)", {}, ()),
    ("gelu", "x * Phi(x) (Gaussian error linear unit)", {}, ()),
    ("silu", "x * sigmoid(x)", {}, ("swish",)),
    ("mish", "x * tanh(softplus(x))", {}, ()),
    ("tanh", "hyperbolic tangent", {}, ()),
    ("sigmoid", "1 / (1 + exp(-x))", {}, ()),
    ("softplus", "log(1 + exp(beta * x)) / beta", {}, ()),
    ("softmax", "softmax over dim (default the last)", {}, ()),
    ("identity", "x (no activation)", {}, ()),
]


@hookimpl
def neuroplex_register_layers() -> Iterator[LayerRecord]:
    for name, summary, example, aliases in _ACTIVATIONS:
        yield LayerRecord(
            name=name,
            factory=f"{_ACT}:{name}",
            summary=f"activation: {summary}",
            capabilities={"activation"},
            example_config=example,
            example_input=(4, 6),
            aliases=aliases,
        )
    yield LayerRecord(
        name="linear",
        factory=f"{_LAYERS}:Layer",
        summary="the seed's Layer: Linear -> [batch/layer norm] -> activation -> dropout",
        capabilities={"dense"},
        example_config={"in_features": 6, "out_features": 3, "dropout": 0.2, "norm": "layer"},
        example_input=(4, 6),
        aliases=("dense", "layer"),
    )
    yield LayerRecord(
        name="conv1d",
        factory=f"{_BUILD}:conv1d",
        summary="Conv1d -> [batch norm] -> activation -> [max pool] -> [dropout]",
        capabilities={"convolution"},
        example_config={"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
        example_input=(4, 2, 10),
    )
    yield LayerRecord(
        name="conv2d",
        factory=f"{_BUILD}:conv2d",
        summary="Conv2d -> [batch norm] -> activation -> [max pool] -> [dropout]",
        capabilities={"convolution"},
        example_config={
            "in_channels": 1,
            "out_channels": 4,
            "kernel_size": 3,
            "padding": 1,
            "norm": "batch",
            "pool": 2,
        },
        example_input=(4, 1, 8, 8),
    )
    yield LayerRecord(
        name="pool",
        factory=f"{_BUILD}:pool",
        summary="pooling: max, avg, adaptive_avg, adaptive_max (1d or 2d)",
        capabilities={"pooling"},
        example_config={"mode": "max", "kernel_size": 2},
        example_input=(4, 3, 8, 8),
        aliases=("pooling",),
    )
    yield LayerRecord(
        name="batchnorm",
        factory=f"{_BUILD}:batchnorm",
        summary="batch normalization over channels (1d or 2d)",
        capabilities={"normalization"},
        example_config={"num_features": 5},
        example_input=(4, 5),
        aliases=("batch_norm",),
    )
    yield LayerRecord(
        name="layernorm",
        factory=f"{_BUILD}:layernorm",
        summary="layer normalization over the last dimension",
        capabilities={"normalization"},
        example_config={"normalized_shape": 5},
        example_input=(4, 5),
        aliases=("layer_norm",),
    )
    yield LayerRecord(
        name="dropout",
        factory=f"{_BUILD}:dropout",
        summary="dropout with probability p",
        example_config={"p": 0.3},
        example_input=(4, 5),
    )
    yield LayerRecord(
        name="flatten",
        factory=f"{_BUILD}:flatten",
        summary="(N, *) -> (N, prod(*))",
        example_input=(4, 2, 3),
    )
    yield LayerRecord(
        name="embedding",
        factory=f"{_BUILD}:embedding",
        summary="token embedding: int64 (N, S) -> (N, S, embedding_dim)",
        example_config={"num_embeddings": 12, "embedding_dim": 4},
        example_input=(3, 5),
        example_input_dtype="int64",
    )
    yield LayerRecord(
        name="attention",
        factory=f"{_LAYERS}:SelfAttention",
        summary="multi-head self-attention on batch-first tokens (N, S, E)",
        capabilities={"attention"},
        example_config={"embed_dim": 8, "num_heads": 2},
        example_input=(3, 5, 8),
        aliases=("multihead_attention", "mha"),
    )
    yield LayerRecord(
        name="transformer_block",
        factory=f"{_LAYERS}:TransformerBlock",
        summary="pre-norm transformer encoder block: attention and feed-forward, residual",
        capabilities={"attention"},
        example_config={"d_model": 8, "nhead": 2, "dim_feedforward": 16, "dropout": 0.1},
        example_input=(3, 5, 8),
        aliases=("encoder_block",),
    )
    yield LayerRecord(
        name="residual",
        factory=f"{_BUILD}:residual",
        summary="x + body(x), the body built from a list of layer dicts",
        example_config={
            "layers": [{"out_features": 6, "activation": "relu"}, {"type": "layernorm"}],
            "input_shape": [6],
        },
        example_input=(4, 6),
    )
