"""``neuroplex run SPEC --nproc N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT]
[--max-restarts K]``: the CLI's ``torchrun`` launcher (kernel/docs/distributed.md).

One node (``--nnodes 1``) uses torchrun's ``--standalone`` rendezvous. Several nodes use its
static rendezvous at ``HOST:PORT``: node rank 0 listens there (so HOST must be one of its own
addresses) and holds global rank 0, hence the run directory; every other node waits at most
``training.ddp_timeout_s`` for it, then stops with one line. Under ``--max-restarts K`` a
restarted worker continues from the run's last checkpoint by itself (:func:`elastic_resume`).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from neuroplex.errors import ConfigError

__all__ = [
    "LaunchPlan",
    "elastic_resume",
    "launch",
    "launch_analyze",
    "plan_launch",
    "torchrun_world_size",
]

#: seconds between two attempts to reach the rendezvous endpoint
_POLL_S = 0.5


class LaunchPlan:
    """The torchrun topology the command line asks for (validated)."""

    def __init__(
        self,
        nproc: int,
        nnodes: int = 1,
        node_rank: int = 0,
        endpoint: str | None = None,
        max_restarts: int = 0,
    ) -> None:
        self.nproc, self.nnodes, self.node_rank = nproc, nnodes, node_rank
        self.endpoint, self.max_restarts = endpoint, max_restarts

    @property
    def distributed(self) -> bool:
        return self.nproc > 1 or self.nnodes > 1

    @property
    def host_port(self) -> tuple[str, int]:
        assert self.endpoint is not None
        host, _, port = self.endpoint.rpartition(":")
        return host.strip("[]"), int(port)


def _int_arg(args: Any, name: str, default: int) -> int:
    value = getattr(args, name, None)
    return default if value is None else int(value)


def plan_launch(args: Any) -> LaunchPlan:
    """The command line's ``--nproc``, ``--nnodes``, ``--node-rank``, ``--rdzv-endpoint`` and
    ``--max-restarts``, each checked: a bad value is one :class:`ConfigError` naming it."""
    nproc = _int_arg(args, "nproc", 1)
    nnodes = _int_arg(args, "nnodes", 1)
    node_rank = _int_arg(args, "node_rank", 0)
    max_restarts = _int_arg(args, "max_restarts", 0)
    endpoint = getattr(args, "rdzv_endpoint", None)
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nnodes < 1:
        raise ConfigError(f"--nnodes must be >= 1, got {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise ConfigError(
            f"--node-rank {node_rank} is out of range for --nnodes {nnodes}: "
            f"use 0..{nnodes - 1} (0 on the node that holds the run directory)"
        )
    if max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0, got {max_restarts}")
    if nnodes > 1 and not endpoint:
        raise ConfigError(
            f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (an address of node rank 0 "
            "and a free port, the same on every node)"
        )
    if endpoint is not None:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--rdzv-endpoint {endpoint!r} is not HOST:PORT (e.g. 10.0.0.1:29500)"
            )
        if nnodes == 1:
            raise ConfigError(
                "--rdzv-endpoint is for several nodes: add --nnodes N --node-rank R, or drop it"
            )
    return LaunchPlan(nproc, nnodes, node_rank, endpoint, max_restarts)


def _check_endpoint(plan: LaunchPlan, timeout_s: float) -> None:
    """Node rank 0 must be able to listen on the endpoint; any other node waits at most
    ``timeout_s`` for it to listen. Either failure is one line, before torchrun starts."""
    host, port = plan.host_port
    if plan.node_rank == 0:
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            raise ConfigError(
                f"--rdzv-endpoint {plan.endpoint}: node rank 0 cannot listen there "
                f"({exc.strerror or exc}); give an address of this machine and a free port"
            ) from None
        return
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=_POLL_S * 4):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise ConfigError(
        f"--rdzv-endpoint {plan.endpoint}: unreachable for {timeout_s:g}s "
        f"(training.ddp_timeout_s) from node rank {plan.node_rank}: {reason}; start node "
        "rank 0 first, with the same endpoint, and check the address and firewall"
    )


def launch(args: Any, plan: LaunchPlan) -> int:
    """Start this node's share of the job under ``torchrun``; returns its exit status."""
    import subprocess

    from neuroplex.config import load_spec

    spec = load_spec(args.spec)
    if spec.training.strategy not in ("ddp", "fsdp"):
        flags = f"--nproc {plan.nproc}" if plan.nproc > 1 else f"--nnodes {plan.nnodes}"
        raise ConfigError(
            f'{flags} trains in several processes, which needs training.strategy = "ddp" '
            f'(or "fsdp") in the spec (it is {spec.training.strategy!r}); set it, or drop '
            f"{flags.split()[0]}",
            path="training.strategy",
        )
    if spec.training.strategy == "fsdp":  # a family without a policy fails before torchrun
        from neuroplex.records import ModelRecord
        from neuroplex.registry import get_record

        record = get_record("model", spec.model.name)
        if isinstance(record, ModelRecord):
            record.require_sharding()
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={plan.nproc}"]
    if plan.nnodes == 1:
        cmd.append("--standalone")
    else:
        _check_endpoint(plan, spec.training.ddp_timeout_s)
        cmd += [
            f"--nnodes={plan.nnodes}",
            f"--node-rank={plan.node_rank}",
            "--rdzv-backend=static",
            f"--rdzv-endpoint={plan.endpoint}",
            f"--rdzv-conf=timeout={max(1, round(spec.training.ddp_timeout_s))}",
        ]
    if plan.max_restarts:
        cmd.append(f"--max-restarts={plan.max_restarts}")
    cmd += ["-m", "neuroplex", "run", str(args.spec)]
    output = args.output
    if plan.node_rank == 0:  # every process uses one directory: node 0 makes it here, once
        from neuroplex.run.rundir import locate

        overwrite = bool(getattr(args, "overwrite", False))
        output = locate(spec, output, resume=args.resume, overwrite=overwrite)
    if output:
        cmd += ["--output", str(output)]
    if args.resume:
        cmd.append("--resume")
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    return subprocess.call(cmd)


