"""``neuroplex run`` on every spec gives the weights and numbers recorded before a change.

``golden/specs.json`` holds, for a reduced copy of each spec in ``specs/`` (see
``golden/record.py``: smaller sizes), what the code at the commit it names gave:
the test metrics, the policy rounds, every report section of ``results.json`` but the timings,
and SHA-256 digests of every checkpoint tensor, of the exported weights and of the report's
arrays. This test runs the same reduced specs on the code under test, in a subprocess each (as
the recording did), and compares exactly: on CPU with ``deterministic = true`` a refactor that
keeps behaviour gives bit-identical results, so any tolerance would hide a change.

``golden/specs-full.json`` is the same for the full variant (every spec exported with gradient
graphs, verified and analysed on ONNX Runtime): about four times slower, it runs only with
``NEUROPLEX_GOLDEN_FULL=1``.

A difference the recorded commit could not know about (a later, deliberate change) is listed
in the file's ``known_differences`` with its reason; nothing else may differ. When a change is
meant to alter results, regenerate the file from the new base commit (``kernel/docs/
development.md``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = {False: HERE / "golden" / "specs.json", True: HERE / "golden" / "specs-full.json"}
FULL = os.environ.get("NEUROPLEX_GOLDEN_FULL") == "1"
TREE = HERE.parents[1]

_spec = importlib.util.spec_from_file_location(
    "neuroplex_golden_record", HERE / "golden" / "record.py"
)
assert _spec is not None and _spec.loader is not None
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

GOLDEN = {full: json.loads(path.read_text()) for full, path in FIXTURES.items()}
pytestmark = [
    pytest.mark.slow,  # seven end-to-end runs, a few seconds each
    pytest.mark.requires_plugins(
        "neuroplex-layers",
        "neuroplex-models",
        "neuroplex-optim",
        "neuroplex-datasets",
        "neuroplex-explain",
        "neuroplex-attacks",
        "neuroplex-sinks",
        "neuroplex-devices",
    ),
]


def _rows_only_added(
    expected: dict[str, Any], actual: dict[str, Any], rule: dict[str, Any]
) -> bool:
    """Every recorded row is still there, in order, and each row added between them has one of
    the rule's ``values`` in its ``column``."""
    column = actual["columns"].index(rule["column"])
    rows = iter(actual["rows"])
    for row in expected["rows"]:
        for got in rows:
            if got == row:
                break
            if got[column] not in rule["values"]:
                return False
        else:
            return False
    return all(got[column] in rule["values"] for got in rows)


def without_added_sections(actual: dict[str, Any], added: list[dict[str, Any]]) -> dict[str, Any]:
    """``actual`` without the report sections a later, deliberate change added to every run
    (the fixture's ``sections_added``: a title prefix and the reason)."""
    prefixes = tuple(rule["title_prefix"] for rule in added)
    kept = [s for s in actual["sections"] if not str(s.get("title", "")).startswith(prefixes)]
    return {**actual, "sections": kept}


def differences(
    name: str, expected: dict[str, Any], actual: dict[str, Any], known: dict[str, Any]
) -> list[str]:
    """What differs, as lines; ``known`` is the fixture's ``known_differences`` of ``name``."""
    out = []
    for key in ("test_metrics", "rounds", "checkpoint", "onnx_weights", "arrays"):
        if expected[key] != actual[key]:
            out.append(f"{key}: {expected[key]!r} != {actual[key]!r}")
    titles = [s.get("title") for s in actual["sections"]]
    if [s.get("title") for s in expected["sections"]] != titles:
        out.append(f"report sections {titles} differ from the recorded ones")
        return out
    for want, got in zip(expected["sections"], actual["sections"], strict=True):
        if want == got:
            continue
        title = want.get("title")
        rule = known.get(title, {}).get("rows_added")
        if rule and want["columns"] == got["columns"] and _rows_only_added(want, got, rule):
            continue
        out.append(f"section {title!r}: {json.dumps(want)[:400]} != {json.dumps(got)[:400]}")
    return out


