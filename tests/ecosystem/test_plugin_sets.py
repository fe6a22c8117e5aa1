"""Whatever plugin set is installed (tox envs ``core``, ``analysis``, ``full``, or a developer's
environment): it loads cleanly in strict mode, and the kernel's install hints tell the truth
about the first-party plugins that are installed."""

from __future__ import annotations

import functools
import json

import pytest

from neuroplex.records import KINDS, normalize_name
from neuroplex.registry import FIRST_PARTY

from ._cli import clean_env, installed_plugin_distributions, run_cli, run_python

INSTALLED = set(installed_plugin_distributions())
BROKEN_FIXTURES = {"neuroplex-broken-plugins", "neuroplex-duplicate-plugin"}

healthy_set = pytest.mark.skipif(
    not INSTALLED or bool(INSTALLED & BROKEN_FIXTURES),
    reason="needs installed plugins and no broken fixture plugin",
)


@healthy_set
def test_installed_plugins_load_in_strict_mode_and_doctor_is_happy() -> None:
    result = run_cli("doctor", env=clean_env(NEUROPLEX_STRICT_PLUGINS="1"))
    assert result.code == 0, result.out + result.err
    assert result.out.strip().endswith("ok")
    assert result.err == ""


@healthy_set
def test_every_installed_plugin_distribution_is_listed_ok() -> None:
    result = run_cli("plugins", "--json", env=clean_env(NEUROPLEX_STRICT_PLUGINS="1"))
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert {p["distribution"] for p in listed} == INSTALLED
    assert all(p["status"] == "ok" and p["components"] for p in listed), listed


HINTS = [
    (kind, dist, name)
    for kind in KINDS
    for dist, names in FIRST_PARTY[kind].items()
    for name in names
]


@pytest.mark.parametrize(("kind", "dist", "name"), HINTS, ids=[f"{d}:{k}:{n}" for k, d, n in HINTS])
def test_install_hint_names_a_component_the_distribution_registers(
    kind: str, dist: str, name: str
) -> None:
    """``neuroplex.registry.FIRST_PARTY`` tells users which distribution to install for a name;
    where that distribution is installed, it must register the name."""
    if dist not in INSTALLED:
        pytest.skip(f"{dist} is not installed")
    found = _lookups_with_only(dist)
    assert found.get(f"{kind}:{normalize_name(name)}") is not None, (
        f"{dist} does not register {kind} {name!r}"
    )
    assert normalize_name(found[f"{kind}:{normalize_name(name)}"]) == normalize_name(dist)


@functools.cache
def _lookups_with_only(dist: str) -> dict[str, str]:
    """``{"kind:name": distribution}`` for every name of the hint table, with only ``dist``'s
    plugins loaded (one subprocess per distribution)."""
    pairs = sorted({(k, n) for k, _, n in HINTS})
    code = (
        "import json\nfrom neuroplex.plugins import get_plugin_manager\n"
        "m = get_plugin_manager()\nout = {}\n"
        f"for kind, name in {pairs!r}:\n"
        "    reg = m.lookup(kind, name)\n"
        "    if reg is not None:\n"
        "        out[kind + ':' + name.replace('-', '_').lower()] = reg.distribution\n"
        "print(json.dumps(out))\n"
    )
    result = run_python(code, env=clean_env(NEUROPLEX_DISABLE_PLUGINS=_others(dist)))
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def _others(dist: str) -> str:
    """Entry-point names of the installed plugins of other distributions (to isolate ``dist``)."""
    from importlib import metadata

    return ",".join(
        ep.name
        for ep in metadata.entry_points(group="neuroplex")
        if ep.dist is not None and normalize_name(ep.dist.metadata["Name"]) != normalize_name(dist)
    )
