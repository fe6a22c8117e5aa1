"""The reference docs keep up with the code: generated pages are fresh, every spec key and every
hook is documented (hooks with their exact signature), links resolve, one copy of each table."""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import types
import typing
from pathlib import Path

import attrs
import pytest

from neuroplex import config, docgen, hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "kernel" / "docs"
USER_PAGES = [
    ROOT / "README.md",
    *sorted(DOCS.glob("*.md")),
    *sorted((ROOT / "plugins").glob("*/README.md")),
]


def _config_classes() -> list[type[object]]:
    """Every attrs class a spec reaches, from RunSpec down."""
    found: list[type[object]] = []
    todo: list[type[object]] = [config.RunSpec]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.append(cls)
        for tp in typing.get_type_hints(cls).values():
            for arg in (tp, *typing.get_args(tp)):
                if attrs.has(arg):
                    todo.append(arg)
    return found


@pytest.mark.parametrize("name", sorted(docgen.pages()))
def test_generated_page_is_fresh(name: str) -> None:
    current = (DOCS / name).read_text(encoding="utf-8")
    assert current == docgen.pages()[name], (
        f"kernel/docs/{name} is stale: run python -m neuroplex.docgen"
    )


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_spec_key_has_a_meaning(cls: type[object]) -> None:
    comments = docgen.field_comments(cls)
    missing = [f.name for f in attrs.fields(cls) if not comments.get(f.name)]  # type: ignore[arg-type]
    assert not missing, f"{cls.__name__}: add a '#: meaning' comment above {missing}"


def test_spec_format_lists_every_key_of_every_table() -> None:
    text = (DOCS / "spec-format.md").read_text(encoding="utf-8")
    for cls in _config_classes():
        for field in attrs.fields(cls):  # type: ignore[arg-type]
            assert f"| `{field.name}` |" in text, f"{cls.__name__}.{field.name}"
    tables = ("[data]", "[model]", "[training]", "[[analysis.analyzers]]", "[[feedback.sinks]]")
    for table in tables:
        assert f"## `{table}`" in text


def test_an_undocumented_field_is_an_error_naming_the_fix() -> None:
    @attrs.frozen
    class Undocumented:
        #: documented
        fine: int = 0
        bare: int = 1

    with pytest.raises(ValueError, match=r"Undocumented\.bare has no meaning: add a '#: \.\.\.'"):
        docgen._meaning(Undocumented, "bare")
    assert docgen._meaning(Undocumented, "fine") == "documented"


def test_check_mode_reports_stale_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "run python -m neuroplex.docgen" in capsys.readouterr().err
    assert docgen.main(["--dir", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--dir", str(tmp_path)]) == 0


def test_a_missing_docs_folder_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert docgen.main(["--dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere is not a directory" in err and "--dir" in err
    assert not (tmp_path / "nowhere").exists()


HOOKS = {
    name: fn
    for name, fn in vars(hookspecs).items()
    if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    fn = HOOKS[hook]
    params = ", ".join(str(p) for p in inspect.signature(fn).parameters.values())
    signature = f"def {hook}({params}) -> {fn.__annotations__['return']}:"
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    assert f"## {hook}\n" in text, f"hooks.md has no section for {hook}"
    assert signature in text, f"hooks.md lacks the exact signature {signature}"


def test_every_protocol_is_documented() -> None:
    try:
        protocols = importlib.import_module("neuroplex.protocols")
    except ModuleNotFoundError:
        pytest.skip("this kernel declares no neuroplex.protocols module")
    names = [
        name
        for name, obj in vars(protocols).items()
        if inspect.isclass(obj)
        and getattr(obj, "_is_protocol", False)
        and obj.__module__ == protocols.__name__  # not typing.Protocol, which it imports
        and not name.startswith("_")
    ]
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"protocols missing from kernel/docs: {missing}"


def _slug(heading: str) -> str:
    heading = re.sub(r"[`*]", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


#: words a user could not know: how this project was specified and organised internally
INTERNAL = re.compile(
    r"\bseed's\b|\bthe seed (?:api|guide|contract)\b|\bas in the seed\b|\banchors?\b|\bissue \d+",
    re.IGNORECASE,
)


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_speak_to_users(page: Path) -> None:
    found = INTERNAL.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.relative_to(ROOT)} uses {found}"


def test_one_copy_of_each_reference_section() -> None:
    assert not list((ROOT / "kernel").rglob("README_SECTION.md"))
    assert not (ROOT / "tests" / "benchmarks" / "RESULTS.md").exists()
    reliability = (DOCS / "reliability.md").read_text(encoding="utf-8")
    assert reliability.count("<!-- reliability:start -->") == 1
    assert reliability.count("<!-- reliability:end -->") == 1
    assert "--update-docs" in reliability
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- reliability:start -->" not in readme


def _subcommands() -> list[str]:
    from neuroplex.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_is_in_the_cli_page(command: str) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert f"| `neuroplex {command}" in text, f"cli.md has no row for `neuroplex {command}`"


def test_the_sink_example_is_a_conformant_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuroplex.mechanic import Mechanic
    from neuroplex.testing import run_checks

    text = (DOCS / "sinks.md").read_text(encoding="utf-8")
    section = text.split("## How a sink receives")[1].split("\n## ")[0]
    plugin_code, sink_code = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    sinks = types.ModuleType("my_plugin.sinks")
    exec(compile(sink_code, "sinks.md", "exec"), sinks.__dict__)
    monkeypatch.setitem(sys.modules, "my_plugin", types.ModuleType("my_plugin"))
    monkeypatch.setitem(sys.modules, "my_plugin.sinks", sinks)
    plugin = types.ModuleType("docs_sink_plugin")
    exec(compile(plugin_code, "sinks.md", "exec"), plugin.__dict__)
    (record,) = plugin.neuroplex_register_feedback_sinks()
    assert run_checks(record) == []
    with Mechanic([sinks.CsvMetricsSink(run_dir=str(tmp_path))], spool_dir=tmp_path) as mechanic:
        mechanic.record_performance("model", {"accuracy": 0.5})
    assert "accuracy,0.5" in (tmp_path / "metrics.csv").read_text(encoding="utf-8")


@pytest.mark.requires_plugins(
    "neuroplex-models", "neuroplex-datasets", "neuroplex-optim", "neuroplex-sinks"
)
def test_results_page_names_every_key_a_run_writes(tmp_path: Path) -> None:
    import json

    from neuroplex.pipeline import run

    spec = {
        "name": "docs",
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hyperparameters": {"hidden_layers": [{"out_features": 8}]}},
        "training": {"epochs": 1, "batch_size": 128},
        "export": {"enabled": False},
    }
    run(spec, output=tmp_path / "run")
    page = (DOCS / "results.md").read_text(encoding="utf-8")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    for key in [*manifest, *results, *next(iter(manifest["sinks"].values()))]:
        assert f"`{key}`" in page, f"results.md does not describe {key!r}"
    for section in results["sections"]:
        assert f"| `{section['type']}` |" in page
        assert all(f"`{key}`" in page for key in section), section
