"""mlp and cnn: construction paths, the digits spec, errors, evaluate, torch.export."""

from __future__ import annotations

import pytest
import torch
from neuroplex_models import BaseNeuralNetwork, CNNModel

from neuroplex import ConfigError, ModelConfig, create_model

DIGITS_CNN = {
    "input_channels": 1,
    "input_size": [8, 8],
    "conv_layers": [
        {"out_channels": 32, "kernel_size": 3, "padding": 1},
        {"out_channels": 64, "kernel_size": 3, "padding": 1, "pool": 2},
    ],
    "num_classes": 10,
    "dropout": 0.1,
}


def test_digits_cnn_spec_takes_flat_inputs() -> None:
    model = create_model(ModelConfig(name="cnn", hyperparameters=DIGITS_CNN))
    assert isinstance(model, CNNModel)
    x = torch.rand(5, 64)
    out = model(x)
    assert out.shape == (5, 10)
    torch.testing.assert_close(model.eval()(x), model(x.reshape(5, 1, 8, 8)))


def test_cnn_global_pool_without_input_size() -> None:
    model = CNNModel(ModelConfig(name="cnn", hyperparameters={"input_channels": 3}))
    assert model(torch.rand(2, 3, 20, 17)).shape == (2, 10)
    with pytest.raises(ConfigError, match="input_size"):
        CNNModel(input_channels=1, global_pool=None)


def test_cnn_1d_signals() -> None:
    hp = {
        "input_channels": 2,
        "input_size": [20],
        "conv_layers": [{"out_channels": 4, "kernel_size": 3, "pool": 2, "norm": "batch"}],
        "num_classes": 3,
    }
    model = create_model("cnn", **hp).eval()
    assert model.dims == 1 and isinstance(model.features[0].conv, torch.nn.Conv1d)
    x = torch.rand(5, 2, 20)
    assert model(x).shape == (5, 3)
    torch.testing.assert_close(model(x.flatten(1)), model(x))
    assert model.to_config().hyperparameters["dims"] == 1
    pooled = CNNModel(input_channels=2, dims=1, global_pool="max")
    assert pooled(torch.rand(2, 2, 37)).shape == (2, 10)
    from neuroplex import DataError

    with pytest.raises(DataError, match=r"\(N, C, L\) or flat"):
        model(torch.rand(2, 2, 4, 5))


def test_mlp_by_keywords_and_registry_agree() -> None:
    hp = {"input_size": 6, "output_size": 2, "hidden_layers": [{"out_features": 5}]}
    torch.manual_seed(0)
    a = BaseNeuralNetwork(**hp)
    torch.manual_seed(0)
    b = create_model("mlp", **hp)
    x = torch.rand(3, 6)
    torch.testing.assert_close(a(x), b(x))
    assert a.to_config() == b.to_config()


@pytest.mark.parametrize(
    ("family", "hp", "match"),
    [
        ("cnn", {"num_clases": 3}, r"cnn\.num_clases.*did you mean 'num_classes'"),
        ("cnn", {"num_classes": -1}, r"cnn\.num_classes.*positive"),
        (
            "cnn",
            {"input_size": [2, 2], "conv_layers": [{"out_channels": 2, "kernel_size": 5}]},
            r"cnn\.conv_layers\[0\].*cannot connect",
        ),
        (
            "cnn",
            {"conv_layers": [{"out_channels": 2, "size": 3}]},
            r"cnn\.conv_layers\[0\]\.size.*valid keys",
        ),
        ("cnn", {"global_pool": "mean"}, r"cnn\.global_pool.*'avg', 'max'"),
        ("cnn", {"dims": 3}, r"cnn\.dims.*1, 2 or None"),
        ("cnn", {"dims": 1, "input_size": [8, 8]}, r"cnn\.input_size.*\[L\].*dims=1"),
        ("cnn", {"dropout": 1.0}, r"cnn\.dropout.*\[0, 1\)"),
        (
            "mlp",
            {"hidden_layers": [{"out_features": 4}, {"out_features": -3}]},
            r"mlp\.hidden_layers\[1\]\.out_features.*positive",
        ),
        ("mlp", {"output_activation": "relux"}, r"mlp\.output_activation.*installed"),
    ],
)
def test_bad_hyperparameters(family: str, hp: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model(family, **hp)


def test_evaluate_classification_and_regression() -> None:
    torch.manual_seed(0)
    model = BaseNeuralNetwork(input_size=4, output_size=3, hidden_layers=[{"out_features": 8}])
    x, y = torch.rand(10, 4), torch.randint(0, 3, (10,))
    metrics = model.evaluate(x, y)
    expected = (model(x).argmax(1) == y).float().mean().item()
    assert metrics["accuracy"] == pytest.approx(expected)
    assert metrics.to_dict()["n"] == 10 and metrics.task == "classification"
    assert dict(metrics) == {"loss": metrics["loss"], "accuracy": metrics["accuracy"]}
    assert "loss" in metrics and metrics.get("mae") is None
    reg = BaseNeuralNetwork(input_size=4, output_size=1, hidden_layers=[])
    r = reg.evaluate(x, torch.zeros(10))
    assert r["loss"] == pytest.approx(reg(x).pow(2).mean().item(), rel=1e-5)
    with pytest.raises(KeyError, match="accuracy"):
        r["accuracy"]


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_torch_export_dynamic_batch(family: str) -> None:
    from neuroplex import get_record

    record = get_record("model", family)
    model = create_model(family, **record.example_config).eval()
    x = torch.rand(*record.example_input)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    x2 = torch.rand(7, *record.example_input[1:])
    torch.testing.assert_close(program.module()(x2), model(x2))
