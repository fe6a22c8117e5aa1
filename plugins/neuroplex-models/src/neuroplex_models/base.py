"""What every model family shares: hyperparameter validation, config round trip, evaluate.

A family subclasses :class:`NeuroplexModel`, sets ``family`` and ``DEFAULTS`` (every
hyperparameter it accepts, with its default) and implements ``_build(hp)``. It is then
constructible three ways, all equivalent::

    CNNModel(ModelConfig(name="cnn", hyperparameters={...}))
    CNNModel(input_channels=1, conv_layers=[...])
    neuroplex.create_model(ModelConfig(name="cnn", hyperparameters={...}))
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import ItemsView, Iterator, KeysView, Mapping
from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroplex.config import ModelConfig
from neuroplex.errors import ConfigError, DataError
from neuroplex.torchutils import eval_mode

__all__ = ["ModelMetrics", "NeuroplexModel", "classification_metrics", "strip_path"]


def strip_path(exc: ConfigError) -> str:
    """The message of ``exc`` without its ``path: `` prefix."""
    text = str(exc)
    prefix = f"{exc.path}: "
    return text[len(prefix) :] if exc.path and text.startswith(prefix) else text


@attrs.frozen(kw_only=True)
class ModelMetrics:
    """Named metrics of :meth:`NeuroplexModel.evaluate`.

    Reads like a dict of the metric values: ``metrics["accuracy"]``, ``"loss" in metrics``,
    ``metrics.get(name)``, ``metrics.keys()``, ``metrics.items()``, ``dict(metrics)``;
    :meth:`to_dict` adds ``family``, ``task`` and ``n``.
    """

    family: str
    task: str
    n: int
    metrics: dict[str, float] = attrs.field(factory=dict)

    def __getitem__(self, name: str) -> float:
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(
                f"no metric {name!r}; this evaluation has {sorted(self.metrics)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.metrics

    def get(self, name: str, default: float | None = None) -> float | None:
        return self.metrics.get(name, default)

    def keys(self) -> KeysView[str]:
        return self.metrics.keys()

    def items(self) -> ItemsView[str, float]:
        return self.metrics.items()

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "task": self.task, "n": self.n, **self.metrics}


def classification_metrics(out: Tensor, y: Tensor) -> tuple[str, dict[str, float]]:
    """Cross-entropy and accuracy for int targets; MSE and MAE for float targets."""
    if not y.is_floating_point():
        if out.ndim != 2:
            raise DataError(
                f"integer targets need logits (N, C); the model gives {tuple(out.shape)}"
            )
        loss = F.cross_entropy(out, y)
        acc = (out.argmax(1) == y).float().mean()
        return "classification", {"loss": float(loss), "accuracy": float(acc)}
    y = y.to(out.dtype).reshape(out.shape) if y.numel() == out.numel() else y.to(out.dtype)
    if y.shape != out.shape:
        raise DataError(f"targets {tuple(y.shape)} do not match predictions {tuple(out.shape)}")
    return "regression", {
        "loss": float(F.mse_loss(out, y)),
        "mae": float((out - y).abs().mean()),
    }


class NeuroplexModel(nn.Module):
    """Base of every family: ``Model(config)`` or ``Model(**hyperparameters)``."""

    family: ClassVar[str] = ""
    #: every hyperparameter the family accepts -> its default
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, /, **kwargs: Any):
        super().__init__()
        given = self._given(config, kwargs)
        self.hyperparameters: dict[str, Any] = self._resolve(given)
        self._build(self.hyperparameters)

    # ------------------------------------------------------------ config
    def _given(self, config: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if config is None:
            return dict(kwargs)
        if isinstance(config, ModelConfig):
            name = config.name.strip().lower().replace("-", "_")
            if name != self.family and name not in getattr(self, "ALIASES", ()):
                raise ConfigError(
                    f"{type(self).__name__} builds family {self.family!r}, the config names "
                    f"{config.name!r}; use neuroplex.create_model(config) to pick the family "
                    "by name",
                    path="model.name",
                )
            hp = dict(config.hyperparameters)
        elif isinstance(config, Mapping):
            hp = dict(config)
        else:
            raise ConfigError(
                f"{type(self).__name__} expects a ModelConfig, a dict of hyperparameters or "
                f"keyword arguments, got {type(config).__name__}"
            )
        hp.update(kwargs)
        return hp

    def _resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        valid = sorted(self.DEFAULTS)
        for key in given:
            if key not in self.DEFAULTS:
                close = difflib.get_close_matches(str(key), valid, n=2)
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                raise ConfigError(
                    f"{self.family}: unknown hyperparameter {key!r}{hint}; valid keys: {valid}",
                    path=f"{self.family}.{key}",
                )
        resolved = copy.deepcopy(self.DEFAULTS)
        resolved.update(copy.deepcopy(dict(given)))
        return resolved

    def _build(self, hp: dict[str, Any]) -> None:
        raise NotImplementedError

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError naming the family and the hyperparameter ``key``."""
        return ConfigError(f"{self.family}: {message}", path=f"{self.family}.{key}")

    def to_config(self) -> ModelConfig:
        """The ``ModelConfig`` that rebuilds this architecture (defaults filled in)."""
        return ModelConfig(name=self.family, hyperparameters=copy.deepcopy(self.hyperparameters))

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any]) -> NeuroplexModel:
        """Build from a ``ModelConfig`` (or a plain dict of hyperparameters)."""
        return cls(config)

    def extra_repr(self) -> str:
        return f"family={self.family!r}"

    # ------------------------------------------------------------ evaluation
    def evaluation_outputs(self, x: Tensor) -> Tensor:
        """What :meth:`evaluate` compares with targets (the forward output by default)."""
        out: Tensor = self(x)
        return out

    @torch.no_grad()
    def evaluate(self, X: Any, y: Any = None, *, batch_size: int = 256) -> ModelMetrics:
        """Metrics on ``(X, y)`` in eval mode: classification (int ``y``): ``loss``
        (cross-entropy), ``accuracy``; regression (float ``y``): ``loss`` (MSE), ``mae``.
        Families without labels (autoencoder, GAN) override this."""
        if y is None:
            raise DataError(f"{self.family}.evaluate needs targets y")
        x_t, y_t = self._tensors(X, y)
        assert y_t is not None
        with self._eval_mode():
            outs = [
                self.evaluation_outputs(x_t[i : i + batch_size])
                for i in range(0, len(x_t), batch_size)
            ]
        task, metrics = classification_metrics(torch.cat(outs), y_t)
        return ModelMetrics(family=self.family, task=task, n=len(x_t), metrics=metrics)

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        with eval_mode(self, freeze=False):
            yield

    def _tensors(self, X: Any, y: Any) -> tuple[Tensor, Tensor | None]:
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x_t = torch.as_tensor(X)
        if x_t.is_floating_point():
            x_t = x_t.float()
        x_t = x_t.to(device)
        y_t = None if y is None else torch.as_tensor(y).to(device)
        if y_t is not None and len(y_t) != len(x_t):
            raise DataError(f"{len(x_t)} inputs but {len(y_t)} targets")
        if len(x_t) == 0:
            raise DataError(f"{self.family}.evaluate needs at least one sample")
        return x_t, y_t
