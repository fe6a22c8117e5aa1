"""Layer, activations, Neuron and the layer builder."""

from __future__ import annotations

import pytest
import torch
from neuroplex_layers import (
    ConvBlock,
    Layer,
    Neuron,
    Residual,
    activation_names,
    build_layers,
    build_sequential,
    get_activation,
)
from torch import nn

from neuroplex import ConfigError, DataError, create_layer, list_components, list_layers

ISSUE_ACTIVATIONS = [
    "relu", "leaky_relu", "elu", "gelu", "silu", "mish", "tanh", "sigmoid", "softplus",
    "softmax", "identity",
]  # fmt: skip


def test_every_activation_is_a_registered_component() -> None:
    registered = {r.name for r in list_components("layer") if "activation" in r.capabilities}
    assert set(ISSUE_ACTIVATIONS) <= registered
    x = torch.linspace(-3, 3, 12).reshape(2, 6)
    for name in ISSUE_ACTIVATIONS:
        module = create_layer(name)
        assert module(x).shape == x.shape, name
    torch.testing.assert_close(create_layer("swish")(x), torch.nn.functional.silu(x))
    torch.testing.assert_close(get_activation("Leaky-ReLU")(x), nn.LeakyReLU()(x))
    torch.testing.assert_close(get_activation("softmax")(x).sum(-1), torch.ones(2))


def test_unknown_activation_lists_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown activation 'rleu'.*did you mean 'relu'") as e:
        get_activation("rleu")
    for name in ISSUE_ACTIVATIONS:
        assert name in str(e.value)
    assert "swish" in activation_names()


def test_seed_layer_and_switches() -> None:
    layer = Layer(in_features=128, out_features=64, activation="relu", dropout=0.2)
    assert repr(layer) == "Layer(128 -> 64, activation=relu, dropout=0.2, norm=None, bias=True)"
    assert layer(torch.rand(4, 128)).shape == (4, 64)
    assert layer.eval()(torch.randn(4, 128)).min() >= 0
    no_bias = Layer(5, 3, norm="batch", bias=False)
    assert no_bias.linear.bias is None and isinstance(no_bias.norm, nn.BatchNorm1d)
    assert isinstance(Layer(5, 3, norm="layer").norm, nn.LayerNorm)
    with pytest.raises(ConfigError, match=r"norm must be one of \['batch', 'layer', None\]"):
        Layer(5, 3, norm="group")
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        Layer(5, 3, dropout=1.5)
    with pytest.raises(ConfigError, match="out_features must be a positive integer"):
        Layer(5, 0)


def test_neuron_view_and_statistics() -> None:
    torch.manual_seed(0)
    layer = Layer(3, 4, activation="relu", dropout=0.5)
    neuron = layer.neuron(2)
    assert isinstance(neuron, Neuron) and neuron.activation == "relu"
    assert neuron.weights.shape == (3,)
    torch.testing.assert_close(neuron.weights, layer.linear.weight[2])
    x = torch.randn(50, 3)
    expected = torch.relu(x @ layer.linear.weight[2] + layer.linear.bias[2])
    torch.testing.assert_close(neuron.activations(x), expected)
    stats = neuron.statistics(x)
    assert stats.mean == pytest.approx(float(expected.detach().mean()), rel=1e-5)
    assert stats.fraction_active == pytest.approx(float((expected > 0).float().mean()))
    assert stats.to_dict()["count"] == 50
    assert layer.training, "statistics must not leave the layer in eval mode"
    with pytest.raises(ConfigError, match=r"out of range.*0\.\.3"):
        layer.neuron(4)
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        neuron.activations(torch.rand(2, 5))


def test_builder_infers_sizes_across_kinds() -> None:
    specs = [
        {"out_channels": 4, "kernel_size": 3, "padding": 1, "norm": "batch"},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 6, "kernel_size": 3},
        {"type": "pooling", "mode": "adaptive_avg", "output_size": 1},
        {"type": "flatten"},
        {"type": "dense", "out_features": 8, "norm": "layer"},
        {"type": "residual", "layers": [{"out_features": 8}, {"type": "dropout", "p": 0.1}]},
        {"out_features": 3, "activation": None, "dropout": 0.0},
    ]
    model, shape = build_layers(specs, (1, 10, 10))
    assert shape == (3,)
    assert isinstance(model[0], ConvBlock) and model[0].conv.in_channels == 1
    assert model[2].conv.in_channels == 4
    assert model[5].in_features == 6 and isinstance(model[6], Residual)
    assert model(torch.rand(2, 1, 10, 10)).shape == (2, 3)


