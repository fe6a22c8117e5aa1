"""The benchmark suite's smoke mode (``run.py --smoke``) runs every section and reports it.

Figures are not checked against their goals here (smoke repeats are tiny): only that each
section's table is there, that its ratios are positive numbers, that the bitwise and
agreement checks hold, and that what could not run says why. Sections select themselves by
the plugins installed, like every other test.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from neuroplex.registry import FIRST_PARTY as REGISTRY_FIRST_PARTY

pytestmark = pytest.mark.benchmark

HERE = Path(__file__).resolve().parent
RUN = HERE / "run.py"
DOCS = HERE.parents[1] / "kernel" / "docs" / "benchmarks.md"
SECTIONS = ("trainer", "inference", "gradient", "analysis", "startup", "e2e", "scaling", "ddp")
FIRST_PARTY = tuple(sorted({dist for kind in REGISTRY_FIRST_PARTY.values() for dist in kind}))
Rows = list[dict[str, str]]


def parse(text: str) -> dict[str, Rows]:
    """Each section's table rows (column header -> cell), by the section's key."""
    tables: dict[str, Rows] = {}
    for chunk in text.split("<!-- section: ")[1:]:
        key, _, body = chunk.partition(" -->")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        header = [c.strip() for c in lines[0].strip("|").split(" | ")]
        rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]
        tables[key] = [dict(zip(header, row, strict=True)) for row in rows]
    return tables


def ratio_of(row: dict[str, str]) -> float:
    """The row's ratio cell (``1.234×``) as a number."""
    (cell,) = [v for k, v in row.items() if k.startswith("ratio")]
    return float(cell.rstrip("×"))


def measured(rows: Rows) -> Rows:
    """The rows that were measured (not skipped, not figures without a goal)."""
    return [r for r in rows if not r["status"].startswith(("skipped", "reported"))]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rows]:
    """The tables of one ``run.py --smoke`` (run once for the module)."""
    out = tmp_path_factory.mktemp("bench") / "smoke.md"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.read_text(encoding="utf-8") in proc.stdout  # printed and written alike
    return parse(out.read_text(encoding="utf-8"))


def test_every_section_is_reported_with_a_status(smoke: dict[str, Rows]) -> None:
    assert tuple(smoke) == SECTIONS
    for key, rows in smoke.items():
        assert rows, key
        for row in rows:
            status = row["status"]
            assert status in ("met", "reported") or status.startswith(("gap", "skipped: ")), row
            if status.startswith("skipped: "):
                assert len(status) > len("skipped: ") + 5, row  # a reason is given
            else:
                assert ratio_of(row) > 0, row


@pytest.mark.requires_plugins("neuroplex-optim")
def test_trainer_rows_are_measured_and_weights_bitwise_equal(smoke: dict[str, Rows]) -> None:
    rows = smoke["trainer"]
    hand = [r for r in rows if r["figure"] == "step time vs hand loop"]
    assert hand and all(r["weights bit-identical to the hand loop"] == "yes" for r in hand)
    assert all(ratio_of(r) > 0 for r in hand)
    memory = [r for r in rows if r["figure"] == "peak memory vs hand loop"]
    assert memory and ratio_of(memory[0]) > 0 and " MB (+" in memory[0]["ours"]
    lightning = [r for r in rows if r["figure"] == "step time vs Lightning"]
    assert lightning and all(r["status"].startswith("skipped: ") for r in lightning)


def test_inference_and_gradient_rows_are_measured(smoke: dict[str, Rows]) -> None:
    pytest.importorskip("onnxscript")
    inference = measured(smoke["inference"])
    assert {r["batch"] for r in inference} == {"1"}
    assert {r["model"].split()[0] for r in inference} == {"cnn"}
    gradient = measured(smoke["gradient"])
    # the general path (forward + VJP) and the fused cross-entropy graph, both at batch 64
    assert len(gradient) == 2 and any("fused CE" in r["model"] for r in gradient), gradient
    assert all(r["batch"] == "64" and ratio_of(r) > 0 for r in gradient)


