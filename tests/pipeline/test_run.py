"""`neuroplex run` end to end on a tiny plugin set registered in-process."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from neuroplex import ConfigError, load_spec
from neuroplex.cli import main
from neuroplex.run import run
from neuroplex.run.rundir import locate

FIXTURES = Path(__file__).parent.parent / "fixtures" / "plugins"


@pytest.fixture
def tiny(register_plugin, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    import npfix_tiny

    register_plugin(npfix_tiny, name="tiny", distribution="tiny-dist", version="0.0.1")
    return npfix_tiny


def spec(tmp_path: Path, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "tiny",
        "data": {"name": "tiny_blobs"},
        "model": {"name": "tiny_linear", "hyperparameters": {"hidden": 8}},
        "training": {
            "epochs": 4,
            "batch_size": 16,
            "learning_rate": 0.5,
            "optimizer": "tiny_sgd",
            "device": "tiny_cpu",
            "seed": 3,
            "deterministic": True,
            "progress": False,
        },
        "analysis": {"analyzers": [{"name": "mean_logit", "n_samples": 16}]},
        "feedback": {"sinks": [{"name": "file", "options": {"path": str(tmp_path / "ev.jsonl")}}]},
    }
    base.update(changes)
    return base


def test_run_end_to_end(tiny, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run(spec(tmp_path), output=out)
    assert result.status == "completed"
    assert result.test_metrics["accuracy"] >= 0.9
    for name in ("spec.json", "manifest.json", "model.onnx", "results.json", "report.html"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert {"data", "build", "train", "evaluate", "export", "analyze", "report"} <= set(
        manifest["stage_seconds"]
    )
    assert manifest["versions"]["tiny-dist"] == "0.0.1"
    (sink,) = manifest["sinks"].values()
    assert sink["lost"] == 0 and sink["pending"] == 0
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("epoch") == 4
    assert {"metrics", "analysis", "artifact"} <= set(kinds)
    assert sink["delivered"] == len(kinds)
    assert result.analyses["mean_logit"]["n"] == 16


def test_one_analyzer_listed_twice_keeps_both_results_under_their_ids(tiny, tmp_path: Path) -> None:
    analyzers = [
        {"name": "mean_logit", "n_samples": 16},
        {"name": "mean_logit", "id": "mean_logit-torch", "backend": "torch", "n_samples": 8},
    ]
    out = tmp_path / "run"
    result = run(spec(tmp_path, analysis={"analyzers": analyzers}), output=out)
    assert result.analyses["mean_logit"]["n"] == 16
    assert result.analyses["mean_logit-torch"]["n"] == 8
    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    analysis = {e["name"]: e for e in events if e["kind"] == "analysis"}
    assert set(analysis) == {"mean_logit", "mean_logit-torch"}
    titles = [s["title"] for s in json.loads((out / "results.json").read_text())["sections"]]
    assert "mean_logit" in titles and "mean_logit-torch" in titles
    assert "mean_logit-torch" in (out / "report.html").read_text()


def test_two_analyzer_entries_with_one_id_fail_before_any_work(tiny, tmp_path: Path) -> None:
    analyzers = [{"name": "mean_logit"}, {"name": "mean_logit", "backend": "torch"}]
    with pytest.raises(ConfigError, match=r"analysis\.analyzers\[1\]\.id: 'mean_logit' is also"):
        run(spec(tmp_path, analysis={"analyzers": analyzers}), output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_unfinished_run_dir_needs_resume(tiny, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"run_id": "x", "status": "interrupted"}))
    with pytest.raises(ConfigError, match="continue it with --resume, replace it with --overwrite"):
        run(spec(tmp_path), output=out)
    assert run(spec(tmp_path), output=out, overwrite=True).run_id != "x"
    with pytest.raises(ConfigError, match="holds no run to resume"):
        run(spec(tmp_path), output=tmp_path / "empty", resume=True)


def test_missing_plugins_are_named_with_the_pip_command(neuroplex_manager, tmp_path) -> None:
    bad = spec(tmp_path, data={"name": "digits"}, model={"name": "cnn"})
    bad["training"] = {"optimizer": "adam"}
    bad["analysis"] = {"analyzers": [{"name": "fgsm"}]}
    bad["feedback"] = {}
    with pytest.raises(ConfigError) as err:
        run(bad, output=tmp_path / "r")
    assert str(err.value) == (
        "this spec needs plugin distributions that are not installed: neuroplex-datasets, "
        "neuroplex-models, neuroplex-optim, neuroplex-devices, neuroplex-sinks, "
        "neuroplex-attacks; install them with: pip install neuroplex-datasets "
        "neuroplex-models neuroplex-optim neuroplex-devices neuroplex-sinks neuroplex-attacks"
    )


def test_unknown_component_names_the_spec_path(tiny, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        run(spec(tmp_path, model={"name": "tiny_linaer"}), output=tmp_path / "r")
    assert str(err.value).startswith(
        "model.name: unknown model 'tiny_linaer'; did you mean 'tiny_linear'?"
    )


def test_cli_bad_spec_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[data]\nname = "digits"\n[model]\nname = "cnn"\n[training]\nepoch = 3\n')
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("neuroplex: error: training.epoch: unknown key; valid keys:")
    assert "did you mean 'epochs'?" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_cli_run_prints_summary(tiny, tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec(tmp_path)))
    assert main(["run", str(path), "--output", str(tmp_path / "r"), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "completed; test" in out and "report:" in out
    assert sys.modules.get("torch") is not None


@pytest.mark.requires_plugins(
    "neuroplex-datasets",
    "neuroplex-models",
    "neuroplex-optim",
    "neuroplex-devices",
    "neuroplex-sinks",
)
def test_cli_bad_data_file_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "data.csv"
    bad.write_text("a,b,label\n1,2,0\n3,nan,1\n")
    path = tmp_path / "s.toml"
    path.write_text(
        f'[data]\nname = "csv"\noptions = {{ path = "{bad}" }}\n'
        '[model]\nname = "mlp"\n[model.hyperparameters]\ninput_size = 2\noutput_size = 2\n'
        "[training]\nepochs = 1\nprogress = false\n"
    )
    assert main(["run", str(path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"neuroplex: error: {bad}: line 3, column 'b': 'nan' (NaN/inf)"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_a_second_run_keeps_the_first_runs_artifacts(tiny, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run(spec(tmp_path, output_dir=str(runs)))
    onnx = (first.run_dir / "model.onnx").read_bytes()
    checkpoints = sorted(p.name for p in (first.run_dir / "checkpoints").iterdir())
    second = run(spec(tmp_path, output_dir=str(runs)))
    assert first.run_dir == runs / "tiny" / "version_0"
    assert second.run_dir == runs / "tiny" / "version_1"
    assert (runs / "tiny" / "latest").resolve() == second.run_dir.resolve()
    assert (first.run_dir / "model.onnx").read_bytes() == onnx
    assert sorted(p.name for p in (first.run_dir / "checkpoints").iterdir()) == checkpoints
    for result in (first, second):
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert (manifest["run_id"], manifest["status"]) == (result.run_id, "completed")
        assert (result.run_dir / "report.html").is_file()


def test_latest_is_a_file_naming_the_version_where_symlinks_fail(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuroplex.run import rundir

    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError("symlinks are not supported here")

    monkeypatch.setattr(rundir.os, "symlink", no_symlinks)
    base = tmp_path / "runs" / "tiny"
    for expected in ("version_0", "version_1"):
        path = rundir.locate(
            load_spec(spec(tmp_path, output_dir=str(base.parent))), None, resume=False
        )
        assert path == base / expected
        assert (base / "latest").read_text() == f"{expected}\n"
        assert rundir.latest(base) == path
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] == []


def test_resume_continues_the_newest_unfinished_version(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroplex.run import execute

    runs = tmp_path / "runs"
    done = run(spec(tmp_path, output_dir=str(runs)))
    real_export = execute.export

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(spec(tmp_path, output_dir=str(runs)))
    stopped = runs / "tiny" / "version_1"
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    capsys.readouterr()
    assert locate(load_spec(spec(tmp_path, output_dir=str(runs))), None, resume=False).name == (
        "version_2"
    )
    assert f"{stopped} did not finish (interrupted)" in capsys.readouterr().err
    shutil.rmtree(runs / "tiny" / "version_2")
    monkeypatch.setattr(execute, "export", real_export)
    capsys.readouterr()
    resumed = run(spec(tmp_path, output_dir=str(runs)), resume=True)
    assert f"neuroplex: resuming {stopped}" in capsys.readouterr().err
    assert (resumed.run_dir, resumed.run_id) == (stopped, manifest["run_id"])
    assert resumed.status == "completed" and (stopped / "model.onnx").is_file()
    assert sorted(p.name for p in (runs / "tiny").iterdir()) == ["latest", "version_0", "version_1"]
    assert json.loads((done.run_dir / "manifest.json").read_text())["run_id"] == done.run_id
    with pytest.raises(ConfigError, match="holds no unfinished run; drop --resume to start"):
        run(spec(tmp_path, output_dir=str(runs)), resume=True)


def test_an_explicit_output_holding_a_run_is_replaced_only_with_overwrite(
    tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    first = run(spec(tmp_path), output=out)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec(tmp_path)))
    assert main(["run", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"neuroplex: error: {out} holds a completed run (id {first.run_id}); pass --overwrite "
        "to replace it (its checkpoints, model.onnx and report are deleted), choose another "
        "--output, or drop --output to keep every run as <output_dir>/<name>/version_N"
    )
    assert json.loads((out / "manifest.json").read_text())["run_id"] == first.run_id
    (out / "stale.txt").write_text("from the first run")
    with pytest.raises(ConfigError, match="pass only one"):
        run(spec(tmp_path), output=out, resume=True, overwrite=True)
    second = run(spec(tmp_path), output=out, overwrite=True)
    assert second.run_id != first.run_id and second.run_dir == out
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["run_id"] == second.run_id


def test_nproc_picks_one_directory_for_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    body = spec(tmp_path, output_dir=str(tmp_path / "runs"))
    body["training"] = {**body["training"], "strategy": "ddp"}  # type: ignore[dict-item]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(body))
    for _ in range(2):
        assert main(["run", str(path), "--nproc", "2", "--epochs", "1"]) == 0
    versions = [tmp_path / "runs" / "tiny" / f"version_{n}" for n in (0, 1)]
    for cmd, version in zip(calls, versions, strict=True):
        assert cmd[cmd.index("--output") + 1] == str(version) and version.is_dir()
        assert cmd[-2:] == ["--epochs", "1"] and "--resume" not in cmd
