"""``transformer``: a pre-norm transformer encoder over fixed-length token sequences."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from neuroplex_layers import TransformerBlock, get_activation
from torch import Tensor, nn

from neuroplex.errors import DataError
from neuroplex_models.base import NeuroplexModel

__all__ = ["TransformerModel", "sinusoidal_encoding"]

_HEADS = ("classification", "sequence")
_POSITIONAL = ("learned", "sinusoidal")


def sinusoidal_encoding(seq_len: int, d_model: int) -> Tensor:
    """The fixed sine/cosine position table of "Attention is all you need": ``(S, d_model)``."""
    position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    table = torch.zeros(seq_len, d_model)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
    return table


class TransformerModel(NeuroplexModel):
    """Tokens ``(N, seq_len, input_dim)`` -> linear embedding to ``d_model`` + positions ->
    ``num_layers`` encoder blocks -> LayerNorm -> head.

    Hyperparameters:
        input_dim: features per token. Flat inputs ``(N, seq_len * input_dim)`` are reshaped
            (digits: 8 rows of 8 pixels).
        seq_len: tokens per sample (the positional table has this fixed size).
        d_model, nhead, num_layers, dim_feedforward, dropout, activation: the encoder.
        num_classes: outputs of the head.
        head: ``"classification"`` (mean over tokens -> ``(N, num_classes)``) or
            ``"sequence"`` (one output per token -> ``(N, seq_len, num_classes)``).
        positional: ``"learned"`` or ``"sinusoidal"`` position encodings.
    """

    family: ClassVar[str] = "transformer"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "input_dim": 16,
        "seq_len": 32,
        "d_model": 64,
        "nhead": 4,
        "num_layers": 2,
        "dim_feedforward": None,
        "dropout": 0.1,
        "activation": "gelu",
        "num_classes": 2,
        "head": "classification",
        "positional": "learned",
    }

    def _build(self, hp: dict[str, Any]) -> None:
        for key in ("input_dim", "seq_len", "d_model", "nhead", "num_layers", "num_classes"):
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise self.error(key, f"{key} must be a positive integer, got {value!r}")
        d_model, nhead = hp["d_model"], hp["nhead"]
        if d_model % nhead:
            divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
            raise self.error(
                "nhead", f"d_model {d_model} is not divisible by nhead {nhead}; valid: {divisors}"
            )
        ff = hp["dim_feedforward"]
        if ff is not None and (isinstance(ff, bool) or not isinstance(ff, int) or ff <= 0):
            raise self.error("dim_feedforward", f"must be a positive integer, got {ff!r}")
        if not (isinstance(hp["dropout"], int | float) and 0 <= hp["dropout"] < 1):
            raise self.error("dropout", f"dropout must be in [0, 1), got {hp['dropout']!r}")
        for key, choices in (("head", _HEADS), ("positional", _POSITIONAL)):
            if hp[key] not in choices:
                raise self.error(key, f"{key} must be one of {list(choices)}, got {hp[key]!r}")
        get_activation(hp["activation"])  # fail early, naming the installed activations
        self.input_dim, self.seq_len = hp["input_dim"], hp["seq_len"]
        self.head_kind: str = hp["head"]
        self.embed = nn.Linear(self.input_dim, d_model)
        table = sinusoidal_encoding(self.seq_len, d_model).unsqueeze(0)
        if hp["positional"] == "learned":
            self.position = nn.Parameter(table * 0.1)
        else:
            self.register_buffer("position", table)
        self.embed_dropout = nn.Dropout(hp["dropout"])
        self.blocks = nn.Sequential(
            *(
                TransformerBlock(d_model, nhead, ff, hp["dropout"], hp["activation"])
                for _ in range(hp["num_layers"])
            )
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, hp["num_classes"])

    def tokens(self, x: Tensor) -> Tensor:
        """Flat ``(N, seq_len * input_dim)`` or ``(N, seq_len, input_dim)`` -> the latter."""
        expected = (
            (self.seq_len * self.input_dim,) if x.ndim == 2 else (self.seq_len, self.input_dim)
        )
        if tuple(x.shape[1:]) != expected:
            raise DataError(
                f"transformer: inputs must be (N, {self.seq_len}, {self.input_dim}) or flat "
                f"(N, {self.seq_len * self.input_dim}) (seq_len={self.seq_len}, "
                f"input_dim={self.input_dim}), got {tuple(x.shape)}"
            )
        return x.reshape(-1, self.seq_len, self.input_dim)

    def encode(self, x: Tensor) -> Tensor:
        """Token features after the encoder: ``(N, seq_len, d_model)``."""
        h = self.embed_dropout(self.embed(self.tokens(x)) + self.position)
        out: Tensor = self.norm(self.blocks(h))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """``(N, seq_len, input_dim)`` or flat -> ``(N, num_classes)`` (classification head)
        or ``(N, seq_len, num_classes)`` (sequence head)."""
        h = self.encode(x)
        if self.head_kind == "classification":
            h = h.mean(dim=1)
        out: Tensor = self.head(h)
        return out
