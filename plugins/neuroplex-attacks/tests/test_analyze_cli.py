"""``neuroplex analyze`` with attacks: analyzer options, held-out data, results.json and report,
and one clear line (exit 2) for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplex.cli import main

#: a few iterations of every AutoAttack attack, as one -O value
SMALL = json.dumps(
    {
        "apgd_ce": {"n_iter": 5},
        "apgd_t": {"n_iter": 5, "n_target_classes": 2},
        "fab_t": {"n_iter": 5, "n_target_classes": 2},
        "square": {"n_queries": 20},
    }
)


@pytest.fixture(scope="module")
def test_npz(tmp_path_factory, digits) -> Path:
    _, _, x, y = digits
    path = tmp_path_factory.mktemp("data") / "test.npz"
    np.savez(path, X=x[:16].numpy(), y=y[:16].numpy())
    return path


def _analyze(*argv: str) -> int:
    return main(["analyze", *argv])


def test_autoattack_from_the_cli_writes_results_and_report(digits_onnx, test_npz, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(digits_onnx), "-a", "autoattack", "-a", "fgsm", "--data", str(test_npz)]
    argv += ["--eps", "0.1", "-O", f"autoattack.options={SMALL}", "-n", "12", "-o", str(out)]
    assert _analyze(*argv) == 0
    printed = capsys.readouterr().out
    assert "autoattack (standard) (reference) linf eps=0.1 n=12" in printed
    results = json.loads((out / "results.json").read_text())
    first, second = results["robustness"]
    assert first["attack"] == "autoattack (standard)" and first["strength"] == "reference"
    assert second["attack"] == "fgsm" and second["strength"] == "weaker"
    for row in (first, second):
        assert (row["epsilon"], row["norm"], row["n"]) == (0.1, "linf", 12)
        assert row["split"] == "test.npz" and row["backend"] == "onnx/gradients"
    assert first["robust_accuracy"] <= second["robust_accuracy"]
    assert results["evaluations"]["autoattack"]["backend"] == "onnx"
    assert results["analyses"]["autoattack"]["params"]["square"]["n_queries"] == 20
    assert (out / "report.html").is_file()
    assert "Robustness on held-out data" in (out / "report.html").read_text()


def test_a_dataset_name_is_split_as_the_exporting_run_split_it(digits_onnx, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    onnx = run_dir / digits_onnx.name
    for f in digits_onnx.parent.glob(f"{digits_onnx.stem}*"):
        shutil.copy(f, run_dir / f.name)  # the model and its gradient graph
    spec = {"data": {"name": "digits", "val_fraction": 0.1, "test_fraction": 0.3}}
    (run_dir / "spec.json").write_text(json.dumps({**spec, "training": {"seed": 3}}))
    argv = [str(onnx), "-a", "fgsm", "--data", "digits", "--split", "val", "-n", "8"]
    assert _analyze(*argv, "--eps", "0.05", "--json", "-o", str(tmp_path / "o")) == 0
    assert json.loads(capsys.readouterr().out.split("\nfgsm")[0])["fgsm"]["n_samples"] == 8
    where = json.loads((tmp_path / "o" / "results.json").read_text())["evaluations"]["fgsm"]
    assert where["split"] == "val" and where["split_from"] == str(run_dir / "spec.json")
    assert (where["seed"], where["val_fraction"], where["test_fraction"]) == (3, 0.1, 0.3)


def test_a_forward_only_file_runs_square_and_says_why(digits_onnx, test_npz, tmp_path, capsys):
    bare = tmp_path / "bare.onnx"
    shutil.copy(digits_onnx, bare)  # the forward graph alone: no gradient graph beside it
    argv = [str(bare), "-a", "autoattack", "--data", str(test_npz), "--eps", "0.1"]
    assert _analyze(*argv, "-O", f"options={SMALL}", "-o", str(tmp_path / "o")) == 0
    [row] = json.loads((tmp_path / "o" / "results.json").read_text())["robustness"]
    assert row["attack"] == "autoattack (standard), skipped apgd_ce, apgd_t, fab_t"
    assert row["strength"] == "weaker" and row["backend"] == "onnx/forward_only"


@pytest.fixture(scope="module")
def bad_labels(tmp_path_factory, digits) -> Path:
    path = tmp_path_factory.mktemp("bad") / "bad.npz"
    np.savez(path, X=digits[2][:4].numpy(), y=np.array([0, 1, 12, 3]))
    return path


@pytest.fixture(scope="module")
def regression_onnx(tmp_path_factory, digits) -> Path:
    from neuroplex.onnx import export_onnx

    path = tmp_path_factory.mktemp("reg") / "reg.onnx"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 1)
    export_onnx(model, digits[2][:2], path, metadata={"input_range": (0.0, 1.0)}, progress=False)
    return path


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--eps", "0"], "epsilon"),
        (["--eps", "-0.1"], "epsilon"),
        (["-O", "version=fast"], "unknown AutoAttack version 'fast'"),
        (["-O", "novalue"], "--option 'novalue' is not KEY=VALUE"),
        (["-O", "pgd.steps=3"], "names analyzer 'pgd'"),
        (["--split", "train"], "--split applies to a dataset name"),
        (["-n", "0"], "--n-samples must be >= 1"),
        (["--labels-out-of-range"], "labels out of range"),
        (["--regression"], "class scores of shape (N, C)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    extra, needle, digits_onnx, test_npz, bad_labels, regression_onnx, capsys
):
    model, data = digits_onnx, test_npz
    if extra == ["--labels-out-of-range"]:
        extra, data = [], bad_labels
    elif extra == ["--regression"]:
        extra, model = [], regression_onnx
    argv = [str(model), "-a", "autoattack", "--data", str(data), "-O", f"options={SMALL}"]
    assert _analyze(*argv, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_a_dataset_split_that_is_not_held_out_is_refused(digits_onnx, capsys):
    argv = [str(digits_onnx), "-a", "fgsm", "--data", "digits", "--split", "train"]
    assert _analyze(*argv) == 2
    assert "--split 'train' is not a held-out split; choose test or val" in capsys.readouterr().err


# ----------------------------------------------------------------- --nproc: sharded evaluation
#: the per-sample fields of the results, which N processes must give exactly as one does
PER_SAMPLE = ("clean_correct", "robust", "broken_by", "linf", "l2", "robust_accuracy")


def test_nproc_2_gives_the_per_sample_result_of_one_process(digits_onnx, test_npz, tmp_path, capfd):
    """12 points in batches of 5 (3 batches: rank 0 takes two, rank 1 one, each with its own
    ONNX Runtime session), APGD-CE and PGD (both seeded per batch): the same flags, norms and
    accuracies as one process, and rank 0 alone writes results.json."""
    argv = [str(digits_onnx), "-a", "apgd_ce", "-a", "pgd", "--data", str(test_npz), "-n", "12"]
    argv += ["--eps", "0.1", "-O", "batch_size=5", "-O", "apgd_ce.n_iter=5", "-O", "pgd.steps=3"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert _analyze(*argv, "-o", str(one)) == 0
    assert _analyze(*argv, "-o", str(two), "--nproc", "2") == 0
    printed = capfd.readouterr().out  # both calls' (the second's from its rank 0 only)
    assert printed.count("apgd_ce (weaker) linf eps=0.1 n=12") == 2
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert b["evaluations"]["apgd_ce"]["processes"] == 2
    for field in PER_SAMPLE:
        assert b["analyses"]["apgd_ce"][field] == a["analyses"]["apgd_ce"][field], field
    assert len(a["analyses"]["apgd_ce"]["robust"]) == 12
    pgd = ("clean_accuracy", "robust_accuracy", "mean_linf", "mean_l2", "n_samples", "params")
    for field in pgd:
        assert b["analyses"]["pgd"][field] == a["analyses"]["pgd"][field], field
    assert b["robustness"] == a["robustness"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["-a", "apgd_ce", "--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["-a", "apgd_ce", "-a", "noise", "--nproc", "2"], "'noise' cannot be split over"),
        (["-a", "apgd_ce", "--eps", "0", "--nproc", "2"], "epsilon"),
    ],
)
def test_bad_nproc_input_is_one_line_and_exit_2_before_any_process_starts(
    extra, needle, digits_onnx, test_npz, capsys, monkeypatch
):
    import subprocess

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("torchrun started"))
    assert _analyze(str(digits_onnx), "--data", str(test_npz), *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("world", [2, 3])
def test_shards_at_batch_boundaries_merge_into_the_one_process_autoattack_result(
    digits_onnx, digits, world
):
    """In one process: the shards every rank of ``world`` would evaluate (whole batches of
    4 of 10 points, seeded by global batch index) merge into ``analyze``'s result."""
    from neuroplex.analysis.shard import shard_range
    from neuroplex.registry import create_analyzer

    x, y = digits[2][:10], digits[3][:10]
    options = json.loads(SMALL)
    analyzer = create_analyzer("autoattack", str(digits_onnx), options=options, batch_size=4)
    whole = analyzer.analyze(x, y).to_dict()
    parts = []
    for rank in range(world):
        start, stop, first = shard_range(10, analyzer.shard_size, rank, world)
        if stop > start:
            parts.append(analyzer.analyze_shard(x[start:stop], y[start:stop], first_batch=first))
    merged = analyzer.merge_shards(parts).to_dict()
    for key in ("seconds", "attack_seconds"):
        whole.pop(key), merged.pop(key)
    assert merged == whole
    assert len(parts) == min(world, 3)
