"""pytest plugin of neuroplex: isolated plugin managers and plugin-selection markers.

Loaded automatically (``pytest11`` entry point). Fixtures:

* ``neuroplex_manager`` — an empty, strict :class:`~neuroplex.plugins.PluginManager` made the
  process-wide one for the test (no installed plugin is visible);
* ``register_plugin`` — ``register_plugin(obj, name="x", distribution="dist")`` registers a
  plugin object into that manager and returns its :class:`~neuroplex.plugins.PluginInfo`.

Marker ``@pytest.mark.requires_plugins("neuroplex-models", ...)`` skips a test unless those
distributions are installed, so a test suite selects itself by the plugins present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import pytest

from neuroplex.plugins import PluginInfo, PluginManager, use_plugin_manager


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires_plugins(*dists): skip unless these plugin distributions are installed",
    )


def installed(distribution: str) -> bool:
    """Whether a distribution is installed."""
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires_plugins"):
        missing = [d for d in marker.args if not installed(d)]
        if missing:
            pytest.skip(f"needs plugin distribution(s) {', '.join(missing)}")


@pytest.fixture
def neuroplex_manager() -> Iterator[PluginManager]:
    manager = PluginManager(autoload=False, strict=True)
    with use_plugin_manager(manager):
        yield manager


@pytest.fixture
def register_plugin(neuroplex_manager: PluginManager) -> Callable[..., PluginInfo]:
    def register(obj: Any, name: str = "test_plugin", **kwargs: Any) -> PluginInfo:
        return neuroplex_manager.register(obj, name, **kwargs)

    return register
