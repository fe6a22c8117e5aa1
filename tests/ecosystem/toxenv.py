"""Helpers for tox.ini: one shared install of the kernel's heavy dependencies, plugin sets by
distribution name, and a pytest run over the tests of the plugins that are installed.

    python toxenv.py pip [pip-install-args...]   # tox's install_command
    python toxenv.py install DIST[extras] ...    # install plugin distributions (built wheels)
    python toxenv.py pytest [pytest-args...]     # pytest, skipping plugins that are not installed

Why ``pip``: every tox environment installs the kernel, and the kernel depends on torch
(~750 MB installed), onnxruntime-gpu (~340 MB), numpy, onnx, matplotlib... Installing them once
per environment costs ~30 s and ~1.5 GB each. Instead, the kernel's own dependencies (read from
the root ``pyproject.toml``, pinned by ``.ci/constraints.txt``) are installed once with
``pip install --target`` into ``.tox/.shared/<hash>/``, and every environment gets a ``.pth``
file that appends that directory to ``sys.path`` *before* pip runs: pip then sees torch as
already installed ("Requirement already satisfied: torch ... in .tox/.shared/...") and installs
only what is missing. Plugin-only dependencies (scikit-learn, captum, mlflow, ...) are *not*
shared, so a plugin that forgets to declare one still fails in its environment. The hash covers
the dependency list, the constraints and the Python version; a change builds a fresh directory.

Standard library only: this runs inside bare tox environments.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
#: where plugin distributions are looked up by name (each directory holds a pyproject.toml)
PLUGIN_DIRS = ("plugins/*", "tests/fixtures/thirdparty", "tests/fixtures/broken/*")
PTH_NAME = "_neuroplex_tox_shared.pth"


def _shared_root() -> Path:
    return Path(os.environ.get("NEUROPLEX_TOX_SHARED") or ROOT / ".tox" / ".shared")


def kernel_dependencies() -> list[str]:
    """The kernel distribution's runtime requirements (root ``pyproject.toml``)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data["project"]["dependencies"])


def _shared_key(deps: list[str]) -> str:
    h = hashlib.sha256()
    h.update("\n".join(deps).encode())
    h.update(CONSTRAINTS.read_bytes() if CONSTRAINTS.is_file() else b"")
    h.update(f"{sys.version_info[:2]}{sysconfig.get_platform()}".encode())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # parallel tox envs build the shared dir once
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_shared() -> Path:
    """Install the kernel's dependencies once into ``<shared>/<hash>`` and return that path."""
    deps = kernel_dependencies()
    root = _shared_root()
    target = root / _shared_key(deps)
    done = target / ".complete"
    if done.is_file():
        return target
    with _locked(root / ".lock"):
        if done.is_file():
            return target
        tmp = root / f"{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"toxenv: installing the shared kernel dependencies into {target}", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts"]
        cmd += ["--target", str(tmp)]
        if CONSTRAINTS.is_file():
            cmd += ["-c", str(CONSTRAINTS)]
        subprocess.run([*cmd, *deps], check=True)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        done.write_text("\n".join(deps) + "\n", encoding="utf-8")
        for old in root.iterdir():  # drop directories of older dependency sets
            if old.is_dir() and old != target and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
    return target


def link_shared(shared: Path) -> None:
    """Append ``shared`` to this interpreter's ``sys.path`` through a ``.pth`` file."""
    site = Path(sysconfig.get_path("purelib"))
    pth = site / PTH_NAME
    line = f"{shared}\n"
    if not pth.is_file() or pth.read_text(encoding="utf-8") != line:
        pth.write_text(line, encoding="utf-8")
    if str(shared) not in sys.path:
        sys.path.append(str(shared))


def cmd_pip(args: list[str]) -> int:
    """tox's install_command: share the heavy dependencies, then ``pip install ARGS``."""
    link_shared(ensure_shared())
    # tox installs the package's own dependencies in a separate call without the ``deps``
    # constraints: pin every install here
    pin = ["-c", str(CONSTRAINTS)] if CONSTRAINTS.is_file() else []
    return subprocess.call([sys.executable, "-I", "-m", "pip", "install", *pin, *args])


# ------------------------------------------------------------------------------ plugin sets
def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions_in_repo() -> dict[str, tuple[Path, dict[str, list[str]]]]:
    """``{normalized dist name: (directory, optional-dependencies)}`` of the repo's plugins."""
    found: dict[str, tuple[Path, dict[str, list[str]]]] = {}
    for pattern in PLUGIN_DIRS:
        for directory in sorted(ROOT.glob(pattern)):
            pyproject = directory / "pyproject.toml"
            if not pyproject.is_file():
                continue
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
            if "name" in project:
                extras = project.get("optional-dependencies", {})
                found[_norm(project["name"])] = (directory, extras)
    return found


def cmd_install(args: list[str]) -> int:
    """Install plugin distributions by name, as built (non-editable) wheels, with the plugin's
    ``test`` extra when it has one (its own tests' oracles)."""
    repo = distributions_in_repo()
    reqs: list[str] = []
    missing: list[str] = []
    for arg in args:
        name, _, rest = arg.partition("[")
        extras = [e.strip() for e in rest.rstrip("]").split(",") if e.strip()]
        entry = repo.get(_norm(name))
        if entry is None:
            missing.append(name)
            continue
        directory, optional = entry
        if "test" in optional and "test" not in extras:
            extras.append("test")
        reqs.append(f"{directory}[{','.join(extras)}]" if extras else str(directory))
    if missing:
        print(
            f"toxenv: plugin distribution(s) {', '.join(missing)} not found in "
            f"{', '.join(PLUGIN_DIRS)} (no pyproject.toml with that [project] name)",
            file=sys.stderr,
        )
        return 2
    link_shared(ensure_shared())
    cmd = [sys.executable, "-I", "-m", "pip", "install", "--quiet"]
    if CONSTRAINTS.is_file():
        cmd += ["-c", str(CONSTRAINTS)]
    return subprocess.call([*cmd, *reqs]) if reqs else 0


