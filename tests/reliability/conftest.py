"""The reliability suite: fault injection, crash-safe resume, hostile inputs, fuzzing.

Every test carries ``@pytest.mark.reliability(category, scenario)`` with ``category`` one of
``"fault"`` (something breaks while neuroplex works: a kill, a signal, a NaN, a bad sink, a
bad plugin) or ``"hostile"`` (neuroplex is handed something malformed or malicious). A test
reports what it tried through the ``reliability`` fixture (``reliability.tried(n)``,
``reliability.lost(n)``); when ``NEUROPLEX_RELIABILITY_RESULTS`` names a file, the session
writes every test's category, scenario, outcome and counts there as JSON, and
``tests/reliability/table.py`` turns that into the Markdown table of kernel/docs/reliability.md.

Helpers shared by the tests live in :mod:`_helpers` (the tiny digits + mlp spec, a
subprocess runner for ``neuroplex`` with fault injection by :mod:`inject`, the fault plugin
site ``fixtures/site`` — fake distributions put on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ._helpers import HERE, RESULTS_ENV, run_cli, tiny_spec, write_spec

#: ``control`` tests check that an injection or an input really is what the others assume
#: (e.g. the unmutated spec is valid); the table counts them apart
CATEGORIES = ("fault", "hostile", "control")

_RESULTS: list[dict[str, Any]] = []


# ---------------------------------------------------------------------------- the table data
class Tally:
    """What one test tried: ``tried`` injections or inputs, ``lost`` items of data lost."""

    def __init__(self) -> None:
        self.n_tried: int | None = None
        self.n_lost = 0

    def tried(self, n: int) -> None:
        self.n_tried = (self.n_tried or 0) + int(n)

    def lost(self, n: int) -> None:
        self.n_lost += int(n)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability(category, scenario): a reliability test ('fault' or 'hostile') and what "
        "it injects, for the reliability table (tests/reliability/table.py)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not str(item.path).startswith(str(HERE)):
            continue
        marker = item.get_closest_marker("reliability")
        if marker is None or len(marker.args) != 2 or marker.args[0] not in CATEGORIES:
            raise pytest.UsageError(
                f"{item.nodeid}: every reliability test needs "
                "@pytest.mark.reliability('fault' | 'hostile' | 'control', 'scenario')"
            )


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Tally:
    tally = Tally()
    request.node._reliability_tally = tally
    return tally


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return report
    failed_setup = report.when == "setup" and not report.passed
    if report.when == "call" or failed_setup:
        tally: Tally | None = getattr(item, "_reliability_tally", None)
        _RESULTS.append(
            {
                "nodeid": item.nodeid,
                "category": marker.args[0],
                "scenario": marker.args[1],
                "outcome": report.outcome,
                "tried": (tally.n_tried if tally and tally.n_tried is not None else 1),
                "lost": tally.n_lost if tally else 0,
                "seconds": round(report.duration, 2),
            }
        )
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:  # a pytest-xdist worker: its part, merged by the controller below
        Path(f"{target}.{worker}").write_text(json.dumps(_RESULTS), encoding="utf-8")
        return
    results = list(_RESULTS)
    for part in sorted(Path(target).parent.glob(f"{Path(target).name}.gw*")):
        results += json.loads(part.read_text(encoding="utf-8"))
        part.unlink()
    if results:
        results.sort(key=lambda row: str(row["nodeid"]))
        Path(target).write_text(json.dumps(results, indent=2), encoding="utf-8")


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of :func:`tiny_spec` (8 epochs): the bit-exact target."""
    root = tmp_path_factory.mktemp("reference")
    spec = write_spec(root / "spec.json", tiny_spec(training={"epochs": 8}))
    out = root / "run"
    done = run_cli("run", spec, "--output", out)
    assert done.returncode == 0, done.stderr
    return out
