"""Training steps of the families the kernel's supervised default does not fit
(:class:`neuroplex.steps.TrainingStep`; the records name them in ``training_step``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from neuroplex.errors import DataError
from neuroplex.steps import Optimize
from neuroplex_models.autoencoder import AutoencoderModel, reconstruction_losses
from neuroplex_models.gan import (
    GANModel,
    Verdicts,
    discriminator_loss,
    gan_losses,
    generator_loss,
)

__all__ = ["AutoencoderStep", "GANStep"]


def _unpack(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        return batch["x"], batch.get("y")
    if isinstance(batch, tuple | list) and batch:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise DataError(f"expected a batch (x, y) or x, got {type(batch).__name__}")


def _expect(model: nn.Module, cls: type[Any]) -> Any:
    if not isinstance(model, cls):
        raise DataError(f"{cls.__name__} step got a {type(model).__name__}")
    return model


class GANStep:
    """Alternating non-saturating GAN updates: the discriminator on real vs generated, then
    the generator (discriminator frozen) to fool it. Labels are used only by a conditional
    GAN. Metrics: ``loss`` (d + g), ``d_loss``, ``g_loss``, discriminator accuracies.

    Under ``ddp`` (:class:`neuroplex.protocols.SubnetworkStep`) the generator and a
    :class:`~neuroplex_models.gan.Verdicts` of the discriminator are each wrapped in
    DistributedDataParallel: one generator forward per generator backward, and one call
    judging the real and the generated batch per discriminator backward. The generator's
    loss goes through the bare discriminator with its parameters frozen, so it leaves no
    gradient its wrapper would wait for. One process computes exactly what it always did."""

    def __init__(self) -> None:
        self._wrapped: dict[str, nn.Module] = {}

    def subnetworks(self, model: nn.Module) -> Mapping[str, nn.Module]:
        gan: GANModel = _expect(model, GANModel)
        return {"discriminator": Verdicts(gan.discriminator), "generator": gan.generator}

    def bind(self, wrapped: Mapping[str, nn.Module]) -> None:
        self._wrapped = dict(wrapped)

    def param_groups(self, model: nn.Module) -> Mapping[str, Iterable[nn.Parameter]]:
        gan: GANModel = _expect(model, GANModel)
        return {
            "discriminator": list(gan.discriminator.parameters()),
            "generator": list(gan.generator.parameters()),
        }

    def _inputs(self, gan: GANModel, batch: Any) -> tuple[Tensor, Tensor | None, Tensor]:
        x, y = _unpack(batch)
        labels = y if gan.num_classes else None
        z = torch.randn(x.shape[0], gan.latent_dim, device=x.device, dtype=x.dtype)
        return x.flatten(1), labels, z

    def train_step(self, model: nn.Module, batch: Any, optimize: Optimize) -> Mapping[str, Tensor]:
        gan: GANModel = _expect(model, GANModel)
        x, labels, z = self._inputs(gan, batch)
        fake = self._wrapped.get("generator", gan.generator)(z, labels)
        verdicts = self._wrapped.get("discriminator")
        d_loss, metrics = discriminator_loss(gan, x, fake, labels, verdicts=verdicts)
        optimize("discriminator", d_loss)
        # a frozen discriminator: the generator's loss leaves no gradient on it
        d_params = [p for p in gan.discriminator.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            g_loss = generator_loss(gan, fake, labels)
            optimize("generator", g_loss)
        finally:
            for p in d_params:
                p.requires_grad_(True)
        metrics["g_loss"] = g_loss.detach()
        metrics["loss"] = (d_loss + g_loss).detach()
        return metrics

    def eval_step(self, model: nn.Module, batch: Any) -> Mapping[str, Tensor]:
        gan: GANModel = _expect(model, GANModel)
        x, labels, _ = self._inputs(gan, batch)
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(x.shape[0], gan.latent_dim, generator=gen).to(x)
        return gan_losses(gan, x, labels, z)[2]


class AutoencoderStep:
    """Reconstruction training (labels ignored): MSE, plus ``beta`` * KL for a VAE."""

    def param_groups(self, model: nn.Module) -> Mapping[str, Iterable[nn.Parameter]]:
        return {"model": [p for p in model.parameters() if p.requires_grad]}

    def train_step(self, model: nn.Module, batch: Any, optimize: Optimize) -> Mapping[str, Tensor]:
        ae: AutoencoderModel = _expect(model, AutoencoderModel)
        x, _ = _unpack(batch)
        loss, metrics = reconstruction_losses(ae, x)
        optimize("model", loss)
        return metrics

    def eval_step(self, model: nn.Module, batch: Any) -> Mapping[str, Tensor]:
        ae: AutoencoderModel = _expect(model, AutoencoderModel)
        x, _ = _unpack(batch)
        return reconstruction_losses(ae, x)[1]