def installed_repo_distributions() -> list[tuple[str, Path]]:
    """The repo's plugin distributions installed in this interpreter (name, directory)."""
    from importlib import metadata

    installed = {_norm(d.metadata["Name"] or "") for d in metadata.distributions()}
    return [
        (name, directory)
        for name, (directory, _) in sorted(distributions_in_repo().items())
        if name in installed
    ]


class InstalledDistributionsOnly:
    """pytest plugin: skip collecting the directory of any repo distribution (``plugins/*``,
    the example plugin, the broken fixtures) that is not installed in this interpreter, so its
    tests, which import it, are not collected where it is absent."""

    def __init__(self) -> None:
        installed = {directory.resolve() for _, directory in installed_repo_distributions()}
        self.absent = {
            directory.resolve()
            for directory, _ in distributions_in_repo().values()
            if directory.resolve() not in installed
        }

    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        path = collection_path.resolve()
        if any(path == d or d in path.parents for d in self.absent):
            return True
        return None  # let pytest decide


#: ``NEUROPLEX_TOX_SMALLER_SET="DIST DIST ..."`` (set, possibly empty): the plugin set of the
#: next smaller environment of the matrix (empty: ``bare``). See :class:`RunsInSmallestSet`.
SMALLER_SET = "NEUROPLEX_TOX_SMALLER_SET"
#: tests below this directory are about the plugin set itself: they run in every environment
ALWAYS_DIR = ROOT / "tests" / "ecosystem"


class RunsInSmallestSet:
    """pytest plugin: each test runs in the smallest plugin set that has every plugin it needs.

    A test needs the distributions named by its ``requires_plugins`` markers, plus the
    distribution whose directory holds it (``plugins/<dist>/tests``, the example plugin's and
    the broken fixtures' tests). Where the next smaller environment's set (``smaller``) has
    them all, the test ran there already, with fewer plugins installed, which also shows that
    its declared needs are enough; it is deselected here. The ecosystem tests
    (:data:`ALWAYS_DIR`) are about the plugin set itself and run everywhere. So a test that
    needs no plugin runs in ``bare``, one that needs the models plugin in ``core``, one that
    needs the attacks plugin in ``analysis``, one that needs the sinks in ``full``: once each,
    not once per environment that happens to have its plugins."""

    def __init__(self, smaller: set[str]) -> None:
        self.smaller = {_norm(d.partition("[")[0]) for d in smaller}
        self.homes = {d.resolve(): name for name, (d, _) in distributions_in_repo().items()}

    def needs(self, item: Any) -> set[str] | None:
        """The distributions ``item`` needs; ``None`` for a test about the plugin set."""
        path = Path(str(item.path)).resolve()
        if path == ALWAYS_DIR or ALWAYS_DIR in path.parents:
            return None
        needed = {name for home, name in self.homes.items() if home in path.parents}
        for marker in item.iter_markers("requires_plugins"):
            needed.update(_norm(str(arg)) for arg in marker.args)
        return needed

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        keep: list[Any] = []
        dropped: list[Any] = []
        for item in items:
            needed = self.needs(item)
            ran_before = needed is not None and needed <= self.smaller
            (dropped if ran_before else keep).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
            print(
                f"toxenv: {len(dropped)} tests deselected: the smaller plugin set "
                f"({' '.join(sorted(self.smaller)) or 'none'}) has what they need and runs "
                f"them; {len(keep)} kept",
                flush=True,
            )


def pytest_configure(config: Any) -> None:
    """As a pytest plugin (``-p toxenv``, which :func:`cmd_pytest` passes, so that pytest-xdist's
    workers load it too): collect only the installed distributions' tests, and with
    :data:`SMALLER_SET` set, only the tests the smaller plugin set cannot run."""
    config.pluginmanager.register(InstalledDistributionsOnly(), "toxenv-installed-only")
    if SMALLER_SET in os.environ:
        smallest = RunsInSmallestSet(set(os.environ[SMALLER_SET].split()))
        config.pluginmanager.register(smallest, "toxenv-smallest-set")


def cmd_pytest(args: list[str]) -> int:
    """pytest in this process, with the repo's testpaths (``tests``, ``plugins``) or the paths in
    ``args``, collecting only the plugin directories whose distribution is installed."""
    import pytest

    os.chdir(ROOT)
    sys.path[0] = str(ROOT)  # as `python -m pytest` from the repo root (not this script's dir)
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # `-p toxenv` imports this file, here and in xdist's workers
        sys.path.insert(1, here)
    skipped = sorted(str(d.relative_to(ROOT)) for d in InstalledDistributionsOnly().absent)
    print(f"toxenv: pytest {' '.join(args)} (not installed, not collected: {skipped})", flush=True)
    rc = int(pytest.main(["-p", "toxenv", *args]))
    if rc == 5:
        print("toxenv: pytest collected no tests: failing", file=sys.stderr)
        return 1
    return rc


COMMANDS = {"pip": cmd_pip, "install": cmd_install, "pytest": cmd_pytest}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: toxenv.py {{{','.join(COMMANDS)}}} ARGS...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
