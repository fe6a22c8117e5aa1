"""Benchmark: gradient graphs derived from the ONNX graph vs traced by the exporter.

Run directly (not part of the test run)::

    python tests/benchmarks/bench_onnx_autodiff.py [--repeats 50] [--threads 1]

For the CNN of ``bench_onnx.py`` (1x8x8, two conv+bn blocks) it reports

* generation time: ``export_onnx(..., gradients=True)`` (trace + export + verification of the
  forward and VJP graphs) vs ``export_onnx(..., gradients=False)`` followed by
  ``load_onnx(path, gradient_graph="onnx")`` (export, then build the VJP from the ONNX graph
  and check it against finite differences; the cache is cleared first);
* speed: forward + input gradient (``torch.autograd.grad``) at batch 64 on the ``OnnxModule``
  with the traced graph vs the one with the ONNX-derived graph, runs interleaved (median);
* the conv input-gradient variants are not compared here: ConvTranspose is the one emitted.

Prints a Markdown table; ratios > 1 mean the ONNX-derived side is faster.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_onnx import _families, _paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from neuroplex.onnx import export_onnx, load_onnx

    model, shape = _families()["cnn 1x8x8 (2 conv+bn)"]
    options = {"device": "cpu", "intra_op_threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        traced_result = export_onnx(model, torch.rand(4, *shape), folder / "traced.onnx")
        traced_s = time.perf_counter() - start
        start = time.perf_counter()
        plain = export_onnx(
            model, torch.rand(4, *shape), folder / "plain.onnx", gradients=False, progress=False
        )
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        derived = load_onnx(plain.path, gradient_graph="onnx", **options)
        derive_s = time.perf_counter() - start
        traced = load_onnx(traced_result.path, **options)
        sources = (traced.gradient_source, derived.gradient_source)
        assert sources == ("traced", "onnx"), (traced.tier_reason, derived.tier_reason)
        x, w = torch.rand(64, *shape), torch.randn(64, 10)

        def grad(m: torch.nn.Module) -> torch.Tensor:
            xg = x.clone().requires_grad_(True)
            return torch.autograd.grad((m(xg) * w).sum(), xg)[0]

        diff = float((grad(traced) - grad(derived)).abs().max())
        scale = float(grad(model).abs().max())
        t_traced, t_derived, _ = _paired(lambda: grad(traced), lambda: grad(derived), args.repeats)
    print("| CNN 1x8x8, batch 64 | traced | ONNX-derived | traced / derived |")
    print("|---|---|---|---|")
    print(
        f"| gradient graph generation (s) | {traced_s:.2f} (export with VJP) | "
        f"{export_s + derive_s:.2f} (export {export_s:.2f} + derive/verify {derive_s:.2f}) | "
        f"{traced_s / (export_s + derive_s):.2f} |"
    )
    print(
        f"| forward + input gradient (ms) | {1e3 * t_traced:.3f} | {1e3 * t_derived:.3f} | "
        f"{t_traced / t_derived:.2f} |"
    )
    print(f"\nmax |g_traced - g_derived| = {diff:.2e} (max |g| = {scale:.2e})")


if __name__ == "__main__":
    main()
