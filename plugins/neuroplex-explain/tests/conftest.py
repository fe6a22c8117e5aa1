"""A small classifier of scikit-learn's 8×8 digits (inputs scaled to [0, 1]), trained once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for i in range(0, len(x), 100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 100]), y[i : i + 100]).backward()
            opt.step()
    model.eval()


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): 1500 / 297 samples, x float32 (N, 64) in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    return x[:1500], y[:1500], x[1500:], y[1500:]


@pytest.fixture(scope="session")
def digits_mlp(digits: tuple[torch.Tensor, ...]) -> torch.nn.Module:
    """MLP 64 → 32 → ReLU → 10 trained for 20 epochs (test accuracy ≈ 0.9)."""
    x, y, _, _ = digits
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
        _train(model, x, y, epochs=20)
    return model


@pytest.fixture(scope="session")
def digits_cnn(digits: tuple[torch.Tensor, ...]) -> torch.nn.Module:
    """Tiny CNN on (N, 1, 8, 8) digits, trained for 5 epochs."""
    x, y, _, _ = digits
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.ReLU(inplace=True),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(8 * 4 * 4, 10),
        )
        _train(model, x.view(-1, 1, 8, 8), y, epochs=5)
    return model


ONNX_MISSING = (
    "needs the kernel's ONNX bridge neuroplex.onnx (export_onnx, load_onnx, OnnxModule), "
    "which cannot be imported"
)


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    onnx = pytest.importorskip("neuroplex.onnx", reason=ONNX_MISSING)
    onnx.export_onnx(model, example, path, metadata={"input_range": (0.0, 1.0)}, progress=False)
    return path


@pytest.fixture(scope="session")
def digits_onnx(
    tmp_path_factory: pytest.TempPathFactory, digits: tuple[torch.Tensor, ...], digits_mlp
) -> Path:
    """``digits_mlp`` exported with its gradient (VJP) graph; input_range (0, 1) in metadata."""
    path = tmp_path_factory.mktemp("onnx") / "digits_mlp.onnx"
    return _export(digits_mlp, digits[2][:4], path)
