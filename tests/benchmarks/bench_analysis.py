"""Benchmark: neuroplex attacks and attributions against torchattacks and Captum.

Run directly::

    python tests/benchmarks/bench_analysis.py [--repeats 7] [--threads N] [--no-onnx]

Measures, on the same model and batch, the median wall time over ``--repeats`` runs (after one
warm-up) of

* PGD-10 (L∞, ε = 0.1, α = ε/4, no random start): ``neuroplex_attacks`` vs ``torchattacks.PGD``;
* integrated gradients (50 steps, Gauss-Legendre, zero baseline, target = labels):
  ``neuroplex_explain`` vs ``captum.attr.IntegratedGradients`` (with its convergence delta,
  which ours always computes);

and prints a Markdown table of samples per second and the speed ratio (reference time / ours;
> 1 means we are faster). Results are checked to agree before timing. When the kernel's ONNX
bridge is present (unless ``--no-onnx``), the same analyses also run on ONNX Runtime (the
exported model's gradient graph) and are compared with the PyTorch reference libraries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _paired(
    ours: Callable[[], Any], ref: Callable[[], Any], repeats: int
) -> tuple[float, float, float]:
    """Median seconds of ``ours`` and ``ref`` and the median of per-pair ratios ref/ours.

    Runs alternate (ours, ref, ours, ref, ...) after one warm-up each, so both see the same
    machine load; the per-pair ratio is robust to load that drifts during the benchmark.
    """
    ours()
    ref()
    pairs = [(_seconds(ours), _seconds(ref)) for _ in range(repeats)]
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(p[1] / p[0] for p in pairs),
    )


def _models() -> dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    ).eval()  # fmt: skip
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 10),
    ).eval()  # fmt: skip
    x_mlp = torch.rand(512, 64, generator=gen)
    x_cnn = torch.rand(128, 1, 28, 28, generator=gen)
    return {
        "mlp 64-256-256-10, batch 512": (mlp, x_mlp, mlp(x_mlp).argmax(1).detach()),
        "cnn 28x28 (2 conv), batch 128": (cnn, x_cnn, cnn(x_cnn).argmax(1).detach()),
    }


def bench_pgd(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> tuple[float, float, float]:
    import torchattacks
    from neuroplex_attacks import AdversarialTester

    eps, steps = 0.1, 10
    tester = AdversarialTester(model)
    ref = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=False)

    def ours() -> torch.Tensor:
        return tester.attack(x, y, "pgd", eps, steps=steps, alpha=eps / 4, random_start=False)

    differing = int(((ours() - ref(x, y)).abs().amax(dim=tuple(range(1, x.ndim))) > 1e-6).sum())
    assert differing <= 1, f"PGD disagrees with torchattacks on {differing} samples"
    return _paired(ours, lambda: ref(x, y), repeats)


def bench_ig(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> tuple[float, float, float]:
    from captum.attr import IntegratedGradients
    from neuroplex_explain import ModelExplainability

    explainer = ModelExplainability(model)
    ig = IntegratedGradients(model)

    def ours() -> torch.Tensor:
        return explainer.attribute(x, "integrated_gradients", target=y, n_steps=50).attributions

    def ref() -> torch.Tensor:
        attr, _delta = ig.attribute(x, target=y, n_steps=50, return_convergence_delta=True)
        return attr

    assert torch.allclose(ours(), ref(), atol=1e-5), "IG disagrees with Captum"
    return _paired(ours, ref, repeats)


Row = tuple[str, str, int, float, float, float]


def _onnx_rows(
    name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> list[Row]:
    """ONNX Runtime (exported gradient graph) rows vs the PyTorch reference libraries."""
    import tempfile
    from pathlib import Path

    from neuroplex import onnx as nx_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        nx_onnx.export_onnx(model, x[:2], path, progress=False)
        onnx_model = nx_onnx.load_onnx(path)
        if getattr(onnx_model, "tier", None) != "gradients":
            print(f"[{name}] ONNX model is forward-only: skipping ONNX gradient rows")
            return []
        pgd = bench_pgd_on(onnx_model, model, x, y, repeats)
        ig = bench_ig_on(onnx_model, model, x, y, repeats)
    n = len(x)
    return [
        ("PGD-10 on ORT vs torchattacks on PyTorch", name, n, *pgd),
        ("IG-50 on ORT vs Captum on PyTorch", name, n, *ig),
    ]


def bench_pgd_on(
    onnx_model: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> tuple[float, float, float]:
    import torchattacks
    from neuroplex_attacks import AdversarialTester

    eps = 0.1
    tester = AdversarialTester(onnx_model)
    ref = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10, random_start=False)

    def ours() -> torch.Tensor:
        return tester.attack(x, y, "pgd", eps, steps=10, alpha=eps / 4, random_start=False)

    return _paired(ours, lambda: ref(x, y), repeats)


def bench_ig_on(
    onnx_model: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> tuple[float, float, float]:
    from captum.attr import IntegratedGradients
    from neuroplex_explain import ModelExplainability

    explainer = ModelExplainability(onnx_model)
    ig = IntegratedGradients(model)

    def ours() -> Any:
        return explainer.attribute(x, "integrated_gradients", target=y, n_steps=50)

    def ref() -> Any:
        return ig.attribute(x, target=y, n_steps=50, return_convergence_delta=True)

    return _paired(ours, ref, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--no-onnx",
        action="store_true",
        help="skip the ONNX Runtime rows (default: run them "
        "when the kernel's ONNX bridge neuroplex.onnx is importable)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[Row] = []
    for name, (model, x, y) in _models().items():
        rows.append(("PGD-10 vs torchattacks", name, len(x), *bench_pgd(model, x, y, args.repeats)))
        rows.append(("IG-50 vs Captum", name, len(x), *bench_ig(model, x, y, args.repeats)))
        if not args.no_onnx:
            try:
                rows.extend(_onnx_rows(name, model, x, y, args.repeats))
            except ImportError as exc:
                print(f"[{name}] ONNX rows skipped: {exc}", file=sys.stderr)
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved runs; ratio = median over pairs of "
        "reference time / our time (> 1: we are faster)\n"
    )
    print("| analysis | model | n | ours (samples/s) | reference (samples/s) | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for what, name, n, ours, ref, ratio in rows:
        print(f"| {what} | {name} | {n} | {n / ours:,.0f} | {n / ref:,.0f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
