"""Plugins that fail, and plugins that must never run.

* A plugin raising inside a factory or a forward pass: the error names the plugin and its
  distribution, and the other components keep working.
* Allow and deny lists, end to end through ``neuroplex`` subprocesses: a denied plugin (the
  fake distribution ``npmarker``, which writes a marker file the moment it is imported) is
  never imported, whichever way it is denied.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._helpers import SITE, cli_env, manifest, run_cli, tiny_spec, write_spec

pytestmark = pytest.mark.requires_plugins(
    "neuroplex-models", "neuroplex-datasets", "neuroplex-optim", "neuroplex-sinks"
)

ORIGIN = "npfault 0.1.0 (plugin 'npfault')"


@pytest.fixture
def fault_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A process-wide plugin manager over the installed plugins plus ``npfault``."""
    from neuroplex.plugins import PluginManager, use_plugin_manager

    monkeypatch.syspath_prepend(str(SITE))
    importlib.invalidate_caches()
    monkeypatch.setenv("NEUROPLEX_DISABLE_PLUGINS", "npmarker")
    manager = PluginManager.from_env()
    assert manager.lookup("model", "boom_factory") is not None
    with use_plugin_manager(manager):
        yield manager


@pytest.mark.reliability("fault", "plugin raises inside its factory")
def test_a_raising_factory_names_plugin_and_distribution(fault_plugins) -> None:
    from neuroplex import PluginError, create_model

    with pytest.raises(PluginError) as info:
        create_model("boom_factory")
    message = str(info.value)
    assert f"model 'boom_factory' from {ORIGIN} failed" in message
    assert "RuntimeError: injected failure in the model factory" in message
    # the rest of the registry is untouched
    model = create_model("mlp", input_size=4, output_size=2, hidden_layers=[{"out_features": 3}])
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.reliability("fault", "plugin raises inside its factory: `neuroplex run`")
def test_a_raising_factory_in_a_run_is_one_line_and_a_failed_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec.json", tiny_spec(model={"name": "boom_factory"}))
    done = run_cli("run", spec, "--output", tmp_path / "run", env=cli_env(site=True))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("neuroplex: error:")]
    assert f"model 'boom_factory' from {ORIGIN} failed" in line
    state = manifest(tmp_path / "run")
    assert state["status"] == "failed" and "PluginError" in state["error"]


@pytest.mark.reliability("fault", "plugin raises inside a forward pass mid-training")
def test_a_raising_forward_pass_names_plugin_and_distribution(tmp_path: Path) -> None:
    bad = tiny_spec(model={"name": "boom_forward", "hyperparameters": {"fail_at": 50}})
    done = run_cli(
        "run", write_spec(tmp_path / "bad.json", bad), "--output", tmp_path / "bad",
        env=cli_env(site=True),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("neuroplex: error:")]
    assert "model 'boom_forward'" in line and ORIGIN in line
    assert "RuntimeError: injected failure in forward call 50" in line
    state = manifest(tmp_path / "bad")
    assert state["status"] == "failed" and "boom_forward" in state["error"]
    # with --debug the plugin's own traceback is there, down to the raising line
    debug = run_cli(
        "run", tmp_path / "bad.json", "--output", tmp_path / "bad2", "--debug",
        env=cli_env(site=True),
    )  # fmt: skip
    assert debug.returncode == 2
    assert "npfault/models.py" in debug.stderr and "Traceback" in debug.stderr
    # the faulty distribution stays installed; other runs in its presence are unaffected
    good = write_spec(tmp_path / "good.json", tiny_spec(training={"epochs": 1}))
    ok = run_cli("run", good, "--output", tmp_path / "good", env=cli_env(site=True))
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert manifest(tmp_path / "good")["status"] == "completed"


# ---------------------------------------------------------------------------- deny lists
def _marker_env(marker: Path, **extra: str) -> dict[str, str]:
    return cli_env(site=True, NPMARKER_FILE=str(marker), **extra)


ALL_BUT_MARKER = "layers,models,optim,datasets,sinks,devices,explain,attacks,npfault"


@pytest.mark.reliability("hostile", "denied plugin (deny list, allow list, spec): never imported")
@pytest.mark.parametrize(
    ("how", "extra"),
    [
        ("NEUROPLEX_DISABLE_PLUGINS", {"NEUROPLEX_DISABLE_PLUGINS": "npmarker"}),
        ("NEUROPLEX_PLUGINS allow list", {"NEUROPLEX_PLUGINS": ALL_BUT_MARKER}),
        ("empty allow list", {"NEUROPLEX_PLUGINS": ""}),
    ],
)
@pytest.mark.parametrize("command", [["plugins", "--json"], ["list", "layer"], ["doctor"]])
def test_a_denied_plugin_is_never_imported(
    how: str, extra: dict[str, str], command: list[str], tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    done = run_cli(*command, env=_marker_env(marker, **extra))
    assert done.returncode in (0, 1), done.stderr  # doctor exits 1 when no plugin is allowed
    assert "Traceback" not in done.stderr
    assert not marker.exists(), f"{how}: the denied plugin was imported"
    if command[0] == "plugins":
        listed = {p["name"]: p["status"] for p in json.loads(done.stdout)}
        assert listed.get("npmarker") in ("disabled", "blocked")
    if command[0] == "list":
        assert "npmarker_identity" not in done.stdout


@pytest.mark.reliability("hostile", "denied plugin in a spec's [plugins] table: never imported")
def test_a_plugin_denied_by_the_spec_is_never_imported_by_a_run(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    # control: allowed, the marker plugin does write its marker (so its absence means something)
    control = run_cli("list", "layer", env=_marker_env(marker))
    assert control.returncode == 0 and "npmarker_identity" in control.stdout
    assert marker.is_file()
    marker.unlink()
    spec = tiny_spec(training={"epochs": 1}, plugins={"disable": ["npmarker"]})
    done = run_cli(
        "run", write_spec(tmp_path / "spec.json", spec), "--output", tmp_path / "run",
        env=_marker_env(marker),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not marker.exists(), "the run imported a plugin its spec disables"
    assert "npmarker" not in manifest(tmp_path / "run")["versions"]
