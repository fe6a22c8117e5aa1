"""End to end: ``neuroplex run specs/digits-cnn.toml`` wall time and its time per stage.

    python tests/benchmarks/bench_pipeline.py [--repeats 3] [--smoke]

Each run is a fresh subprocess writing to a temporary run directory (``--output``); stage
seconds come from the run's ``manifest.json``. ``python -c "import torch"`` runs between the
runs as the reference for the time outside the stages (interpreter start-up, imports, spec
and plugin loading).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench_startup import REFERENCE, neuroplex_command
from benchlib import FIRST_PARTY, Goal, Options, Table, missing, ratio, render, verdict

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "digits-cnn.toml"
TITLE = "6. End to end: `neuroplex run specs/digits-cnn.toml`, time per stage"
COLUMNS = ["part", "seconds (median)", "reference", "ratio (part / reference)", "goal", "status"]
#: the time outside the stages may cost this many bare `import torch` start-ups
OUTSIDE_GOAL = Goal("<=", 2.0)
OUTSIDE_CAUSE = (
    "besides torch the run imports onnx, onnxruntime, onnxscript, scikit-learn and "
    "matplotlib, and loads every plugin"
)


@dataclass(frozen=True)
class RunTimes:
    """One run: wall seconds, seconds per stage, test accuracy."""

    wall: float
    stages: dict[str, float]
    accuracy: float | None


def smoke_spec(workdir: Path) -> Path:
    """The spec cut down for smoke mode: 1 epoch, no gradient graph or verification, one
    analyzer."""
    spec = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    spec["training"]["epochs"] = 1
    spec["export"].update(gradients=False, verify=False)
    spec["analysis"]["analyzers"] = [{"name": "activations", "backend": "torch"}]
    path = workdir / "smoke-spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def run_once(spec: Path, out: Path, threads: int) -> RunTimes:
    """One ``neuroplex run``: wall seconds, stage seconds and test metrics."""
    cmd = [*neuroplex_command(), "run", str(spec), "--output", str(out)]
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"neuroplex run exited {proc.returncode}: {proc.stderr[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    stages = {k: float(v) for k, v in manifest["stage_seconds"].items()}
    return RunTimes(wall, stages, results.get("test_metrics", {}).get("accuracy"))


def _import_torch() -> float:
    """Wall seconds of ``python -c "import torch"``."""
    start = time.perf_counter()
    subprocess.run(REFERENCE, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def measure(repeats: int, smoke: bool, threads: int) -> tuple[list[RunTimes], list[float]]:
    """``repeats`` runs, each followed by an ``import torch`` reference run."""
    runs, refs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spec = smoke_spec(Path(tmp)) if smoke else SPEC
        for i in range(repeats):
            runs.append(run_once(spec, Path(tmp) / f"run-{i}", threads))
            refs.append(_import_torch())
    return runs, refs


def _median_stages(runs: list[RunTimes]) -> dict[str, float]:
    """The median seconds of each stage over the runs."""
    stages: dict[str, list[float]] = {}
    for run in runs:
        for name, seconds in run.stages.items():
            stages.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in stages.items()}


def section(opts: Options, repeats: int | None = None) -> Table:
    """Section 6 of the suite: the main job end to end."""
    repeats = repeats or opts.pick(3, 1)
    spec = f"`specs/{SPEC.name}`" + (
        " cut down (smoke: 1 epoch, no gradient graph or verification, one analyzer)"
        if opts.smoke
        else ""
    )
    method = (
        f"`neuroplex run` of {spec} as a fresh subprocess into a temporary `--output`, "
        f"{repeats} run(s), each followed by one `python -c 'import torch'`; stage seconds "
        f"from the run's `manifest.json`; {opts.threads} torch thread(s) (`OMP_NUM_THREADS`); "
        "medians over runs. Outside the stages: interpreter start-up, imports, spec and plugin "
        "loading"
    )
    table = Table("e2e", TITLE, method, COLUMNS)
    gone = missing(FIRST_PARTY)
    if gone:
        table.add("all", "—", "—", "—", "—", f"skipped: needs {', '.join(gone)} (not installed)")
        return table
    runs, refs = measure(repeats, opts.smoke, opts.threads)
    wall = statistics.median(r.wall for r in runs)
    stages = _median_stages(runs)
    for name, seconds in stages.items():
        table.add(name, f"{seconds:.2f}", "wall time", ratio(seconds / wall), "—", "reported")
    outside = wall - sum(stages.values())
    torch_s = statistics.median(refs)
    table.add(
        "outside the stages",
        f"{outside:.2f}",
        f"`import torch` ({torch_s:.2f} s)",
        ratio(outside / torch_s),
        OUTSIDE_GOAL.text,
        verdict(outside / torch_s, OUTSIDE_GOAL, OUTSIDE_CAUSE),
    )
    table.add("wall time", f"{wall:.2f}", "wall time", ratio(1.0), "—", "reported")
    accuracy = [f"{r.accuracy:.4f}" for r in runs if r.accuracy is not None]
    if accuracy:
        table.notes.append(f"Test accuracy of the run(s): {', '.join(accuracy)}.")
    return table


def main() -> None:
    """The stand-alone CLI: prints the section's Markdown table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a cut-down spec")
    args = parser.parse_args()
    print(render(section(Options(smoke=args.smoke), args.repeats)))


if __name__ == "__main__":
    sys.exit(main())
