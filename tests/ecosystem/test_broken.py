"""Broken plugins installed for real (tox env ``broken``): failures are graceful and
attributed, the healthy plugins keep working, strict mode fails, deny lists and preferences fix.

The fixtures (tests/fixtures/broken) are pip-installed distributions: ``neuroplex-broken-plugins``
(entry points ``broken_import``, ``wrong_signature``, ``unknown_hook``) and
``neuroplex-duplicate-plugin`` (registers optimizer ``signsgd`` like neuroplex-example-plugin).
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from ._cli import clean_env, run_cli, run_python

pytestmark = pytest.mark.requires_plugins(
    "neuroplex-broken-plugins", "neuroplex-duplicate-plugin", "neuroplex-example-plugin"
)

BROKEN = ("broken_import", "unknown_hook", "wrong_signature")
ALL_FIXTURES = (*BROKEN, "duplicate")


def _version(dist: str) -> str:
    return metadata.version(dist)


def lenient(**extra: str | None) -> dict[str, str]:
    """Non-strict, every installed plugin enabled."""
    return clean_env(NEUROPLEX_STRICT_PLUGINS="0", **extra)


def _plugins_json(env: dict[str, str]) -> dict[str, dict]:
    result = run_cli("plugins", "--json", env=env)
    assert result.code == 0, result.err
    return {p["name"]: p for p in json.loads(result.out)}


def test_each_failure_is_one_attributed_line_and_the_rest_loads() -> None:
    result = run_cli("plugins", env=lenient())
    assert result.code == 0, result.err
    dist = f"neuroplex-broken-plugins {_version('neuroplex-broken-plugins')}"
    lines = result.err_lines
    assert sorted(line.split("'")[1] for line in lines) == sorted(BROKEN), result.err
    for line in lines:
        assert line.startswith("neuroplex: plugin '"), line
        assert f"({dist}) failed: " in line, line
    assert "Traceback" not in result.err


def test_failures_say_what_is_wrong() -> None:
    plugins = _plugins_json(lenient())
    assert {n: plugins[n]["status"] for n in (*BROKEN, "duplicate", "example")} == {
        "broken_import": "failed",
        "unknown_hook": "failed",
        "wrong_signature": "failed",
        "duplicate": "ok",
        "example": "ok",
    }
    assert "neuroplex_missing_dependency" in plugins["broken_import"]["error"]
    assert plugins["broken_import"]["error"].startswith(
        "import of 'neuroplex_broken.broken_import'"
    )
    assert "registry" in plugins["wrong_signature"]["error"]
    assert "invalid hook implementation" in plugins["wrong_signature"]["error"]
    assert plugins["unknown_hook"]["error"] == (
        "hookimpl 'neuroplex_register_optimizer' matches no neuroplex hook; "
        "did you mean 'neuroplex_register_optimizers'?"
    )
    for name in BROKEN:
        assert plugins[name]["distribution"] == "neuroplex-broken-plugins"
        assert plugins[name]["components"] == {}


def test_healthy_components_stay_usable() -> None:
    result = run_cli("list", "layer", env=lenient())
    assert result.code == 0, result.err
    names = {line.split()[0] for line in result.out.splitlines()[2:]}
    assert {"bent_identity", "duplicate_identity"} <= names
    assert "never_registered" not in result.out


def test_debug_shows_the_traceback_of_a_failed_plugin() -> None:
    result = run_cli("plugins", "--debug", env=lenient())
    assert result.code == 0
    assert "--- broken_import ---" in result.err
    assert "ModuleNotFoundError: No module named 'neuroplex_missing_dependency'" in result.err


def test_doctor_reports_failures_and_the_conflict_and_exits_1() -> None:
    result = run_cli("doctor", env=lenient())
    assert result.code == 1, result.out + result.err
    assert "conflict: optimizer 'signsgd' is registered by both" in result.out
    assert result.out.strip().endswith("4 problem(s) found")


def test_duplicate_name_is_an_error_naming_both_distributions_and_the_fix() -> None:
    code = (
        "import neuroplex, torch\n"
        "try:\n"
        "    neuroplex.create_optimizer('signsgd', [torch.nn.Parameter(torch.zeros(1))])\n"
        "except neuroplex.PluginError as exc:\n"
        "    print(exc)\n"
    )
    result = run_python(code, env=lenient())
    assert result.code == 0, result.err
    message = result.out.strip()
    assert "optimizer 'signsgd' is registered by both" in message
    assert "neuroplex-duplicate-plugin" in message and "neuroplex-example-plugin" in message
    assert "NEUROPLEX_PREFER=optimizer:signsgd=" in message
    assert '[plugins] prefer = {"optimizer:signsgd" = ' in message


@pytest.mark.parametrize(
    ("dist", "expected"),
    [("neuroplex-duplicate-plugin", "SGD"), ("neuroplex-example-plugin", "SignSGD")],
)
def test_prefer_resolves_the_duplicate(dist: str, expected: str) -> None:
    code = (
        "import neuroplex, torch\n"
        "w = torch.nn.Parameter(torch.zeros(1))\n"
        "opt = neuroplex.create_optimizer('signsgd', [w], lr=0.1)\n"
        "print(type(opt).__name__, neuroplex.registry.origin_of(opt).distribution)\n"
    )
    env = clean_env(
        NEUROPLEX_STRICT_PLUGINS="1",
        NEUROPLEX_DISABLE_PLUGINS=",".join(BROKEN),
        NEUROPLEX_PREFER=f"optimizer:signsgd={dist}",
    )
    result = run_python(code, env=env)
    assert result.code == 0, result.err
    assert result.out.split() == [expected, dist]


def test_prefer_naming_a_distribution_without_the_name_is_an_error() -> None:
    env = lenient(NEUROPLEX_PREFER="optimizer:signsgd=neuroplex-broken-plugins")
    result = run_cli("list", "optimizer", env=env)
    assert result.code == 2, result.out + result.err
    assert "choose one of: " in result.err_lines[-1]


def test_strict_mode_fails_with_one_line() -> None:
    result = run_cli("plugins", env=clean_env(NEUROPLEX_STRICT_PLUGINS="1"))
    assert result.code == 2, result.out + result.err
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("neuroplex: error: neuroplex: plugin 'broken_import' ")
    assert "(neuroplex-broken-plugins " in line and line.endswith("(strict mode)")


def test_strict_flag_on_the_command_line_fails_too() -> None:
    result = run_cli("list", "layer", "--strict-plugins", env=lenient())
    assert result.code == 2, result.out + result.err
    assert result.err_lines[-1].endswith("(strict mode)")


def test_strict_mode_fails_on_a_duplicate_name() -> None:
    env = clean_env(NEUROPLEX_STRICT_PLUGINS="1", NEUROPLEX_PLUGINS="example,duplicate")
    result = run_cli("list", "optimizer", env=env)
    assert result.code == 2, result.out + result.err
    assert len(result.err_lines) == 1, result.err
    assert "optimizer 'signsgd' is registered by both" in result.err_lines[0]
    assert result.err_lines[0].endswith("(strict mode)")


def test_deny_list_makes_strict_mode_pass_and_never_imports_the_denied() -> None:
    env = clean_env(NEUROPLEX_STRICT_PLUGINS="1", NEUROPLEX_DISABLE_PLUGINS=",".join(ALL_FIXTURES))
    code = (
        "import sys, json\nfrom neuroplex.plugins import get_plugin_manager\n"
        "m = get_plugin_manager()\n"
        "print(json.dumps({p.name: p.status for p in m.plugins()}))\n"
        "print(sorted(n for n in sys.modules if n.startswith(('neuroplex_broken', "
        "'neuroplex_duplicate'))))\n"
    )
    result = run_python(code, env=env)
    assert result.code == 0, result.err
    statuses_line, modules_line = result.out.strip().splitlines()
    statuses = json.loads(statuses_line)
    assert {n: statuses[n] for n in ALL_FIXTURES} == dict.fromkeys(ALL_FIXTURES, "disabled")
    assert statuses["example"] == "ok"
    assert modules_line == "[]"
    assert result.err == ""


def test_allow_list_loads_only_the_named_plugins() -> None:
    env = clean_env(NEUROPLEX_STRICT_PLUGINS="1", NEUROPLEX_PLUGINS="example")
    plugins = _plugins_json(env)
    assert plugins["example"]["status"] == "ok"
    assert {n: plugins[n]["status"] for n in ALL_FIXTURES} == dict.fromkeys(ALL_FIXTURES, "blocked")


def test_help_works_whatever_is_broken() -> None:
    result = run_cli("--help", env=clean_env(NEUROPLEX_STRICT_PLUGINS="1"))
    assert result.code == 0
    assert "plugins" in result.out


def _spec_file(tmp_path, prefer: bool) -> str:
    plugins = '[plugins]\ndisable = ["broken_import", "wrong_signature", "unknown_hook"]\n'
    if prefer:
        plugins += 'prefer = { "optimizer:signsgd" = "neuroplex-example-plugin" }\n'
    path = tmp_path / "spec.toml"
    path.write_text(
        'name = "prefer"\n[data]\nname = "digits"\n[model]\nname = "cnn"\n'
        '[training]\noptimizer = "signsgd"\n[[feedback.sinks]]\nname = "csv_events"\n' + plugins,
        encoding="utf-8",
    )
    return str(path)


def test_run_spec_without_preference_stops_at_the_duplicate(tmp_path) -> None:
    result = run_cli("run", _spec_file(tmp_path, prefer=False), env=lenient())
    assert result.code == 2, result.out + result.err
    assert len(result.err_lines) == 1, result.err  # the spec's deny list silenced the broken
    assert "optimizer 'signsgd' is registered by both" in result.err_lines[0]


def test_run_spec_plugins_table_resolves_the_duplicate(tmp_path) -> None:
    """With ``[plugins] prefer`` the spec gets past the duplicate, even in strict mode; what
    stops it then is the plugins this environment lacks, named with the pip command."""
    env = clean_env(NEUROPLEX_STRICT_PLUGINS="1")
    result = run_cli("run", _spec_file(tmp_path, prefer=True), env=env)
    assert result.code == 2, result.out + result.err
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert "signsgd" not in line and "neuroplex-optim" not in line, line
    assert "pip install" in line and "neuroplex-datasets" in line, line