@pytest.mark.requires_plugins("neuroplex-attacks", "neuroplex-explain")
def test_analysis_rows_are_measured_on_torch_and_ort(smoke: dict[str, Rows]) -> None:
    pytest.importorskip("torchattacks")
    pytest.importorskip("captum")
    rows = measured(smoke["analysis"])
    assert {(r["analysis"], r["ours on"]) for r in rows} == {
        (a, b)
        for a in ("PGD-10 vs torchattacks", "IG-50 vs Captum")
        for b in ("PyTorch", "ONNX Runtime")
    }


def test_startup_commands_do_not_import_torch(smoke: dict[str, Rows]) -> None:
    rows = smoke["startup"]
    assert [r["command"] for r in rows] == ["`neuroplex --help`", "`neuroplex plugins`"]
    assert all(r["imports torch"] == "no" for r in rows)


@pytest.mark.requires_plugins(*FIRST_PARTY)
def test_e2e_reports_every_stage(smoke: dict[str, Rows]) -> None:
    parts = [r["part"] for r in smoke["e2e"]]
    assert {"data", "build", "train", "evaluate", "export", "analyze", "report"} <= set(parts)
    assert parts[-2:] == ["outside the stages", "wall time"]
    assert all(ratio_of(r) > 0 for r in smoke["e2e"])


@pytest.mark.requires_plugins("neuroplex-optim")
def test_scaling_and_ddp_rows_are_measured(smoke: dict[str, Rows]) -> None:
    (row,) = measured(smoke["scaling"])
    assert row["peak RSS added MB: trainer / hand (model state MB)"].endswith("full run only)")
    (ddp,) = smoke["ddp"]
    if not ddp["status"].startswith("skipped"):
        assert ddp["weights match 1 process"] == "yes"


def _run_module() -> ModuleType:
    """``run.py`` imported under a private name."""
    spec = importlib.util.spec_from_file_location("neuroplex_bench_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_update_docs_replaces_only_the_marked_block(tmp_path: Path) -> None:
    run = _run_module()
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# x\n\nbefore\n{run.START}\nold\n{run.END}\nafter\n", encoding="utf-8")
    run.update_docs("| new | table |\n", page)
    assert page.read_text(encoding="utf-8") == (
        f"# x\n\nbefore\n{run.START}\n| new | table |\n{run.END}\nafter\n"
    )


def test_docs_embed_the_results_between_one_pair_of_markers() -> None:
    text = DOCS.read_text(encoding="utf-8")
    run = _run_module()
    assert run.DOCS == DOCS
    assert text.count(run.START) == 1 and text.count(run.END) == 1
    assert "<!-- section: trainer -->" in text.split(run.START)[1]


def test_the_tables_live_in_one_place_only() -> None:
    """The README summarises and links; the full tables exist once, in the docs page."""
    readme = (HERE.parents[1] / "README.md").read_text(encoding="utf-8")
    run = _run_module()
    assert run.START not in readme and "<!-- section: " not in readme
    assert not (HERE / "RESULTS.md").exists()
    assert "kernel/docs/benchmarks.md" in readme


def test_only_a_full_run_rewrites_the_docs_page(tmp_path: Path, monkeypatch) -> None:
    run = _run_module()
    page = tmp_path / "benchmarks.md"
    original = f"intro\n{run.START}\nold\n{run.END}\n"
    page.write_text(original, encoding="utf-8")
    monkeypatch.setattr(run, "DOCS", page)
    monkeypatch.setattr(run, "run_sections", lambda keys, opts: ([], True))
    assert run.main(["--only", "trainer"]) == 0  # a partial run only prints
    assert run.main(["--smoke"]) == 0  # so does a smoke run
    assert page.read_text(encoding="utf-8") == original
    assert run.main([]) == 0
    block = page.read_text(encoding="utf-8").split(run.START)[1]
    assert "Benchmark suite, full run: `python tests/benchmarks/run.py`" in block
    assert "old" not in block
