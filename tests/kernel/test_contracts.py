"""Declared contracts: protocols checked at ``create_*``, read-only hashable records, the hook
API version check, ``auto`` as a plain device, and the entry-module torch rule of the kit."""

from __future__ import annotations

import copy
import json
import pathlib
import pickle
import re
import sys

import pytest

import neuroplex
from neuroplex import (
    AnalyzerRecord,
    ComponentNotFoundError,
    DeviceRecord,
    Event,
    FeedbackSinkRecord,
    LayerRecord,
    PluginError,
    hookimpl,
    registry,
)
from neuroplex import protocols as P
from neuroplex.hookspecs import HOOK_API_VERSION, hook_api_mismatch
from neuroplex.plugins import PluginManager
from neuroplex.records import FrozenDict
from neuroplex.registry import origin_of
from neuroplex.testing import check_entry_module_is_light

from .fakedist import FIXTURE_PLUGINS, FakeDistribution, entry_points

KERNEL = pathlib.Path(neuroplex.__file__).parent


class _Device:
    def is_available(self) -> bool:
        return True

    def torch_device(self) -> str:
        return "cpu"

    def ort_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def info(self) -> dict[str, str]:
        return {"name": "plain"}


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def send(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _HalfSink:
    def send(self, event: Event) -> None:
        pass


class _Analyzer:
    def __init__(self, model: object) -> None:
        self.model = model

    def analyze(self, x: object, y: object = None) -> object:
        return None


class _Plugin:
    @hookimpl
    def neuroplex_register_devices(self):
        yield DeviceRecord(name="plain", factory=_Device, priority=5)
        yield DeviceRecord(name="not_a_device", factory=lambda: object())

    @hookimpl
    def neuroplex_register_feedback_sinks(self):
        yield FeedbackSinkRecord(name="memory", factory=_Sink)
        yield FeedbackSinkRecord(name="half", factory=_HalfSink)

    @hookimpl
    def neuroplex_register_analyzers(self):
        yield AnalyzerRecord(name="noop", factory=_Analyzer)
        yield AnalyzerRecord(name="not_an_analyzer", factory=lambda model: model)


@pytest.fixture
def plain(register_plugin):
    register_plugin(_Plugin(), name="plain", distribution="plain-dist", version="1.0")


# --------------------------------------------------------------------------- protocols
def test_create_returns_objects_that_satisfy_their_protocols(plain) -> None:
    assert isinstance(neuroplex.create_device("plain"), P.Device)
    assert isinstance(neuroplex.create_sink("memory"), P.FeedbackSink)
    assert isinstance(neuroplex.create_analyzer("noop", "model.onnx"), P.Analyzer)


@pytest.mark.parametrize(
    ("create", "message"),
    [
        (
            lambda: neuroplex.create_device("not_a_device"),
            "device 'not_a_device' from plain-dist 1.0: its factory returned object, which does "
            "not satisfy neuroplex.protocols.Device (no info(), is_available(), "
            "ort_providers(), torch_device())",
        ),
        (
            lambda: neuroplex.create_sink("half"),
            "feedback_sink 'half' from plain-dist 1.0: its factory returned _HalfSink, which "
            "does not satisfy neuroplex.protocols.FeedbackSink (no close(), flush())",
        ),
        (
            lambda: neuroplex.create_analyzer("not_an_analyzer", 3),
            "analyzer 'not_an_analyzer' from plain-dist 1.0: its factory returned int, which "
            "does not satisfy neuroplex.protocols.Analyzer (no analyze())",
        ),
    ],
)
def test_a_factory_that_breaks_its_protocol_is_a_plugin_error(plain, create, message) -> None:
    with pytest.raises(PluginError) as err:
        create()
    assert str(err.value) == message


def test_the_kernel_probes_no_undeclared_plugin_attribute() -> None:
    names = (
        "neuroplex_training_step",
        "needs_metric",
        "export_examples",
        "to_config",
        "report_samples",
        "report_sections",
        "adversarial_examples",
        "torch_device",
        "send",
    )
    probe = re.compile(r"(getattr|hasattr)\([^)]*[\"'](" + "|".join(names) + r")[\"']")
    hits = [
        f"{path.relative_to(KERNEL)}:{n}: {line.strip()}"
        for path in KERNEL.rglob("*.py")
        if "testing" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert hits == []


def test_protocols_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, neuroplex.protocols; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- records
def test_records_are_read_only_and_hashable() -> None:
    record = LayerRecord(
        name="x", factory="a:b", example_config={"sizes": [4, 8], "act": {"name": "relu"}}
    )
    same = LayerRecord(
        name="x", factory="a:b", example_config={"sizes": [4, 8], "act": {"name": "relu"}}
    )
    assert hash(record) == hash(same) and record == same
    assert len({record, same}) == 1
    with pytest.raises(TypeError, match="FrozenDict is read-only"):
        record.example_config["sizes"] = [1]  # type: ignore[index]
    for mutate in ("clear", "popitem"):
        with pytest.raises(TypeError, match="read-only"):
            getattr(record.example_config, mutate)()
    with pytest.raises(TypeError, match="read-only"):
        record.example_config.update(act=None)  # type: ignore[attr-defined]
    assert json.loads(json.dumps(record.example_config)) == {
        "sizes": [4, 8],
        "act": {"name": "relu"},
    }
    assert pickle.loads(pickle.dumps(record)) == record
    assert copy.deepcopy(record) == record
    assert isinstance(record.to_dict()["example_config"], dict)


def test_events_are_read_only_and_hashable() -> None:
    event = Event(run_id="r", kind="metrics", name="test", payload={"accuracy": 0.5}, time=1.0)
    assert hash(event) == hash(Event.from_dict(event.to_dict()))
    with pytest.raises(TypeError, match="read-only"):
        event.payload["accuracy"] = 1.0  # type: ignore[index]
    assert json.dumps(event.to_dict())


def test_frozen_dict_with_unhashable_leaf_says_so() -> None:
    with pytest.raises(TypeError):
        hash(FrozenDict({"x": bytearray(b"1")}))


# --------------------------------------------------------------------------- hook API version
@pytest.mark.parametrize("declared", [HOOK_API_VERSION, str(HOOK_API_VERSION), "1.7"])
def test_same_major_version_loads(declared: object) -> None:
    assert hook_api_mismatch(declared) is None


def test_other_major_versions_are_refused_with_one_line() -> None:
    assert hook_api_mismatch("99.1") == (
        "built for neuroplex hook API 99.1, but this neuroplex has hook API 1 (a newer major "
        "version); upgrade neuroplex"
    )
    assert hook_api_mismatch(0) == (
        "built for neuroplex hook API 0, but this neuroplex has hook API 1 (an older major "
        "version); upgrade the plugin"
    )
    assert hook_api_mismatch("one") == (
        "NEUROPLEX_HOOK_API_VERSION = 'one' is not a version: use an int such as 1"
    )


@pytest.fixture
def _fixture_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    for name in list(sys.modules):
        if name.startswith("npfix_"):
            monkeypatch.delitem(sys.modules, name)


@pytest.mark.usefixtures("_fixture_plugins")
def test_plugin_built_for_another_major_version_is_refused() -> None:
    future = FakeDistribution("future-dist", "3.0", {"future": "npfix_future_api"})
    good = FakeDistribution("good-dist", "1.2.3", {"good": "npfix_good"})
    pm = PluginManager(entry_points=entry_points(future, good))  # type: ignore[arg-type]
    (failure,) = pm.failures()
    assert failure.failure_line() == (
        "neuroplex: plugin 'future' (future-dist 3.0) failed: built for neuroplex hook API 99.1, "
        "but this neuroplex has hook API 1 (a newer major version); upgrade neuroplex"
    )
    assert pm.lookup("layer", "future_layer") is None
    assert pm.lookup("layer", "good_identity") is not None
    with pytest.raises(PluginError, match=r"hook API 99\.1,.*\(strict mode\)$"):
        PluginManager(entry_points=entry_points(future), strict=True)  # type: ignore[arg-type]


def test_first_party_entry_modules_declare_the_current_version() -> None:
    plugins = pathlib.Path(__file__).resolve().parents[2] / "plugins"  # the source tree
    entry = sorted(plugins.glob("*/src/*/plugin.py"))
    assert entry, "no first-party entry module found"
    for path in entry:
        assert f"NEUROPLEX_HOOK_API_VERSION = {HOOK_API_VERSION}\n" in path.read_text(), path


# --------------------------------------------------------------------------- auto device
def test_auto_is_a_device_like_any_other(plain) -> None:
    """No kernel fallback: without a registered ``auto`` the name is unknown, and the error
    says which distribution provides it."""
    with pytest.raises(ComponentNotFoundError) as err:
        neuroplex.create_device()
    assert str(err.value) == (
        "unknown device 'auto'; it is provided by neuroplex-devices: pip install neuroplex-devices"
    )


def test_a_registered_auto_device_is_used_as_registered(register_plugin) -> None:
    class Auto:
        @hookimpl
        def neuroplex_register_devices(self):
            yield DeviceRecord(name="auto", factory=_Device, summary="my own choice")

    register_plugin(Auto(), name="auto_plugin", distribution="auto-dist")
    device = neuroplex.create_device("auto")
    assert isinstance(device, _Device)
    assert origin_of(device).distribution == "auto-dist"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- conformance kit
@pytest.mark.usefixtures("_fixture_plugins")
def test_kit_fails_an_entry_module_that_imports_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    check_entry_module_is_light("npfix_good")  # imports neuroplex only
    with pytest.raises(AssertionError) as err:
        check_entry_module_is_light("npfix_imports_torch:neuroplex_register_layers")
    assert str(err.value) == (
        "entry module 'npfix_imports_torch' imports torch at import time; move heavy imports "
        "into the modules its 'module:attr' factories name"
    )


@pytest.mark.usefixtures("_fixture_plugins")
def test_kit_names_an_entry_module_that_fails_to_import() -> None:
    with pytest.raises(AssertionError, match="entry module 'npfix_broken_import' fails to import"):
        check_entry_module_is_light("npfix_broken_import")


def test_list_functions_return_names(plain) -> None:
    assert neuroplex.list_devices() == ["not_a_device", "plain"]
    assert neuroplex.list_sinks("mem*") == ["memory"]
    for name in ("list_layers", "list_devices", "list_sinks", "list_datasets"):
        doc = getattr(registry, name).__doc__ or ""
        assert doc.startswith("Names (not records)"), name
