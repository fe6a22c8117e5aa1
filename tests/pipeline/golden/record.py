"""Record what ``neuroplex run`` gives on a reduced copy of every spec in ``specs/``.

The golden-spec test (``tests/pipeline/test_golden_specs.py``) runs the same reduced specs on
the code under test and compares with ``specs.json`` beside this file, which was written by::

    git worktree add --detach /tmp/golden-base <commit>
    python tests/pipeline/golden/record.py --tree /tmp/golden-base --commit <commit> \
        --out tests/pipeline/golden/specs.json

``--tree`` names the source tree whose code runs: its ``kernel/`` and ``plugins/*/src`` go first
on ``PYTHONPATH`` (the installed distributions only supply the third-party packages and the
entry-point table, whose ``module:attr`` values are the same in every tree), and every run checks
that ``neuroplex`` was imported from that tree. The specs themselves always come from this
checkout's ``specs/`` (the reduced text must be the same on both sides).

A reduced spec shrinks the sizes of the original: 2 epochs, at most 32 samples per analyzer, one
policy round of one epoch with a 2-step training attack. Two variants:

- the default (``specs.json``, what CI runs): to fit CI's time budget, the analyzers run on
  PyTorch and only a spec with a policy exports to ONNX (its re-test attacks the ONNX model,
  so export, gradient graphs, verification and ONNX Runtime analysis are covered there; the
  ONNX bridge has its own tests against PyTorch);
- ``--full`` (``specs-full.json``, run when ``NEUROPLEX_GOLDEN_FULL=1``): every stage of the
  original spec, each spec exported with gradient graphs and verified, analyzers where the spec
  puts them (mostly ONNX Runtime). About four times slower.

What is recorded per spec (timings are left out, they are not deterministic):

- ``test_metrics`` and ``rounds`` from ``results.json``;
- every report section of ``results.json`` except the time-per-stage table;
- SHA-256 of every tensor in the last epoch checkpoint (weights, optimizer and scheduler state,
  the best weights) and of every initializer of the exported forward graphs (the final weights,
  after best-weight restore and the policy's retraining);
- SHA-256 of every array in ``arrays.npz`` (the report's images: attributions, samples).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SPECS = REPO / "specs"
TIMING_SECTION = "Time per stage"


def reduce(spec: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    """The CI-sized copy of ``spec``: same stages, smaller sizes (see the module doc)."""
    spec = copy.deepcopy(spec)
    spec["training"]["epochs"] = 2
    policies = spec.get("feedback", {}).get("policies", [])
    if not full and not policies:  # a policy re-tests on ONNX Runtime: it keeps the export
        spec["export"] = {**spec.get("export", {}), "enabled": False}
    for analyzer in spec.get("analysis", {}).get("analyzers", []):
        analyzer["n_samples"] = min(int(analyzer.get("n_samples", 256)), 32)
        if not full:
            analyzer["backend"] = "torch"
    for policy in policies:
        policy["max_rounds"] = 1
        options = policy.setdefault("options", {})
        if "epochs" in options:
            options["epochs"] = 1
        if "steps" in options.get("train_attack_options", {}):
            options["train_attack_options"]["steps"] = 2
    return spec


def reduced_specs(*, full: bool = False) -> dict[str, dict[str, Any]]:
    """``name -> reduced spec`` for every spec in ``specs/``."""
    out = {}
    for path in sorted(SPECS.glob("*.toml")):
        with path.open("rb") as fh:
            out[path.stem] = reduce(tomllib.load(fh), full=full)
    return out


def tree_pythonpath(tree: Path) -> str:
    """The tree's kernel and plugin sources, in front of whatever else is importable."""
    parts = [str(tree / "kernel"), *sorted(str(p) for p in (tree / "plugins").glob("*/src"))]
    return os.pathsep.join(parts)


_RUN = (
    "import sys, pathlib, neuroplex\n"
    "if sys.argv[1]:\n"
    "    tree = pathlib.Path(sys.argv[1]).resolve()\n"
    "    where = pathlib.Path(neuroplex.__file__).resolve()\n"
    "    assert tree in where.parents, f'neuroplex imported from {where}, not from {tree}'\n"
    "from neuroplex.cli import main\n"
    "sys.exit(main(['run', sys.argv[2], '--output', sys.argv[3]]))\n"
)


