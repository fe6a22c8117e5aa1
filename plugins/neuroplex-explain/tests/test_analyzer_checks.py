"""The analyzer conformance checks (neuroplex.testing.analyzer) catch broken analyzers."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch

from neuroplex import AnalyzerRecord
from neuroplex.errors import DataError
from neuroplex.testing import analyzer as checks
from neuroplex.testing import run_checks


@attrs.frozen
class Good:
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value}


@attrs.define
class Mutable:
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value}


class Analyzer:
    def __init__(self, model: torch.nn.Module, result: Any = None, **config: Any) -> None:
        self.model, self.result, self.config = model, result, config

    def analyze(self, x: torch.Tensor, y: Any = None) -> Any:
        return self.result if self.result is not None else Good(float(self.model(x).detach().sum()))


def _record(factory: Any, **kwargs: Any) -> AnalyzerRecord:
    return AnalyzerRecord(name="probe", factory=factory, **kwargs)


def test_canonical_model_and_inputs_are_fixed():
    x, y = checks.canonical_inputs()
    assert x.shape == (6, 8)
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    assert y.tolist() == [0, 1, 2, 0, 1, 2]
    a, b = checks.canonical_model(), checks.canonical_model()
    assert torch.equal(a(x), b(x))
    assert a(x).shape == (6, 3)


def test_a_good_analyzer_passes_every_check():
    assert run_checks(_record(Analyzer)) == []


@pytest.mark.parametrize(
    ("factory", "check", "message"),
    [
        (
            lambda model: Analyzer(model, result=Mutable(1.0)),
            checks.check_analyze_returns_frozen_record,
            "mutable",
        ),
        (
            lambda model: Analyzer(model, result={"value": 1.0}),
            checks.check_analyze_returns_frozen_record,
            "not an attrs record",
        ),
        (
            lambda model: Analyzer(model, result=Good(float("nan"))),
            checks.check_to_dict_plain_and_finite,
            "NaN",
        ),
        (
            lambda model: Analyzer(model, result=Good(torch.tensor(1.0))),  # type: ignore[arg-type]
            checks.check_to_dict_plain_and_finite,
            "plain Python",
        ),
        (lambda model: object(), checks.check_builds_from_example_config, "analyze"),
        (lambda model, bad: None, checks.check_builds_from_example_config, "cannot be built"),
    ],
)
def test_checks_catch_broken_analyzers(factory, check, message):
    with pytest.raises(AssertionError, match=message):
        check(_record(factory))


def test_state_check_catches_a_model_left_in_eval_mode():
    class LeavesEval(Analyzer):
        def analyze(self, x: torch.Tensor, y: Any = None) -> Any:
            self.model.eval()
            return Good(0.0)

    with pytest.raises(AssertionError, match="train/eval"):
        checks.check_model_state_restored(_record(LeavesEval))


def test_state_check_catches_changed_weights():
    class Trains(Analyzer):
        def analyze(self, x: torch.Tensor, y: Any = None) -> Any:
            with torch.no_grad():
                next(self.model.parameters()).add_(1.0)
            return Good(0.0)

    with pytest.raises(AssertionError, match="weights"):
        checks.check_model_state_restored(_record(Trains))


def test_gradient_check_catches_undeclared_gradient_use():
    class NeedsGrad(Analyzer):
        def analyze(self, x: torch.Tensor, y: Any = None) -> Any:
            x = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.model(x).sum(), x)
            return Good(float(grad.sum()))

    with pytest.raises(AssertionError, match="'gradients' capability"):
        checks.check_without_gradients_unless_declared(_record(NeedsGrad))
    checks.check_without_gradients_unless_declared(_record(NeedsGrad, capabilities={"gradients"}))


def test_label_check_accepts_clear_errors_only():
    class NeedsLabels(Analyzer):
        def analyze(self, x: torch.Tensor, y: Any = None) -> Any:
            if y is None:
                raise DataError("this analysis needs labels y")
            return Good(0.0)

    class Crashes(Analyzer):
        def analyze(self, x: torch.Tensor, y: Any = None) -> Any:
            return Good(float(y.sum()))

    checks.check_analyze_without_labels(_record(NeedsLabels))
    with pytest.raises(AssertionError, match="NeuroplexError"):
        checks.check_analyze_without_labels(_record(Crashes))
