"""Train a tiny conditional GAN with its own step (each sub-network it updates wrapped in
DistributedDataParallel under ddp). test_distributed.py imports :func:`train` and runs it in
its own process and in two forked ranks; the same under torchrun:

usage: torchrun --nproc-per-node 2 gan_ddp_worker.py OUT.pt ddp 8   (rank 0 saves OUT.pt)
"""

from __future__ import annotations

import os
import sys

import torch
from neuroplex_models import GANModel
from neuroplex_models.steps import GANStep

from neuroplex import TrainingConfig
from neuroplex.training import Trainer

#: a fixed projection: each sample's noise is a function of the sample
PROJECTION = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))


class SampleNoiseStep(GANStep):
    """The GAN's step with ``z`` drawn from each sample instead of the global RNG, so that one
    process and two (each drawing from its own RNG) feed the same ``z`` to every sample."""

    def _inputs(self, gan, batch):  # type: ignore[no-untyped-def]
        x, y = batch
        return x, y, torch.tanh(x @ PROJECTION)


class SeenWrappers:
    """Records the type of the modules the step was handed (unbound again after train)."""

    def __init__(self) -> None:
        self.wrapped: dict[str, str] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        self.wrapped = {k: type(v).__name__ for k, v in trainer.step._wrapped.items()}


def train(strategy: str, batch_size: int) -> dict[str, object]:
    """Rank 0's (or the only process's) final weights and the wrappers its step was given."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 6, generator=gen)
    y = (x[:, 0] > 0.5).long()
    torch.manual_seed(0)
    model = GANModel(
        latent_dim=3, data_dim=6, num_classes=2, generator_layers=[8], discriminator_layers=[8]
    )
    config = TrainingConfig(
        epochs=2,
        batch_size=batch_size,
        learning_rate=0.05,
        optimizer="sgd",
        optimizer_params={"momentum": 0.9},
        strategy=strategy,
        seed=5,
        progress=False,
    )
    seen = SeenWrappers()
    trainer = Trainer(model, config, step=SampleNoiseStep(), callbacks=[seen])
    trainer.train((x, y))
    return {"model": model.state_dict(), "wrapped": seen.wrapped}


def main() -> None:
    out, strategy, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = train(strategy, batch_size)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(result, out)


if __name__ == "__main__":
    main()
