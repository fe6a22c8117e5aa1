"""The records a :class:`~neuroplex.plugins.PluginManager` reports: :class:`PluginInfo` (one
plugin as the CLI lists it), :class:`Registration` (a component record and the
plugin it came from) and :class:`Conflict` (one name registered by several distributions), plus
the manager's per-plugin book-keeping. Import them from :mod:`neuroplex.plugins`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from neuroplex.records import ComponentRecord, FrozenDict

__all__ = ["Conflict", "LoadedPlugin", "PluginInfo", "Registration", "Status"]

Status = Literal["ok", "failed", "blocked", "disabled"]


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One plugin as the CLI lists it.

    ``status``: ``ok`` (loaded), ``failed`` (import/registration/validation error),
    ``blocked`` (not in the allow list), ``disabled`` (in the deny list). Blocked and disabled
    plugins are never imported.
    """

    name: str
    module: str
    distribution: str
    version: str
    status: Status
    error: str | None = None
    detail: str | None = None
    components: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=FrozenDict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "components": {k: list(v) for k, v in self.components.items()},
        }

    def failure_line(self) -> str:
        """The one line users see for a failed plugin."""
        return (
            f"neuroplex: plugin {self.name!r} ({self.distribution} {self.version}) "
            f"failed: {self.error}"
        )


@attrs.frozen(kw_only=True)
class Registration:
    """A component record and where it came from."""

    record: ComponentRecord
    plugin: str
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip()


@attrs.frozen(kw_only=True)
class Conflict:
    """Two or more distributions registering the same (kind, name)."""

    kind: str
    name: str
    candidates: tuple[Registration, ...]

    def message(self) -> str:
        who = " and ".join(f"{r.distribution} (plugin {r.plugin!r})" for r in self.candidates)
        first = self.candidates[0].distribution
        return (
            f"{self.kind} {self.name!r} is registered by both {who}; choose one with "
            f'[plugins] prefer = {{"{self.kind}:{self.name}" = "{first}"}} in the spec or '
            f"NEUROPLEX_PREFER={self.kind}:{self.name}={first}"
        )


class LoadedPlugin:
    """The manager's book-keeping for one plugin (its status and registrations)."""

    def __init__(self, name: str, module: str, distribution: str, version: str) -> None:
        self.name = name
        self.module = module
        self.distribution = distribution
        self.version = version
        self.status: Status = "ok"
        self.error: str | None = None
        self.detail: str | None = None
        self.obj: object | None = None
        self.registrations: list[Registration] = []

    def fail(self, error: str, detail: str | None = None) -> None:
        self.status = "failed"
        self.error = error
        self.detail = detail
        self.registrations = []

    def info(self) -> PluginInfo:
        components: dict[str, list[str]] = {}
        for reg in self.registrations:
            components.setdefault(reg.record.kind, []).append(reg.record.name)
        return PluginInfo(
            name=self.name,
            module=self.module,
            distribution=self.distribution,
            version=self.version,
            status=self.status,
            error=self.error,
            detail=self.detail,
            components={k: tuple(v) for k, v in components.items()},
        )
