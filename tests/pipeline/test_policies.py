"""Policies reached from a spec: the kernel's dispatch on a tiny in-process plugin set, then the
first-party ``adversarial`` and ``early_reject`` end to end, and the one-line install hint when
a policy's plugin is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from neuroplex import ConfigError, PluginError, RunRejected
from neuroplex.cli import main
from neuroplex.config import AnalyzerSpec
from neuroplex.pipeline import run
from neuroplex.run.analyze import now_analyzers

from ..ecosystem._cli import clean_env, run_cli
from .test_run import FIXTURES, spec


@pytest.fixture
def tiny(register_plugin, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    import npfix_policies
    import npfix_tiny

    register_plugin(npfix_tiny, name="tiny", distribution="tiny-dist", version="0.0.1")
    register_plugin(npfix_policies, name="policies", distribution="policies-dist")


def with_policies(tmp_path: Path, *policies: dict[str, Any]) -> dict[str, Any]:
    base = spec(tmp_path)
    base["feedback"] = {**base["feedback"], "policies": list(policies)}  # type: ignore[dict-item]
    return base


def events(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "ev.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_policies_run_in_order_and_a_retrained_model_is_re_evaluated(tiny, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(
        with_policies(
            tmp_path, {"name": "keep"}, {"name": "retrain_once", "options": {"epochs": 2}},
            {"name": "keep"},
        ),
        output=out,
    )  # fmt: skip
    first, retrain, second = result.rounds
    assert first["action"] == "keep" and first["analyses"] == ["mean_logit"]
    assert retrain == {"round": 0, "epochs": 2, "action": "retrain"}
    # the policy after the retrain sees the retrained model's metrics and analyses
    assert second["accuracy"] == result.test_metrics["accuracy"]
    assert second["mean_logit"] == result.analyses["mean_logit@round2"]["mean_logit"]
    assert second["mean_logit"] != first["mean_logit"]
    seen = events(tmp_path)
    decisions = [(e["name"], e["payload"]["action"]) for e in seen if e["kind"] == "decision"]
    assert decisions == [("keep:0", "keep"), ("retrain_once:0", "retrain"), ("keep:0", "keep")]
    epochs = [e["name"] for e in seen if e["kind"] == "epoch"]
    assert epochs.count("retrain-once") == 2
    metrics = [e["step"] for e in seen if e["kind"] == "metrics"]
    assert metrics == [0, 2]  # once after training, once after the retrain (2 decisions so far)
    assert (out / "retrain" / "checkpoints").is_dir()
    results = json.loads((out / "results.json").read_text())
    assert results["rounds"] == result.rounds
    assert "Retrain once" in [s["title"] for s in results["sections"]]


def test_policies_see_each_analysis_under_its_entry_id(tiny, tmp_path) -> None:
    body = with_policies(tmp_path, {"name": "keep"}, {"name": "retrain_once"}, {"name": "keep"})
    body["analysis"] = {
        "analyzers": [
            {"name": "mean_logit", "n_samples": 16},
            {"name": "mean_logit", "id": "logit-torch", "backend": "torch", "n_samples": 8},
        ]
    }
    result = run(body, output=tmp_path / "run")
    first, _, second = result.rounds
    # the latest result of each entry, keyed like results.json: by id, rounds folded in
    assert first["analyses"] == second["analyses"] == ["logit-torch", "mean_logit"]
    assert second["mean_logit"] == result.analyses["mean_logit@round2"]["mean_logit"]
    assert sorted(result.analyses) == [
        "logit-torch", "logit-torch@round2", "mean_logit", "mean_logit@round2"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("policies", "keys"),
    [
        (["keep", "retrain_once", "keep"], ["mean_logit", "mean_logit@round2", "once@round2"]),
        (["keep"], ["mean_logit", "once"]),  # no new model: the trained one is the final one
    ],
)
def test_an_analysis_on_the_final_model_only_runs_once_after_the_policies(
    tiny, tmp_path, policies, keys
) -> None:
    body = with_policies(tmp_path, *({"name": name} for name in policies))
    body["analysis"] = {
        "analyzers": [
            {"name": "mean_logit", "n_samples": 16},
            {"name": "mean_logit", "id": "once", "n_samples": 16, "models": "final"},
        ]
    }
    result = run(body, output=tmp_path / "run")
    assert sorted(result.analyses) == keys
    # the policies never see it (it runs after them), and it measured the final model
    assert all(row["analyses"] == ["mean_logit"] for row in result.rounds if "analyses" in row)
    final, once = (result.analyses[k]["mean_logit"] for k in (keys[-2], keys[-1]))
    assert once == final
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["evaluations"][keys[-1]]["analyzer"] == "mean_logit"


def test_without_policies_the_analyze_stage_runs_the_final_model_analyses() -> None:
    every, final = AnalyzerSpec(name="a"), AnalyzerSpec(name="b", models="final")
    assert now_analyzers([every, final], has_policies=False) == [every, final]
    assert now_analyzers([every, final], has_policies=True) == [every]


def test_a_rejection_fails_the_run_after_its_report(tiny, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    body = with_policies(
        tmp_path, {"name": "reject_always", "options": {"why": "too weak"}}, {"name": "keep"}
    )
    with pytest.raises(RunRejected) as err:
        run(body, output=out)
    assert str(err.value) == (
        f"policy 'reject_always' rejected the run: too weak (results: {out / 'results.json'})"
    )
    results = json.loads((out / "results.json").read_text())
    assert [r["action"] for r in results["rounds"]] == ["reject"]  # keep never ran
    assert (out / "report.html").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("RunRejected: ")
    finished = [e for e in events(tmp_path) if e["kind"] == "run_finished"]
    assert finished[-1]["payload"]["status"] == "rejected"
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(body))
    capsys.readouterr()
    assert main(["run", str(path), "--output", str(tmp_path / "cli")]) == 3
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err_lines == [
        "neuroplex: error: policy 'reject_always' rejected the run: too weak "
        f"(results: {tmp_path / 'cli' / 'results.json'})"
    ]


def test_bad_policy_options_fail_before_training(tiny, tmp_path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        run(with_policies(tmp_path, {"name": "keep", "options": {"bogus": 1}}), output=out)
    assert str(err.value) == (
        "feedback.policies[0]: unknown option 'bogus' of policy 'keep'; options: ()"
    )
    assert not (out / "checkpoints").exists()


def test_components_named_in_policy_options_are_checked_before_the_run(tiny, tmp_path) -> None:
    body = with_policies(tmp_path, {"name": "no_apply", "options": {"probe": "mean_logt"}})
    with pytest.raises(ConfigError) as err:
        run(body, output=tmp_path / "run")
    assert str(err.value) == (
        "feedback.policies[0].options.probe: unknown analyzer 'mean_logt'; did you mean "
        "'mean_logit'?; installed analyzers: mean_logit"
    )


def test_unknown_policy_lists_the_installed_ones(tiny, tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        run(with_policies(tmp_path, {"name": "kep"}), output=tmp_path / "run")
    assert str(err.value) == (
        "feedback.policies[0].name: unknown policy 'kep'; did you mean 'keep'?; "
        "installed policies: bad_outcome, keep, no_apply, reject_always, retrain_once"
    )


def test_a_policy_that_returns_no_outcome_is_a_plugin_error(tiny, tmp_path) -> None:
    with pytest.raises(PluginError) as err:
        run(with_policies(tmp_path, {"name": "bad_outcome"}), output=tmp_path / "run")
    assert str(err.value) == (
        "policy 'bad_outcome' from policies-dist (plugin 'policies') failed while deciding: "
        "TypeError: apply() returned a dict, not a PolicyOutcome (--debug shows the traceback)"
    )


# ----------------------------------------------------------------- first-party policies
def digits_spec(tmp_path: Path, *policies: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The digits CNN of specs/digits-cnn-robust.toml, much smaller and shorter."""
    body: dict[str, Any] = {
        "name": "policies",
        "data": {"name": "digits", "test_fraction": 0.2},
        "model": {
            "name": "cnn",
            "hyperparameters": {
                "input_channels": 1,
                "input_size": [8, 8],
                "conv_layers": [{"out_channels": 4, "kernel_size": 3, "padding": 1, "pool": 2}],
                "num_classes": 10,
            },
        },
        "training": {"epochs": 2, "seed": 0, "deterministic": True, "progress": False},
        "analysis": {"analyzers": [{"name": "fgsm", "options": {"epsilon": 0.1}, "n_samples": 64}]},
        "feedback": {
            "sinks": [{"name": "jsonl", "options": {"path": str(tmp_path / "ev.jsonl")}}],
            "policies": list(policies),
        },
    }
    body.update(changes)
    return body


