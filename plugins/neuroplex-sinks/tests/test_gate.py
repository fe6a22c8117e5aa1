"""The ``early_reject`` policy: thresholds on test metrics and analysis numbers, one clear
line when the run is rejected, configuration errors that name the option."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import neuroplex
from neuroplex import ConfigError, PolicyContext
from neuroplex.testing.policy import canonical_context


@attrs.frozen
class _Result:
    """An analysis result as analyzers return them: a frozen record with ``to_dict()``."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


ANALYSES = {
    "fgsm": _Result({"robust_accuracy": 0.4, "is_vulnerable": True, "backend": "onnx"}),
    "robustness_curve": _Result({"robust_accuracy": [0.9, 0.6, 0.3], "nested": {"x": 2}}),
}


@pytest.fixture
def context() -> Iterator[PolicyContext]:
    with canonical_context("early_reject") as ctx:
        yield attrs.evolve(ctx, test_metrics={"accuracy": 0.8, "loss": 0.7}, analyses=ANALYSES)


def gate(**options: Any) -> Any:
    return neuroplex.create_policy("early_reject", **options)


def test_passes_when_every_number_is_within_its_threshold(context: PolicyContext) -> None:
    outcome = gate(
        min={"test_metrics.accuracy": 0.8, "fgsm.robust_accuracy": 0.4},
        max={"test_metrics.loss": 0.7, "robustness_curve.robust_accuracy.2": 0.5},
    ).apply(context)
    assert outcome.rejection is None and outcome.model is None
    [decision] = outcome.decisions
    assert (decision.policy, decision.action, decision.round) == ("early_reject", "pass", 0)
    assert [c["number"] for c in decision.reason["checks"]] == [
        "test_metrics.accuracy",
        "fgsm.robust_accuracy",
        "test_metrics.loss",
        "robustness_curve.robust_accuracy.2",
    ]
    assert all(c["ok"] for c in decision.reason["checks"])
    [section] = outcome.sections
    assert section["title"] == "Mechanic: early_reject gate"
    assert section["rows"][0] == ["test_metrics.accuracy", 0.8, "min", 0.8, "pass"]


def test_rejects_with_one_line_naming_each_failed_number(context: PolicyContext) -> None:
    outcome = gate(
        min={"fgsm.robust_accuracy": 0.5, "test_metrics.accuracy": 0.5},
        max={"test_metrics.loss": 0.25, "fgsm.is_vulnerable": 0},
    ).apply(context)
    assert outcome.rejection == (
        "fgsm.robust_accuracy = 0.4 is below the minimum 0.5; "
        "test_metrics.loss = 0.7 is above the maximum 0.25; "
        "fgsm.is_vulnerable = 1 is above the maximum 0"
    )
    [decision] = outcome.decisions
    assert decision.action == "reject"
    assert [c["ok"] for c in decision.reason["checks"]] == [False, True, False, False]
    assert outcome.sections[0]["rows"][0][-1] == "REJECT"


def test_a_name_that_matches_no_number_is_a_config_error(context: PolicyContext) -> None:
    with pytest.raises(ConfigError) as err:
        gate(min={"fgsm.robust_acuracy": 0.5}).apply(context)
    assert str(err.value) == (
        "feedback.policies.early_reject: no number named 'fgsm.robust_acuracy' in this run; "
        "did you mean 'fgsm.robust_accuracy'? (numbers start with: fgsm, robustness_curve, "
        "test_metrics; see results.json)"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "policy 'early_reject' has no threshold: give options.min and/or options.max"),
        ({"minimum": {"a": 1}}, "unknown option 'minimum' of policy 'early_reject'"),
        ({"min": 0.5}, "option min of policy 'early_reject' must be a table"),
        ({"max": {"test_metrics.loss": "low"}}, "option max.test_metrics.loss of policy"),
        ({"max": {"test_metrics.loss": True}}, "must be a number, got True"),
    ],
    ids=["no-threshold", "unknown-option", "not-a-table", "not-a-number", "bool"],
)
def test_bad_options_fail_when_the_policy_is_built(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        gate(**options)


def test_the_gate_module_imports_no_torch() -> None:
    code = (
        "import sys, neuroplex_sinks.plugin, neuroplex_sinks.gate\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "NO-TORCH"