def torchrun_world_size() -> int | None:
    """``WORLD_SIZE`` when this process is a ``torchrun`` worker (``LOCAL_RANK`` set), else
    ``None``."""
    if "LOCAL_RANK" not in os.environ:
        return None
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


#: how a worker reports a user error (cli.main): the launcher repeats it as its own
_ERROR_PREFIX = "neuroplex: error: "


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N``: a worker knows it is one from torchrun's environment, and
    torchrun's own parser would take ``--nproc`` for an abbreviation of its options."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch_analyze(argv: list[str], nproc: int) -> int:
    """``neuroplex analyze ARGV`` in ``nproc`` processes on this node under ``torchrun``
    (its ``--standalone`` rendezvous). Rank 0 prints the results; a worker's user error
    becomes this command's one ``neuroplex: error:`` line (raised as a :class:`ConfigError`,
    exit 2) instead of torchrun's report of a failed child."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    cmd += ["--standalone", "-m", "neuroplex", *_without_nproc(argv)]
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode == 0:
        return 0
    errors = [
        line.split(_ERROR_PREFIX, 1)[1]
        for line in proc.stderr.splitlines()
        if _ERROR_PREFIX in line
    ]
    if errors:  # the failing rank's own error, before the others' "analysis rank R failed"
        own = [e for e in errors if not e.startswith("analysis rank ")]
        raise ConfigError((own or errors)[0])
    sys.stderr.write(proc.stderr)
    return proc.returncode


def elastic_resume(resume: bool, run_dir: Path, rank: int) -> bool:
    """Whether this worker continues the run: ``--resume`` asked for it, or torchrun restarted
    the group (``TORCHELASTIC_RESTART_COUNT`` > 0) after a run directory was made (rank 0 can
    see its manifest; the other ranks resume from the last checkpoint if there is one, and
    start afresh, as rank 0 does, if there is none)."""
    if resume:
        return True
    try:
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return False
    if restarts <= 0:
        return False
    return rank > 0 or (run_dir / "manifest.json").is_file()