def test_builder_sequences_and_tokens() -> None:
    seq = build_sequential(
        [
            {"type": "embedding", "num_embeddings": 20, "embedding_dim": 8},
            {"type": "mha", "num_heads": 2},
            {"type": "transformer", "nhead": 4, "dim_feedforward": 16},
            {"type": "layernorm"},
        ],
        (5,),
    )
    tokens = torch.randint(0, 20, (3, 5))
    assert seq(tokens).shape == (3, 5, 8)
    conv1 = build_sequential([{"out_channels": 3, "kernel_size": 3}, {"type": "batchnorm"}], (2, 9))
    assert conv1(torch.rand(4, 2, 9)).shape == (4, 3, 7)


def test_layer_manager_adds_one_at_a_time() -> None:
    from neuroplex_layers import LayerManager

    manager = LayerManager((2, 6, 6), path="net")
    manager.add({"out_channels": 3, "kernel_size": 3}).add({"type": "flatten"})
    assert manager.output_shape == (48,) and len(manager) == 2
    with pytest.raises(ConfigError, match=r"net\[2\]\.out_features"):
        manager.add({"out_features": 0})
    manager.add({"out_features": 5}, dropout=0.0)
    assert manager.build()(torch.rand(3, 2, 6, 6)).shape == (3, 5)


def test_builder_defaults_fill_missing_keys() -> None:
    seq = build_sequential([{"out_features": 4}], 3, defaults={"dropout": 0.0, "bogus": 1})
    assert seq[0].dropout_p == 0.0


@pytest.mark.parametrize(
    ("specs", "shape", "match"),
    [
        ([{"out_features": 4}, {"out_features": -1}], (3,), r"layers\[1\]\.out_features.*positive"),
        (
            [{"out_features": 4, "actvation": "relu"}],
            (3,),
            r"layers\[0\]\.actvation: unknown key.*did you mean 'activation'",
        ),
        ([{"type": "conv3d"}], (3,), r"layers\[0\]\.type: unknown layer type 'conv3d'"),
        ([{"type": "conv2d", "out_channels": 2}], (3,), r"layers\[0\]\.type.*\(C, H, W\)"),
        (
            [{"out_features": 4, "in_features": 7}],
            (3,),
            r"layers\[0\]\.in_features: shapes cannot connect.*gives 3",
        ),
        ([{"out_channels": 2, "kernel_size": 5}], (1, 3, 3), r"layers\[0\]: shapes cannot connect"),
        ([{"type": "residual", "layers": [{"out_features": 2}]}], (3,), "must keep the shape"),
        ([{"type": "attention", "num_heads": 3}], (4, 8), r"num_heads.*\[1, 2, 4, 8\]"),
        ([{"kernel_size": 3}], (3,), r"layers\[0\]\.type: cannot tell the layer kind"),
        ({"out_features": 3}, (3,), "must be a list of layer dicts"),
    ],
)
def test_builder_errors_name_index_and_key(
    specs: object, shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build_layers(specs, shape)  # type: ignore[arg-type]


def test_layer_kinds_are_registered() -> None:
    names = set(list_layers())
    kinds = {"linear", "conv1d", "conv2d", "pool", "batchnorm", "layernorm", "dropout",
             "flatten", "embedding", "attention", "transformer_block", "residual"}  # fmt: skip
    assert kinds <= names
    assert isinstance(create_layer("dense", in_features=3, out_features=2), Layer)
    assert isinstance(create_layer("mha", embed_dim=4, num_heads=2), nn.Module)


@pytest.mark.parametrize("dist", ["layers", "models"])
def test_plugin_entry_modules_do_not_import_torch(dist: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, neuroplex_{dist}.plugin as p; list(p.neuroplex_register_{dist}()); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
