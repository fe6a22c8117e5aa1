"""``gan``: a (optionally class-conditional) generative adversarial network of dense stacks."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from neuroplex_layers import get_activation
from torch import Tensor, nn

from neuroplex.errors import ConfigError, DataError
from neuroplex.torchutils import eval_mode
from neuroplex_models._stacks import dense_stack, positive_int
from neuroplex_models.base import ModelMetrics, NeuroplexModel, strip_path

__all__ = [
    "Discriminator",
    "GANModel",
    "Generator",
    "Verdicts",
    "discriminator_loss",
    "gan_losses",
    "generator_loss",
    "image_samples",
]


def _condition(labels: Tensor | None, num_classes: int | None, like: Tensor) -> Tensor | None:
    """One-hot labels ``(N, K)`` in ``like``'s dtype and device; all zeros ("unknown class")
    when labels are not given."""
    if num_classes is None:
        return None
    if labels is None:
        return like.new_zeros((like.shape[0], num_classes))
    return F.one_hot(labels.long(), num_classes).to(like)


class Generator(nn.Module):
    """Latent ``z (N, latent_dim)`` [+ labels ``(N,)``] -> samples ``(N, data_dim)``."""

    def __init__(
        self, latent_dim: int, data_dim: int, body: nn.Sequential, width: int, output: nn.Module
    ) -> None:
        super().__init__()
        self.latent_dim, self.data_dim = latent_dim, data_dim
        self.num_classes: int | None = None
        self.body = body
        self.out = nn.Linear(width, data_dim)
        self.output_activation = output

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        cond = _condition(labels, self.num_classes, z)
        h = z if cond is None else torch.cat([z, cond], dim=1)
        out: Tensor = self.output_activation(self.out(self.body(h)))
        return out


class Discriminator(nn.Module):
    """Samples ``(N, data_dim)`` (or ``(N, *)`` flattening to it) [+ labels] -> logits
    ``(N, 1)`` (> 0: judged real)."""

    def __init__(self, body: nn.Sequential, width: int) -> None:
        super().__init__()
        self.num_classes: int | None = None
        self.body = body
        self.out = nn.Linear(width, 1)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        x = x.flatten(1)
        cond = _condition(labels, self.num_classes, x)
        h = x if cond is None else torch.cat([x, cond], dim=1)
        out: Tensor = self.out(self.body(h))
        return out


class Verdicts(nn.Module):
    """The discriminator on several batches ``(x, labels)`` in one call: one forward per
    backward, as DistributedDataParallel needs, computing exactly what separate calls do."""

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, *batches: tuple[Tensor, Tensor | None]) -> tuple[Tensor, ...]:
        return tuple(self.discriminator(x, labels) for x, labels in batches)


def discriminator_loss(
    model: GANModel,
    x: Tensor,
    fake: Tensor,
    labels: Tensor | None,
    *,
    verdicts: nn.Module | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """BCE of the discriminator: real ``x`` -> 1, generated ``fake`` (detached) -> 0.
    ``verdicts``: a :class:`Verdicts` of ``model.discriminator`` (e.g. wrapped in
    DistributedDataParallel) that judges both batches in one call."""
    if verdicts is None:
        real_logits = model.discriminator(x, labels)
        fake_logits = model.discriminator(fake.detach(), labels)
    else:
        real_logits, fake_logits = verdicts((x, labels), (fake.detach(), labels))
    d_loss = F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    metrics = {
        "d_loss": d_loss.detach(),
        "d_real_accuracy": (real_logits > 0).float().mean().detach(),
        "d_fake_accuracy": (fake_logits < 0).float().mean().detach(),
    }
    return d_loss, metrics


def generator_loss(model: GANModel, fake: Tensor, labels: Tensor | None) -> Tensor:
    """Non-saturating generator loss: BCE of the discriminator's verdict on ``fake`` vs 1."""
    logits = model.discriminator(fake, labels)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def gan_losses(
    model: GANModel, x: Tensor, labels: Tensor | None, z: Tensor
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """``(d_loss, g_loss, metrics)`` for real ``x`` and noise ``z`` (evaluation; training
    steps the discriminator before computing the generator's loss, see ``GANStep``)."""
    fake = model.generator(z, labels)
    d_loss, metrics = discriminator_loss(model, x, fake, labels)
    g_loss = generator_loss(model, fake, labels)
    metrics["g_loss"] = g_loss.detach()
    metrics["loss"] = (d_loss + g_loss).detach()
    return d_loss, g_loss, metrics


def image_samples(x: Tensor, image_shape: tuple[int, ...]) -> np.ndarray:
    """``(N, prod(image_shape))`` -> ``(N, H, W)`` (the first channel of ``(C, H, W)``)."""
    images = x.detach().float().cpu().reshape(-1, *image_shape)
    if images.ndim == 4:
        images = images[:, 0]
    return images.numpy()


class GANModel(NeuroplexModel):
    """Generator and discriminator dense stacks.

    ``forward(x, labels=None)`` returns the **discriminator's logits** ``(N, 1)`` for samples
    ``x`` (what analyzers and the ONNX ``model`` graph see); :meth:`generate` samples the
    generator. Training alternates the two (:class:`~neuroplex_models.steps.GANStep`).

    Hyperparameters:
        latent_dim, data_dim: sizes of ``z`` and of one (flattened) sample.
        generator_layers, discriminator_layers: lists of sizes or layer dicts.
        num_classes: set for a class-conditional GAN (labels one-hot, concatenated).
        activation: hidden activation (default ``leaky_relu``); dropout: discriminator dropout.
        output_activation: the generator's (``sigmoid`` for data in [0, 1], ``tanh`` for
            [-1, 1], ``None`` for unbounded).
        image_shape: ``[H, W]`` or ``[C, H, W]`` when samples are images (for reports).
    """

    family: ClassVar[str] = "gan"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 100,
        "data_dim": 784,
        "generator_layers": [128, 256],
        "discriminator_layers": [256, 128],
        "num_classes": None,
        "activation": "leaky_relu",
        "dropout": 0.0,
        "output_activation": "sigmoid",
        "image_shape": None,
    }

    def _build(self, hp: dict[str, Any]) -> None:
        self.latent_dim = positive_int("gan", hp, "latent_dim")
        self.data_dim = positive_int("gan", hp, "data_dim")
        k = hp["num_classes"]
        self.num_classes: int | None = None if k is None else positive_int("gan", hp, "num_classes")
        extra = self.num_classes or 0
        self.image_shape = self._image_shape(hp["image_shape"])
        try:
            output = get_activation(hp["output_activation"])
        except ConfigError as exc:
            raise self.error("output_activation", strip_path(exc)) from None
        g_body, g_width = dense_stack(
            "gan",
            "generator_layers",
            hp["generator_layers"],
            self.latent_dim + extra,
            {"activation": hp["activation"], "dropout": 0.0},
        )
        d_body, d_width = dense_stack(
            "gan",
            "discriminator_layers",
            hp["discriminator_layers"],
            self.data_dim + extra,
            {"activation": hp["activation"], "dropout": hp["dropout"]},
        )
        self.generator = Generator(self.latent_dim, self.data_dim, g_body, g_width, output)
        self.discriminator = Discriminator(d_body, d_width)
        self.generator.num_classes = self.discriminator.num_classes = self.num_classes

    def _image_shape(self, shape: Any) -> tuple[int, ...] | None:
        if shape is None:
            return None
        ok = isinstance(shape, list | tuple) and len(shape) in (2, 3)
        if not ok or int(np.prod(shape)) != self.data_dim:
            raise self.error(
                "image_shape",
                f"image_shape must be [H, W] or [C, H, W] with product data_dim "
                f"({self.data_dim}), got {shape!r}",
            )
        return tuple(int(s) for s in shape)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Discriminator logits ``(N, 1)`` for samples ``x`` ``(N, data_dim)``."""
        out: Tensor = self.discriminator(x, labels)
        return out

    @torch.no_grad()
    def generate(
        self,
        num_samples: int,
        device: torch.device | str | None = None,
        seed: int | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """``num_samples`` generated samples ``(num_samples, data_dim)`` (eval mode).

        ``device`` defaults to the model's; ``seed`` makes the noise reproducible; ``labels``
        ``(num_samples,)`` pick classes of a conditional GAN.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ConfigError(f"num_samples must be a positive int, got {num_samples!r}")
        dev = torch.device(device) if device is not None else next(self.parameters()).device
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(num_samples, self.latent_dim, generator=gen).to(dev)
        if labels is not None:
            labels = torch.as_tensor(labels, device=dev)
            if labels.shape != (num_samples,):
                raise DataError(
                    f"labels must have shape ({num_samples},), got {tuple(labels.shape)}"
                )
        with eval_mode(self, freeze=False):
            out: Tensor = self.generator(z, labels)
        return out

    def neuroplex_training_step(self) -> Any:
        """The step the Trainer uses when given none: :class:`~neuroplex_models.GANStep`."""
        from neuroplex_models.steps import GANStep

        return GANStep()

    def export_examples(self, x: Tensor) -> dict[str, Tensor]:
        """Example inputs per exported graph for a batch of data ``x``: the generator takes
        noise ``(N, latent_dim)``, the discriminator data."""
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(x.shape[0], self.latent_dim, generator=gen).to(x.device)
        return {"generator": z, "discriminator": x, "model": x}

    @torch.no_grad()
    def evaluate(self, X: Any, y: Any = None, *, batch_size: int = 256) -> ModelMetrics:
        """Discriminator/generator losses and the discriminator's accuracy on real ``X`` and
        on as many generated samples (noise seeded with 0: repeatable)."""
        x, labels = self._tensors(X, y if self.num_classes else None)
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(len(x), self.latent_dim, generator=gen).to(x.device)
        with self._eval_mode():
            _, _, metrics = gan_losses(self, x.flatten(1), labels, z)
        values = {k: float(v) for k, v in metrics.items()}
        return ModelMetrics(family=self.family, task="generation", n=len(x), metrics=values)

    def report_samples(self, x: Tensor) -> dict[str, np.ndarray]:
        """Real and generated images ``(N, H, W)`` for reports (empty without image_shape)."""
        if self.image_shape is None:
            return {}
        fake = self.generate(len(x), device=x.device, seed=0)
        return {
            "Real samples": image_samples(x, self.image_shape),
            "Generated samples": image_samples(fake, self.image_shape),
        }
