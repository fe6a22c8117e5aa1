"""The kernel's modules import each other without a cycle: a spec's path through
``neuroplex run`` (and anything else) never climbs back into a module that imported it.

Every ``import`` statement that can run counts, at module level or inside a function: a cycle
through a deferred import is a cycle all the same. Imports under ``if TYPE_CHECKING:`` never
run (annotations are strings here) and do not count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import neuroplex

KERNEL = Path(neuroplex.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = ["neuroplex", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = KERNEL) -> dict[str, set[str]]:
    """``module -> kernel modules it imports`` (``from pkg import sub`` counts as ``pkg.sub``
    when ``sub`` is a module, else as ``pkg``)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in files:  # ``import a.b.c`` of a name in a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those inside ``if TYPE_CHECKING:`` blocks."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_the_kernel_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "neuroplex.run.execute" in graph and "neuroplex.cli" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in the kernel: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_run_stages_import_only_earlier_stages() -> None:
    stages = ["data", "build", "train", "export", "analyze", "feedback", "report"]
    graph = import_graph()
    for i, stage in enumerate(stages):
        later = {f"neuroplex.run.{s}" for s in stages[i + 1 :]}
        assert not graph[f"neuroplex.run.{stage}"] & later, stage


def test_the_run_package_loads_torch_only_when_a_run_starts() -> None:
    """A spec naming a missing plugin fails before torch loads (seconds on a cold start)."""
    code = (
        "import sys, neuroplex.run, neuroplex.run.rundir, neuroplex.pipeline; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("sources", "cycle"),
    [
        # a deferred import inside a function closes a cycle too
        ({"a": "from . import b\n", "b": "def f():\n    from .a import x\n"}, ["a", "b"]),
        # annotations only: never imported at run time
        (
            {
                "a": "import neuroplex.b\n",
                "b": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from neuroplex.a import A\n",
            },
            [],
        ),
        (
            {"a": "import neuroplex.b\n", "b": "import neuroplex.c\n", "c": "from . import a\n"},
            ["a", "b", "c"],
        ),
        ({"a": "import neuroplex.b\n", "b": "x = 1\n"}, []),
    ],
)
def test_the_checker_finds_a_cycle_through_any_import(
    tmp_path: Path, sources: dict[str, str], cycle: list[str]
) -> None:
    root = tmp_path / "neuroplex"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in sources.items():
        (root / f"{name}.py").write_text(text)
    expected = [[f"neuroplex.{c}" for c in cycle]] if cycle else []
    assert find_cycles(import_graph(root)) == expected
