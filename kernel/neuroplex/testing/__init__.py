"""The conformance kit: a pytest plugin and a test class every plugin package can reuse.

In a plugin's tests::

    from neuroplex.testing import ConformanceSuite

    class TestConformance(ConformanceSuite):
        distribution = "my-neuroplex-plugin"

collects one test per (component, check) for every component the distribution registers,
running the checks of ``neuroplex.testing.<kind>.CHECKS``, plus one test that each entry
module of the distribution imports without importing torch (the first rule of the authoring
guide: ``neuroplex list`` and ``--help`` must stay fast). Fixtures (``neuroplex_manager``,
``register_plugin``) and the ``requires_plugins`` marker come from
:mod:`neuroplex.testing.plugin`, which pytest loads automatically once neuroplex is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from neuroplex.plugins import Registration, get_plugin_manager
from neuroplex.records import KINDS, ComponentRecord, normalize_name

__all__ = [
    "HEAVY_MODULES",
    "ConformanceSuite",
    "check_entry_module_is_light",
    "checks_for",
    "component_checks",
    "run_checks",
]

#: modules an entry module must not import (directly or through its own imports)
HEAVY_MODULES: tuple[str, ...] = ("torch",)

Check = Callable[[Any], None]


def checks_for(kind: str) -> list[Check]:
    """The conformance checks of ``kind`` (``neuroplex.testing.<kind>.CHECKS``)."""
    module = importlib.import_module(f"neuroplex.testing.{kind}")
    return list(module.CHECKS)


def component_checks(
    distribution: str | None = None, kinds: tuple[str, ...] = KINDS
) -> list[tuple[Registration, Check]]:
    """Every (registration, check) pair for components of ``distribution`` (all if None)."""
    manager = get_plugin_manager()
    pairs: list[tuple[Registration, Check]] = []
    for kind in kinds:
        regs = [
            r
            for r in manager.registrations(kind)
            if distribution is None
            or normalize_name(r.distribution) == normalize_name(distribution)
        ]
        if not regs:
            continue
        for reg in regs:
            pairs.extend((reg, check) for check in checks_for(kind))
    return pairs


def run_checks(record: ComponentRecord) -> list[str]:
    """Run every check for one record; return the failure messages (empty: conformant)."""
    failures = []
    for check in checks_for(record.kind):
        try:
            check(record)
        except AssertionError as exc:
            failures.append(f"{check.__name__}: {exc}")
    return failures


def check_entry_module_is_light(module: str) -> None:
    """Import entry module ``module`` (``"pkg.mod"`` or ``"pkg.mod:attr"``) in a fresh
    interpreter and fail if that imported any of :data:`HEAVY_MODULES`."""
    name = module.partition(":")[0]
    code = (
        "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
        "print(json.dumps([m for m in sys.argv[2:] if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", code, name, *HEAVY_MODULES],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssertionError(f"entry module {name!r} fails to import: {last}")
    heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    if heavy:
        raise AssertionError(
            f"entry module {name!r} imports {', '.join(heavy)} at import time; move heavy "
            "imports into the modules its 'module:attr' factories name"
        )


def _importable(module: str) -> bool:
    """Whether ``module`` names an importable module (plugins registered as objects in tests
    carry a class name instead)."""
    try:
        return importlib.util.find_spec(module.partition(":")[0]) is not None
    except (ImportError, ValueError):
        return False


class ConformanceSuite:
    """Subclass in a plugin's tests and set ``distribution`` (and optionally ``kinds``)."""

    distribution: ClassVar[str | None] = None
    kinds: ClassVar[tuple[str, ...]] = KINDS

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "conformance_case" not in metafunc.fixturenames:
            return
        pairs = component_checks(self.distribution, self.kinds)
        metafunc.parametrize(
            "conformance_case",
            pairs,
            ids=[f"{r.record.kind}:{r.record.name}-{c.__name__}" for r, c in pairs],
        )

    def test_distribution_registers_components(self) -> None:
        """The distribution loaded and registered something (guards against a silent 0)."""
        manager = get_plugin_manager()
        failures = [p for p in manager.failures() if self._mine(p.distribution)]
        assert not failures, "; ".join(p.failure_line() for p in failures)
        mine = [
            r
            for kind in self.kinds
            for r in manager.registrations(kind)
            if self._mine(r.distribution)
        ]
        assert mine, f"{self.distribution or 'no distribution'} registers no component"

    def test_entry_modules_do_not_import_torch(self) -> None:
        """Each entry module of the distribution imports without torch (in a subprocess)."""
        modules = sorted(
            {
                p.module
                for p in get_plugin_manager().plugins()
                if p.status == "ok" and self._mine(p.distribution) and _importable(p.module)
            }
        )
        for module in modules:
            check_entry_module_is_light(module)

    def test_component(self, conformance_case: tuple[Registration, Check]) -> None:
        reg, check = conformance_case
        check(reg.record)

    def _mine(self, distribution: str) -> bool:
        return self.distribution is None or normalize_name(distribution) == normalize_name(
            self.distribution
        )