ADVERSARIAL = {
    "name": "adversarial",
    "max_rounds": 1,
    "options": {
        "attack": "apgd_ce",
        "epsilon": 0.1,
        "attack_options": {"n_iter": 3},
        "vulnerability_threshold": 1.0,  # any loss under attack counts
        "training": "trades",
        "train_steps": 2,
        "epochs": 2,
        "select_options": {"n_iter": 2},
        "final_attack": "autoattack",
        "final_options": {
            "options": {
                "apgd_ce": {"n_iter": 3},
                "apgd_t": {"n_iter": 3, "n_target_classes": 2},
                "fab_t": {"n_iter": 3, "n_target_classes": 2},
                "square": {"n_queries": 10},
            }
        },
        "n_samples": 32,
    },
}


@pytest.mark.requires_plugins(
    "neuroplex-attacks", "neuroplex-sinks", "neuroplex-datasets", "neuroplex-models",
    "neuroplex-optim", "neuroplex-devices",
)  # fmt: skip
def test_adversarial_loop_then_early_reject_gate_from_a_spec(tmp_path) -> None:
    """The seed's loop (vulnerable → adversarial fine-tuning → re-export → re-test) reached
    from a spec, then a gate on the retrained model's robust accuracy that fails the run."""
    gate = {"name": "early_reject", "options": {"min": {"fgsm.robust_accuracy": 1.01}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(digits_spec(tmp_path, ADVERSARIAL, gate)))
    out = tmp_path / "run"
    result = run_cli(
        "run", str(path), "--output", str(out), env=clean_env(NEUROPLEX_STRICT_PLUGINS="1"),
        timeout=600,
    )  # fmt: skip
    assert result.code == 3, result.err[-3000:]
    [line] = [x for x in result.err_lines if x.startswith("neuroplex: error: ")]
    results = json.loads((out / "results.json").read_text())
    seen = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    [*_, fgsm] = [e for e in seen if e["kind"] == "analysis" and e["name"] == "fgsm"]
    robust = fgsm["payload"]["robust_accuracy"]  # the retrained model's, re-analysed
    assert line == (
        "neuroplex: error: policy 'early_reject' rejected the run: fgsm.robust_accuracy = "
        f"{robust:.4g} is below the minimum 1.01 (results: {out / 'results.json'})"
    )
    first, last, final, gate_row = results["rounds"]
    assert first["action"] == "retrain" and first["is_vulnerable"] is True
    assert last["round"] == 1 and last["action"].startswith("stop: ")
    assert first["split"] == last["split"] == "val"  # decisions never look at the test split
    assert (final["action"], final["split"], final["attack"]) == (
        "final check",
        "test",
        "autoattack",
    )
    assert final["n"] == 32 and final["kept"].startswith(("start", "round 1 epoch"))
    assert gate_row["action"] == "reject"
    assert fgsm["payload"]["evaluated_on"] == {
        "analyzer": "fgsm", "split": "test", "n": 64, "backend": "onnx",
    }  # fmt: skip
    rows = {r["analysis"]: r for r in results["robustness"]}
    assert set(rows) == {"fgsm", "fgsm@round3"}
    assert rows["fgsm@round3"]["robust_accuracy"] == robust
    for row in rows.values():
        assert (row["attack"], row["epsilon"], row["norm"]) == ("fgsm", 0.1, "linf")
        assert (row["n"], row["split"], row["strength"]) == (64, "test", "weaker")
    assert results["evaluations"]["fgsm@round3"]["split"] == "test"
    assert gate_row["checks"][0]["value"] == robust  # the gate judged the retrained model
    titles = [s["title"] for s in results["sections"]]
    assert "Mechanic: adversarial rounds" in titles and "Mechanic: early_reject gate" in titles
    assert "Mechanic: checkpoint selection (validation split)" in titles
    assert (out / "round1" / "checkpoints").is_dir() and (out / "model.onnx").is_file()
    names = [e["name"] for e in seen if e["kind"] == "decision"]
    assert names == ["adversarial:0", "adversarial:1", "adversarial:2", "early_reject:0"]


@pytest.mark.parametrize(
    ("policy", "entry_point", "dist"),
    [("adversarial", "attacks", "neuroplex-attacks"), ("early_reject", "sinks", "neuroplex-sinks")],
)
@pytest.mark.requires_plugins(
    "neuroplex-datasets", "neuroplex-models", "neuroplex-optim", "neuroplex-devices"
)
def test_missing_policy_plugin_is_one_line_with_the_pip_command(
    tmp_path, policy: str, entry_point: str, dist: str
) -> None:
    body = digits_spec(tmp_path, {"name": policy, "options": {}})
    body["analysis"] = {"analyzers": []}
    body["feedback"]["sinks"] = []
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(body))
    result = run_cli("run", str(path), env=clean_env(NEUROPLEX_DISABLE_PLUGINS=entry_point))
    assert result.code == 2, result.out + result.err
    assert result.err_lines == [
        "neuroplex: error: this spec needs plugin distributions that are not installed: "
        f"{dist}; install them with: pip install {dist}"
    ]
