"""Under ``torchrun``, one worker killed: the job fails cleanly (no hang past a stated timeout)
and ``neuroplex run --nproc 2 --resume`` continues from the last checkpoint, ending with the
weights of an uninterrupted 2-process run, bit for bit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._helpers import (
    INJECT,
    REPO,
    assert_no_torn_checkpoint,
    assert_same_weights,
    cli_env,
    final_weights,
    finish,
    manifest,
    run_cli,
    spawn_cli,
    tiny_spec,
    write_spec,
)

pytestmark = [
    pytest.mark.requires_plugins(
        "neuroplex-models", "neuroplex-datasets", "neuroplex-optim", "neuroplex-sinks"
    ),
    pytest.mark.skipif(
        not __import__("torch").distributed.is_available(), reason="no torch.distributed"
    ),
]

#: the job must be over this long after the kill (torchrun notices a dead worker within
#: seconds and stops the rest; ``training.ddp_timeout_s`` bounds a collective that waits)
FAIL_WITHIN_S = 90.0
DDP_TIMEOUT_S = 60.0
#: gloo on a loaded 2-core machine occasionally aborts a rank at exit after finishing
#: (tests/training/test_distributed.py); such a launch is retried once, nothing else is
TEARDOWN_ABORT = "terminate called without an active exception"


def _spec(tmp_path: Path) -> Path:
    spec = tiny_spec(
        training={"epochs": 4, "strategy": "ddp", "ddp_timeout_s": DDP_TIMEOUT_S},
    )
    return write_spec(tmp_path / "spec.json", spec)


def _torchrun(
    *args: str | Path, env: dict[str, str], timeout: float, restarts: int = 0
) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 inject.py ARGS`` (the CLI with fault injection per rank)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        f"--max-restarts={restarts}",
        str(INJECT),
        *map(str, args),
    ]
    try:
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun hung for more than {timeout:g}s after a worker died: {exc}")


def _run_ddp(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``neuroplex run ... --nproc 2`` through the CLI's own torchrun launcher."""
    env = cli_env(OMP_NUM_THREADS="1")
    again: tuple[str, ...] = ()
    for _ in range(2):
        done = run_cli("run", *args, *again, "--nproc", "2", env=env)
        if done.returncode == 0 or TEARDOWN_ABORT not in done.stderr:
            return done
        if "--resume" not in [str(a) for a in args]:
            again = ("--overwrite",)  # the aborted attempt left its failed run in --output
    return done


