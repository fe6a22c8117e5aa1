"""The example third-party plugin (tests/fixtures/thirdparty): written only against the
documented API, it loads from its source without installation (these tests run everywhere),
and, where it is pip-installed, it is usable from a run spec end to end."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import neuroplex
from neuroplex.config import load_spec
from neuroplex.plugins import PluginManager, use_plugin_manager
from neuroplex.testing import run_checks

from ._cli import THIRDPARTY, clean_env, run_python

PYPROJECT = tomllib.loads((THIRDPARTY / "pyproject.toml").read_text(encoding="utf-8"))
SRC = THIRDPARTY / "src"


@pytest.fixture
def example_module() -> Iterator[ModuleType]:
    """``neuroplex_example.plugin`` imported from the source tree (restored afterwards)."""
    saved = {n: m for n, m in sys.modules.items() if n.startswith("neuroplex_example")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(SRC))
    try:
        yield importlib.import_module("neuroplex_example.plugin")
    finally:
        sys.path.remove(str(SRC))
        for name in [n for n in sys.modules if n.startswith("neuroplex_example")]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture
def example_manager(example_module: ModuleType) -> Iterator[PluginManager]:
    manager = PluginManager(autoload=False, strict=True)
    manager.register(example_module, "example", distribution="neuroplex-example-plugin")
    with use_plugin_manager(manager):
        yield manager


def test_distribution_metadata_follows_the_guide() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == "neuroplex-example-plugin"
    assert project["entry-points"]["neuroplex"] == {"example": "neuroplex_example.plugin"}
    assert any(dep.startswith("neuroplex>=") for dep in project["dependencies"])
    assert PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/neuroplex_example"
    ]
    assert (THIRDPARTY / "README.md").is_file()
    assert list((THIRDPARTY / "tests").glob("test_*.py"))


def test_uses_only_the_documented_api() -> None:
    """Every ``neuroplex`` name the example imports is in ``neuroplex.__all__``."""
    import ast

    used: set[str] = set()
    for path in (SRC / "neuroplex_example").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
            if module.split(".")[0] == "neuroplex":
                assert module == "neuroplex", f"{path.name} imports {module}"
                used.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "neuroplex":
                used.add(node.attr)
    assert used, "the example imports nothing from neuroplex?"
    assert used <= set(neuroplex.__all__), used - set(neuroplex.__all__)


def test_entry_module_does_not_import_torch() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
        "import neuroplex_example.plugin\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    result = run_python(code, env=clean_env())
    assert result.code == 0, result.err
    assert result.out.strip() == "NO-TORCH"


def test_registers_one_component_of_four_kinds(example_manager: PluginManager) -> None:
    [info] = example_manager.plugins()
    assert info.status == "ok", info.error
    assert info.components == {
        "layer": ("bent_identity",),
        "optimizer": ("signsgd",),
        "feedback_sink": ("csv_events",),
        "policy": ("accuracy_floor",),
    }
    assert "activation" in neuroplex.get_record("layer", "bent_identity").capabilities


def test_components_build_through_the_registries(
    example_manager: PluginManager, tmp_path: Path
) -> None:
    import torch

    layer = neuroplex.create_layer("bent_identity")
    assert layer(torch.zeros(2, 3)).abs().max().item() == 0.0
    w = torch.nn.Parameter(torch.zeros(3))
    opt = neuroplex.create_optimizer("signum", [w], lr=0.1, momentum=0.5)
    assert type(opt).__name__ == "SignSGD"
    sink = neuroplex.create_sink("csv_events", path=str(tmp_path / "events.csv"))
    sink.send(neuroplex.Event(run_id="r", kind="metrics", name="m", payload={"x": 1}))
    sink.close()
    assert (tmp_path / "events.csv").read_text(encoding="utf-8").count("\n") == 2


def test_passes_the_conformance_checks_that_exist(example_manager: PluginManager) -> None:
    """The per-kind check modules (neuroplex.testing.<kind>) are written separately; run
    every one that exists on every record of the example."""
    ran = 0
    for kind in ("layer", "optimizer", "feedback_sink", "policy"):
        if importlib.util.find_spec(f"neuroplex.testing.{kind}") is None:
            continue
        for reg in example_manager.registrations(kind):
            assert run_checks(reg.record) == [], reg.record.name
            ran += 1
    if ran == 0:
        pytest.skip("no conformance check module for layer, optimizer or feedback_sink yet")


def _spec(tmp_path: Path) -> dict:
    return {
        "name": "example-plugin-run",
        "output_dir": str(tmp_path),
        "data": {"name": "digits"},
        "model": {  # the hyperparameters of specs/digits-cnn.toml, smaller
            "name": "cnn",
            "hyperparameters": {
                "input_channels": 1,
                "input_size": [8, 8],
                "conv_layers": [{"out_channels": 4, "kernel_size": 3, "padding": 1}],
                "num_classes": 10,
            },
        },
        "training": {"optimizer": "signsgd", "optimizer_params": {"momentum": 0.9}, "epochs": 1},
        "export": {"enabled": False},
        "feedback": {
            "sinks": [{"name": "csv_events", "options": {"path": "events.csv"}}],
            "policies": [{"name": "accuracy_floor", "options": {"floor": 0.0}}],
        },
    }


def test_spec_names_its_components(example_manager: PluginManager, tmp_path: Path) -> None:
    from neuroplex.run import required_components

    spec = load_spec(_spec(tmp_path))
    need = required_components(spec)
    assert ("training.optimizer", "optimizer", "signsgd") in need
    assert ("feedback.sinks[0].name", "feedback_sink", "csv_events") in need
    assert ("feedback.policies[0].name", "policy", "accuracy_floor") in need
    for _, kind, name in need:
        if kind in {"optimizer", "feedback_sink", "policy"}:
            assert neuroplex.get_record(kind, name).name == name


@pytest.mark.requires_plugins(
    "neuroplex-example-plugin", "neuroplex-datasets", "neuroplex-models", "neuroplex-devices"
)
def test_run_spec_trains_with_the_example_optimizer_and_sink(tmp_path: Path) -> None:
    """End to end through ``neuroplex.run.run`` with the installed plugins."""
    spec = _spec(tmp_path)
    spec["feedback"]["sinks"][0]["options"]["path"] = str(tmp_path / "events.csv")
    code = (
        "import json, sys\nfrom neuroplex.run import run\n"
        f"result = run({spec!r})\n"
        "print(json.dumps({'status': result.status, 'metrics': result.test_metrics}))\n"
    )
    result = run_python(code, env=clean_env(NEUROPLEX_STRICT_PLUGINS="1"), timeout=600)
    assert result.code == 0, result.err[-3000:]
    import json

    summary = json.loads(result.out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    events = (tmp_path / "events.csv").read_text(encoding="utf-8")
    assert "run_finished" in events or "metrics" in events
    assert "accuracy_floor:0" in events  # the example policy's decision reached the example sink


def test_example_policy_fails_a_run_from_a_spec(
    example_manager: PluginManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example policy, with the kernel's tiny test plugin set, fails a run below its floor."""
    import json

    from neuroplex import RunRejected
    from neuroplex.pipeline import run

    from ..pipeline.test_run import FIXTURES, spec

    monkeypatch.syspath_prepend(str(FIXTURES))
    import npfix_tiny

    example_manager.register(npfix_tiny, "tiny", distribution="tiny-dist")
    body = spec(tmp_path, export={"enabled": False}, analysis={"analyzers": []})
    floor = {"name": "accuracy_floor", "options": {"floor": 1.01}}
    body["feedback"] = {**body["feedback"], "policies": [floor]}  # type: ignore[dict-item]
    with pytest.raises(RunRejected) as err:
        run(body, output=tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    accuracy = results["test_metrics"]["accuracy"]
    assert str(err.value).startswith(
        f"policy 'accuracy_floor' rejected the run: test accuracy {accuracy:.4f} is below the "
        "floor 1.01 (results: "
    )
    [row] = results["rounds"]
    assert row["action"] == "reject" and row["floor"] == 1.01
