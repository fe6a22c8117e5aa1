"""``python inject.py ARGS``: the ``neuroplex`` CLI with fault injection, configured by env.

* ``NPREL_KILL_AFTER_STEPS=K`` — ``SIGKILL`` this process right after the K-th optimizer step
  (mid-batch: the weights moved, the step counter has not); with ``NPREL_KILL_RANK=R`` only the
  ``torchrun`` worker of rank ``R`` is killed;
* ``NPREL_SIGNAL_AFTER_STEPS=K:SIG`` — send this process ``SIG`` (``TERM`` or ``INT``) right
  after the K-th optimizer step, then keep going (the handler decides what happens);
* ``NPREL_KILL_IN_WRITE=N:MODE`` — on the N-th checkpoint file write (``.pt`` and ``.json``
  alternate: epoch k writes ``.pt`` as call 2k-1 and its manifest as call 2k), ``MODE``
  ``torn`` writes half the bytes to the temporary file and ``SIGKILL``\\ s; ``after`` finishes
  the write (rename included) and then ``SIGKILL``\\ s;
* ``NPREL_STEP_SLEEP_S=X`` — sleep X seconds in every optimizer step (widens the window for
  kills at random times);
* ``NPREL_NONFINITE_AT=K:WHAT`` — on the K-th backward pass make the ``loss`` NaN, or (``grad``)
  keep the loss finite and make every gradient flowing back from it infinite.

Nothing is patched unless its variable is set; the patches wrap the kernel's own functions.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL cannot be caught


def install() -> None:
    kill_after = os.environ.get("NPREL_KILL_AFTER_STEPS")
    signal_after = os.environ.get("NPREL_SIGNAL_AFTER_STEPS")
    kill_write = os.environ.get("NPREL_KILL_IN_WRITE")
    sleep_s = float(os.environ.get("NPREL_STEP_SLEEP_S", "0") or 0)
    if kill_after or signal_after or sleep_s:
        from neuroplex.training import loop

        original_step = loop.Trainer._step_group
        count = {"n": 0}
        kill_at = int(kill_after) if kill_after else None
        kill_rank = os.environ.get("NPREL_KILL_RANK")
        if kill_rank is not None and os.environ.get("RANK", "0") != kill_rank:
            kill_at = None
        sig_at, sig_name = [*signal_after.split(":"), "TERM"][:2] if signal_after else ("", "")

        def step_group(self: Any, group: str) -> None:
            original_step(self, group)
            count["n"] += 1
            if sleep_s:
                time.sleep(sleep_s)
            if kill_at is not None and count["n"] == kill_at:
                rank = os.environ.get("RANK", "0")
                print(f"inject: SIGKILL rank {rank} after step {count['n']}", file=sys.stderr)
                _die()
            if sig_at and count["n"] == int(sig_at):
                print(f"inject: SIG{sig_name} after step {count['n']}", file=sys.stderr)
                os.kill(os.getpid(), getattr(signal, f"SIG{sig_name}"))

        loop.Trainer._step_group = step_group  # type: ignore[method-assign]
    nonfinite = os.environ.get("NPREL_NONFINITE_AT")
    if nonfinite:
        from neuroplex.training import loop as loop_module

        at_str, what = nonfinite.split(":")
        original_optimize = loop_module.Trainer._optimize
        seen = {"n": 0}

        def optimize(self: Any, group: str, loss: Any) -> None:
            seen["n"] += 1
            if seen["n"] == int(at_str):
                print(f"inject: non-finite {what} in backward pass {seen['n']}", file=sys.stderr)
                if what == "loss":
                    loss = loss * float("nan")
                else:
                    loss.register_hook(lambda g: g * float("inf"))
            original_optimize(self, group, loss)

        loop_module.Trainer._optimize = optimize  # type: ignore[method-assign]
    if kill_write:
        from neuroplex.training import checkpoint

        n_str, mode = kill_write.split(":")
        target = int(n_str)
        original_write = checkpoint.atomic_write
        calls = {"n": 0}

        def atomic_write(path: Path, data: bytes) -> None:
            calls["n"] += 1
            if calls["n"] != target:
                original_write(path, data)
                return
            if mode == "torn":
                tmp = path.parent / f".{path.name}.injected.tmp"
                with tmp.open("wb") as fh:
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                print(f"inject: SIGKILL halfway through writing {path.name}", file=sys.stderr)
            else:
                original_write(path, data)
                print(f"inject: SIGKILL right after writing {path.name}", file=sys.stderr)
            _die()

        checkpoint.atomic_write = atomic_write


def main() -> int:
    install()
    from neuroplex.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
