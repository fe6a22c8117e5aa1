"""Fake installed distributions: real ``importlib.metadata`` objects, no pip install."""

from __future__ import annotations

import pathlib
from importlib import metadata

FIXTURE_PLUGINS = pathlib.Path(__file__).parent.parent / "fixtures" / "plugins"


class FakeDistribution(metadata.Distribution):
    """A distribution whose METADATA and entry_points.txt live in memory."""

    def __init__(self, name: str, version: str, entry_points: dict[str, str]) -> None:
        self._name = name
        self._version = version
        self._eps = entry_points

    def read_text(self, filename: str) -> str | None:
        if filename == "METADATA":
            return f"Metadata-Version: 2.1\nName: {self._name}\nVersion: {self._version}\n"
        if filename == "entry_points.txt":
            lines = ["[neuroplex]"] + [f"{k} = {v}" for k, v in self._eps.items()]
            return "\n".join(lines) + "\n"
        return None

    def locate_file(self, path: str | pathlib.PurePath) -> pathlib.Path:
        return FIXTURE_PLUGINS / str(path)


def entry_points(*dists: FakeDistribution) -> list[metadata.EntryPoint]:
    """The ``neuroplex`` entry points of the given fake distributions, with ``.dist`` set."""
    return [ep for d in dists for ep in d.entry_points if ep.group == "neuroplex"]
