"""The kernel's model and layer conformance checks catch broken components."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from neuroplex import LayerRecord, ModelRecord, get_record
from neuroplex.testing import layer as layer_checks
from neuroplex.testing import model as model_checks
from neuroplex.testing import run_checks


class _Net(nn.Module):
    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _NaN(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * torch.nan


class _Unused(_Net):
    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.spare = nn.Linear(3, 3)


class _SumsBatch(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).sum(0, keepdim=True)


class _Constant(_Net):
    def __init__(self, config: Any = None) -> None:
        super().__init__()
        nn.init.constant_(self.fc.weight, 0.5)
        nn.init.zeros_(self.fc.bias)


class _Noisy(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + torch.rand(1)


_calls = [0]


class _Drifting(_Net):
    """Each forward call gives a different answer, whatever the seed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _calls[0] += 1
        return self.fc(x) + _calls[0]


def _record(factory: Callable[..., Any]) -> ModelRecord:
    return ModelRecord(name="probe", factory=factory, example_input=(4, 3))


def test_a_sound_model_passes() -> None:
    assert run_checks(_record(_Net)) == []
    assert run_checks(get_record("model", "gan")) == []


@pytest.mark.parametrize(
    ("factory", "check", "message"),
    [
        (_NaN, model_checks.check_forward_finite, "NaN or inf"),
        (_SumsBatch, model_checks.check_forward_finite, "input batch 4 gives output batch 1"),
        (_Unused, model_checks.check_backward_reaches_every_parameter, r"spare\.weight"),
        (_Constant, model_checks.check_same_output_under_seed, "identical outputs"),
        (_Drifting, model_checks.check_same_output_under_seed, "same seed, different outputs"),
        (_Noisy, model_checks.check_state_dict_round_trip, "state_dict round trip"),
    ],
)
def test_model_checks_catch(factory: Callable[..., Any], check: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check(_record(factory))


def test_model_checks_need_an_example_input() -> None:
    with pytest.raises(AssertionError, match="declares no example_input"):
        model_checks.check_forward_finite(ModelRecord(name="probe", factory=_Net))


def test_layer_checks_catch_a_shape_changing_activation() -> None:
    record = LayerRecord(
        name="halves",
        factory=lambda: nn.AvgPool1d(2),
        capabilities={"activation"},
        example_input=(2, 3, 4),
    )
    with pytest.raises(AssertionError, match="changed the shape"):
        layer_checks.check_forward_finite(record)
    assert run_checks(get_record("layer", "residual")) == []
