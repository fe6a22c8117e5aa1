"""``kill -9`` and signals during ``neuroplex run``, then ``--resume``: bit-exact weights.

The reference is one uninterrupted deterministic CPU run of the same spec (8 epochs of
digits + mlp, 73 optimizer steps per epoch). Every interrupted run is resumed with
``neuroplex run SPEC --resume --output DIR`` until it completes; its final weights must equal
the reference's bit for bit, no checkpoint on disk may be torn (each one with a manifest loads
and matches its sha256), and no feedback event may be lost.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from ._helpers import (
    assert_no_torn_checkpoint,
    assert_same_weights,
    cli_env,
    final_weights,
    finish,
    manifest,
    run_cli,
    spawn_cli,
    tiny_spec,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.requires_plugins(
    "neuroplex-models", "neuroplex-datasets", "neuroplex-optim", "neuroplex-sinks"
)

STEPS_PER_EPOCH = 73  # digits: 1797 samples, 65% train, batch 16
EPOCHS = 8


def _spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "spec.json", tiny_spec(training={"epochs": EPOCHS}))


def _resume_to_end(spec: Path, out: Path) -> subprocess.CompletedProcess[str]:
    done = run_cli("run", spec, "--resume", "--output", out)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _assert_matches_reference(out: Path, reference: Path) -> None:
    assert manifest(out)["status"] == "completed"
    assert_same_weights(final_weights(out), final_weights(reference))
    ours = json.loads((out / "results.json").read_text())["test_metrics"]
    theirs = json.loads((reference / "results.json").read_text())["test_metrics"]
    assert ours == theirs


def _lost_events(out: Path) -> int:
    """Events not delivered by the end of the resumed run (lost, or still spooled)."""
    lost = sum(int(s["lost"]) + int(s["pending"]) for s in manifest(out)["sinks"].values())
    assert lost == 0, manifest(out)["sinks"]
    return lost


def _wrote_a_checkpoint(proc: subprocess.Popen[str], ckpts: Path, before: set[str]) -> bool:
    """The process ended, or wrote a checkpoint manifest that was not there before."""
    if proc.poll() is not None:
        return True
    return ckpts.exists() and bool({p.name for p in ckpts.glob("*.json")} - before)


KILLS = {
    # name: (environment of the killed run, the newest valid epoch checkpoint after the kill)
    "first optimizer step": ({"NPREL_KILL_AFTER_STEPS": "1"}, None),
    "mid-epoch 3": ({"NPREL_KILL_AFTER_STEPS": str(2 * STEPS_PER_EPOCH + 40)}, 2),
    "last step of epoch 2, before its checkpoint": (
        {"NPREL_KILL_AFTER_STEPS": str(2 * STEPS_PER_EPOCH)},
        1,
    ),
    "halfway through writing epoch-0003.pt": ({"NPREL_KILL_IN_WRITE": "5:torn"}, 2),
    "after epoch-0003.pt, before its manifest": ({"NPREL_KILL_IN_WRITE": "5:after"}, 2),
    "halfway through writing epoch-0003.json": ({"NPREL_KILL_IN_WRITE": "6:torn"}, 2),
    "after epoch-0003.json, before pruning": ({"NPREL_KILL_IN_WRITE": "6:after"}, 3),
}


@pytest.mark.reliability("fault", "kill -9 at a chosen point, then --resume")
@pytest.mark.parametrize("where", list(KILLS))
def test_kill_9_then_resume_is_bit_identical(
    where: str, tmp_path: Path, reference_run: Path, reliability
) -> None:
    inject, newest = KILLS[where]
    spec, out = _spec(tmp_path), tmp_path / "run"
    killed = run_cli("run", spec, "--output", out, env=cli_env(**inject))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "inject: SIGKILL" in killed.stderr
    assert manifest(out)["status"] == "running"  # nobody got to mark it
    from neuroplex.training import find_checkpoints

    epochs = [int(c.manifest["epoch"]) for c in find_checkpoints(out / "checkpoints")]
    assert (max(epochs) if epochs else None) == newest, epochs
    assert_no_torn_checkpoint(out)
    done = _resume_to_end(spec, out)
    assert "completed" in done.stdout
    _assert_matches_reference(out, reference_run)
    reliability.lost(_lost_events(out))


@pytest.mark.reliability("fault", "kill -9 at random times, repeatedly, then --resume")
def test_kill_9_at_random_times(tmp_path: Path, reference_run: Path, reliability) -> None:
    """Kill the same run several times at random moments of training (seeded: set
    ``NEUROPLEX_RELIABILITY_SEED``; ``NEUROPLEX_RELIABILITY_KILLS`` sets how many)."""
    rng = random.Random(int(os.environ.get("NEUROPLEX_RELIABILITY_SEED", "20261124")))
    kills = int(os.environ.get("NEUROPLEX_RELIABILITY_KILLS", "3"))
    spec, out = _spec(tmp_path), tmp_path / "run"
    ckpts = out / "checkpoints"
    env = cli_env(NPREL_STEP_SLEEP_S="0.001")  # about 0.2 s per epoch more: a wider window
    landed = 0
    for attempt in range(kills):
        args = ["run", spec, "--output", out] + (["--resume"] if attempt else [])
        before = {p.name for p in ckpts.glob("*.json")} if ckpts.exists() else set()
        proc = spawn_cli(*args, env=env)
        # wait until this process has written a checkpoint of its own: it is training
        started = wait_for(functools.partial(_wrote_a_checkpoint, proc, ckpts, before), timeout=120)
        assert started
        if proc.poll() is None:
            import time

            time.sleep(rng.uniform(0.0, 0.6))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                landed += 1
        _, err = finish(proc)
        if proc.returncode == 0:
            break  # finished before the kill landed
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
        assert_no_torn_checkpoint(out)
    assert landed >= 1, "no kill landed during training; the run is too fast for this test"
    if manifest(out)["status"] != "completed":
        _resume_to_end(spec, out)
    _assert_matches_reference(out, reference_run)
    reliability.tried(landed)
    reliability.lost(_lost_events(out))


@pytest.mark.reliability("fault", "corrupt and truncated latest checkpoints, then --resume")
def test_corrupt_latest_checkpoints_fall_back_to_the_previous_good_one(
    tmp_path: Path, reference_run: Path, reliability
) -> None:
    spec, out = _spec(tmp_path), tmp_path / "run"
    inject = {"NPREL_KILL_AFTER_STEPS": str(5 * STEPS_PER_EPOCH + 10)}  # epochs 3, 4, 5 kept
    killed = run_cli("run", spec, "--output", out, env=cli_env(**inject))
    assert killed.returncode == -signal.SIGKILL
    ckpts = out / "checkpoints"
    five, four = ckpts / "epoch-0005.pt", ckpts / "epoch-0004.pt"
    data = bytearray(five.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    five.write_bytes(bytes(data))
    four.write_bytes(four.read_bytes()[:1000])  # truncated
    bad = run_cli("export", five, "-o", tmp_path / "m.onnx")
    assert bad.returncode == 2
    assert "sha256 mismatch" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "m.onnx").exists()
    done = _resume_to_end(spec, out)
    assert "epoch-0005.pt: sha256 mismatch" in done.stderr
    assert "epoch-0004.pt: truncated" in done.stderr
    _assert_matches_reference(out, reference_run)
    reliability.tried(2)
    reliability.lost(_lost_events(out))


@pytest.mark.reliability("fault", "every checkpoint corrupt: --resume starts afresh")
def test_all_checkpoints_corrupt_restarts_from_scratch(tmp_path: Path, reference_run: Path) -> None:
    spec, out = _spec(tmp_path), tmp_path / "run"
    killed = run_cli("run", spec, "--output", out, env=cli_env(NPREL_KILL_AFTER_STEPS="160"))
    assert killed.returncode == -signal.SIGKILL
    for pt in (out / "checkpoints").glob("*.pt"):
        pt.write_bytes(b"\x00" * 64)
    done = _resume_to_end(spec, out)
    assert "truncated or replaced" in done.stderr
    _assert_matches_reference(out, reference_run)


@pytest.mark.reliability("fault", "SIGTERM / SIGINT mid-batch: final checkpoint, 'interrupted'")
@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_signal_writes_a_final_checkpoint_and_marks_the_run_interrupted(
    sig: str, tmp_path: Path, reference_run: Path, reliability
) -> None:
    spec, out = _spec(tmp_path), tmp_path / "run"
    step = 2 * STEPS_PER_EPOCH + 40
    env = cli_env(NPREL_SIGNAL_AFTER_STEPS=f"{step}:{sig}")
    stopped = run_cli("run", spec, "--output", out, env=env)
    assert stopped.returncode != 0, stopped.stdout
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert "interrupted; resume with: neuroplex run SPEC --resume" in stopped.stderr
    assert manifest(out)["status"] == "interrupted"
    from neuroplex.training import find_checkpoints

    last = find_checkpoints(out / "checkpoints")[-1]
    assert last.kind == "interrupt"
    assert last.global_step == step  # the batch in flight finished, nothing after it ran
    assert_no_torn_checkpoint(out)
    _resume_to_end(spec, out)
    _assert_matches_reference(out, reference_run)
    reliability.lost(_lost_events(out))


@pytest.mark.reliability("fault", "SIGTERM from outside at a random moment of training")
def test_external_sigterm_at_a_random_time(
    tmp_path: Path, reference_run: Path, reliability
) -> None:
    rng = random.Random(int(os.environ.get("NEUROPLEX_RELIABILITY_SEED", "20261124")) + 1)
    spec, out = _spec(tmp_path), tmp_path / "run"
    ckpts = out / "checkpoints"
    proc = spawn_cli("run", spec, "--output", out, env=cli_env(NPREL_STEP_SLEEP_S="0.001"))
    assert wait_for(lambda: proc.poll() is not None or any(ckpts.glob("*.json")), timeout=120)
    import time

    time.sleep(rng.uniform(0.0, 0.5))
    assert proc.poll() is None, "the run ended before the signal; it is too fast for this test"
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = finish(proc)
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    assert manifest(out)["status"] == "interrupted"
    assert_no_torn_checkpoint(out)
    _resume_to_end(spec, out)
    _assert_matches_reference(out, reference_run)
    reliability.lost(_lost_events(out))
