"""The install-hint catalog: generated from the plugins' registrations, kept in sync by a test."""

from __future__ import annotations

import json

import pytest

import neuroplex
from neuroplex import ComponentNotFoundError, LayerRecord, PluginError, hookimpl
from neuroplex.catalog import (
    CATALOG_PATH,
    distribution_for,
    distributions,
    generate,
    load_catalog,
    main,
    render,
)
from neuroplex.plugins import get_plugin_manager
from neuroplex.records import KINDS, normalize_name
from neuroplex.registry import FIRST_PARTY


def _all_catalogued_installed() -> bool:
    loaded = {normalize_name(p.distribution) for p in get_plugin_manager().plugins()}
    return all(normalize_name(d) in loaded for d in distributions())


def test_catalog_covers_every_kind_and_is_read_only() -> None:
    catalog = load_catalog()
    assert set(KINDS) <= set(catalog)
    with pytest.raises(TypeError, match="read-only"):
        catalog["layer"] = {}  # type: ignore[index]
    assert catalog == FIRST_PARTY


def test_catalog_names_are_normalized_and_sorted() -> None:
    for kind, dists in load_catalog().items():
        for dist, names in dists.items():
            assert dist in distributions(), (kind, dist)
            assert list(names) == sorted({normalize_name(n) for n in names}), (kind, dist)


@pytest.mark.skipif(
    not _all_catalogued_installed(),
    reason="needs every first-party plugin installed to regenerate the catalog",
)
def test_catalog_is_in_sync_with_the_installed_plugins() -> None:
    """Fails when a first-party plugin registers, renames or drops a component without
    ``python -m neuroplex.catalog --write``."""
    want = render(generate())
    assert CATALOG_PATH.read_text(encoding="utf-8") == want, (
        "kernel/neuroplex/catalog.json is stale: run python -m neuroplex.catalog --write"
    )


def test_generate_refuses_a_distribution_that_is_not_installed(neuroplex_manager) -> None:
    with pytest.raises(PluginError) as err:
        generate(["neuroplex-nowhere"])
    assert str(err.value) == (
        "cannot generate the catalog: neuroplex-nowhere not installed (or failed to load); "
        "pip install neuroplex-nowhere"
    )


def test_generate_lists_names_and_aliases_per_distribution(register_plugin) -> None:
    class Plugin:
        @hookimpl
        def neuroplex_register_layers(self):
            yield LayerRecord(name="Zeta-Layer", factory="a:b", aliases=("alpha",))

    register_plugin(Plugin(), name="p", distribution="my-dist", version="1")
    catalog = generate(["my-dist"])
    assert catalog["distributions"] == ["my-dist"]
    assert catalog["components"]["layer"] == {"my-dist": ["alpha", "zeta_layer"]}
    assert catalog["components"]["model"] == {}
    assert json.loads(render(catalog)) == catalog


def test_main_prints_the_catalog(register_plugin, capsys) -> None:
    class Plugin:
        @hookimpl
        def neuroplex_register_layers(self):
            yield LayerRecord(name="mine", factory="a:b")

    register_plugin(Plugin(), name="p", distribution="my-dist", version="1")
    with pytest.raises(PluginError, match="not installed"):
        main(["--add", "my-dist"])  # the first-party distributions are not loaded here


def test_install_hint_comes_from_the_catalog(neuroplex_manager) -> None:
    dist = distribution_for("layer", "ReLU")
    assert dist is not None and dist in distributions()
    with pytest.raises(ComponentNotFoundError) as err:
        neuroplex.create_layer("relu")
    assert str(err.value) == f"unknown layer 'relu'; it is provided by {dist}: pip install {dist}"
    assert distribution_for("layer", "no_such_layer") is None


def test_kernel_sources_name_no_catalogued_component() -> None:
    """The names live in catalog.json only: no kernel module lists them."""
    import pathlib

    kernel = pathlib.Path(neuroplex.__file__).parent
    registry = (kernel / "registry.py").read_text()
    for name in ("leaky_relu", "breast_cancer", "integrated_gradients", "tensorboard"):
        assert f'"{name}"' not in registry, name
