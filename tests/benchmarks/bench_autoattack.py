"""Benchmark: AutoAttack of ``neuroplex_attacks`` on ONNX Runtime vs ART on PyTorch.

Run directly (minutes; it is not part of ``run.py``'s suite or its CI smoke test)::

    python tests/benchmarks/bench_autoattack.py [--n 200] [--eps 0.1] [--repeats 1]

One thread everywhere (``torch.set_num_threads(1)``, ONNX Runtime ``intra_op_threads=1``). The
model is a digits CNN (scikit-learn's 8×8 digits, inputs in [0, 1]) trained here for 8 epochs,
seeded; the points are the first ``--n`` of the held-out split, labels the true ones. Rows:

* **standard**: our ``autoattack`` (version standard: APGD-CE, APGD-T, FAB-T, Square, the
  published parameters) on the exported ``model.onnx`` (forward + VJP graphs) vs ART's
  ``AutoAttack`` on the PyTorch model with the closest ensemble ART has at the same budgets:
  APGD-CE and APGD-DLR (100 steps, one random start each) and Square (5000 queries, one
  restart). ART has no FAB and no targeted-DLR APGD in its ensemble, so ours does more work.
* **same attacks**: our ``custom`` version with exactly ART's list (``apgd_ce``, ``apgd_dlr``,
  ``square``), on ONNX Runtime, vs the same ART run: like for like.

Prints wall seconds, robust accuracy of each and the ratio ART time / our time (> 1: we are
faster); with ``--repeats`` > 1 the medians of interleaved runs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _digits_cnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 10),
        )  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(8):
            for i in range(0, 1500, 100):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[i : i + 100]), y[i : i + 100])
                loss.backward()
                opt.step()
    return model.eval(), x[1500:], y[1500:]


def _art_ensemble(model: torch.nn.Module, eps: float, n: int) -> Any:
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )

    def apgd(loss: str) -> Any:
        return AutoProjectedGradientDescent(
            clf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1, batch_size=n,
            loss_type=loss, verbose=False,
        )  # fmt: skip

    square = SquareAttack(
        clf, eps=eps, max_iter=5000, p_init=0.8, nb_restarts=1, batch_size=n, verbose=False
    )
    attacks = [apgd("cross_entropy"), apgd("difference_logits_ratio"), square]
    return clf, AutoAttack(clf, eps=eps, eps_step=2 * eps, batch_size=n, attacks=attacks)


def measure(n: int, eps: float, repeats: int) -> list[dict[str, Any]]:
    """The rows (see the module docstring)."""
    from neuroplex_attacks import AdversarialTester

    from neuroplex.onnx import export_onnx, load_onnx

    torch.set_num_threads(1)
    logging.getLogger("art").setLevel(logging.ERROR)
    model, x, y = _digits_cnn()
    x, y = x[:n], y[:n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, x[:4], path, metadata={"input_range": (0.0, 1.0)}, progress=False)
        onnx = load_onnx(path, device="cpu", intra_op_threads=1)
        assert onnx.tier == "gradients", onnx.tier_reason
        tester = AdversarialTester(onnx, batch_size=n)
        clf, ensemble = _art_ensemble(model, eps, n)
        runs = {
            "standard": {},
            "same attacks": {"version": "custom", "attacks": ["apgd_ce", "apgd_dlr", "square"]},
        }
        for label, kw in runs.items():
            ours_s, art_s, ours_acc, art_acc = [], [], 0.0, 0.0
            for _ in range(repeats):
                start = time.perf_counter()
                result = tester.evaluate(x, y, eps, **kw)
                ours_s.append(time.perf_counter() - start)
                ours_acc = result.robust_accuracy
                np.random.seed(0)
                start = time.perf_counter()
                adv = ensemble.generate(x.numpy(), y.numpy())
                art_s.append(time.perf_counter() - start)
                art_acc = float((clf.predict(adv).argmax(axis=1) == y.numpy()).mean())
            ratios = [a / o for a, o in zip(art_s, ours_s, strict=True)]
            rows.append(
                {
                    "run": label,
                    "ours": f"autoattack {kw.get('version', 'standard')} on ONNX Runtime",
                    "attacks": ", ".join(result.attacks),
                    "n": n,
                    "ours_s": statistics.median(ours_s),
                    "art_s": statistics.median(art_s),
                    "ours_robust": ours_acc,
                    "art_robust": art_acc,
                    "clean": result.clean_accuracy,
                    "ratio": statistics.median(ratios),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    rows = measure(args.n, args.eps, args.repeats)
    print(
        f"\ntorch {torch.__version__}, 1 thread (torch and ONNX Runtime), L-inf eps {args.eps}, "
        f"digits CNN, {args.n} held-out points; ratio = ART time / our time (> 1: we are faster)\n"
    )
    print(
        "| run | ours (attacks) | n | ours s | ART s | ours robust acc | ART robust acc "
        "| clean acc | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['ours']} ({r['attacks']}) | {r['n']} | {r['ours_s']:.1f} "
            f"| {r['art_s']:.1f} | {r['ours_robust']:.3f} | {r['art_robust']:.3f} "
            f"| {r['clean']:.3f} | {r['ratio']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
