"""Check a run's AutoAttack figure with an independent implementation, on its exported file.

    python tests/benchmarks/check_robust_run.py RUN_DIR [--analysis autoattack@round2]

Reads ``RUN_DIR/results.json`` (the robustness row of ``--analysis``, default: the run's
``reference`` row, i.e. its complete standard AutoAttack), rebuilds the same held-out split from
``RUN_DIR/spec.json`` (dataset, seed, fractions), loads ``RUN_DIR/model.onnx`` through ONNX
Runtime (:func:`neuroplex.onnx.load_onnx`, gradients from the file's own gradient graph) and runs
ART's ``AutoAttack`` (adversarial-robustness-toolbox, a test extra) on it: APGD-CE and APGD-DLR
(100 steps, one start each) and Square (5000 queries), the closest ensemble ART has to the
standard version (ART has no FAB-T and no targeted APGD). Prints both robust accuracies and
their difference; exits 1 when ART finds the model *less* robust than the run said by more
than ``--tolerance`` (default one point), since the run's ensemble is the stronger one.

One thread, like the benchmarks (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _reference_row(results: dict[str, Any], analysis: str | None) -> dict[str, Any]:
    rows = results.get("robustness") or []
    for row in rows:
        if (analysis is None and row.get("strength") == "reference") or row.get(
            "analysis"
        ) == analysis:
            return dict(row)
    wanted = analysis or "a reference (complete standard AutoAttack) row"
    raise SystemExit(f"check_robust_run: results.json has no robustness row for {wanted}")


def _test_split(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from neuroplex import create_dataset

    spec = json.loads((run / "spec.json").read_text())
    data = spec["data"]
    splits = create_dataset(
        data["name"],
        seed=int(spec["training"]["seed"]),
        val_fraction=float(data["val_fraction"]),
        test_fraction=float(data["test_fraction"]),
        **dict(data.get("options") or {}),
    )
    x, y = splits.test
    return torch.as_tensor(x).float(), torch.as_tensor(y).long()


class _Flatten(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x.flatten(1))
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run", type=Path, help="a run directory (results.json, spec.json, model.onnx)"
    )
    parser.add_argument("--analysis", default=None, help="the robustness row to check (its id)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("art").setLevel(logging.WARNING)

    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    from neuroplex.onnx import load_onnx

    results = json.loads((args.run / "results.json").read_text())
    row = _reference_row(results, args.analysis)
    if row.get("norm") != "linf":
        raise SystemExit(f"check_robust_run: only L-inf rows are checked, got {row.get('norm')}")
    eps = float(row["epsilon"])
    x, y = _test_split(args.run)
    n = int(row["n"])
    x, y = x[:n], y[:n]
    module = load_onnx(args.run / "model.onnx", intra_op_threads=1)
    lo, hi = module.input_range or (0.0, 1.0)
    n_classes = int(module(x[:1]).shape[1])
    target: torch.nn.Module = module
    if x.ndim == 2 and round(x.shape[1] ** 0.5) ** 2 == x.shape[1]:
        # ART's Square attack takes images only: flat square inputs (the 8x8 digits as 64
        # features) are shown to ART as (N, 1, side, side) and flattened again for the file
        side = round(x.shape[1] ** 0.5)
        x, target = x.reshape(-1, 1, side, side), _Flatten(module)
    classifier = PyTorchClassifier(
        target,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=n_classes,
        clip_values=(float(lo), float(hi)),  # type: ignore[arg-type]
    )

    def apgd(loss: str) -> Any:
        return AutoProjectedGradientDescent(
            classifier,
            eps=eps,
            eps_step=2 * eps,
            max_iter=100,
            nb_random_init=1,
            batch_size=n,
            loss_type=loss,
            verbose=False,
        )

    square = SquareAttack(
        classifier, norm=np.inf, eps=eps, max_iter=5000, nb_restarts=1, batch_size=n, verbose=False
    )
    ensemble = AutoAttack(
        classifier,
        eps=eps,
        eps_step=2 * eps,
        batch_size=n,
        attacks=[apgd("cross_entropy"), apgd("difference_logits_ratio"), square],
    )
    np.random.seed(args.seed)
    start = time.perf_counter()
    x_adv = ensemble.generate(x.numpy(), y.numpy())
    seconds = time.perf_counter() - start
    clean = float((classifier.predict(x.numpy()).argmax(axis=1) == y.numpy()).mean())
    robust = float((classifier.predict(x_adv).argmax(axis=1) == y.numpy()).mean())
    linf = float(np.abs(x_adv - x.numpy()).max())
    ours = float(row["robust_accuracy"])
    print(
        f"run's {row['attack']} ({row['analysis']}, {row['backend']}): robust {ours:.4f}, "
        f"clean {float(row['clean_accuracy']):.4f}, n = {n}, L-inf eps = {eps:g}, "
        f"{row['split']} split"
    )
    print(
        f"ART AutoAttack (APGD-CE, APGD-DLR, Square 5000) on {args.run / 'model.onnx'} "
        f"through ONNX Runtime: robust {robust:.4f}, clean {clean:.4f}, max |delta| {linf:.4f}, "
        f"{seconds:.0f} s"
    )
    print(f"difference (ART - run): {robust - ours:+.4f}")
    if robust < ours - args.tolerance:
        print(
            f"check_robust_run: ART found the model less robust than the run reported by more "
            f"than {args.tolerance:g}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
