"""The default training step: supervised classification or regression.

Integer targets → cross-entropy over the model's logits ``(N, C)`` plus ``accuracy``;
floating targets → mean squared error. A model family that needs something else supplies its
own :class:`~neuroplex.steps.TrainingStep` (``ModelRecord.training_step``, or a model method
``neuroplex_training_step()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from neuroplex.errors import DataError
from neuroplex.protocols import HasTrainingStep
from neuroplex.steps import Optimize

__all__ = ["SupervisedStep", "resolve_step"]


class SupervisedStep:
    """``model(x) -> logits`` (classification) or ``model(x) -> predictions`` (regression).

    Batches are ``(x, y)``: ``x`` of the model's input shape ``(N, ...)``, ``y`` either class
    indices ``(N,)`` (int64) or targets of the prediction's shape (float). Returns detached
    ``loss`` (mean over the batch) and, for classification, ``accuracy``.

    It reaches the model only by calling it (``forward_wrappable``), so under ``ddp`` the
    Trainer hands it the model wrapped in DistributedDataParallel.
    """

    forward_wrappable = True

    def param_groups(self, model: torch.nn.Module) -> Mapping[str, Iterable[torch.nn.Parameter]]:
        return {"model": [p for p in model.parameters() if p.requires_grad]}

    def _loss(
        self, out: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not y.is_floating_point():
            if out.ndim != 2:
                raise DataError(
                    f"integer targets mean classification, which needs logits of shape (N, C); "
                    f"the model returned {tuple(out.shape)}"
                )
            loss = F.cross_entropy(out, y)
            accuracy = (out.argmax(1) == y).float().mean()  # argmax carries no graph
            return loss, {"loss": loss.detach(), "accuracy": accuracy}
        if out.shape != y.shape and out.numel() == y.numel():
            y = y.reshape(out.shape)
        loss = F.mse_loss(out, y.to(out.dtype))
        return loss, {"loss": loss.detach()}

    @staticmethod
    def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if type(batch) is tuple and len(batch) >= 2:  # the common case first (no ABC check)
            return batch[0], batch[1]
        if isinstance(batch, Mapping):
            return batch["x"], batch["y"]
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise DataError(
                "the supervised step needs (x, y) batches; for unlabelled data use a model "
                "family with its own training step (e.g. an autoencoder)"
            )
        return batch[0], batch[1]

    def train_step(
        self, model: torch.nn.Module, batch: Any, optimize: Optimize
    ) -> Mapping[str, torch.Tensor]:
        x, y = self._split(batch)
        loss, metrics = self._loss(model(x), y)
        optimize("model", loss)
        return metrics

    def eval_step(self, model: torch.nn.Module, batch: Any) -> Mapping[str, torch.Tensor]:
        x, y = self._split(batch)
        return self._loss(model(x), y)[1]


def resolve_step(model: torch.nn.Module, step: Any = None) -> Any:
    """The step to train ``model`` with: ``step``, else ``model.neuroplex_training_step()``,
    else :class:`SupervisedStep`."""
    if step is not None:
        return step
    if isinstance(model, HasTrainingStep):
        return model.neuroplex_training_step()
    return SupervisedStep()
