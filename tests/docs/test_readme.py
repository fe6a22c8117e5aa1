"""README.md promises: its Python API example runs as written; its commands exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n## ", start + len(heading))
    return README[start : end if end >= 0 else len(README)]


@pytest.mark.requires_plugins(
    "neuroplex-layers",
    "neuroplex-models",
    "neuroplex-optim",
    "neuroplex-devices",
    "neuroplex-datasets",
    "neuroplex-explain",
    "neuroplex-attacks",
    "neuroplex-sinks",
)
def test_python_api_example_runs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = section("## Python API").split("```python")[1].split("```")[0]
    code = code.replace("epochs=20", "epochs=1")  # the same code, one epoch
    monkeypatch.chdir(tmp_path)  # the sqlite sink writes ./neuroplex.sqlite
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert 0.0 <= float(namespace["metrics"]["accuracy"]) <= 1.0  # type: ignore[index]
    assert (tmp_path / "neuroplex.sqlite").is_file()


def test_quick_start_has_the_two_commands_and_they_name_real_files() -> None:
    quick = section("## Quick start")
    commands = [
        line
        for line in quick.split("```bash")[1].split("```")[0].splitlines()
        if line and not line.startswith("#")
    ]
    assert len(commands) == 2
    run, test = commands
    assert "neuroplex run specs/digits-cnn.toml" in run
    assert (ROOT / "specs" / "digits-cnn.toml").is_file()
    assert "-c .ci/constraints.txt" in run
    assert shlex.split(test) == ["bash", ".ci/test"]
    assert "bash .ci/test" in (ROOT / ".ci" / "run").read_text()


def test_every_spec_named_in_readme_exists() -> None:
    for name in re.findall(r"`specs/([\w-]+)\.toml`", README):
        assert (ROOT / "specs" / f"{name}.toml").is_file(), name
