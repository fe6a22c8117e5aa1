"""``autoencoder``: a dense (optionally variational) autoencoder with anomaly scores."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from neuroplex_layers import get_activation
from torch import Tensor, nn

from neuroplex.errors import ConfigError
from neuroplex_models._stacks import dense_stack, positive_int
from neuroplex_models.base import ModelMetrics, NeuroplexModel, strip_path
from neuroplex_models.gan import image_samples

__all__ = ["AutoencoderModel", "reconstruction_losses"]


def reconstruction_losses(model: AutoencoderModel, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss of a batch ``x``: mean squared reconstruction error, plus ``beta`` times
    the KL divergence to N(0, I) per sample for a variational model. Returns ``(loss,
    detached metrics)``."""
    flat = x.flatten(1)
    stats = model.encoder(flat)
    mu = stats[:, : model.latent_dim]
    if model.variational and model.training:
        logvar = stats[:, model.latent_dim :]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    else:
        z = mu
    recon = model.decoder(z)
    rec = (recon - flat).pow(2).mean()
    metrics = {"reconstruction_error": rec.detach()}
    loss = rec
    if model.variational:
        logvar = stats[:, model.latent_dim :]
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        loss = rec + model.beta * kl / flat.shape[1]
        metrics["kl"] = kl.detach()
    metrics["loss"] = loss.detach()
    return loss, metrics


class AutoencoderModel(NeuroplexModel):
    """``encoder: (N, input_dim) -> (N, latent_dim)`` (``2 * latent_dim``: mean and log-variance
    when variational), ``decoder: (N, latent_dim) -> (N, input_dim)``.

    ``forward(x)`` returns the reconstruction in ``x``'s shape (the mean code is decoded, so
    it is deterministic). Inputs ``(N, *)`` are flattened to ``(N, input_dim)``.

    Hyperparameters:
        input_dim, latent_dim: sizes of a flattened sample and of the code.
        encoder_layers: hidden sizes (or layer dicts) of the encoder; the decoder mirrors them
            unless ``decoder_layers`` is given.
        variational: a VAE (KL term weighted by ``beta``).
        activation, dropout: hidden layers; output_activation: of the decoder (``sigmoid``
            for data in [0, 1]).
        image_shape: ``[H, W]`` or ``[C, H, W]`` when samples are images (for reports).
    """

    family: ClassVar[str] = "autoencoder"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "input_dim": 784,
        "encoder_layers": [128, 64],
        "decoder_layers": None,
        "latent_dim": 16,
        "variational": False,
        "beta": 1.0,
        "activation": "relu",
        "dropout": 0.0,
        "output_activation": "sigmoid",
        "image_shape": None,
    }

    def _build(self, hp: dict[str, Any]) -> None:
        self.input_dim = positive_int("autoencoder", hp, "input_dim")
        self.latent_dim = positive_int("autoencoder", hp, "latent_dim")
        if not isinstance(hp["variational"], bool):
            raise self.error("variational", f"must be true or false, got {hp['variational']!r}")
        self.variational: bool = hp["variational"]
        beta = hp["beta"]
        if isinstance(beta, bool) or not isinstance(beta, int | float) or beta < 0:
            raise self.error("beta", f"beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        shape = hp["image_shape"]
        if shape is not None and (
            not isinstance(shape, list | tuple)
            or len(shape) not in (2, 3)
            or int(np.prod(shape)) != self.input_dim
        ):
            raise self.error(
                "image_shape",
                f"image_shape must be [H, W] or [C, H, W] with product input_dim "
                f"({self.input_dim}), got {shape!r}",
            )
        self.image_shape = None if shape is None else tuple(int(s) for s in shape)
        defaults = {"activation": hp["activation"], "dropout": hp["dropout"]}
        enc, width = dense_stack(
            "autoencoder", "encoder_layers", hp["encoder_layers"], self.input_dim, defaults
        )
        code = self.latent_dim * (2 if self.variational else 1)
        self.encoder = nn.Sequential(*enc, nn.Linear(width, code))
        dec_specs = hp["decoder_layers"]
        if dec_specs is None:
            dec_specs = [
                s["out_features"] if isinstance(s, dict) and "out_features" in s else s
                for s in reversed(list(hp["encoder_layers"]))
            ]
            dec_specs = [s for s in dec_specs if isinstance(s, int)]
        dec, width = dense_stack(
            "autoencoder", "decoder_layers", dec_specs, self.latent_dim, defaults
        )
        try:
            output = get_activation(hp["output_activation"])
        except ConfigError as exc:
            raise self.error("output_activation", strip_path(exc)) from None
        self.decoder = nn.Sequential(*dec, nn.Linear(width, self.input_dim), output)

    def neuroplex_training_step(self) -> Any:
        """The step the Trainer uses when given none: ``AutoencoderStep``."""
        from neuroplex_models.steps import AutoencoderStep

        return AutoencoderStep()

    def encode(self, x: Tensor) -> Tensor:
        """The code (the mean, for a VAE): ``(N, *) -> (N, latent_dim)``."""
        out: Tensor = self.encoder(x.flatten(1))[:, : self.latent_dim]
        return out

    def decode(self, z: Tensor) -> Tensor:
        """``(N, latent_dim) -> (N, input_dim)``."""
        out: Tensor = self.decoder(z)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction of ``x``, same shape as ``x``."""
        return self.decode(self.encode(x)).reshape(x.shape)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Reconstruction in eval mode (no dropout), same shape as ``x``."""
        with self._eval_mode():
            out: Tensor = self(x)
        return out

    @torch.no_grad()
    def anomaly_score(self, x: Tensor) -> Tensor:
        """Per-sample mean squared reconstruction error ``(N,)``: high means unusual."""
        recon = self.reconstruct(x)
        return (recon - x).flatten(1).pow(2).mean(1)

    @torch.no_grad()
    def evaluate(self, X: Any, y: Any = None, *, batch_size: int = 256) -> ModelMetrics:
        """``reconstruction_error`` (mean squared), ``loss`` (plus KL for a VAE) and the
        anomaly score's mean and 95th percentile. ``y`` is ignored."""
        x, _ = self._tensors(X, None)
        with self._eval_mode():
            _, metrics = reconstruction_losses(self, x)
        scores = self.anomaly_score(x)
        values = {k: float(v) for k, v in metrics.items()}
        values["anomaly_score_mean"] = float(scores.mean())
        values["anomaly_score_p95"] = float(torch.quantile(scores.float(), 0.95))
        return ModelMetrics(family=self.family, task="reconstruction", n=len(x), metrics=values)

    def report_samples(self, x: Tensor) -> dict[str, np.ndarray]:
        """Inputs and reconstructions ``(N, H, W)`` for reports (empty without image_shape)."""
        if self.image_shape is None:
            return {}
        return {
            "Inputs": image_samples(x, self.image_shape),
            "Reconstructions": image_samples(self.reconstruct(x), self.image_shape),
        }
