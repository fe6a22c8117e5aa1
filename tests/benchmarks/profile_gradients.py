"""Per-operator profile of the fused cross-entropy gradient: ONNX Runtime against autograd.

Run directly (not part of the test run)::

    python tests/benchmarks/profile_gradients.py [--models resnet,convnext] [--batch 32]
        [--repeats 10] [--threads 1] [--top 12]

``--models cnn`` profiles the digits CNN of ``bench_analysis.py`` (28×28, its own batch of 128).

For each zoo model (``neuroplex.testing.zoo``) the script exports the model with its ``ce``
loss graph, then profiles ``repeats`` calls of forward + cross-entropy input gradient on both
sides, one thread each (``--threads``):

* ONNX Runtime: the fused graph ``model.loss-ce.onnx`` in a session with the options
  ``OnnxModule`` uses plus ``enable_profiling``; kernel times (``*_kernel_time`` events) are
  summed per operator type;
* PyTorch: ``torch.profiler`` over ``autograd.grad`` of ``cross_entropy(model(x), y)``;
  self CPU time summed per ATen operator.

Prints, per model, the total per call and the most expensive operators of each side (ms per
call and share of the total). Raw traces are written to a temporary folder and deleted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn


def _ort_profile(
    path: Path, x: torch.Tensor, y: torch.Tensor, repeats: int, threads: int
) -> dict[str, float]:
    """Milliseconds per call of each ONNX operator type of the fused CE graph."""
    import onnxruntime as ort

    from neuroplex.onnx._session import session_options

    options = session_options(threads, False)
    for _ in range(2):  # warm-up without the profiler
        ort.InferenceSession(str(path), options).run(
            None, {"input": x.numpy(), "labels": y.numpy()}
        )
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: v for i, v in zip(session.get_inputs(), (x.numpy(), y.numpy()), strict=True)}
    for _ in range(2):
        session.run(None, feeds)
    for _ in range(repeats):
        session.run(None, feeds)
    trace = session.end_profiling()
    events = json.loads(Path(trace).read_text())
    per_op: dict[str, float] = defaultdict(float)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # the last `repeats` runs (the first two are warm-up)
    start = runs[-repeats]["ts"]
    for e in kernels:
        if e["ts"] >= start:
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / repeats
    per_op["(session total)"] = sum(r["dur"] for r in runs[-repeats:]) / 1e3 / repeats
    return per_op


def _torch_profile(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Milliseconds per call of each ATen operator (self CPU time) of autograd's CE gradient."""
    from torch.profiler import ProfilerActivity, profile

    def step() -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xg), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
        return g

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    per_op: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        per_op[event.key] += event.self_cpu_time_total / 1e3 / repeats
    per_op["(session total)"] = sum(v for k, v in per_op.items() if k != "(session total)")
    return per_op


def _table(title: str, per_op: dict[str, float], top: int) -> str:
    total = per_op["(session total)"]
    rows = sorted(((v, k) for k, v in per_op.items() if k != "(session total)"), reverse=True)
    kernels = sum(v for v, _ in rows)
    lines = [f"{title}: {total:.2f} ms per call (operators {kernels:.2f} ms)"]
    lines += [f"  {k:<40} {v:8.3f} ms  {100 * v / kernels:5.1f} %" for v, k in rows[:top]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet,convnext")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    from neuroplex.onnx import export_onnx
    from neuroplex.testing.zoo import create

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name == "cnn":  # the digits CNN of bench_analysis.py (28x28, batch 128)
                from bench_analysis import _models

                model, x, _ = next(v for k, v in _models().items() if k.startswith("cnn"))
                example = x[:4]
            else:
                model, example = create(name, batch=4)
                _, x = create(name, batch=args.batch, seed=1)
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, example, path, losses=("ce",), progress=False)
            with torch.no_grad():
                y = model(x).argmax(1)
            fused = path.with_name(f"{name}.loss-ce.onnx")
            ort_ops = _ort_profile(fused, x, y, args.repeats, args.threads)
            torch_ops = _torch_profile(model, x, y, args.repeats)
            print(f"## {name}, batch {len(x)}, {args.threads} thread(s)")
            print(_table("ONNX Runtime fused CE", ort_ops, args.top))
            print(_table("PyTorch autograd", torch_ops, args.top))
            print()


if __name__ == "__main__":
    main()
