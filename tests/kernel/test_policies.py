"""The policy kind: hook, record, registry (create_policy/list_policies), protocol, install hints
and the conformance kit's policy checks."""

from __future__ import annotations

import json

import pytest

import neuroplex
from neuroplex import (
    ComponentNotFoundError,
    PluginError,
    PolicyDecision,
    PolicyOutcome,
    PolicyRecord,
)
from neuroplex.protocols import Policy
from neuroplex.testing import run_checks

from .fakedist import FIXTURE_PLUGINS


@pytest.fixture
def policies(register_plugin, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    import npfix_policies

    register_plugin(npfix_policies, name="policies", distribution="policies-dist", version="1.0")
    return npfix_policies


def test_policies_register_and_list_by_name(policies) -> None:
    assert neuroplex.list_policies() == [
        "bad_outcome",
        "keep",
        "no_apply",
        "reject_always",
        "retrain_once",
    ]
    assert neuroplex.list_policies("re*") == ["reject_always", "retrain_once"]
    record = neuroplex.get_record("policy", "no_apply")
    assert isinstance(record, PolicyRecord) and record.kind == "policy"
    assert record.component_options == {"probe": "analyzer"}
    assert record.to_dict()["component_options"] == {"probe": "analyzer"}


def test_create_policy_builds_a_policy_with_its_options(policies) -> None:
    policy = neuroplex.create_policy("retrain_once", max_rounds=2, epochs=3)
    assert isinstance(policy, Policy)
    assert policy.epochs == 3


def test_create_policy_refuses_an_object_without_apply(policies) -> None:
    with pytest.raises(PluginError) as err:
        neuroplex.create_policy("no_apply")
    assert str(err.value) == (
        "policy 'no_apply' from policies-dist 1.0 (plugin 'policies') built a NoApply "
        "without an apply(context) method"
    )


def test_unknown_option_is_the_policys_config_error(policies) -> None:
    with pytest.raises(neuroplex.ConfigError, match="unknown option 'bogus' of policy 'keep'"):
        neuroplex.create_policy("keep", bogus=1)


def test_missing_first_party_policy_says_what_to_install(neuroplex_manager) -> None:
    with pytest.raises(ComponentNotFoundError) as err:
        neuroplex.create_policy("adversarial")
    assert str(err.value) == (
        "unknown policy 'adversarial'; it is provided by neuroplex-attacks: "
        "pip install neuroplex-attacks"
    )
    with pytest.raises(ComponentNotFoundError, match="pip install neuroplex-sinks"):
        neuroplex.create_policy("early_reject")


def test_component_options_must_name_kinds() -> None:
    with pytest.raises(ValueError, match=r"component_options\['attack'\] = 'analyser'"):
        PolicyRecord(name="p", factory="m:f", component_options={"attack": "analyser"})


def test_decision_row_and_outcome_are_frozen_records() -> None:
    decision = PolicyDecision(policy="p", action="retrain", round=2, reason={"robust": 0.5})
    assert decision.row() == {"round": 2, "robust": 0.5, "action": "retrain"}
    assert decision.to_dict() == {
        "policy": "p",
        "action": "retrain",
        "round": 2,
        "reason": {"robust": 0.5},
    }
    outcome = PolicyOutcome(decisions=[decision], sections=[{"type": "text", "title": "t"}])
    assert outcome.decisions == (decision,) and outcome.model is None
    with pytest.raises(AttributeError):
        outcome.rejection = "no"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["keep", "retrain_once", "reject_always"])
def test_conformant_policies_pass_the_kit(policies, name: str) -> None:
    assert run_checks(neuroplex.get_record("policy", name)) == []


def test_the_kit_names_what_is_wrong(policies) -> None:
    failures = run_checks(neuroplex.get_record("policy", "no_apply"))
    assert failures[0].startswith(
        "check_builds_from_example_config: policy 'no_apply' (callable factory) built a NoApply "
        "without an apply(context) method"
    )
    assert any(f.startswith("check_unknown_option_is_config_error: ") for f in failures)


def test_neuroplex_list_policy(policies, capsys) -> None:
    from neuroplex.cli import main

    assert main(["list", "policy", "re*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["reject_always", "retrain_once"]
    assert main(["list", "policy", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["component_options"] for r in listed}["no_apply"] == {"probe": "analyzer"}
