"""Start-up: wall time of ``neuroplex --help`` and ``neuroplex plugins`` against
``python -c "import torch"``, each a fresh subprocess, interleaved, median of repeats.

    python tests/benchmarks/bench_startup.py [--repeats 15]

The two commands never import torch (they read entry points and records only); a last run of
each checks that, through ``sys.modules`` at exit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    FIRST_PARTY,
    Goal,
    Options,
    Table,
    interleaved,
    iqr,
    missing,
    ms,
    ratio,
    verdict,
)

TITLE = "5. Start-up: `neuroplex --help` and `neuroplex plugins` vs `python -c 'import torch'`"
COLUMNS = [
    "command",
    "ms (median)",
    "`import torch` ms (median)",
    "imports torch",
    "ratio (ours / import torch)",
    "goal",
    "status",
]
REFERENCE = [sys.executable, "-c", "import torch"]
#: run a console script's entry point in-process, then report whether torch got imported
PROBE = (
    "import sys, runpy; sys.argv = {argv!r}\n"
    "try:\n    runpy.run_module('neuroplex', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print('torch' in sys.modules)"
)


def neuroplex_command() -> list[str]:
    """The installed ``neuroplex`` console script beside this interpreter (else ``-m``)."""
    script = Path(sys.executable).with_name("neuroplex")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "neuroplex"]


def _runner(cmd: list[str]) -> Callable[[], None]:
    """A function that runs ``cmd`` once, output discarded, and fails loudly on an error."""

    def run() -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1000:]}")

    return run


def imports_torch(args: list[str]) -> bool:
    """Whether ``neuroplex ARGS`` imports torch."""
    code = PROBE.format(argv=["neuroplex", *args])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip().splitlines()[-1] == "True"


def measure(repeats: int, warmup: int = 1) -> dict[str, tuple[list[float], list[float], bool]]:
    """For each command: its wall seconds, the paired ``import torch`` seconds, and whether
    it imports torch."""
    base = neuroplex_command()
    commands = {"neuroplex --help": ["--help"], "neuroplex plugins": ["plugins"]}
    fns = [_runner(REFERENCE)] + [_runner([*base, *args]) for args in commands.values()]
    samples = interleaved(fns, repeats, warmup)
    return {
        name: (samples[i + 1], samples[0], imports_torch(args))
        for i, (name, args) in enumerate(commands.items())
    }


def section(opts: Options, repeats: int | None = None) -> Table:
    """Section 5 of the suite: start-up time of the CLI."""
    repeats, warmup = repeats or opts.pick(15, 1), opts.pick(1, 0)
    gone = missing(FIRST_PARTY)
    plugins = (
        f"all {len(FIRST_PARTY)} first-party plugins installed"
        if not gone
        else f"{len(FIRST_PARTY) - len(gone)} of {len(FIRST_PARTY)} first-party plugins "
        f"installed (missing: {', '.join(gone)})"
    )
    method = (
        f"Wall time of each command as a fresh subprocess ({plugins}), the three commands "
        f"interleaved with rotating order, median of {repeats} run(s) after {warmup} warm-up; "
        "the ratio "
        "is the median per-round ratio to `python -c 'import torch'`. `imports torch`: "
        "`'torch' in sys.modules` after the command ran"
    )
    table = Table("startup", TITLE, method, COLUMNS)
    goal = Goal("<=", 1.0)
    for name, (ours, ref, torch_loaded) in measure(repeats, warmup).items():
        ratios = [a / b for a, b in zip(ours, ref, strict=True)]
        value = statistics.median(ratios)
        cause = "the command imports torch" if torch_loaded else "imports other than torch"
        table.add(
            f"`{name}`",
            ms(statistics.median(ours)),
            ms(statistics.median(ref)),
            "yes" if torch_loaded else "no",
            ratio(value),
            goal.text,
            verdict(value, goal, cause, iqr(ratios)),
        )
    return table


def main() -> None:
    """The stand-alone CLI: prints the section's Markdown table."""
    from benchlib import render

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(render(section(Options(), args.repeats)))


if __name__ == "__main__":
    main()
