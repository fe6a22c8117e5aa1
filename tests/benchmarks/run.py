"""The benchmark suite: neuroplex against reference libraries, side by side, in one run.

    python tests/benchmarks/run.py                   # everything -> kernel/docs/benchmarks.md
    python tests/benchmarks/run.py --smoke           # a short run that checks it all works
    python tests/benchmarks/run.py --only trainer,onnx --output /tmp/bench.md

Sections: ``trainer`` (1: Trainer vs hand loop and Lightning), ``onnx`` (2: inference, 3:
gradient path), ``analysis`` (4: PGD vs torchattacks, IG vs Captum), ``startup`` (5),
``e2e`` (6: ``neuroplex run specs/digits-cnn.toml``), ``scaling`` (7: batch size, width, DDP).
Every figure is a ratio measured in this run against its reference, with a goal and whether it
was met (or the gap and its cause). A section whose plugins or reference libraries are not
installed is reported as skipped with the reason; a section that fails is reported with its
error and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_analysis  # noqa: E402
import bench_onnx  # noqa: E402
import bench_pipeline  # noqa: E402
import bench_scaling  # noqa: E402
import bench_startup  # noqa: E402
import bench_trainer  # noqa: E402
from benchlib import FIRST_PARTY, Options, Table, render  # noqa: E402

ROOT = HERE.parents[1]
#: the reference page whose marked block holds the tables (one copy, nowhere else)
DOCS = ROOT / "kernel" / "docs" / "benchmarks.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
SECTIONS: dict[str, Callable[[Options], Table | list[Table]]] = {
    "trainer": bench_trainer.section,
    "onnx": bench_onnx.sections,
    "analysis": bench_analysis.section,
    "startup": bench_startup.section,
    "e2e": bench_pipeline.section,
    "scaling": bench_scaling.sections,
}
#: sections whose work all happens in subprocesses (safe to run in a thread)
SUBPROCESS_ONLY = ("startup", "e2e")
VERSIONS = (
    "torch",
    "onnxruntime-gpu",
    "onnxruntime",
    "onnx",
    "numpy",
    "captum",
    "torchattacks",
    "lightning",
)


def _version(dist: str) -> str | None:
    """The installed version of a distribution, or ``None``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> str:
    """Total RAM from ``/proc/meminfo``."""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return "unknown"
    return f"{kb / 2**20:.0f} GB"


def _commit() -> str:
    """The repository's commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine(opts: Options, started: dt.datetime, load: float) -> list[str]:
    """The machine and software, one Markdown bullet each (``load``: at the start)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{d} {v}" for d in VERSIONS if (v := _version(d)))
    plugins = [d for d in FIRST_PARTY if _version(d)]
    return [
        f"- date: {started:%Y-%m-%d %H:%M} UTC (start); commit {_commit()}",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({cores} usable), "
        f"{_memory_gb()} RAM, no GPU used; 1-minute load average {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (other jobs share the machine)",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}; "
        f"{versions}",
        f"- neuroplex {_version('neuroplex')}, plugins: "
        f"{len(plugins)} of {len(FIRST_PARTY)} first-party installed",
        f"- threads: torch and ONNX Runtime {opts.threads} intra-op thread(s) per process "
        "(the e2e runs through `OMP_NUM_THREADS`); DDP: one thread in each of its processes",
    ]


def run_section(key: str, opts: Options) -> tuple[list[Table], bool]:
    """One section's tables and whether it ran without an error (an error becomes a table)."""
    print(f"[bench] {key} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    ok = True
    try:
        result = SECTIONS[key](opts)
    except Exception as exc:  # report it, run the others, fail at the end
        ok = False
        traceback.print_exc()
        result = Table(key, f"{key}: failed", "The section raised.", ["error", "status"])
        result.add(f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500], "error")
    seconds = time.perf_counter() - start
    tables = result if isinstance(result, list) else [result]
    for table in tables:
        table.seconds = seconds / len(tables)
    print(f"[bench] {key}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return tables, ok


def run_sections(keys: list[str], opts: Options) -> tuple[list[Table], bool]:
    """Run the chosen sections, one after another; in smoke mode (where the figures do not
    matter) the sections that only wait on subprocesses run alongside the others. Returns the
    tables in section order and whether all ran without an error."""
    background = [k for k in keys if opts.smoke and k in SUBPROCESS_ONLY]
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = {k: pool.submit(run_section, k, opts) for k in background}
        done = {k: run_section(k, opts) for k in keys if k not in futures}
        done.update({k: f.result() for k, f in futures.items()})
    tables = [t for k in keys for t in done[k][0]]
    return tables, all(done[k][1] for k in keys)


def document(
    tables: list[Table], opts: Options, keys: list[str], started: dt.datetime, load: float
) -> str:
    """The whole result: header, machine, one table per section."""
    mode = "smoke mode (tiny repeats: figures are not meaningful)" if opts.smoke else "full run"
    only = "" if keys == list(SECTIONS) else f" --only {','.join(keys)}"
    command = f"python tests/benchmarks/run.py{' --smoke' if opts.smoke else ''}{only}"
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    lines = [
        "<!-- generated by tests/benchmarks/run.py: edit the benchmarks, not this text -->",
        f"Benchmark suite, {mode}: `{command}` ({seconds / 60:.1f} min). Every ratio is "
        "measured in this run against the reference beside it; `met` or `gap` is judged "
        "against the goal, a gap names its cause.",
        "",
        *machine(opts, started, load),
        "",
    ]
    for table in tables:
        lines.extend([f"<!-- section: {table.key} -->", render(table)])
    return "\n".join(lines)


def update_docs(text: str, page: Path | None = None) -> None:
    """Replace what lies between the benchmark markers of ``page`` (default :data:`DOCS`) with
    ``text`` (the file is re-read right before writing; nothing outside the markers changes)."""
    page = page or DOCS
    current = page.read_text(encoding="utf-8")
    if current.count(START) != 1 or current.count(END) != 1:
        raise SystemExit(f"{page}: expected one {START} and one {END} marker")
    head, rest = current.split(START)
    _, tail = rest.split(END)
    page.write_text(f"{head}{START}\n{text.strip()}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the document, write it where asked."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny repeats: checks it all runs")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument(
        "--output", type=Path, default=None, help="write the tables to this Markdown file "
        "(default: a full run updates the marked block of kernel/docs/benchmarks.md; a smoke "
        "or partial run only prints)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    opts = Options(smoke=args.smoke, threads=args.threads)
    started, load = dt.datetime.now(dt.UTC), os.getloadavg()[0]
    tables, ok = run_sections(keys, opts)
    text = document(tables, opts, keys, started, load)
    print(text)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    elif not args.smoke and keys == list(SECTIONS):
        update_docs(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