@pytest.mark.parametrize("full", [False, True], ids=["default", "full"])
def test_the_fixture_covers_every_spec_and_every_known_difference_has_a_reason(
    full: bool,
) -> None:
    golden = GOLDEN[full]
    assert sorted(golden["specs"]) == sorted(p.stem for p in (TREE / "specs").glob("*.toml"))
    for name, rules in golden.get("known_differences", {}).items():
        assert name in golden["specs"]
        for title, rule in rules.items():
            assert rule.get("reason"), f"{name} / {title}: a known difference needs a reason"
    for rule in golden.get("sections_added", []):
        assert rule.get("title_prefix") and rule.get("reason"), rule
    for name, rule in golden.get("rerecorded", {}).items():
        assert name in golden["specs"] and rule.get("commit") and rule.get("reason"), name


def _close(want: Any, got: Any, where: str, out: list[str]) -> None:
    """``want`` and ``got`` equal up to float rounding (rel 5 %, abs 0.02), as lines in ``out``."""
    if isinstance(want, float) or isinstance(got, float):
        ok = isinstance(want, int | float) and isinstance(got, int | float)
        if not (ok and math.isclose(want, got, rel_tol=0.05, abs_tol=0.02)):
            out.append(f"{where}: {want!r} != {got!r}")
    elif isinstance(want, dict) and isinstance(got, dict):
        if sorted(want) != sorted(got):
            out.append(f"{where}: keys {sorted(want)} != {sorted(got)}")
            return
        for key in want:
            _close(want[key], got[key], f"{where}.{key}", out)
    elif isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            _close(a, b, f"{where}[{i}]", out)
    elif want != got:
        out.append(f"{where}: {want!r} != {got!r}")


def close_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """On another machine than the recording's: the numbers (metrics, policy rounds, report
    sections) within float-rounding tolerance; the digests cannot match there."""
    out: list[str] = []
    for key in ("test_metrics", "rounds", "sections"):
        _close(expected[key], actual[key], key, out)
    return out


def _check(name: str, full: bool, tmp_path: Path) -> None:
    spec = record.reduced_specs(full=full)[name]
    actual = record.digest(record.run_spec(None, spec, tmp_path))
    golden = GOLDEN[full]
    known = golden.get("known_differences", {}).get(name, {})
    added = golden.get("sections_added", [])
    actual = without_added_sections(actual, added)
    expected = without_added_sections(golden["specs"][name], added)
    if golden["machine"] == record.machine():
        assert differences(name, expected, actual, known) == []
        return
    warnings.warn(
        f"golden {name}: recorded on {golden['machine']}, running on {record.machine()}: "
        "numbers compared within float-rounding tolerance, digests not compared "
        "(re-record on this machine type for the exact check, kernel/docs/development.md)",
        stacklevel=1,
    )
    sections = []
    for section in actual["sections"]:  # without the rows a known later change added
        rule = known.get(section.get("title"), {}).get("rows_added")
        if rule:
            column = section["columns"].index(rule["column"])
            rows = [r for r in section["rows"] if r[column] not in rule["values"]]
            section = {**section, "rows": rows}
        sections.append(section)
    actual = {**actual, "sections": sections}
    assert close_differences(expected, actual) == []


@pytest.mark.parametrize("name", sorted(GOLDEN[False]["specs"]))
def test_a_reduced_spec_gives_the_recorded_weights_and_numbers(name: str, tmp_path: Path) -> None:
    _check(name, False, tmp_path)


@pytest.mark.skipif(not FULL, reason="the full variant runs with NEUROPLEX_GOLDEN_FULL=1")
@pytest.mark.parametrize("name", sorted(GOLDEN[True]["specs"]))
def test_the_full_variant_gives_the_recorded_weights_and_numbers(name: str, tmp_path: Path) -> None:
    _check(name, True, tmp_path)


def test_the_other_machine_comparison_catches_a_changed_number() -> None:
    """The fallback for a machine unlike the recording's still fails on a real change."""
    expected = GOLDEN[False]["specs"]["breast-cancer-mlp"]
    assert close_differences(expected, expected) == []
    changed = json.loads(json.dumps(expected))
    changed["test_metrics"]["accuracy"] += 0.1
    assert close_differences(expected, changed) == [
        f"test_metrics.accuracy: {expected['test_metrics']['accuracy']!r} != "
        f"{changed['test_metrics']['accuracy']!r}"
    ]
