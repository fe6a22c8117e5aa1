"""Plugin loading: isolation, attribution, allow/deny lists, strict mode, conflicts."""

from __future__ import annotations

import sys

import pytest

import neuroplex
from neuroplex import PluginError
from neuroplex.plugins import PluginManager, use_plugin_manager

from .fakedist import FIXTURE_PLUGINS, FakeDistribution, entry_points


@pytest.fixture(autouse=True)
def _fixture_plugins_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    for name in list(sys.modules):
        if name.startswith("npfix_"):
            monkeypatch.delitem(sys.modules, name)


def manager(*dists: FakeDistribution, **kwargs: object) -> PluginManager:
    return PluginManager(entry_points=entry_points(*dists), **kwargs)  # type: ignore[arg-type]


GOOD = FakeDistribution("good-dist", "1.2.3", {"good": "npfix_good"})


def test_good_plugin_registers_and_remembers_its_distribution() -> None:
    pm = manager(GOOD)
    (info,) = pm.plugins()
    assert (info.name, info.distribution, info.version, info.status) == (
        "good",
        "good-dist",
        "1.2.3",
        "ok",
    )
    assert info.components == {"layer": ("good_identity", "exploding"), "optimizer": ("good_sgd",)}
    reg = pm.lookup("layer", "GOOD-Identity")
    assert reg is not None
    assert reg.distribution == "good-dist" and reg.version == "1.2.3"
    with use_plugin_manager(pm):
        layer = neuroplex.create_layer("good-id")
        assert type(layer).__name__ == "Identity"
        assert layer.neuroplex_origin.distribution == "good-dist"


def test_import_failure_is_isolated_and_attributed() -> None:
    broken = FakeDistribution("broken-dist", "0.1", {"broken": "npfix_broken_import"})
    pm = manager(GOOD, broken)
    status = {p.name: p.status for p in pm.plugins()}
    assert status == {"broken": "failed", "good": "ok"}
    (failure,) = pm.failures()
    assert failure.failure_line() == (
        "neuroplex: plugin 'broken' (broken-dist 0.1) failed: import of 'npfix_broken_import' "
        "failed: ModuleNotFoundError: No module named 'this_module_does_not_exist'"
    )
    assert "Traceback" in (failure.detail or "")
    assert pm.lookup("layer", "good_identity") is not None


def test_unknown_hook_is_reported_against_its_plugin() -> None:
    typo = FakeDistribution("typo-dist", "2.0", {"typo": "npfix_unknown_hook"})
    (failure,) = manager(typo).failures()
    assert failure.error == (
        "hookimpl 'neuroplex_register_layer' matches no neuroplex hook; "
        "did you mean 'neuroplex_register_layers'?"
    )


def test_wrong_signature_is_reported_against_its_plugin() -> None:
    wrong = FakeDistribution("wrong-dist", "2.0", {"wrong": "npfix_wrong_signature"})
    (failure,) = manager(wrong).failures()
    assert failure.name == "wrong"
    assert "Argument(s) {'registry'} are declared in the hookimpl" in (failure.error or "")


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            "npfix_raises",
            "neuroplex_register_datasets() raised RuntimeError: database of datasets unreachable",
        ),
        (
            "npfix_wrong_record",
            "neuroplex_register_models() returned LayerRecord, expected ModelRecord",
        ),
    ],
)
def test_registration_failures_are_isolated(module: str, message: str) -> None:
    dist = FakeDistribution("x-dist", "1", {"x": module})
    pm = manager(dist, GOOD)
    (failure,) = pm.failures()
    assert failure.error == message
    assert failure.components == {}
    assert pm.lookup("optimizer", "good_sgd") is not None


def test_strict_mode_turns_a_failure_into_an_error() -> None:
    broken = FakeDistribution("broken-dist", "0.1", {"broken": "npfix_broken_import"})
    with pytest.raises(PluginError, match=r"plugin 'broken' \(broken-dist 0.1\).*strict mode"):
        manager(GOOD, broken, strict=True)


def test_strict_mode_from_the_environment() -> None:
    pm = PluginManager.from_env({"NEUROPLEX_STRICT_PLUGINS": "1"}, autoload=False)
    assert pm.strict


def test_denied_plugin_is_never_imported(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("NPFIX_MARKER", str(marker))
    dist = FakeDistribution("marker-dist", "1", {"marker": "npfix_marker"})
    pm = PluginManager.from_env(
        {"NEUROPLEX_DISABLE_PLUGINS": "marker"}, entry_points=entry_points(dist)
    )
    assert [p.status for p in pm.plugins()] == ["disabled"]
    assert not marker.exists()
    assert "npfix_marker" not in sys.modules
    # control: without the deny list the same plugin is imported and writes its marker
    PluginManager(entry_points=entry_points(dist))
    assert marker.read_text() == "imported"


def test_allow_list_blocks_everything_else(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("NPFIX_MARKER", str(marker))
    dist = FakeDistribution("marker-dist", "1", {"marker": "npfix_marker"})
    pm = PluginManager.from_env(
        {"NEUROPLEX_PLUGINS": "good"}, entry_points=entry_points(dist, GOOD)
    )
    assert {p.name: p.status for p in pm.plugins()} == {"good": "ok", "marker": "blocked"}
    assert not marker.exists()


def test_empty_allow_list_loads_nothing() -> None:
    pm = PluginManager.from_env({"NEUROPLEX_PLUGINS": ""}, entry_points=entry_points(GOOD))
    assert [p.status for p in pm.plugins()] == ["blocked"]


def test_identical_entry_points_are_deduplicated() -> None:
    eps = entry_points(GOOD) + entry_points(GOOD)
    pm = PluginManager(entry_points=eps)
    assert len(pm.plugins()) == 1


A = FakeDistribution("twin-a", "1.0", {"twin_a": "npfix_dup_a"})
B = FakeDistribution("twin-b", "2.0", {"twin_b": "npfix_dup_b"})


def test_duplicate_names_are_an_error_naming_both() -> None:
    pm = manager(A, B)
    (conflict,) = pm.conflicts()
    assert conflict.message() == (
        "model 'twin' is registered by both twin-a (plugin 'twin_a') and twin-b (plugin "
        '\'twin_b\'); choose one with [plugins] prefer = {"model:twin" = "twin-a"} in the '
        "spec or NEUROPLEX_PREFER=model:twin=twin-a"
    )
    with use_plugin_manager(pm), pytest.raises(PluginError, match="registered by both"):
        neuroplex.create_model("twin")


@pytest.mark.parametrize("choice", ["twin-a", "twin-b"])
def test_explicit_preference_resolves_duplicates(choice: str) -> None:
    pm = PluginManager.from_env(
        {"NEUROPLEX_PREFER": f"model:twin={choice}"}, entry_points=entry_points(A, B)
    )
    assert pm.conflicts() == []
    with use_plugin_manager(pm):
        built = neuroplex.create_model("twin")
    assert built[0] == choice[-1]


def test_preference_for_an_absent_distribution_is_an_error() -> None:
    pm = manager(A, B, prefer={"model:twin": "twin-c"})
    with pytest.raises(PluginError, match="choose one of: twin-a, twin-b"):
        pm.lookup("model", "twin")


def test_strict_mode_fails_on_conflicts() -> None:
    with pytest.raises(PluginError, match="registered by both.*strict mode"):
        manager(A, B, strict=True).registrations("model")


def test_register_fixture_isolates_from_installed_plugins(register_plugin) -> None:
    import npfix_good

    info = register_plugin(npfix_good, name="good_local")
    assert info.status == "ok"
    assert neuroplex.list_optimizers() == ["good_sgd"]
