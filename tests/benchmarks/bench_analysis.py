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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from benchlib import Goal, Options, Table, iqr, missing, ratio, verdict


def _seconds(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


#: median seconds of ours, of the reference, the median per-pair ratio ref/ours, the ratios
Paired = tuple[float, float, float, list[float]]


def _paired(ours: Callable[[], Any], ref: Callable[[], Any], repeats: int) -> Paired:
    """Median seconds of ``ours`` and ``ref``, the median of per-pair ratios ref/ours, and
    those ratios.

    Runs alternate (ours, ref, ours, ref, ...) after one warm-up each, so both see the same
    machine load; the per-pair ratio is robust to load that drifts during the benchmark.
    """
    ours()
    ref()
    pairs = [(_seconds(ours), _seconds(ref)) for _ in range(repeats)]
    ratios = [p[1] / p[0] for p in pairs]
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(ratios),
        ratios,
    )


def _models() -> dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """The models, their batches and labels (each model's own predictions)."""
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


def _zoo_models(
    names: list[str], batch: int
) -> dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """Zoo models (``neuroplex.testing.zoo``) with a batch of inputs in [0, 1] (PGD clamps to
    that range) and their own predictions as labels."""
    from neuroplex.testing.zoo import create

    out = {}
    for name in names:
        model, example = create(name, batch=batch, seed=1)
        x = torch.rand(example.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out[f"zoo {name}, batch {batch}"] = (model, x, model(x).argmax(1))
    return out


def bench_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> Paired:
    """PGD-10 of ``neuroplex_attacks`` vs ``torchattacks.PGD`` on the PyTorch model."""
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


def bench_ig(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> Paired:
    """IG-50 of ``neuroplex_explain`` vs Captum's ``IntegratedGradients``."""
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


def bench_pgd_on(
    onnx_model: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> Paired:
    """PGD-10 of ours on ONNX Runtime vs ``torchattacks.PGD`` on PyTorch."""
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
) -> Paired:
    """IG-50 of ours on ONNX Runtime vs Captum on PyTorch."""
    from captum.attr import IntegratedGradients
    from neuroplex_explain import ModelExplainability

    explainer = ModelExplainability(onnx_model)
    ig = IntegratedGradients(model)

    def ours() -> Any:
        return explainer.attribute(x, "integrated_gradients", target=y, n_steps=50)

    def ref() -> Any:
        return ig.attribute(x, target=y, n_steps=50, return_convergence_delta=True)

    return _paired(ours, ref, repeats)


@dataclass
class Row:
    """One comparison: ours vs the reference library, or why it was not measured."""

    analysis: str
    backend: str
    model: str
    n: int
    result: Paired | None = None
    skip: str = ""


#: what each analysis needs: our plugin distribution and the reference library's module
NEEDS = {
    "PGD-10 vs torchattacks": (["neuroplex-attacks"], ["torchattacks"]),
    "IG-50 vs Captum": (["neuroplex-explain"], ["captum"]),
}


def _torch_rows(
    name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> list[Row]:
    """Our analyses on the PyTorch model vs the reference libraries."""
    rows = []
    for what, fn in (("PGD-10 vs torchattacks", bench_pgd), ("IG-50 vs Captum", bench_ig)):
        gone = missing(*NEEDS[what])
        row = Row(what, "PyTorch", name, len(x))
        if gone:
            row.skip = f"needs {', '.join(gone)} (not installed)"
        else:
            row.result = fn(model, x, y, repeats)
        rows.append(row)
    return rows


def _onnx_rows(
    name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> list[Row]:
    """Our analyses on ONNX Runtime (the exported gradient graph) vs the reference libraries
    on the PyTorch model."""
    import tempfile
    from pathlib import Path

    from neuroplex import onnx as nx_onnx

    todo = (("PGD-10 vs torchattacks", bench_pgd_on), ("IG-50 vs Captum", bench_ig_on))
    rows = [Row(what, "ONNX Runtime", name, len(x)) for what, _ in todo]
    for row in rows:
        gone = missing(*NEEDS[row.analysis])
        row.skip = f"needs {', '.join(gone)} (not installed)" if gone else ""
    if all(row.skip for row in rows):
        return rows  # nothing to time: no export
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        nx_onnx.export_onnx(model, x[:2], path, progress=False)
        onnx_model = nx_onnx.load_onnx(path)
        for row, (_, fn) in zip(rows, todo, strict=True):
            if row.skip:
                continue
            if getattr(onnx_model, "tier", None) != "gradients":
                row.skip = f"the exported model is forward-only: {onnx_model.tier_reason}"
            else:
                row.result = fn(onnx_model, model, x, y, repeats)
    return rows


def _zoo_rows(names: list[str], batch: int, repeats: int, onnx: bool) -> list[Row]:
    """PGD-10 on zoo models: ours on PyTorch and on ONNX Runtime vs torchattacks."""
    rows: list[Row] = []
    for name, (model, x, y) in _zoo_models(names, batch).items():
        rows.extend(r for r in _torch_rows(name, model, x, y, repeats) if "PGD" in r.analysis)
        if onnx and not missing(modules=["onnx", "onnxruntime", "onnxscript"]):
            rows.extend(r for r in _onnx_rows(name, model, x, y, repeats) if "PGD" in r.analysis)
    return rows


def measure(
    repeats: int,
    models: list[str] | None = None,
    onnx: bool = True,
    n: int | None = None,
    zoo: list[str] | None = None,
    zoo_batch: int = 32,
) -> list[Row]:
    """Every comparison on every model (or those whose name starts with one of ``models``),
    on PyTorch and, with ``onnx``, on ONNX Runtime; ``n``: only the batch's first items;
    ``zoo``: PGD-10 rows for these zoo models too (batch ``zoo_batch``)."""
    rows: list[Row] = []
    for name, (model, x, y) in _models().items():
        if models is not None and name.split()[0] not in models:
            continue
        if n is not None:
            x, y, name = x[:n], y[:n], f"{name.split(',')[0]}, batch {n}"
        rows.extend(_torch_rows(name, model, x, y, repeats))
        if onnx and not missing(modules=["onnx", "onnxruntime", "onnxscript"]):
            rows.extend(_onnx_rows(name, model, x, y, repeats))
    if zoo:
        rows.extend(_zoo_rows(zoo, zoo_batch, repeats, onnx))
    return rows


TITLE = "4. Analysis: PGD-10 vs torchattacks, IG-50 vs Captum, on PyTorch and ONNX Runtime"
COLUMNS = [
    "analysis",
    "ours on",
    "model",
    "n",
    "ours samples/s",
    "reference samples/s",
    "ratio (speed-up: reference / ours)",
    "goal",
    "status",
]
CAUSES = {
    ("PGD-10 vs torchattacks", "PyTorch"): "both run the same 10 forward + backward passes "
    "of the model; there is little left to save",
    ("PGD-10 vs torchattacks", "ONNX Runtime"): "each step runs ORT's forward, then the VJP "
    "graph, which re-runs the forward before its backward: about 4 forward-costs a step "
    "against autograd's 3 where both sides' kernels are equally fast (batch 512 / 128)",
    ("IG-50 vs Captum", "PyTorch"): "both evaluate the model on 50 scaled inputs per sample",
    ("IG-50 vs Captum", "ONNX Runtime"): "each of the 50 steps runs ORT's forward and a VJP "
    "graph that re-runs the forward",
}


def section(opts: Options) -> Table:
    """Section 4 of the suite: our analyses against torchattacks and Captum."""
    repeats = opts.pick(9, 1)
    torch.set_num_threads(opts.threads)
    method = (
        f"Median wall time of {repeats} interleaved pairs after one warm-up each, "
        f"{opts.threads} thread(s); the ratio is the median over pairs of reference time / our "
        "time (> 1: we are faster). Same model, batch and labels; results checked to agree "
        "before timing. ORT rows: our analysis on the exported model (forward + VJP graph) vs "
        "the reference library on the PyTorch model"
        + (" (smoke: MLP, batch 64)" if opts.smoke else "")
    )
    table = Table("analysis", TITLE, method, COLUMNS)
    rows = measure(repeats, ["mlp"], n=64) if opts.smoke else measure(repeats)
    for row in rows:
        if row.result is None:
            table.add(row.analysis, row.backend, row.model, row.n, "—", "—", "—", "—",
                      f"skipped: {row.skip}")  # fmt: skip
            continue
        ours, ref, value, ratios = row.result
        goal = Goal(">=", 1.0)
        cause = CAUSES[row.analysis, row.backend]
        table.add(
            row.analysis,
            row.backend,
            row.model,
            row.n,
            f"{row.n / ours:,.0f}",
            f"{row.n / ref:,.0f}",
            ratio(value),
            goal.text,
            verdict(value, goal, cause, iqr(ratios)),
        )
    return table


def main(argv: list[str] | None = None) -> int:
    """The stand-alone CLI: a Markdown table of samples per second and speed ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--no-onnx",
        action="store_true",
        help="skip the ONNX Runtime rows (default: run them "
        "when the kernel's ONNX bridge neuroplex.onnx is importable)",
    )
    parser.add_argument(
        "--models", default="", help="comma-separated: only these (mlp, cnn; default: all)"
    )
    parser.add_argument(
        "--zoo", default="", help="comma-separated zoo models for PGD-10 rows (e.g. resnet)"
    )
    parser.add_argument("--zoo-batch", type=int, default=32)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(
        args.repeats,
        [m for m in args.models.split(",") if m] or None,
        onnx=not args.no_onnx,
        zoo=[z for z in args.zoo.split(",") if z],
        zoo_batch=args.zoo_batch,
    )
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved runs; ratio = median over pairs of "
        "reference time / our time (> 1: we are faster)\n"
    )
    print("| analysis | model | n | ours (samples/s) | reference (samples/s) | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        what = row.analysis if row.backend == "PyTorch" else f"{row.analysis} (ours on ORT)"
        if row.result is None:
            print(f"| {what} | {row.model} | {row.n} | — | — | skipped: {row.skip} |")
            continue
        ours, ref, value, _ = row.result
        n = row.n
        print(f"| {what} | {row.model} | {n} | {n / ours:,.0f} | {n / ref:,.0f} | {value:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
