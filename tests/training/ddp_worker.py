"""Run under torchrun by test_distributed.py: train a tiny MLP and save rank 0's weights.

usage: ddp_worker.py OUT.pt STRATEGY BATCH_SIZE [ACCUMULATE [explicit | static]]

STRATEGY: single, ddp or fsdp (each Linear layer a unit of its own, then the root).

``static``: ``ddp_static_graph = True``. ``explicit``: a supervised step that does not let
the Trainer wrap the model, so ddp averages the gradients itself at each optimizer step
instead of through DistributedDataParallel.
"""

from __future__ import annotations

import sys

import torch

from neuroplex import TrainingConfig
from neuroplex.training import SupervisedStep, Trainer


class ExplicitStep(SupervisedStep):
    forward_wrappable = False


class SeenModel:
    """Records the type of the module the step is handed (the wrapper is gone after train)."""

    wrapped = ""
    static_graph = False

    def on_train_start(self, trainer: Trainer) -> None:
        self.wrapped = type(trainer.train_model).__name__
        self.static_graph = bool(getattr(trainer.train_model, "static_graph", False))


def main() -> None:
    out, strategy, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    accumulate = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    step = ExplicitStep() if sys.argv[5:] == ["explicit"] else None
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
        accumulate_grad_batches=accumulate,
        ddp_static_graph=sys.argv[5:] == ["static"],
        progress=False,
    )
    seen = SeenModel()
    sharding = (lambda m: [m[0], m[2]]) if strategy == "fsdp" else None
    trainer = Trainer(model, config, step=step, callbacks=[seen], sharding=sharding)
    history = trainer.train((x, y), (x[:16], y[:16]))
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(
            {
                "model": model.state_dict(),
                "val_loss": history["val_loss"],
                "wrapped": seen.wrapped,
                "static_graph": seen.static_graph,
            },
            out,
        )


if __name__ == "__main__":
    main()
