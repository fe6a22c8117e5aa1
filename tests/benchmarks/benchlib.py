"""Shared pieces of the benchmark suite: options, goals, verdicts, timing and Markdown tables.

Every section of ``run.py`` returns a :class:`Table`. Its rows are strings; one column's header
starts with ``ratio`` (cells like ``1.014×``), and the last two columns are ``goal`` and
``status``. A status is ``met``, ``gap: <cause>``, ``gap within noise ...: <cause>``,
``reported`` (a figure without a goal) or ``skipped: <reason>``.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from neuroplex.registry import FIRST_PARTY as _REGISTRY_FIRST_PARTY

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "FIRST_PARTY",
    "concurrently",
    "Goal",
    "interleaved",
    "iqr",
    "missing",
    "ms",
    "Options",
    "ratio",
    "render",
    "rotated",
    "rss_during",
    "rss_supported",
    "run_json",
    "skipped",
    "status_mb",
    "Table",
    "verdict",
]

#: first-party plugin distributions (``neuroplex plugins`` should list them all), from the
#: kernel's own table of which distribution provides what
FIRST_PARTY = tuple(sorted({dist for kind in _REGISTRY_FIRST_PARTY.values() for dist in kind}))


@dataclass(frozen=True)
class Options:
    """What every section is told: smoke mode, threads, and how hard to repeat."""

    smoke: bool = False
    threads: int = 1

    def pick(self, full: int, smoke: int) -> int:
        """``full`` repeats normally, ``smoke`` in smoke mode."""
        return smoke if self.smoke else full


@dataclass(frozen=True)
class Goal:
    """``ratio <= limit`` (``op="<="``) or ``ratio >= limit`` (``op=">="``)."""

    op: str
    limit: float

    @property
    def text(self) -> str:
        """The goal as shown in a table, e.g. ``≤ 1.02×``."""
        return f"{'≤' if self.op == '<=' else '≥'} {self.limit:g}×"

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the goal."""
        return value <= self.limit if self.op == "<=" else value >= self.limit


def verdict(
    value: float, goal: Goal | None, cause: str, spread: tuple[float, float] | None = None
) -> str:
    """``met``, or ``gap: cause`` (``gap within noise`` when the goal lies inside ``spread``,
    the interquartile range of the paired ratios)."""
    if goal is None:
        return "reported"
    if goal.met(value):
        return "met"
    if spread is not None and spread[0] <= goal.limit <= spread[1]:
        return f"gap within noise (IQR {spread[0]:.2f}–{spread[1]:.2f}×): {cause}"
    return f"gap: {cause}"


@dataclass
class Table:
    """One section's result: a titled Markdown table with the method stated above it."""

    key: str
    title: str
    method: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *cells: object) -> None:
        """Append a row (cells are converted with ``str``)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.key}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])


def render(table: Table) -> str:
    """The table as Markdown: heading, method, table, notes."""
    took = f" ({table.seconds:.0f} s)" if table.seconds else ""
    lines = [f"### {table.title}", "", f"{table.method}.{took}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines.extend(f"\n{note}" for note in table.notes)
    return "\n".join(lines) + "\n"


def skipped(key: str, title: str, reason: str) -> Table:
    """A section that could not run here, with the reason in its one row."""
    table = Table(key, title, "Not measured.", ["what", "ratio", "goal", "status"])
    table.add(title, "—", "—", f"skipped: {reason}")
    return table


def _installed(dist: str) -> bool:
    """Whether a distribution is installed."""
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing(dists: Iterable[str] = (), modules: Iterable[str] = ()) -> list[str]:
    """The distributions and modules of these that are not installed."""
    gone = [d for d in dists if not _installed(d)]
    return gone + [m for m in modules if importlib.util.find_spec(m) is None]


def interleaved(
    fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 1
) -> list[list[float]]:
    """Wall seconds of each function over ``repeats`` rounds, run one after another in each
    round (the order rotating round by round) so all see the same machine load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for i in rotated(range(len(fns)), r):
            start = time.perf_counter()
            fns[i]()
            samples[i].append(time.perf_counter() - start)
    return samples


def rotated(items: Iterable[T], shift: int) -> list[T]:
    """``items`` rotated left by ``shift`` (modulo their number)."""
    seq = list(items)
    k = shift % len(seq) if seq else 0
    return seq[k:] + seq[:k]


def iqr(values: Sequence[float]) -> tuple[float, float]:
    """The interquartile range (the values themselves when there are fewer than 4)."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_supported() -> bool:
    """Whether peak resident memory can be measured here (Linux ``/proc/self``)."""
    return Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()


def rss_during(fn: Callable[[], Any]) -> dict[str, float]:
    """Run ``fn`` and return the process's peak resident memory (``peak_mb``) and the peak
    that ``fn`` added over the resident memory before it (``added_mb``), in MB (Linux: the
    high-water mark is reset through ``/proc/self/clear_refs`` just before ``fn``)."""
    gc.collect()
    before = status_mb("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start = status_mb("VmRSS")
    fn()
    peak = status_mb("VmHWM")
    return {"peak_mb": max(before, peak), "added_mb": peak - start}


def run_json(cmd: Sequence[str], timeout: float = 600, **kwargs: Any) -> Any:
    """Run a child process and parse the JSON on the last line of its stdout."""
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def concurrently(fns: Sequence[Callable[[], R]], workers: int = 2) -> list[R]:
    """Call the functions (each typically waiting on a subprocess) ``workers`` at a time;
    their results in order. For what timing does not depend on, such as peak memory."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda fn: fn(), fns))


def ms(seconds: float) -> str:
    """Seconds as milliseconds with three decimals."""
    return f"{1000.0 * seconds:.3f}"


def ratio(value: float) -> str:
    """A ratio as ``1.234×``."""
    return f"{value:.3f}×"
