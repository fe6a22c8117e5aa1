"""Run under torchrun by test_distributed.py: train a tiny MLP and save rank 0's weights.

usage: ddp_worker.py OUT.pt STRATEGY BATCH_SIZE
"""

from __future__ import annotations

import sys

import torch

from neuroplex import TrainingConfig
from neuroplex.training import Trainer


def main() -> None:
    out, strategy, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen)
    y = x[:, :3].argmax(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    config = TrainingConfig(
        epochs=3,
        batch_size=batch_size,
        learning_rate=0.1,
        optimizer="sgd",
        optimizer_params={"momentum": 0.9},
        strategy=strategy,
        seed=5,
        progress=False,
    )
    history = Trainer(model, config).train((x, y), (x[:16], y[:16]))
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"model": model.state_dict(), "val_loss": history["val_loss"]}, out)


if __name__ == "__main__":
    main()
