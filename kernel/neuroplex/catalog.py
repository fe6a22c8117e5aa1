"""Install hints: which first-party distribution provides which component name.

The kernel names no component itself. When a spec asks for a component no installed plugin
registers, the registry looks the name up here to say ``pip install <distribution>``. The data
lives in ``catalog.json`` beside this module and is *generated* from the plugins' own
registrations::

    python -m neuroplex.catalog            # print the catalog the installed plugins give
    python -m neuroplex.catalog --write    # rewrite catalog.json (all listed plugins installed)
    python -m neuroplex.catalog --write --add neuroplex-newplugin

A test regenerates it whenever every listed distribution is installed and fails when it
differs, so adding a component to a first-party plugin means running ``--write``, never
editing the kernel. This module never imports torch.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neuroplex.records import KINDS, FrozenDict, normalize_name

__all__ = [
    "CATALOG_PATH",
    "distribution_for",
    "distributions",
    "distributions_for_kind",
    "generate",
    "load_catalog",
    "main",
]

CATALOG_PATH = Path(__file__).with_name("catalog.json")

_ABOUT = (
    "Install hints: the component names each first-party plugin distribution registers, per "
    "kind. Generated from the plugins' registrations by `python -m neuroplex.catalog --write`; "
    "do not edit by hand."
)


@functools.cache
def _data() -> Mapping[str, Any]:
    data: dict[str, Any] = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    return data


def load_catalog() -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    """``{kind: {distribution: names}}`` for every kind (read-only)."""
    components = _data().get("components", {})
    return FrozenDict(
        {
            kind: FrozenDict(
                {dist: tuple(names) for dist, names in components.get(kind, {}).items()}
            )
            for kind in sorted({*KINDS, *components})
        }
    )


def distributions() -> list[str]:
    """The first-party distributions the catalog covers, in its order."""
    return [str(d) for d in _data().get("distributions", [])]


def distributions_for_kind(kind: str) -> list[str]:
    """The first-party distributions that provide components of ``kind``."""
    return list(load_catalog().get(kind, {}))


def distribution_for(kind: str, name: str) -> str | None:
    """The first-party distribution that provides ``kind``/``name``, if one does."""
    key = normalize_name(name)
    for dist, names in load_catalog().get(kind, {}).items():
        if key in names:
            return dist
    return None


def generate(dists: Sequence[str] | None = None) -> dict[str, Any]:
    """The catalog the installed plugins of ``dists`` (default: the catalog's) register.

    Raises :class:`~neuroplex.PluginError` naming any distribution that is not installed
    and loaded, since its names would be missing.
    """
    from neuroplex.errors import PluginError
    from neuroplex.plugins import get_plugin_manager

    wanted = list(distributions() if dists is None else dists)
    manager = get_plugin_manager()
    loaded = {normalize_name(p.distribution) for p in manager.plugins() if p.status == "ok"}
    missing = [d for d in wanted if normalize_name(d) not in loaded]
    if missing:
        raise PluginError(
            f"cannot generate the catalog: {', '.join(missing)} not installed (or failed to "
            f"load); pip install {' '.join(missing)}"
        )
    components: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        by_dist: dict[str, list[str]] = {}
        for dist in wanted:
            regs = [
                r
                for r in manager.registrations(kind)
                if normalize_name(r.distribution) == normalize_name(dist)
            ]
            names = {normalize_name(n) for r in regs for n in (r.record.name, *r.record.aliases)}
            if names:
                by_dist[dist] = sorted(names)
        components[kind] = by_dist
    return {"about": _ABOUT, "distributions": wanted, "components": components}


def render(catalog: Mapping[str, Any]) -> str:
    """The catalog as ``catalog.json`` holds it."""
    return json.dumps(catalog, indent=2, sort_keys=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m neuroplex.catalog",
        description="Generate the install-hint catalog from the installed plugins.",
    )
    parser.add_argument("--write", action="store_true", help=f"rewrite {CATALOG_PATH.name}")
    parser.add_argument(
        "--add", action="append", default=[], metavar="DIST", help="also cover this distribution"
    )
    args = parser.parse_args(argv)
    dists = [*distributions(), *(d for d in args.add if d not in distributions())]
    text = render(generate(dists))
    if args.write:
        CATALOG_PATH.write_text(text, encoding="utf-8")
        _data.cache_clear()
        print(f"wrote {CATALOG_PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
