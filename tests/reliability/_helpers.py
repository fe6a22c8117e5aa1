"""Helpers of the reliability suite: specs, ``neuroplex`` subprocesses with fault injection,
and checks on run directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
SITE = HERE / "fixtures" / "site"
INJECT = HERE / "inject.py"
REPO = HERE.parent.parent
RESULTS_ENV = "NEUROPLEX_RELIABILITY_RESULTS"
#: no subprocess of this suite may run longer than this (a hang is a failure, not a wait)
SUBPROCESS_TIMEOUT_S = 180.0


# ---------------------------------------------------------------------------- specs
def tiny_spec(**changes: Any) -> dict[str, Any]:
    """A small real run: digits + mlp, few epochs, no export, the sqlite sink.

    ``changes`` update sections one level deep: ``training={"epochs": 3}``.
    """
    spec: dict[str, Any] = {
        "name": "reliability",
        "data": {"name": "digits", "test_fraction": 0.2},
        "model": {
            "name": "mlp",
            "hyperparameters": {
                "input_size": 64,
                "output_size": 10,
                "hidden_layers": [{"out_features": 32, "activation": "relu", "dropout": 0.1}],
            },
        },
        "training": {
            "epochs": 6,
            "batch_size": 16,
            "learning_rate": 0.01,
            "optimizer": "adam",
            "seed": 7,
            "deterministic": True,
            "progress": False,
            "keep_last": 3,
        },
        "export": {"enabled": False},
        "feedback": {"sinks": [{"name": "sqlite"}]},
    }
    for section, value in changes.items():
        if isinstance(value, Mapping) and isinstance(spec.get(section), dict):
            spec[section] = {**spec[section], **value}
        else:
            spec[section] = value
    return spec


def write_spec(path: Path, spec: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- subprocesses
def cli_env(*, site: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a ``neuroplex`` subprocess (``site``: with the fault plugins)."""
    env = dict(os.environ)
    env.pop(RESULTS_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    if site:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def neuroplex_cmd(*args: str | Path) -> list[str]:
    """``python inject.py ARGS``: the CLI, with the fault injection ``NPREL_*`` asks for."""
    return [sys.executable, str(INJECT), *map(str, args)]


def run_cli(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    timeout: float = SUBPROCESS_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``neuroplex ARGS`` to the end (a hang past ``timeout`` fails the test)."""
    try:
        return subprocess.run(
            neuroplex_cmd(*args),
            env=dict(env) if env is not None else cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"neuroplex {' '.join(map(str, args))} hung for more than {timeout:g}s: {exc}")


def spawn_cli(*args: str | Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        neuroplex_cmd(*args),
        env=dict(env) if env is not None else cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )


def wait_for(predicate: Any, timeout: float = 120.0, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


def finish(proc: subprocess.Popen[str], timeout: float = SUBPROCESS_TIMEOUT_S) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"process {proc.args} hung for more than {timeout:g}s\n{err[-3000:]}")


# ---------------------------------------------------------------------------- run directories
def manifest(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")))


def final_weights(run_dir: Path) -> dict[str, Any]:
    """The model weights of the newest checkpoint of a run (verified on load)."""
    from neuroplex.training import load_checkpoint

    return dict(load_checkpoint(run_dir / "checkpoints")["model"])


def assert_same_weights(a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), f"{key} differs (max {(a[key] - b[key]).abs().max()})"


def assert_no_torn_checkpoint(run_dir: Path) -> int:
    """Every checkpoint with a manifest loads and verifies; returns how many there are."""
    from neuroplex.training import find_checkpoints, load_checkpoint

    found = find_checkpoints(run_dir / "checkpoints")
    for info in found:
        load_checkpoint(info.path)  # raises CheckpointError if torn
    return len(found)


def plugin_sequence(names: Sequence[str]) -> str:
    return ",".join(names)
