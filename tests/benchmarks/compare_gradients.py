"""Fused cross-entropy gradient of two versions of the exporter, side by side in CPU time.

Run directly (not part of the test run)::

    git archive BASE kernel | tar -x -C /tmp/before
    python tests/benchmarks/compare_gradients.py --before /tmp/before/kernel [--models cnn,vit]
        [--repeats 15]

Each model is exported twice with its ``ce`` loss graph, in subprocesses: once with the
``kernel`` folder given by ``--before`` first on ``PYTHONPATH`` (the code before a change),
once with the installed one (after). One process then times forward + cross-entropy input
gradient of both fused graphs and of PyTorch autograd, interleaved call by call, one thread,
in **process CPU time** (on a shared machine wall time swings with the other jobs' load;
CPU time much less). Prints the median ms per call and PyTorch / graph per model, after
checking both gradients against autograd. Models: ``cnn`` (the digits CNN of
``bench_analysis.py``, batch 128) or zoo names (batch 32).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def _model(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """``(model, example for the export, timed batch)``."""
    if name == "cnn":
        sys.path.insert(0, str(HERE))
        from bench_analysis import _models

        model, x, _ = next(v for k, v in _models().items() if k.startswith("cnn"))
        return model, x[:4], x
    from neuroplex.testing.zoo import create

    model, example = create(name, batch=4)
    return model, example, create(name, batch=32, seed=1)[1]


def _export(name: str, folder: str) -> None:
    from neuroplex.onnx import export_onnx

    torch.manual_seed(0)
    model, example, _ = _model(name)
    export_onnx(model, example, Path(folder) / "m.onnx", losses=("ce",), progress=False)


def _time(name: str, folders: dict[str, Path], repeats: int) -> None:
    import onnxruntime as ort

    from neuroplex.onnx.runtime import _session_options

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _, x = _model(name)
    with torch.no_grad():
        y = model(x).argmax(1)

    def autograd() -> Any:
        xg = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xg), y, reduction="sum")
        return torch.autograd.grad(loss, xg)[0]

    reference = autograd()
    feeds = {"input": x.numpy(), "labels": y.numpy()}
    calls: dict[str, Any] = {"PyTorch autograd": autograd}
    for label, folder in folders.items():
        session = ort.InferenceSession(
            str(folder / "m.loss-ce.onnx"),
            _session_options(1, False),
            providers=["CPUExecutionProvider"],
        )
        grad = torch.from_numpy(session.run(None, feeds)[2])
        err = ((grad - reference).norm() / reference.norm()).item()
        assert err <= 1e-5, f"{label}: gradient differs from autograd (relative {err:.2e})"
        calls[label] = lambda s=session: s.run(None, feeds)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(2):
        for call in calls.values():
            call()
    for _ in range(repeats):
        for label, call in calls.items():
            start = time.process_time()
            call()
            times[label].append(time.process_time() - start)
    median = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
    base = median["PyTorch autograd"]
    for label, ms in median.items():
        print(f"{name:12} {label:18} {ms:8.2f} ms CPU   PyTorch / this {base / ms:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a kernel folder with the old code")
    parser.add_argument("--models", default="cnn,vit")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--export", nargs=2, help=argparse.SUPPRESS)  # subprocess: name folder
    args = parser.parse_args()
    if args.export:
        _export(*args.export)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folders = {"before": Path(tmp) / f"{name}-before", "after": Path(tmp) / f"{name}-after"}
            for label, folder in folders.items():
                env = dict(os.environ, OMP_NUM_THREADS="1")
                if label == "before":
                    env["PYTHONPATH"] = os.pathsep.join(
                        filter(None, [args.before, env.get("PYTHONPATH")])
                    )
                cmd = [
                    sys.executable,
                    __file__,
                    "--before",
                    args.before,
                    "--export",
                    name,
                    str(folder),
                ]
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            _time(name, folders, args.repeats)


if __name__ == "__main__":
    main()
