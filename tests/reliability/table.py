"""Run the reliability suite and print its Markdown table (the one in kernel/docs/reliability.md).

Usage::

    python tests/reliability/table.py [--update-docs] [PYTEST ARGS...]

Runs ``pytest tests/reliability`` (extra arguments are passed on, e.g. ``-k sinks``) with
``NEUROPLEX_RELIABILITY_RESULTS`` set, so the suite's conftest records every test's category
(``fault`` / ``hostile``), scenario, outcome, how many faults or inputs it tried and how much
data it lost; then prints a summary table and one row per scenario. Exits with pytest's code.
Nothing in the table is typed by hand: a failing test shows up as not survived / not refused.
``--update-docs`` also writes the table into kernel/docs/reliability.md between the markers
``<!-- reliability:start -->`` and ``<!-- reliability:end -->``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run_suite(extra: list[str]) -> tuple[int, list[dict[str, Any]], float]:
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results.json"
        env = {**os.environ, "NEUROPLEX_RELIABILITY_RESULTS": str(results)}
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", *extra]
        start = time.perf_counter()
        code = subprocess.call(cmd, env=env, cwd=ROOT, stdout=sys.stderr)
        seconds = time.perf_counter() - start
        rows = json.loads(results.read_text()) if results.is_file() else []
    return code, rows, seconds


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario: tests, passed, tried, tried-in-passing-tests, lost."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"tests": 0, "passed": 0, "tried": 0, "ok": 0, "lost": 0, "category": ""}
    )
    for row in rows:
        entry = out[row["scenario"]]
        entry["category"] = row["category"]
        entry["tests"] += 1
        entry["tried"] += int(row["tried"])
        entry["lost"] += int(row["lost"])
        if row["outcome"] == "passed":
            entry["passed"] += 1
            entry["ok"] += int(row["tried"])
    return dict(out)


def markdown(rows: list[dict[str, Any]], seconds: float) -> str:
    scenarios = summarize(rows)
    faults = [s for s in scenarios.values() if s["category"] == "fault"]
    hostile = [s for s in scenarios.values() if s["category"] == "hostile"]
    controls = [s for s in scenarios.values() if s["category"] == "control"]
    lines = [
        "| Faults tried | Survived | Data lost | Hostile inputs tried | Refused cleanly |",
        "|---:|---:|---:|---:|---:|",
        "| {} | {} | {} | {} | {} |".format(
            sum(s["tried"] for s in faults),
            sum(s["ok"] for s in faults),
            sum(s["lost"] for s in faults + hostile),
            sum(s["tried"] for s in hostile),
            sum(s["ok"] for s in hostile),
        ),
        "",
        "| Kind | Scenario | Tests passed | Tried | Survived / refused | Data lost |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for category in ("fault", "hostile"):
        for name, s in scenarios.items():
            if s["category"] != category:
                continue
            lines.append(
                f"| {category} | {name} | {s['passed']}/{s['tests']} | {s['tried']} | "
                f"{s['ok']} | {s['lost']} |"
            )
    passed = sum(1 for r in rows if r["outcome"] == "passed")
    checks = sum(s["passed"] for s in controls)
    lines += [
        "",
        f"{passed}/{len(rows)} tests passed ({checks}/{sum(s['tests'] for s in controls)} "
        f"of them controls that the injected faults and inputs are real) in {seconds:.0f} s; "
        "produced by `python tests/reliability/table.py`.",
    ]
    return "\n".join(lines)


START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"


#: the reference page whose marked block holds the table
DOCS = ROOT / "kernel" / "docs" / "reliability.md"


def update_docs(page: Path, table: str) -> None:
    """Replace what stands between the markers with ``table`` (the rest stays untouched)."""
    text = page.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{page}: needs one {START} ... {END} pair to update")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    page.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str]) -> int:
    write = "--update-docs" in argv
    code, rows, seconds = run_suite([a for a in argv if a != "--update-docs"])
    if not rows:
        print("no reliability results were recorded (did the suite run?)", file=sys.stderr)
        return code or 1
    table = markdown(rows, seconds)
    print(table)
    if write:
        update_docs(DOCS, table)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