def run_spec(tree: Path | None, spec: dict[str, Any], workdir: Path) -> Path:
    """Run ``spec`` with the code of ``tree`` (``None``: the installed code, as the test does)
    in a fresh process with one CPU thread; returns the run directory."""
    spec_path = workdir / f"{spec['name']}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    run_dir = workdir / f"run-{spec['name']}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if tree is not None:
        env["PYTHONPATH"] = tree_pythonpath(tree)
    for name in ("NEUROPLEX_PLUGINS", "NEUROPLEX_DISABLE_PLUGINS"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(tree or ""), str(spec_path), str(run_dir)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['name']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return run_dir


def _sha(array: Any) -> str:
    import numpy as np

    array = np.ascontiguousarray(array)
    head = f"{array.dtype.str}{list(array.shape)}".encode()
    return hashlib.sha256(head + array.tobytes()).hexdigest()


def _tensor_hashes(obj: Any, prefix: str, out: dict[str, str]) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = _sha(obj.detach().cpu().contiguous().numpy())
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            _tensor_hashes(obj[key], f"{prefix}/{key}", out)
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            _tensor_hashes(item, f"{prefix}/{i}", out)


CHECKPOINT_PARTS = ("model", "optimizers", "schedulers", "best_state")


def _untimed(item: dict[str, Any]) -> dict[str, Any]:
    """A policy round or report section without its wall-clock ``seconds`` (key or column)."""
    out = {k: v for k, v in item.items() if k != "seconds"}
    columns = item.get("columns")
    if isinstance(columns, list) and "seconds" in columns:
        at = columns.index("seconds")
        out["columns"] = [c for i, c in enumerate(columns) if i != at]
        out["rows"] = [[v for i, v in enumerate(row) if i != at] for row in item["rows"]]
    return out


def digest(run_dir: Path) -> dict[str, Any]:
    """What the golden test compares, read from a finished run directory."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    results = json.loads((run_dir / "results.json").read_text())
    sections = [s for s in results["sections"] if s.get("title") != TIMING_SECTION]
    last = sorted((run_dir / "checkpoints").glob("epoch-*.pt"))[-1]
    state = torch.load(last, map_location="cpu", weights_only=True)
    checkpoint: dict[str, str] = {}
    for part in CHECKPOINT_PARTS:
        _tensor_hashes(state.get(part), part, checkpoint)
    onnx_weights: dict[str, dict[str, str]] = {}
    for path in sorted(run_dir.glob("*.onnx")):
        if ".vjp." in path.name or ".loss-" in path.name:
            continue  # derived graphs (their weights are the forward graph's)
        model = onnx.load(str(path))
        onnx_weights[path.name] = {
            init.name: _sha(numpy_helper.to_array(init)) for init in model.graph.initializer
        }
    arrays: dict[str, str] = {}
    if (run_dir / "arrays.npz").exists():
        with np.load(run_dir / "arrays.npz", allow_pickle=False) as npz:
            arrays = {key: _sha(npz[key]) for key in sorted(npz.files)}
    return {
        "test_metrics": results["test_metrics"],
        "rounds": [_untimed(r) for r in results["rounds"]],
        "sections": [_untimed(s) for s in sections],
        "checkpoint": {"file": last.name, "tensors": checkpoint},
        "onnx_weights": onnx_weights,
        "arrays": arrays,
    }


def machine() -> dict[str, str]:
    """What the digests depend on besides the code: torch's build and the CPU kernels it picks
    (float results round differently with AVX2 and AVX-512)."""
    import platform

    import torch

    return {
        "torch": str(torch.__version__),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "machine": platform.machine(),
    }


def record(tree: Path, names: list[str] | None = None, *, full: bool = False) -> dict[str, Any]:
    specs = reduced_specs(full=full)
    out = {}
    with tempfile.TemporaryDirectory(prefix="neuroplex-golden-") as tmp:
        for name, spec in specs.items():
            if names and name not in names:
                continue
            out[name] = digest(run_spec(tree, spec, Path(tmp)))
            print(f"recorded {name}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, required=True, help="source tree whose code runs")
    parser.add_argument("--out", type=Path, default=None, help="write the records here")
    parser.add_argument("--commit", default=None, help="the tree's commit, noted in the file")
    parser.add_argument("--full", action="store_true", help="the full variant (module doc)")
    parser.add_argument("spec", nargs="*", help="only these specs (default: all)")
    args = parser.parse_args()
    specs = record(args.tree.resolve(), args.spec or None, full=args.full)
    body = {
        "produced_by": "tests/pipeline/golden/record.py" + (" --full" if args.full else ""),
        "commit": args.commit,
        "machine": machine(),
        "specs": specs,
    }
    if args.out is not None and args.out.exists():  # the hand-written reasons stay
        body["known_differences"] = json.loads(args.out.read_text()).get("known_differences", {})
    text = json.dumps(body, indent=1, sort_keys=True) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
