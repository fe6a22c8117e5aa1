"""Adversarial training for the ``adversarial`` policy: a Trainer step that attacks every batch
against the current weights (PGD adversarial training or TRADES), and a Trainer callback that
keeps the weights with the best robust accuracy on the validation split.

* **PGD-AT** (Madry et al., ICLR 2018): minimise ``CE(f(x'), y)``, ``x'`` found by ``steps``
  signed-gradient steps of size ``step_size·ε`` on the cross-entropy from a uniform random start
  in the L∞ ball of radius ε (intersected with ``input_range``).
* **TRADES** (Zhang et al., ICML 2019): minimise ``CE(f(x), y) + β·KL(p(x) ‖ p(x'))``, ``x'``
  found by the same steps on the KL term from ``x + 0.001·N(0, 1)``; β trades clean accuracy
  for robustness (the paper uses 6).

``shift`` > 0 augments every batch with random translations of up to ``shift`` pixels (zero
fill) before attacking it, which fights robust overfitting on small image sets. The attack
budget ramps linearly from ``ε/ramp_steps`` to ε over the first ``ramp_steps``
batches (0: no ramp), which helps small models start. Adversarial inputs are crafted with the
model in eval mode (dropout off) and trained on in train mode; the random starts come from the
step's own generator (``seed``), so a retraining is reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from neuroplex.training import SupervisedStep

__all__ = ["METHODS", "AdversarialStep", "BestRobustCheckpoint"]

#: the adversarial training methods
METHODS = ("pgd", "trades")

Range = tuple[float, float]


class AdversarialStep(SupervisedStep):
    """A :class:`~neuroplex.steps.TrainingStep` that trains on attacked batches (see the
    module doc); validation is the clean supervised one."""

    forward_wrappable = False

    def __init__(
        self,
        *,
        method: str = "pgd",
        epsilon: float,
        input_range: Range,
        steps: int = 7,
        step_size: float = 0.25,
        beta: float = 6.0,
        ramp_steps: int = 0,
        shift: int = 0,
        image_shape: tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method, self.epsilon, self.input_range = method, float(epsilon), input_range
        self.steps, self.step_size, self.beta = int(steps), float(step_size), float(beta)
        self.ramp_steps = int(ramp_steps)
        self.shift, self.image_shape = int(shift), image_shape
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0 pixels, got {shift}")
        self.batches = 0
        self.generator = torch.Generator().manual_seed(int(seed))  # the random starts

    def current_epsilon(self) -> float:
        """The budget of the next batch (the ramp's value)."""
        if self.ramp_steps <= 0:
            return self.epsilon
        return self.epsilon * min(1.0, (self.batches + 1) / self.ramp_steps)

    def train_step(
        self, model: torch.nn.Module, batch: Any, optimize: Callable[[str, torch.Tensor], None]
    ) -> Mapping[str, torch.Tensor]:
        x, y = self._split(batch)
        if self.shift:
            x = self._shifted(x)
        eps = self.current_epsilon()
        self.batches += 1
        was_training = model.training
        model.eval()
        try:
            if self.method == "trades":
                with torch.no_grad():
                    p_clean = F.softmax(model(x), dim=1)
                x_adv = self._attack(model, x, lambda out: _kl(out, p_clean), eps, noise=True)
            else:
                x_adv = self._attack(
                    model, x, lambda out: F.cross_entropy(out, y, reduction="sum"), eps
                )
        finally:
            model.train(was_training)
        if self.method == "trades":
            out = model(x)
            robust = _kl(model(x_adv), F.softmax(out, dim=1)) / len(x)
            loss = F.cross_entropy(out, y) + self.beta * robust
        else:
            out = model(x_adv)
            loss = F.cross_entropy(out, y)
        optimize("model", loss)
        accuracy = (out.argmax(1) == y).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}

    def _shifted(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each image translated by up to ``shift`` pixels (zero fill): flat inputs
        ``(N, C·H·W)`` are read as images of ``image_shape`` ``(H, W)``."""
        n = x.shape[0]
        if x.ndim == 4:
            h, w = x.shape[2], x.shape[3]
        elif self.image_shape is not None and x.ndim == 2:
            h, w = self.image_shape
        else:
            raise ValueError(
                f"shift augmentation needs images (N, C, H, W) or flat inputs with image_shape; "
                f"got inputs of shape {tuple(x.shape)} and image_shape {self.image_shape}"
            )
        if x[0].numel() % (h * w):
            raise ValueError(f"image_shape {(h, w)} does not divide {x[0].numel()} features")
        k = self.shift
        img = F.pad(x.reshape(n, -1, h, w), (k, k, k, k))
        dy = torch.randint(0, 2 * k + 1, (n,), generator=self.generator).to(x.device)
        dx = torch.randint(0, 2 * k + 1, (n,), generator=self.generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        chans = torch.arange(img.shape[1], device=x.device)[None, :, None, None]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        return img[batch, chans, rows, cols].reshape(x.shape)

    def _attack(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        objective: Callable[[torch.Tensor], torch.Tensor],
        eps: float,
        noise: bool = False,
    ) -> torch.Tensor:
        lo, hi = self.input_range
        x = x.detach()
        if noise:
            start = 0.001 * torch.randn(x.shape, generator=self.generator)
        else:
            start = (torch.rand(x.shape, generator=self.generator) * 2 - 1) * eps
        x_adv = (x + start.to(x.device, x.dtype)).clamp(lo, hi)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(model(x_adv)), x_adv)
            step = x_adv.detach() + self.step_size * eps * grad.sign()
            x_adv = torch.minimum(torch.maximum(step, x - eps), x + eps).clamp(lo, hi)
        return x_adv.detach()


def _kl(logits: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """``Σ KL(p_clean ‖ softmax(logits))`` over the batch."""
    return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="sum")


class BestRobustCheckpoint:
    """Trainer callback: after every ``every``-th epoch (and the last) measure robust accuracy
    on the validation split with ``measure(model) -> (clean, robust)`` and keep a copy of the
    weights when it is the best so far (ties: the later one) and clean accuracy is at least
    ``min_clean``. It never sees the test split. ``offer`` seeds it with an earlier model."""

    def __init__(
        self, measure: Callable[[torch.nn.Module], tuple[float, float]], *, every: int = 1,
        min_clean: float = 0.0,
    ) -> None:  # fmt: skip
        self.measure, self.every, self.min_clean = measure, max(1, int(every)), float(min_clean)
        self.best_robust = -1.0
        self.best_clean = 0.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_tag = ""
        self.tag = ""  # the round being trained, for the record
        self.history: list[dict[str, Any]] = []

    def offer(self, model: torch.nn.Module, tag: str) -> tuple[float, float]:
        """Measure ``model`` and keep it if it is the best; returns ``(clean, robust)``."""
        was_training = model.training
        model.eval()
        try:
            clean, robust = self.measure(model)
        finally:
            model.train(was_training)
        self.history.append({"checkpoint": tag, "val_clean": clean, "val_robust": robust})
        if clean >= self.min_clean and robust >= self.best_robust:
            self.best_robust, self.best_clean, self.best_tag = robust, clean, tag
            self.best_state = copy.deepcopy(model.state_dict())
        return clean, robust

    def on_epoch_end(self, trainer: Any, record: Any) -> None:
        epoch = int(getattr(record, "epoch", 0))
        last = epoch >= int(getattr(trainer.config, "epochs", epoch))
        if epoch % self.every == 0 or last:
            self.offer(trainer.model, f"{self.tag}epoch {epoch}")

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the best weights into ``model``; ``False`` when none was kept."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True
