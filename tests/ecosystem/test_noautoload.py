"""Autoloading off (tox env ``noautoload``: ``NEUROPLEX_PLUGINS=`` empty): installed plugins —
broken ones included — are listed as blocked and never imported, and a plugin registered
explicitly still works."""

from __future__ import annotations

import json
import os
import sys

import pytest

from neuroplex.plugins import PluginManager, use_plugin_manager

from ._cli import clean_env, installed_plugin_distributions, run_cli, run_python

requires_fixtures = pytest.mark.requires_plugins(
    "neuroplex-example-plugin", "neuroplex-broken-plugins"
)
autoload_off = pytest.mark.skipif(
    os.environ.get("NEUROPLEX_PLUGINS") != "",
    reason="needs NEUROPLEX_PLUGINS set and empty (tox -e noautoload)",
)


@autoload_off
def test_process_manager_is_empty_and_imported_nothing() -> None:
    from neuroplex.plugins import get_plugin_manager, reset_plugin_manager

    reset_plugin_manager()
    try:
        manager = get_plugin_manager()
        infos = manager.plugins()
    finally:
        reset_plugin_manager()
    assert {p.status for p in infos} <= {"blocked"}
    assert {p.distribution for p in infos} == set(installed_plugin_distributions())
    for p in infos:
        assert p.module.partition(":")[0] not in sys.modules, p.module


@autoload_off
def test_cli_lists_installed_plugins_as_blocked() -> None:
    result = run_cli("plugins", "--json", env=clean_env(NEUROPLEX_PLUGINS=""))
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert {p["distribution"] for p in listed} == set(installed_plugin_distributions())
    assert {p["status"] for p in listed} <= {"blocked"}


@requires_fixtures
def test_empty_allow_list_never_imports_even_broken_plugins_in_strict_mode() -> None:
    code = (
        "import sys\nfrom neuroplex.plugins import get_plugin_manager\n"
        "m = get_plugin_manager()\n"
        "print(sorted({p.status for p in m.plugins()}), len(m.failures()))\n"
        "print(sorted(n for n in sys.modules if n.startswith('neuroplex_')))\n"
    )
    env = clean_env(NEUROPLEX_PLUGINS="", NEUROPLEX_STRICT_PLUGINS="1")
    result = run_python(code, env=env)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["['blocked'] 0", "[]"]
    assert result.err == ""


@requires_fixtures
def test_list_without_autoload_names_the_plugin_to_install() -> None:
    result = run_cli("list", "optimizer", env=clean_env(NEUROPLEX_PLUGINS=""))
    assert result.code == 0, result.err
    assert "no optimizer matches '*'; optimizers come from plugins, e.g.: pip install" in (
        result.out
    )


@requires_fixtures
def test_explicit_registration_works_without_autoload() -> None:
    import neuroplex_example.plugin as example
    import torch

    import neuroplex

    manager = PluginManager.from_env({"NEUROPLEX_PLUGINS": "", "NEUROPLEX_STRICT_PLUGINS": "1"})
    assert manager.registrations("optimizer") == []
    manager.register(example, "example_by_hand", distribution="neuroplex-example-plugin")
    with use_plugin_manager(manager):
        w = torch.nn.Parameter(torch.tensor([1.0]))
        opt = neuroplex.create_optimizer("signsgd", [w], lr=0.5)
        (w * 2).sum().backward()
        opt.step()
        assert w.item() == pytest.approx(0.5)
        assert neuroplex.list_layers() == ["bent_identity"]
