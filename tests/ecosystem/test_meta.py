"""Meta-tests of the plugin API: every hook is documented with a complete, working example
plugin and its exact signature in the authoring guide; every hook is exercised by a test; every
kind has conformance checks; tox's plugin sets cover every plugin in the repository."""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import inspect
import re
import textwrap
import tomllib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import neuroplex
from neuroplex import hookspecs
from neuroplex.plugins import PluginManager
from neuroplex.records import KINDS, RECORD_TYPES

from ._cli import ROOT

GUIDE_PAGES = ("plugin-guide.md", "hooks.md", "policies.md")


def guide_text() -> str:
    """The plugin authoring guide, its hook reference and the policy guide (kernel/docs)."""
    return "\n".join(
        (ROOT / "kernel" / "docs" / name).read_text(encoding="utf-8") for name in GUIDE_PAGES
    )


HOOKS: dict[str, Callable[..., Any]] = {
    name: fn
    for name, fn in vars(hookspecs).items()
    if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
}
KIND_OF_HOOK = {hook: kind for kind, hook in hookspecs.HOOK_FOR_KIND.items()}


def _signature(name: str) -> str:
    fn = HOOKS[name]
    params = ", ".join(inspect.signature(fn).parameters)
    return f"def {name}({params}) -> {fn.__annotations__['return']}:"


def _register_source(code: str, name: str) -> PluginManager:
    module = types.ModuleType(name)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    manager = PluginManager(autoload=False, strict=True)
    manager.register(module, name, distribution="docs-example")
    return manager


def test_every_kind_has_exactly_one_hook() -> None:
    assert set(HOOKS) == set(hookspecs.HOOK_FOR_KIND.values())
    assert set(hookspecs.HOOK_FOR_KIND) == set(KINDS)


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_docstring_holds_a_complete_working_example_plugin(hook: str) -> None:
    doc = inspect.getdoc(HOOKS[hook]) or ""
    _, sep, tail = doc.partition("Example plugin::")
    assert sep, f"{hook}: docstring has no 'Example plugin::' block"
    lines = tail.splitlines()[1:]
    block = []
    for line in lines:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    code = textwrap.dedent("\n".join(block))
    assert "from neuroplex import" in code and "@hookimpl" in code, code
    assert f"def {hook}():" in code, f"{hook}: the example does not implement the hook"
    manager = _register_source(code, f"example_{hook}")
    [info] = manager.plugins()
    kind = KIND_OF_HOOK[hook]
    assert info.status == "ok", info.error
    assert info.components.get(kind), f"{hook}: the example registers no {kind}"
    for reg in manager.registrations(kind):
        assert isinstance(reg.record, RECORD_TYPES[kind])
        assert reg.record.summary, f"{hook}: example record without a summary"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_guide_documents_the_exact_signature(hook: str) -> None:
    assert _signature(hook) in guide_text(), _signature(hook)


def test_guide_names_the_current_hook_api_version() -> None:
    text = guide_text()
    assert f"HOOK_API_VERSION == {neuroplex.HOOK_API_VERSION}" in text


@pytest.mark.parametrize(
    "term",
    [
        "NEUROPLEX_PREFER",
        "[plugins]",
        "prefer",
        "NEUROPLEX_PLUGINS",
        "NEUROPLEX_DISABLE_PLUGINS",
        "NEUROPLEX_STRICT_PLUGINS",
        "--strict-plugins",
        "ConformanceSuite",
        "requires_plugins",
        "[project.entry-points.neuroplex]",
    ],
)
def test_guide_covers(term: str) -> None:
    assert term in guide_text()


def _fenced(lang: str) -> list[str]:
    text = guide_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def test_guide_minimal_plugin_registers() -> None:
    blocks = [b for b in _fenced("python") if "@hookimpl" in b and "class " not in b]
    assert blocks, "the guide has no plugin module"
    manager = _register_source(blocks[0], "guide_plugin")
    [info] = manager.plugins()
    assert info.status == "ok", info.error
    assert info.components, "the guide's plugin registers nothing"


def test_guide_pyproject_declares_the_entry_point() -> None:
    tomls = [tomllib.loads(b) for b in _fenced("toml") if "[project.entry-points.neuroplex]" in b]
    assert tomls, "the guide has no pyproject.toml with the entry point"
    project = tomls[0]["project"]
    assert project["entry-points"]["neuroplex"]
    assert any(d.startswith("neuroplex") for d in project["dependencies"])


# ------------------------------------------------------------------ every hook is exercised
def _python_files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.is_dir() for p in root.rglob("*.py")]


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    """A test-suite plugin (tests/**) implements it, or a plugin under plugins/ implements it and
    runs the conformance kit over its components."""
    me = Path(__file__).resolve()
    pattern = re.compile(rf"^\s*def {hook}\(", re.MULTILINE)
    in_tests = [
        p
        for p in _python_files(ROOT / "tests")
        if p.resolve() != me and pattern.search(p.read_text(encoding="utf-8"))
    ]
    in_plugins = [
        d.name
        for d in sorted((ROOT / "plugins").glob("*"))
        if any(pattern.search(p.read_text(encoding="utf-8")) for p in _python_files(d / "src"))
        and any(
            "ConformanceSuite" in p.read_text(encoding="utf-8") for p in _python_files(d / "tests")
        )
    ]
    assert in_tests or in_plugins, f"no test exercises {hook}"


# ------------------------------------------------------------------ conformance per kind
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_conformance_check_module(kind: str) -> None:
    name = f"neuroplex.testing.{kind}"
    assert importlib.util.find_spec(name) is not None, f"{name} is missing"
    checks = importlib.import_module(name).CHECKS
    assert isinstance(checks, list) and checks, f"{name}.CHECKS is empty"
    assert all(callable(c) for c in checks)


# ------------------------------------------------------------------ tox covers every plugin
def _tox_sets() -> dict[str, set[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini", encoding="utf-8")
    raw = dict(parser["plugins"])

    def expand(value: str) -> set[str]:
        names: set[str] = set()
        for word in value.split():
            ref = re.fullmatch(r"\{\[plugins\](\w+)\}", word)
            if ref:
                names |= expand(raw[ref.group(1)])
            else:
                names.add(word.split("[")[0])
        return names

    return {key: expand(value) for key, value in raw.items()}


def _repo_distributions() -> dict[str, Path]:
    found = {}
    for pattern in ("plugins/*", "tests/fixtures/thirdparty", "tests/fixtures/broken/*"):
        for d in ROOT.glob(pattern):
            if (d / "pyproject.toml").is_file():
                data = tomllib.loads((d / "pyproject.toml").read_text(encoding="utf-8"))
                found[data["project"]["name"]] = d
    return found


def test_tox_full_set_installs_every_plugin_of_the_repository() -> None:
    first_party = {n for n, d in _repo_distributions().items() if d.parent.name == "plugins"}
    assert first_party, "no plugin found under plugins/"
    assert first_party <= _tox_sets()["full"], first_party - _tox_sets()["full"]


def test_every_distribution_named_in_tox_exists() -> None:
    named = set().union(*_tox_sets().values())
    missing = sorted(named - set(_repo_distributions()))
    assert not missing, f"tox.ini names distributions with no directory: {missing}"


def test_every_first_party_distribution_has_a_plugin_directory() -> None:
    from neuroplex.registry import FIRST_PARTY

    dists = {d for kind in KINDS for d in FIRST_PARTY[kind]}
    missing = sorted(d for d in dists if not (ROOT / "plugins" / d / "pyproject.toml").is_file())
    assert not missing, f"install hints name distributions that are not in plugins/: {missing}"
