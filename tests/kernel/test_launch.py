"""The CLI's torchrun launcher: the command line each topology becomes, and the endpoint
checks that run before torchrun starts (no training here: ``subprocess.call`` is recorded)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from neuroplex.errors import ConfigError
from neuroplex.launch import elastic_resume

SPEC = {
    "name": "launch",
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hyperparameters": {"input_size": 64, "output_size": 10}},
    "training": {"strategy": "ddp", "ddp_timeout_s": 2},
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    seen: list[list[str]] = []

    def call(cmd: list[str]) -> int:
        seen.append(cmd)
        return 0

    monkeypatch.setattr(subprocess, "call", call)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return seen


def _main(tmp_path: Path, *args: str) -> int:
    from neuroplex.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC), encoding="utf-8")
    return main(["run", str(spec), "--output", str(tmp_path / "run"), *args])


def _listening() -> tuple[socket.socket, str]:
    server = socket.create_server(("127.0.0.1", 0))
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def test_one_node_is_standalone_and_max_restarts_passes_through(
    tmp_path: Path, calls: list[list[str]]
) -> None:
    assert _main(tmp_path, "--nproc", "2", "--max-restarts", "3") == 0
    (cmd,) = calls
    assert "--standalone" in cmd and "--nproc-per-node=2" in cmd
    assert "--max-restarts=3" in cmd
    assert not any(a.startswith("--rdzv") for a in cmd)


def test_several_nodes_use_the_static_rendezvous_at_the_endpoint(
    tmp_path: Path, calls: list[list[str]]
) -> None:
    server, endpoint = _listening()  # node 0 is up: node 1 reaches it at once
    with server:
        assert (
            _main(tmp_path, "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", endpoint) == 0
        )
    (cmd,) = calls
    assert "--standalone" not in cmd
    for flag in ("--nnodes=2", "--node-rank=1", "--rdzv-backend=static", "--rdzv-conf=timeout=2"):
        assert flag in cmd
    assert f"--rdzv-endpoint={endpoint}" in cmd


def test_node_0_that_cannot_listen_on_the_endpoint_is_one_line(
    tmp_path: Path, calls: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    server, endpoint = _listening()  # the port is taken
    with server:
        code = _main(tmp_path, "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", endpoint)
    assert code == 2 and not calls
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"neuroplex: error: --rdzv-endpoint {endpoint}: node rank 0 cannot")


def test_a_restarted_group_resumes_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert elastic_resume(False, tmp_path, 0) is False
    assert elastic_resume(True, tmp_path, 0) is True
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert elastic_resume(False, tmp_path, 1) is True  # a worker: resume="last" (or fresh)
    assert elastic_resume(False, tmp_path, 0) is False  # no run directory yet: start it
    (tmp_path / "manifest.json").write_text("{}", encoding="utf-8")
    assert elastic_resume(False, tmp_path, 0) is True


def test_plan_rejects_a_bad_port() -> None:
    from types import SimpleNamespace

    from neuroplex.launch import plan_launch

    args = SimpleNamespace(nproc=1, nnodes=2, node_rank=0, rdzv_endpoint="h:70000")
    with pytest.raises(ConfigError, match=r"--rdzv-endpoint 'h:70000' is not HOST:PORT"):
        plan_launch(args)


def test_fsdp_for_a_family_without_a_sharding_policy_fails_before_torchrun(
    tmp_path: Path, calls: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("neuroplex_models")
    from neuroplex.cli import main
    from neuroplex.registry import get_record

    gan = get_record("model", "gan")
    body = {
        **SPEC,
        "model": {"name": "gan", "hyperparameters": dict(gan.example_config)},
        "training": {"strategy": "fsdp"},
    }
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(body), encoding="utf-8")
    assert main(["run", str(spec), "--nproc", "2"]) == 2
    assert calls == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('neuroplex: error: training.strategy: "fsdp" needs a sharding')
    assert "model 'gan' gives none" in err[-1] and "use strategy 'ddp'" in err[-1]
