"""Run the installed ``neuroplex`` command in a subprocess with a chosen plugin environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
THIRDPARTY = ROOT / "tests" / "fixtures" / "thirdparty"
NEUROPLEX_VARS = (
    "NEUROPLEX_PLUGINS",
    "NEUROPLEX_DISABLE_PLUGINS",
    "NEUROPLEX_STRICT_PLUGINS",
    "NEUROPLEX_PREFER",
)


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def clean_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment without any ``NEUROPLEX_*`` plugin selection, plus
    ``overrides`` (``None`` removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k not in NEUROPLEX_VARS}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def neuroplex_command() -> list[str]:
    """The ``neuroplex`` console script installed beside this interpreter (``python -m
    neuroplex`` where there is none, e.g. an editable install without scripts on PATH)."""
    script = Path(sys.executable).with_name("neuroplex")
    if script.is_file():
        return [str(script)]
    found = shutil.which("neuroplex")
    return [found] if found else [sys.executable, "-m", "neuroplex"]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = 300
) -> Result:
    proc = subprocess.run(
        [*neuroplex_command(), *args],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_python(code: str, *, env: Mapping[str, str] | None = None, timeout: float = 300) -> Result:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else clean_env(),
        cwd=ROOT,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def installed_plugin_distributions() -> list[str]:
    """Distributions that declare an entry point in group ``neuroplex``."""
    return sorted(
        {
            ep.dist.metadata["Name"]
            for ep in metadata.entry_points(group="neuroplex")
            if ep.dist is not None
        }
    )
