"""The reliability table (kernel/docs/reliability.md) is computed from recorded outcomes: a
failing test is not 'survived'."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _table():
    spec = importlib.util.spec_from_file_location(
        "reliability_table", Path(__file__).parent / "table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.reliability("control", "the table counts failures as not survived")
def test_failures_and_losses_show_in_the_table() -> None:
    rows = [
        {"category": "fault", "scenario": "kill", "outcome": "passed", "tried": 3, "lost": 0},
        {"category": "fault", "scenario": "kill", "outcome": "failed", "tried": 2, "lost": 5},
        {"category": "hostile", "scenario": "fuzz", "outcome": "passed", "tried": 100, "lost": 0},
        {"category": "control", "scenario": "c", "outcome": "passed", "tried": 1, "lost": 0},
    ]
    text = _table().markdown(rows, 1.0)
    assert "| 5 | 3 | 5 | 100 | 100 |" in text  # faults tried, survived, lost, hostile, refused
    assert "| fault | kill | 1/2 | 5 | 3 | 5 |" in text
    assert "| hostile | fuzz | 1/1 | 100 | 100 | 0 |" in text
    assert "3/4 tests passed (1/1 of them controls" in text


@pytest.mark.reliability("control", "the docs table is replaced between its markers only")
def test_update_docs_replaces_only_between_the_markers(tmp_path: Path) -> None:
    table = _table()
    page = tmp_path / "reliability.md"
    page.write_text(f"intro\n{table.START}\nold table\n{table.END}\noutro\n")
    table.update_docs(page, "| new |")
    assert page.read_text() == f"intro\n{table.START}\n| new |\n{table.END}\noutro\n"
    page.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="needs one"):
        table.update_docs(page, "| new |")
