"""Benchmark: gradient graphs derived from the ONNX graph vs traced by the exporter.

Run directly (not part of the test run)::

    python tests/benchmarks/bench_onnx_autodiff.py [--repeats 50] [--threads 1]

For each ``--family`` of ``bench_onnx.py`` (default: the CNN, 1x8x8, two conv+bn blocks) it
reports

* generation time: ``export_onnx(..., gradients=True)`` (trace + export + verification of the
  forward and VJP graphs) vs ``export_onnx(..., gradients=False)`` followed by
  ``load_onnx(path, gradient_graph="onnx")`` (export with standard ops only,
  ``contrib_ops=False``, then build the VJP from the ONNX graph and check it against finite
  differences; a fresh folder, so nothing is cached);
* speed: forward + input gradient (``torch.autograd.grad``) at batch 64 on the ``OnnxModule``
  with the traced graph vs the one with the ONNX-derived graph, runs interleaved (median);
* for classifiers, PGD-10 (``AdversarialTester.attack``, which runs the fused ``ce``
  loss-gradient graph: exported beside the traced file, spliced onto the derived graph);
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


def _model(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A family of ``bench_onnx.py`` or a model of the gradient-engine zoo, in eval mode."""
    families = _families()
    if name in families:
        return families[name]
    from neuroplex.testing.zoo import ZOO

    torch.manual_seed(0)
    return ZOO[name].factory().eval(), ZOO[name].input_shape


def _bench_family(name: str, repeats: int, threads: int, folder: Path) -> list[str]:
    """The table rows of one model family (see the module docstring)."""
    from neuroplex_attacks import AdversarialTester

    from neuroplex.onnx import export_onnx, load_onnx

    model, shape = _model(name)
    options = {"device": "cpu", "intra_op_threads": threads}
    stem = name.split()[0]
    start = time.perf_counter()
    traced_result = export_onnx(model, torch.rand(4, *shape), folder / f"{stem}-traced.onnx")
    traced_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = export_onnx(  # standard ops only: no gradient rules for ORT's contrib kernels
        model,
        torch.rand(4, *shape),
        folder / f"{stem}-plain.onnx",
        gradients=False,
        contrib_ops=False,
        progress=False,
    )
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    derived = load_onnx(plain.path, gradient_graph="onnx", **options)
    derive_s = time.perf_counter() - start
    traced = load_onnx(traced_result.path, **options)
    if derived.gradient_source != "onnx":
        return [f"| {name} | no ONNX-derived graph: {derived.tier_reason} | | | |"]
    x = torch.rand(64, *shape)
    with torch.no_grad():
        out = model(x)
    w = torch.randn(out.shape)

    def grad(m: torch.nn.Module) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad((m(xg) * w).sum(), xg)[0]

    diff = float((grad(traced) - grad(derived)).abs().max())
    scale = float(grad(model).abs().max())
    t_traced, t_derived, _ = _paired(lambda: grad(traced), lambda: grad(derived), repeats)
    rows = [
        f"| {name} | gradient graph generation (s) | {traced_s:.2f} | "
        f"{export_s + derive_s:.2f} (export {export_s:.2f} + derive/verify {derive_s:.2f}) | "
        f"{traced_s / (export_s + derive_s):.2f} |",
        f"| {name} | forward + input gradient (ms) | {1e3 * t_traced:.3f} | "
        f"{1e3 * t_derived:.3f} | {t_traced / t_derived:.2f} |",
        f"| {name} | max abs(g_traced - g_derived) / max abs(g) | {diff / scale:.1e} | | |",
    ]
    if out.ndim == 2 and out.shape[1] > 1 and traced.has_loss_graph("ce"):
        y = out.argmax(1)
        testers = [AdversarialTester(m, input_range=(0.0, 1.0)) for m in (traced, derived)]
        assert derived.has_loss_graph("ce")

        def pgd(tester: AdversarialTester) -> torch.Tensor:
            return tester.attack(x, y, "pgd", 0.05, steps=10)

        p_traced, p_derived, _ = _paired(
            lambda: pgd(testers[0]), lambda: pgd(testers[1]), max(5, repeats // 5)
        )
        rows.append(
            f"| {name} | PGD-10, fused CE graph (ms) | {1e3 * p_traced:.2f} | "
            f"{1e3 * p_derived:.2f} | {p_traced / p_derived:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--family",
        action="append",
        help="model families of bench_onnx.py or zoo models (neuroplex.testing.zoo) to run "
        "(repeatable; default: the CNN)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.family or ["cnn 1x8x8 (2 conv+bn)"]:
            rows += _bench_family(name, args.repeats, args.threads, Path(tmp))
    print("| model (batch 64) | quantity | traced | ONNX-derived | traced / derived |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