@pytest.mark.reliability("fault", "one torchrun worker killed (SIGKILL), then --resume")
def test_a_killed_worker_fails_the_job_cleanly_and_resume_is_bit_identical(
    tmp_path: Path, reliability
) -> None:
    spec = _spec(tmp_path)
    reference = tmp_path / "reference"
    done = _run_ddp(spec, "--output", reference)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "run"
    # 37 steps per epoch per rank: rank 1 dies in the middle of epoch 3
    env = cli_env(OMP_NUM_THREADS="1", NPREL_KILL_AFTER_STEPS="90", NPREL_KILL_RANK="1")
    start = time.monotonic()
    killed = _torchrun("run", spec, "--output", out, env=env, timeout=FAIL_WITHIN_S)
    took = time.monotonic() - start
    assert "inject: SIGKILL rank 1 after step 90" in killed.stderr, killed.stderr[-3000:]
    assert killed.returncode != 0, "the job went on although a worker died"
    # rank 0 says why in one line: its collective failed, or torchrun stopped it first
    assert (
        "neuroplex: error: ddp rank 0/2:" in killed.stderr
        and "rerun with --resume" in killed.stderr
    ) or "neuroplex: interrupted; resume with" in killed.stderr, killed.stderr[-3000:]
    assert took < FAIL_WITHIN_S
    assert manifest(out)["status"] != "completed"
    assert assert_no_torn_checkpoint(out) >= 1  # rank 0 kept its epoch checkpoints

    resumed = _run_ddp(spec, "--resume", "--output", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert manifest(out)["status"] == "completed"
    assert_same_weights(final_weights(out), final_weights(reference))
    reliability.tried(1)


@pytest.mark.slow
@pytest.mark.reliability("fault", "fsdp: one torchrun worker killed (SIGKILL), then --resume")
def test_fsdp_killed_and_resumed_from_its_shards_matches_an_uninterrupted_run_and_exports(
    tmp_path: Path, reliability
) -> None:
    """Sharded checkpoints under ``--nproc 2``: a worker SIGKILLed in epoch 3 leaves only
    complete checkpoints (no half-written shards); ``--resume`` ends with the uninterrupted
    fsdp run's weights bit for bit; rank 0 exports the gathered model, which verifies against
    PyTorch in the run and again against the sharded checkpoint read in one process."""
    from neuroplex.run.export import verify_against_checkpoint
    from neuroplex.training import find_checkpoints

    spec = write_spec(
        tmp_path / "spec.json",
        tiny_spec(
            training={"epochs": 4, "strategy": "fsdp", "ddp_timeout_s": DDP_TIMEOUT_S},
            export={"enabled": True},
        ),
    )
    reference = tmp_path / "reference"
    done = _run_ddp(spec, "--output", reference)
    assert done.returncode == 0, done.stderr[-3000:]
    shards = [p for p in (reference / "checkpoints").iterdir() if p.suffix == ".dcp"]
    assert shards and not list((reference / "checkpoints").glob("*.partial"))

    out = tmp_path / "run"
    env = cli_env(OMP_NUM_THREADS="1", NPREL_KILL_AFTER_STEPS="90", NPREL_KILL_RANK="1")
    killed = _torchrun("run", spec, "--output", out, env=env, timeout=FAIL_WITHIN_S)
    assert "inject: SIGKILL rank 1 after step 90" in killed.stderr, killed.stderr[-3000:]
    assert killed.returncode != 0 and manifest(out)["status"] != "completed"
    assert assert_no_torn_checkpoint(out) >= 1  # every listed checkpoint's shards verify

    resumed = _run_ddp(spec, "--resume", "--output", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert manifest(out)["status"] == "completed"
    assert_same_weights(final_weights(out), final_weights(reference))
    assert (out / "model.onnx").is_file()  # verified in the run, or the run fails
    last = find_checkpoints(out / "checkpoints")[-1].path
    verify_against_checkpoint(out / "model.onnx", last)  # raises ExportError on a mismatch
    reliability.tried(1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.reliability("fault", "one torchrun worker killed once under --max-restarts 1")
def test_a_killed_worker_under_max_restarts_resumes_by_itself_to_the_same_weights(
    tmp_path: Path, reliability
) -> None:
    """torchrun restarts the group; the restarted workers see TORCHELASTIC_RESTART_COUNT and
    continue from the last epoch checkpoint without --resume (the same spec under a user's own
    torchrun command line, which is what ``neuroplex run --max-restarts 1`` launches)."""
    spec = _spec(tmp_path)
    reference = tmp_path / "reference"
    done = _run_ddp(spec, "--output", reference)
    assert done.returncode == 0, done.stderr[-3000:]

    # 37 steps per epoch per rank: rank 1 dies in epoch 3; after the restart it resumes at
    # epoch 3 and has 74 steps left, fewer than 90, so the injection does not fire again
    env = cli_env(OMP_NUM_THREADS="1", NPREL_KILL_AFTER_STEPS="90", NPREL_KILL_RANK="1")
    for attempt in range(2):  # a launch that ends in gloo's exit abort starts afresh once
        out = tmp_path / f"run{attempt}"
        restarted = _torchrun(
            "run", spec, "--output", out, env=env, timeout=4 * FAIL_WITHIN_S, restarts=1
        )
        if restarted.returncode == 0 or TEARDOWN_ABORT not in restarted.stderr:
            break
    assert "inject: SIGKILL rank 1 after step 90" in restarted.stderr, restarted.stderr[-3000:]
    said = [
        line for line in restarted.stderr.splitlines() if "neuroplex" in line or "inject" in line
    ]
    assert restarted.returncode == 0, "\n".join(said)
    # the first group failed (rank 0 says why in one line, or was stopped by torchrun), the
    # second one resumed: the run directory was made once and completed
    assert restarted.stderr.count("neuroplex: train ...") == 2, restarted.stderr[-3000:]
    assert manifest(out)["status"] == "completed"
    assert_same_weights(final_weights(out), final_weights(reference))
    reliability.tried(1)


@pytest.mark.reliability("fault", "two nodes on loopback: one launcher per node")
def test_two_nodes_on_loopback_match_one_node_and_rank_0_owns_the_run_dir(
    tmp_path: Path, reliability
) -> None:
    spec = write_spec(
        tmp_path / "spec.json",
        tiny_spec(training={"epochs": 2, "strategy": "ddp", "ddp_timeout_s": DDP_TIMEOUT_S}),
    )
    reference = tmp_path / "reference"
    done = _run_ddp(spec, "--output", reference)
    assert done.returncode == 0, done.stderr[-3000:]

    env = cli_env(OMP_NUM_THREADS="1")
    for attempt in range(2):
        endpoint = f"127.0.0.1:{_free_port()}"
        nodes = [tmp_path / f"try{attempt}" / f"node{r}" for r in range(2)]
        procs = [
            spawn_cli(
                "run",
                spec,
                "--output",
                nodes[r],
                "--nproc",
                "1",
                "--nnodes",
                "2",
                "--node-rank",
                str(r),
                "--rdzv-endpoint",
                endpoint,
                env=env,
            )
            for r in (1, 0)  # node 1 first: it waits for node 0's endpoint
        ]
        outs = [finish(p) for p in procs]
        codes = [p.returncode for p in procs]
        if codes == [0, 0] or not any(TEARDOWN_ABORT in err for _, err in outs):
            break
    assert codes == [0, 0], "\n".join(err[-2000:] for _, err in outs)
    assert manifest(nodes[0])["status"] == "completed"
    assert not nodes[1].exists()  # global rank 1 writes nothing: rank 0 owns the run directory
    assert_same_weights(final_weights(nodes[0]), final_weights(reference))
    reliability.tried(1)


@pytest.mark.reliability("hostile", "a rendezvous endpoint where nothing listens")
def test_an_unreachable_rendezvous_endpoint_is_one_line_within_the_timeout(
    tmp_path: Path, reliability
) -> None:
    timeout_s = 3.0
    spec = write_spec(
        tmp_path / "spec.json",
        tiny_spec(training={"epochs": 1, "strategy": "ddp", "ddp_timeout_s": timeout_s}),
    )
    endpoint = f"127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    done = run_cli(
        "run", spec, "--output", tmp_path / "run", "--nnodes", "2", "--node-rank", "1",
        "--rdzv-endpoint", endpoint, env=cli_env(OMP_NUM_THREADS="1"),
    )  # fmt: skip
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"neuroplex: error: --rdzv-endpoint {endpoint}: unreachable for 3s")
    assert timeout_s <= took < timeout_s + 30
    assert not (tmp_path / "run").exists()
    reliability.tried(1)
