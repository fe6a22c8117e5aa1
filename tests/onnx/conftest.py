"""Small inline models of each family (MLP, CNN, transformer, GAN, autoencoder) for the bridge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn


class MLP(nn.Module):
    """(N, 6) -> (N, 3) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 16), nn.Tanh()
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))

    def to_config(self) -> dict[str, Any]:
        return {"name": "mlp", "hyperparameters": {"input_dim": 6, "hidden": [16, 16]}}


class DigitsCNN(nn.Module):
    """(N, 1, 8, 8) -> (N, 10): conv/batchnorm/relu/pool/linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    """(N, 5, 8) sequences -> (N, 4) logits (TransformerEncoder + mean pooling)."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class TinyGAN(nn.Module):
    """generator (N, 4) -> (N, 1, 4, 4) in [-1, 1]; discriminator (N, 1, 4, 4) -> (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Sequential(
            nn.Linear(4, 16),
            nn.LeakyReLU(0.2),
            nn.Linear(16, 16),
            nn.Tanh(),
            nn.Unflatten(1, (1, 4, 4)),
        )
        self.discriminator = nn.Sequential(
            nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


class TinyAutoencoder(nn.Module):
    """encoder (N, 1, 8, 8) -> (N, 4, 4, 4); decoder back with a transposed convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


#: family -> (factory, example input shape, graphs, input range)
FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], tuple[str, ...], Any]] = {
    "mlp": (MLP, (4, 6), ("model",), None),
    "cnn": (DigitsCNN, (4, 1, 8, 8), ("model",), (0.0, 1.0)),
    "transformer": (TinyTransformer, (4, 5, 8), ("model",), None),
    "gan": (TinyGAN, (4, 4), ("generator", "discriminator"), None),
    "autoencoder": (TinyAutoencoder, (4, 1, 8, 8), ("encoder", "decoder", "model"), (0.0, 1.0)),
}


def build(family: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILIES[family][0]()


@pytest.fixture(scope="session")
def cnn_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Any]:
    """A random-init digits-sized CNN and its export (with gradient graph)."""
    from neuroplex.onnx import export_onnx

    model = build("cnn").eval()
    path = tmp_path_factory.mktemp("cnn") / "model.onnx"
    gen = torch.Generator().manual_seed(1)
    result = export_onnx(
        model,
        torch.rand(4, 1, 8, 8, generator=gen),
        path,
        metadata={"input_range": (0.0, 1.0), "class_names": [str(i) for i in range(10)]},
    )
    return model, result


@pytest.fixture(scope="session")
def families() -> dict[str, Any]:
    return FAMILIES


@pytest.fixture(scope="session")
def family_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """``family_export(name) -> (model, example, ExportResult)``, exported once per session."""
    from neuroplex.onnx import export_onnx

    cache: dict[str, Any] = {}

    def get(family: str) -> Any:
        if family not in cache:
            _, shape, graphs, rng = FAMILIES[family]
            model = build(family)
            gen = torch.Generator().manual_seed(2)
            example = torch.rand(shape, generator=gen) if rng else torch.randn(shape, generator=gen)
            path = tmp_path_factory.mktemp(family) / "model.onnx"
            meta = {"input_range": rng} if rng else {}
            cache[family] = (
                model,
                example,
                export_onnx(model, example, path, graphs=graphs, metadata=meta),
            )
        return cache[family]

    return get
