"""Registries: create_*/list_*, name normalisation, errors that say what to install."""

from __future__ import annotations

import sys

import pytest

import neuroplex
import neuroplex.registry
from neuroplex import ComponentNotFoundError, ConfigError, LayerRecord, PluginError

from .fakedist import FIXTURE_PLUGINS


@pytest.fixture
def good(register_plugin, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    import npfix_good

    register_plugin(npfix_good, name="good", distribution="good-dist", version="1.0")
    return npfix_good


def test_list_with_glob_pattern(good) -> None:
    assert neuroplex.list_layers() == ["exploding", "good_identity"]
    assert neuroplex.list_layers("GOOD*") == ["good_identity"]
    assert neuroplex.list_models() == []


def test_unknown_name_lists_installed_and_close_matches(good) -> None:
    with pytest.raises(ComponentNotFoundError) as err:
        neuroplex.create_layer("good_identiy")
    assert str(err.value) == (
        "unknown layer 'good_identiy'; did you mean 'good_identity'?; "
        "installed layers: exploding, good_identity"
    )
    with pytest.raises(ComponentNotFoundError) as err:
        neuroplex.create_optimizer("zzz", [])
    assert str(err.value) == "unknown optimizer 'zzz'; installed optimizers: good_sgd"


def test_unknown_first_party_name_says_what_to_install(good) -> None:
    with pytest.raises(ComponentNotFoundError) as err:
        neuroplex.create_model("cnn")
    assert str(err.value) == (
        "unknown model 'cnn'; it is provided by neuroplex-models: pip install neuroplex-models"
    )


def test_kind_with_no_plugin_says_what_to_install(neuroplex_manager) -> None:
    with pytest.raises(ComponentNotFoundError, match="pip install neuroplex-sinks"):
        neuroplex.create_sink("my_sink")


def test_factory_failure_names_component_plugin_and_distribution(good) -> None:
    with pytest.raises(PluginError) as err:
        neuroplex.create_layer("exploding")
    assert str(err.value) == (
        "layer 'exploding' from good-dist 1.0 (plugin 'good') failed: "
        "ZeroDivisionError: the factory divided by zero"
    )


def test_bad_arguments_are_a_config_error(good) -> None:
    with pytest.raises(ConfigError, match="'exploding' .* does not accept these arguments"):
        neuroplex.registry.create("layer", "exploding", 1, 2)


def test_unknown_kind_is_an_error(good) -> None:
    with pytest.raises(PluginError, match="did you mean 'layer'"):
        neuroplex.list_components("layers")


def test_optimizer_roles_are_checked(register_plugin) -> None:
    from neuroplex import OptimizerRecord, hookimpl

    class Sched:
        def __init__(self, optimizer):
            self.optimizer = optimizer

        def step(self, *args):
            pass

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    class Plugin:
        @hookimpl
        def neuroplex_register_optimizers(self):
            return [
                OptimizerRecord(name="sched", factory=Sched, role="scheduler"),
                OptimizerRecord(name="not_sched", factory=lambda opt: (opt,), role="scheduler"),
            ]

    register_plugin(Plugin())
    sched = neuroplex.create_scheduler("sched", "o")
    assert isinstance(sched, Sched) and sched.optimizer == "o"
    with pytest.raises(ComponentNotFoundError, match="'sched' is a scheduler, not a optimizer"):
        neuroplex.create_optimizer("sched", [])
    with pytest.raises(PluginError) as err:
        neuroplex.create_scheduler("not_sched", "o")
    assert str(err.value) == (
        "optimizer 'not_sched' from <local>: its factory returned tuple, which does not "
        "satisfy neuroplex.protocols.Scheduler (no load_state_dict(), state_dict(), step())"
    )


def test_record_validation() -> None:
    with pytest.raises(ValueError, match="not a valid component name"):
        LayerRecord(name="1bad name", factory="a:b")
    with pytest.raises(ValueError, match="must look like 'package.module:attribute'"):
        LayerRecord(name="ok", factory="no_colon")


def test_lazy_factory_import_failure_names_component(register_plugin) -> None:
    from neuroplex import hookimpl

    class Plugin:
        @hookimpl
        def neuroplex_register_layers(self):
            return [LayerRecord(name="ghost", factory="no_such_module_xyz:Ghost")]

    register_plugin(Plugin())
    with pytest.raises(PluginError, match="component 'layer:ghost': cannot load factory"):
        neuroplex.create_layer("ghost")


def test_import_neuroplex_does_not_import_torch() -> None:
    import subprocess

    code = (
        "import neuroplex, neuroplex.registry, neuroplex.config, sys; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
