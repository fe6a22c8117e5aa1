"""The CLI: light start-up, one-line user errors with exit 2, plugin listing, doctor."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neuroplex.cli import main

from .fakedist import FIXTURE_PLUGINS


def _no_torch(argv: list[str]) -> str:
    code = (
        "import sys\nfrom neuroplex.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["list", "model"], ["doctor"]])
def test_light_commands_never_import_torch(argv: list[str]) -> None:
    """Every installed plugin's entry module must stay import-light too."""
    assert _no_torch(argv) == "NO-TORCH"


def test_plugins_json_lists_installed_plugins(capsys) -> None:
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert all({"name", "distribution", "version", "status"} <= set(p) for p in listed)


def test_unknown_kind_is_one_line_and_exit_2(capsys) -> None:
    assert main(["list", "modle"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "neuroplex: error: unknown kind 'modle'; kinds: layer, model, optimizer, device, "
        "analyzer, feedback_sink, dataset, policy; did you mean 'model'?\n"
    )


def test_argparse_errors_exit_2_with_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_version_names_kernel(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("neuroplex 0.1.0")


def test_doctor_exits_nonzero_on_a_failed_plugin(neuroplex_manager, capsys) -> None:
    sys.path.insert(0, str(FIXTURE_PLUGINS))
    try:
        import npfix_unknown_hook

        neuroplex_manager.strict = False
        neuroplex_manager.register(npfix_unknown_hook, "typo", distribution="typo-dist")
    finally:
        sys.path.remove(str(FIXTURE_PLUGINS))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "neuroplex: plugin 'typo' (typo-dist ) failed: hookimpl" in out
    assert out.strip().endswith("1 problem(s) found")


def test_doctor_passes_with_healthy_plugins(neuroplex_manager, capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "model: none — pip install neuroplex-models" in out
    assert out.strip().endswith("ok")


def test_sigterm_interrupts_a_run_once_then_lets_it_finish_its_bookkeeping() -> None:
    """torchrun's agent SIGTERMs every worker as soon as one dies, while rank 0 may already be
    saving why it failed: that save and its one-line message must not be cut short."""
    import os
    import signal

    from neuroplex.run.rundir import TermHandler, sigterm_as_interrupt

    term = TermHandler()
    with pytest.raises(KeyboardInterrupt):
        term(signal.SIGTERM, None)
    term(signal.SIGTERM, None)  # already stopping: ignored
    quiet = TermHandler()
    quiet.quiet()
    quiet(signal.SIGTERM, None)  # the run is failing on its own: ignored
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
    with sigterm_as_interrupt() as handler:
        handler.quiet()
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the process lives on
    assert signal.getsignal(signal.SIGTERM) is before
