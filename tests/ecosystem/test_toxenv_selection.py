"""tox's plugin-set environments run each test in the smallest set that has what it needs
(tests/ecosystem/toxenv.py, RunsInSmallestSet)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("neuroplex_toxenv", HERE / "toxenv.py")
assert _spec is not None and _spec.loader is not None
toxenv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toxenv)

CORE = {"neuroplex-layers", "neuroplex-models", "neuroplex-optim", "neuroplex-devices"}


class _Item:
    def __init__(self, path: Path, *markers: tuple[str, ...]) -> None:
        self.path = path
        self.markers = [pytest.mark.requires_plugins(*m).mark for m in markers]

    def iter_markers(self, name: str) -> Any:
        return iter(self.markers if name == "requires_plugins" else [])


class _Hook:
    def __init__(self) -> None:
        self.deselected: list[Any] = []

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected += items


class _Config:
    def __init__(self) -> None:
        self.hook = _Hook()


def test_a_test_runs_only_where_the_smaller_set_lacks_its_plugins() -> None:
    bare = _Item(ROOT / "tests" / "kernel" / "test_x.py")
    marked = _Item(ROOT / "tests" / "onnx" / "test_x.py", ("neuroplex-models",))
    attacks = _Item(ROOT / "tests" / "onnx" / "test_y.py", ("neuroplex-attacks",))
    own = _Item(ROOT / "plugins" / "neuroplex-models" / "tests" / "test_x.py")
    ecosystem = _Item(ROOT / "tests" / "ecosystem" / "test_x.py")
    items = [bare, marked, attacks, own, ecosystem]

    analysis = toxenv.RunsInSmallestSet({f"{d}[extra]" for d in CORE})
    assert analysis.needs(own) == {"neuroplex-models"} and analysis.needs(ecosystem) is None
    config = _Config()
    kept = list(items)
    analysis.pytest_collection_modifyitems(config, kept)
    assert kept == [attacks, ecosystem]
    assert config.hook.deselected == [bare, marked, own]

    core = toxenv.RunsInSmallestSet(set())  # the smaller set is bare: no plugin
    kept = list(items)
    core.pytest_collection_modifyitems(_Config(), kept)
    assert kept == [marked, attacks, own, ecosystem]
