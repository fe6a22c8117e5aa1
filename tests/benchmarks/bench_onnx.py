"""Benchmark: ONNX Runtime (through ``neuroplex.onnx.OnnxModule``) vs PyTorch eager.

Run directly (not part of the test run)::

    python tests/benchmarks/bench_onnx.py [--repeats 50] [--threads N] [--batches 1,64,256]

For each model family (MLP, CNN, transformer encoder, GAN generator, autoencoder) the script
exports the model with :func:`neuroplex.onnx.export_onnx` (verified against PyTorch), then
times inference of the same batch in one process, both sides with the same number of
intra-op threads: PyTorch eager under ``torch.inference_mode()`` against ``OnnxModule``
(ONNX Runtime, ``ORT_ENABLE_ALL`` graph optimizations, including the wrapper's input checks
and tensor conversion). Each figure is the median wall time over ``--repeats`` runs after
warm-up, the two sides interleaved run by run so both see the same machine
load; the ratio is PyTorch time / ONNX Runtime time (> 1: ONNX Runtime is faster).

The gradient path is timed for the CNN at batch 64: forward + input gradient with
``torch.autograd.grad`` on the PyTorch model vs the same call on the ``OnnxModule`` (forward
session + exported vector-Jacobian-product session). Results are checked to agree first.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _paired_median_ms(
    first: Callable[[], Any], second: Callable[[], Any], repeats: int
) -> tuple[float, float]:
    """Median ms of each function, runs interleaved so both see the same machine load."""
    for _ in range(3):  # warm-up
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times[0]), 1000.0 * statistics.median(times[1])


class _Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


def _families() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    generator = nn.Sequential(
        nn.Linear(16, 128), nn.LeakyReLU(0.2), nn.Linear(128, 256), nn.LeakyReLU(0.2),
        nn.Linear(256, 64), nn.Tanh(),
    )  # fmt: skip
    autoencoder = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
    )  # fmt: skip
    return {
        "mlp 64-128-128-10": (mlp.eval(), (64,)),
        "cnn 1x8x8 (2 conv+bn)": (cnn.eval(), (1, 8, 8)),
        "transformer d64 L2 seq16": (_Transformer().eval(), (16, 64)),
        "gan generator 16-128-256-64": (generator.eval(), (16,)),
        "autoencoder 1x8x8 conv": (autoencoder.eval(), (1, 8, 8)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batches", default="1,64,256")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)

    import onnxruntime as ort

    from neuroplex.onnx import export_onnx, load_onnx

    rows = []
    grad_row = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, shape) in _families().items():
            path = Path(tmp) / f"{name.split()[0]}.onnx"
            result = export_onnx(model, torch.rand(4, *shape), path, progress=False)
            runtime = load_onnx(path, device="cpu", intra_op_threads=args.threads)
            for batch in batches:
                x = torch.rand(batch, *shape)
                with torch.inference_mode():
                    torch.testing.assert_close(runtime(x), model(x), atol=1e-4, rtol=1e-3)

                def run_torch(m: nn.Module = model, x: torch.Tensor = x) -> Any:
                    with torch.inference_mode():
                        return m(x)

                def run_ort(m: nn.Module = runtime, x: torch.Tensor = x) -> Any:
                    return m(x)  # needs no grad-mode context: x does not require grad

                t_torch, t_ort = _paired_median_ms(run_torch, run_ort, args.repeats)
                rows.append((name, batch, t_torch, t_ort, result.graphs[0].tier))
            if name.startswith("cnn"):
                x = torch.rand(64, *shape)
                w = torch.randn(64, 10)

                def grad(m: nn.Module, x: torch.Tensor = x, w: torch.Tensor = w) -> torch.Tensor:
                    xg = x.clone().requires_grad_(True)
                    (g,) = torch.autograd.grad((m(xg) * w).sum(), xg)
                    return g

                diff = (grad(runtime) - grad(model)).abs().max().item()
                assert diff <= 1e-6, f"gradients disagree: {diff}"
                t_torch, t_ort = _paired_median_ms(
                    lambda m=model: grad(m), lambda m=runtime: grad(m), args.repeats
                )
                grad_row = (name, 64, t_torch, t_ort)

    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, threads {args.threads}, "
        f"median of {args.repeats} runs\n"
    )
    print("| model | batch | PyTorch eager ms | ONNX Runtime ms | speed-up (torch/ORT) |")
    print("|---|---:|---:|---:|---:|")
    for name, batch, t_torch, t_ort, _tier in rows:
        print(f"| {name} | {batch} | {t_torch:.3f} | {t_ort:.3f} | {t_torch / t_ort:.2f}x |")
    if grad_row is not None:
        name, batch, t_torch, t_ort = grad_row
        print(
            f"| {name}: forward + input gradient | {batch} | {t_torch:.3f} | {t_ort:.3f} | "
            f"{t_torch / t_ort:.2f}x |"
        )


if __name__ == "__main__":
    main()
