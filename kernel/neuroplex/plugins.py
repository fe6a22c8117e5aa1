"""Plugin discovery: our own loader over ``importlib.metadata`` entry points (group ``neuroplex``).

Why not pluggy's ``load_setuptools_entrypoints``: one broken plugin would kill the host. Here
every plugin is imported and asked for its records in isolation; a failure becomes a status
line (plugin, distribution, version, error) and, in strict mode, a :class:`PluginError`.

Selection happens *before* import, by entry-point name:

* ``NEUROPLEX_PLUGINS`` — comma-separated allow list (unset: all; empty: none);
* ``NEUROPLEX_DISABLE_PLUGINS`` — comma-separated deny list;
* ``NEUROPLEX_STRICT_PLUGINS=1`` — any failure or conflict raises;
* ``NEUROPLEX_PREFER`` — ``kind:name=distribution`` pairs resolving duplicate names;

and the same keys in a run spec's ``[plugins]`` table. The records the manager reports
(:class:`PluginInfo`, :class:`Registration`, :class:`Conflict`) are defined in
:mod:`neuroplex._plugin_records` and imported from here.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import pluggy

from neuroplex import hookspecs
from neuroplex._plugin_records import Conflict, LoadedPlugin, PluginInfo, Registration
from neuroplex.errors import PluginError
from neuroplex.records import KINDS, RECORD_TYPES, normalize_name

__all__ = [
    "ENTRY_POINT_GROUP",
    "Conflict",
    "PluginInfo",
    "PluginManager",
    "Registration",
    "get_plugin_manager",
    "reset_plugin_manager",
    "use_plugin_manager",
]

ENTRY_POINT_GROUP = "neuroplex"
LOCAL_DISTRIBUTION = "<local>"


def _split_env(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_prefer(value: str | None) -> dict[str, str]:
    prefer: dict[str, str] = {}
    for item in _split_env(value) or []:
        key, sep, dist = item.partition("=")
        if sep and key.strip() and dist.strip():
            prefer[key.strip()] = dist.strip()
    return prefer


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager:
    """Loads plugins, isolates their failures and indexes their components by kind and name.

    Args:
        enable: allow list of entry-point names (``None``: all).
        disable: deny list of entry-point names.
        strict: raise :class:`PluginError` on any plugin failure or name conflict.
        prefer: ``{"kind:name": "distribution"}`` choices for duplicate names.
        entry_points: entry points to load instead of the installed ones (tests).
    """

    def __init__(
        self,
        *,
        enable: Sequence[str] | None = None,
        disable: Sequence[str] = (),
        strict: bool = False,
        prefer: Mapping[str, str] | None = None,
        entry_points: Iterable[metadata.EntryPoint] | None = None,
        autoload: bool = True,
    ) -> None:
        self.enable = None if enable is None else [normalize_name(n) for n in enable]
        self.disable = [normalize_name(n) for n in disable]
        self.strict = strict
        self.prefer = {normalize_name(k): v for k, v in (prefer or {}).items()}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, LoadedPlugin] = {}
        self._index: dict[str, dict[str, list[Registration]]] | None = None
        if autoload:
            self.load_entry_points(entry_points)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> PluginManager:
        """A manager configured from ``NEUROPLEX_*`` variables (overrides win)."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {
            "enable": _split_env(env.get("NEUROPLEX_PLUGINS")),
            "disable": _split_env(env.get("NEUROPLEX_DISABLE_PLUGINS")) or [],
            "strict": _truthy(env.get("NEUROPLEX_STRICT_PLUGINS")),
            "prefer": _parse_prefer(env.get("NEUROPLEX_PREFER")),
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    # ------------------------------------------------------------------ loading
    def load_entry_points(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        """Import and register every selected entry point of group ``neuroplex``."""
        eps = (
            list(metadata.entry_points(group=ENTRY_POINT_GROUP))
            if entry_points is None
            else list(entry_points)
        )
        seen: set[tuple[str, str, str]] = set()
        for ep in sorted(eps, key=lambda e: e.name):
            dist_name, version = _dist_of(ep)
            key = (dist_name, ep.name, ep.value)
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            self._load_one(ep, dist_name, version)
        self._index = None

    def _load_one(self, ep: metadata.EntryPoint, dist_name: str, version: str) -> None:
        name = ep.name
        if name in self._plugins:
            other = self._plugins[name]
            plugin = LoadedPlugin(f"{name}@{dist_name}", ep.value, dist_name, version)
            plugin.fail(
                f"entry-point name {name!r} is already used by {other.distribution}; "
                "rename one of the entry points"
            )
            self._plugins[plugin.name] = plugin
            self._maybe_raise(plugin)
            return
        plugin = LoadedPlugin(name, ep.value, dist_name, version)
        self._plugins[name] = plugin
        norm = normalize_name(name)
        if self.enable is not None and norm not in self.enable:
            plugin.status = "blocked"
            return
        if norm in self.disable:
            plugin.status = "disabled"
            return
        try:
            obj = ep.load()
        except Exception as exc:  # plugin code: isolate any failure
            plugin.fail(f"import of {ep.value!r} failed: {_one_line(exc)}", traceback.format_exc())
            self._maybe_raise(plugin)
            return
        self._register(plugin, obj)

    def register(
        self,
        obj: object,
        name: str,
        *,
        distribution: str = LOCAL_DISTRIBUTION,
        version: str = "",
    ) -> PluginInfo:
        """Register a plugin object (module, class instance) directly, e.g. in tests."""
        if name in self._plugins:
            raise PluginError(f"a plugin named {name!r} is already registered")
        module = getattr(obj, "__name__", type(obj).__name__)
        plugin = LoadedPlugin(name, str(module), distribution, version)
        self._plugins[name] = plugin
        self._register(plugin, obj)
        self._index = None
        return plugin.info()

    def unregister(self, name: str) -> None:
        plugin = self._plugins.pop(name, None)
        if plugin is not None and plugin.obj is not None:
            self._pm.unregister(plugin.obj)
        self._index = None

    def _register(self, plugin: LoadedPlugin, obj: object) -> None:
        mismatch = _api_mismatch(obj)
        if mismatch is not None:
            plugin.fail(mismatch)
            self._maybe_raise(plugin)
            return
        try:
            self._pm.register(obj, name=plugin.name)
        except pluggy.PluginValidationError as exc:
            plugin.fail(f"invalid hook implementation: {_one_line(exc)}", traceback.format_exc())
            self._maybe_raise(plugin)
            return
        except ValueError as exc:  # the same object registered twice
            plugin.fail(_one_line(exc))
            self._maybe_raise(plugin)
            return
        plugin.obj = obj
        unknown = self._unknown_hooks(obj)
        if unknown:
            self._pm.unregister(obj)
            plugin.obj = None
            plugin.fail(unknown)
            self._maybe_raise(plugin)
            return
        self._collect(plugin)
        if plugin.status == "failed":
            self._pm.unregister(obj)
            plugin.obj = None
            self._maybe_raise(plugin)

    def _unknown_hooks(self, obj: object) -> str | None:
        """Like pluggy's ``check_pending``, attributed to one plugin."""
        problems = []
        for caller in self._pm.get_hookcallers(obj) or []:
            if caller.spec is None:
                close = _close(caller.name, list(hookspecs.HOOK_FOR_KIND.values()))
                hint = f"; did you mean {close!r}?" if close else ""
                problems.append(f"hookimpl {caller.name!r} matches no neuroplex hook{hint}")
        return "; ".join(problems) or None

    def _collect(self, plugin: LoadedPlugin) -> None:
        assert plugin.obj is not None
        callers = {c.name: c for c in self._pm.get_hookcallers(plugin.obj) or []}
        for kind in KINDS:
            caller = callers.get(hookspecs.HOOK_FOR_KIND[kind])
            if caller is None:
                continue
            record_type = RECORD_TYPES[kind]
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin.obj:
                    continue
                try:
                    result: Any = impl.function()
                    records: list[Any] = list(result) if result is not None else []
                except Exception as exc:
                    plugin.fail(f"{caller.name}() raised {_one_line(exc)}", traceback.format_exc())
                    return
                for record in records:
                    if not isinstance(record, record_type):
                        plugin.fail(
                            f"{caller.name}() returned {type(record).__name__}, "
                            f"expected {record_type.__name__}"
                        )
                        return
                    plugin.registrations.append(
                        Registration(
                            record=record,
                            plugin=plugin.name,
                            distribution=plugin.distribution,
                            version=plugin.version,
                        )
                    )

    def _maybe_raise(self, plugin: LoadedPlugin) -> None:
        if self.strict:
            raise PluginError(plugin.info().failure_line() + " (strict mode)")

    # ------------------------------------------------------------------ queries
    def plugins(self) -> list[PluginInfo]:
        return [p.info() for p in self._plugins.values()]

    def failures(self) -> list[PluginInfo]:
        return [p.info() for p in self._plugins.values() if p.status == "failed"]

    def _build_index(self) -> dict[str, dict[str, list[Registration]]]:
        if self._index is None:
            index: dict[str, dict[str, list[Registration]]] = {kind: {} for kind in KINDS}
            for plugin in self._plugins.values():
                for reg in plugin.registrations:
                    names = {normalize_name(reg.record.name)}
                    names.update(normalize_name(a) for a in reg.record.aliases)
                    for name in names:
                        entries = index[reg.record.kind].setdefault(name, [])
                        if all(e.record is not reg.record for e in entries):
                            entries.append(reg)
            self._index = index
            if self.strict:
                conflicts = self.conflicts()
                if conflicts:
                    raise PluginError(conflicts[0].message() + " (strict mode)")
        return self._index

    def conflicts(self) -> list[Conflict]:
        """Names registered more than once of one kind with no preference given."""
        out = []
        for kind, names in self._build_index().items():
            for name, regs in sorted(names.items()):
                if len(regs) > 1 and self._preferred(kind, name, regs) is None:
                    out.append(Conflict(kind=kind, name=name, candidates=tuple(regs)))
        return out

    def _preferred(self, kind: str, name: str, regs: list[Registration]) -> Registration | None:
        choice = self.prefer.get(f"{kind}:{name}")
        if choice is None:
            return None
        for reg in regs:
            if normalize_name(reg.distribution) == normalize_name(choice):
                return reg
        dists = ", ".join(r.distribution for r in regs)
        raise PluginError(
            f"preference {kind}:{name}={choice} names a distribution that does not register "
            f"it; choose one of: {dists}"
        )

    def registrations(self, kind: str) -> list[Registration]:
        """Every resolvable component of ``kind``, one per name, sorted by name."""
        _check_kind(kind)
        out: dict[int, Registration] = {}
        for name, regs in self._build_index()[kind].items():
            reg = regs[0] if len(regs) == 1 else self._preferred(kind, name, regs)
            if reg is not None:
                out[id(reg.record)] = reg
        return sorted(out.values(), key=lambda r: r.record.name)

    def lookup(self, kind: str, name: str) -> Registration | None:
        """The registration of ``kind``/``name``; raises :class:`PluginError` on a conflict."""
        _check_kind(kind)
        regs = self._build_index()[kind].get(normalize_name(name))
        if not regs:
            return None
        if len(regs) == 1:
            return regs[0]
        reg = self._preferred(kind, normalize_name(name), regs)
        if reg is None:
            conflict = Conflict(kind=kind, name=normalize_name(name), candidates=tuple(regs))
            raise PluginError(conflict.message())
        return reg


def _api_mismatch(obj: object) -> str | None:
    """The one-line reason a plugin built for another hook API major version is refused."""
    declared = vars(obj).get(hookspecs.HOOK_API_ATTRIBUTE) if hasattr(obj, "__dict__") else None
    return None if declared is None else hookspecs.hook_api_mismatch(declared)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        close = _close(kind, list(KINDS))
        hint = f"; did you mean {close!r}?" if close else ""
        raise PluginError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}{hint}")


def _close(word: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return match[0] if match else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("<unknown>", "")
    name = dist.metadata["Name"] if dist.metadata else None
    return (str(name or getattr(dist, "name", "<unknown>")), str(dist.version or ""))


# ---------------------------------------------------------------------- process-wide manager
_MANAGER: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, loaded from the installed entry points on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager.from_env()
        for failure in _MANAGER.failures():
            print(failure.failure_line(), file=sys.stderr)
    return _MANAGER


def reset_plugin_manager(manager: PluginManager | None = None) -> None:
    """Replace (or drop, to reload on next use) the process-wide manager."""
    global _MANAGER
    _MANAGER = manager


@contextmanager
def use_plugin_manager(manager: PluginManager) -> Iterator[PluginManager]:
    """Temporarily make ``manager`` the process-wide one (tests, embedded use)."""
    global _MANAGER
    previous = _MANAGER
    _MANAGER = manager
    try:
        yield manager
    finally:
        _MANAGER = previous
