"""to_config()/from_config() round trip, property-tested: same parameter names, shapes and
outputs under a seed, for every family."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neuroplex_models import (
    AutoencoderModel,
    BaseNeuralNetwork,
    CNNModel,
    GANModel,
    ModelConfig,
    NeuroplexModel,
    TransformerModel,
)

from neuroplex import create_model

sizes = st.integers(min_value=1, max_value=12)
acts = st.sampled_from(["relu", "tanh", "gelu", "swish", None])
dense = st.fixed_dictionaries(
    {"out_features": sizes},
    optional={
        "activation": acts,
        "dropout": st.sampled_from([0.0, 0.3]),
        "norm": st.sampled_from(["layer", None]),
    },
)

mlp_hp = st.fixed_dictionaries(
    {"input_size": sizes, "output_size": sizes, "hidden_layers": st.lists(dense, max_size=3)}
)
cnn_hp = st.fixed_dictionaries(
    {
        "input_channels": st.integers(1, 3),
        "input_size": st.sampled_from([[6, 6], [8, 5], [9]]),  # 2-D and 1-D
        "conv_layers": st.lists(
            st.fixed_dictionaries(
                {"out_channels": st.integers(1, 6), "kernel_size": st.sampled_from([1, 3])},
                optional={"padding": st.just(1), "norm": st.sampled_from(["batch", None])},
            ),
            min_size=1,
            max_size=2,
        ),
        "global_pool": st.sampled_from(["auto", "avg", "max", None]),
        "hidden": st.lists(sizes, max_size=2),
        "num_classes": st.integers(2, 5),
    }
)
transformer_hp = st.fixed_dictionaries(
    {
        "input_dim": st.integers(1, 5),
        "seq_len": st.integers(1, 6),
        "d_model": st.sampled_from([4, 8]),
        "nhead": st.sampled_from([1, 2, 4]),
        "num_layers": st.integers(1, 2),
        "num_classes": st.integers(1, 4),
        "head": st.sampled_from(["classification", "sequence"]),
        "positional": st.sampled_from(["learned", "sinusoidal"]),
    }
)
gan_hp = st.fixed_dictionaries(
    {
        "latent_dim": sizes,
        "data_dim": sizes,
        "generator_layers": st.lists(sizes, max_size=2),
        "discriminator_layers": st.lists(sizes, max_size=2),
        "num_classes": st.sampled_from([None, 3]),
    }
)
ae_hp = st.fixed_dictionaries(
    {
        "input_dim": sizes,
        "encoder_layers": st.lists(sizes, max_size=2),
        "latent_dim": sizes,
        "variational": st.booleans(),
    }
)


def _input(model: NeuroplexModel) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    hp = model.hyperparameters
    shape = {
        "mlp": lambda: (3, hp["input_size"]),
        "cnn": lambda: (3, hp["input_channels"], *hp["input_size"]),
        "transformer": lambda: (3, hp["seq_len"], hp["input_dim"]),
        "gan": lambda: (3, hp["data_dim"]),
        "autoencoder": lambda: (3, hp["input_dim"]),
    }[model.family]()
    return torch.rand(shape, generator=gen)


def _check_round_trip(cls: type[NeuroplexModel], hp: dict[str, Any], seed: int) -> None:
    torch.manual_seed(seed)
    a = cls(ModelConfig(name=cls.family, hyperparameters=hp)).eval()
    config = a.to_config()
    assert isinstance(config, ModelConfig) and config.name == cls.family
    torch.manual_seed(seed)
    b = cls.from_config(config).eval()
    torch.manual_seed(seed)
    c = create_model(config).eval()
    shapes = {n: tuple(p.shape) for n, p in a.state_dict().items()}
    for other in (b, c):
        assert {n: tuple(p.shape) for n, p in other.state_dict().items()} == shapes
        assert other.to_config() == config
    x = _input(a)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
        torch.testing.assert_close(c(x), a(x), rtol=0, atol=0)


_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(hp=mlp_hp, seed=st.integers(0, 2**16))
def test_mlp_round_trip(hp: dict[str, Any], seed: int) -> None:
    _check_round_trip(BaseNeuralNetwork, hp, seed)


@_SETTINGS
@given(hp=cnn_hp, seed=st.integers(0, 2**16))
def test_cnn_round_trip(hp: dict[str, Any], seed: int) -> None:
    _check_round_trip(CNNModel, hp, seed)


@_SETTINGS
@given(hp=transformer_hp, seed=st.integers(0, 2**16))
def test_transformer_round_trip(hp: dict[str, Any], seed: int) -> None:
    if hp["d_model"] % hp["nhead"]:
        hp["nhead"] = 1
    _check_round_trip(TransformerModel, hp, seed)


@_SETTINGS
@given(hp=gan_hp, seed=st.integers(0, 2**16))
def test_gan_round_trip(hp: dict[str, Any], seed: int) -> None:
    _check_round_trip(GANModel, hp, seed)


@_SETTINGS
@given(hp=ae_hp, seed=st.integers(0, 2**16))
def test_autoencoder_round_trip(hp: dict[str, Any], seed: int) -> None:
    _check_round_trip(AutoencoderModel, hp, seed)
