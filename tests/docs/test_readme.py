"""README.md promises: its example and the Python API page's example run as written; its
commands exist; it stays the short front door."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_API = (ROOT / "kernel" / "docs" / "python-api.md").read_text(encoding="utf-8")
#: the front door stays short; reference material lives in kernel/docs and the plugins
MAX_README_BYTES = 12 * 1024
ALL_PLUGINS = (
    "neuroplex-layers",
    "neuroplex-models",
    "neuroplex-optim",
    "neuroplex-devices",
    "neuroplex-datasets",
    "neuroplex-explain",
    "neuroplex-attacks",
    "neuroplex-sinks",
)


def section(heading: str, text: str = README) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def test_readme_is_the_short_front_door() -> None:
    size = len(README.encode("utf-8"))
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes (limit {MAX_README_BYTES})"
    for heading in ("## Quick start", "## Example", "## Results", "## Documentation"):
        assert heading in README


@pytest.mark.requires_plugins(*ALL_PLUGINS)
def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = section("## Example").split("```python")[1].split("```")[0]
    assert "epochs=10" in code
    code = code.replace("epochs=10", "epochs=1")  # the same code, one epoch
    monkeypatch.chdir(tmp_path)  # the example writes digits.onnx
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "digits.onnx").is_file()
    assert namespace["history"].epochs  # type: ignore[attr-defined]


@pytest.mark.requires_plugins(*ALL_PLUGINS)
def test_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = PYTHON_API.split("```python")[1].split("```")[0]
    assert "epochs=20" in code
    code = code.replace("epochs=20", "epochs=1")  # the same code, one epoch
    monkeypatch.chdir(tmp_path)  # the sqlite sink writes ./neuroplex.sqlite
    namespace: dict[str, object] = {}
    exec(compile(code, "python-api.md", "exec"), namespace)
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


def test_every_spec_named_in_the_docs_exists() -> None:
    docs = (ROOT / "kernel" / "docs").glob("*.md")
    pages = [README, *(p.read_text(encoding="utf-8") for p in docs)]
    for text in pages:
        for name in re.findall(r"`specs/([\w-]+)\.toml`", text):
            assert (ROOT / "specs" / f"{name}.toml").is_file(), name
