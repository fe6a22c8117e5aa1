"""The kernel alone (tox env ``bare``): every CLI command works and says which plugin to install.

Selected by what is installed: these tests run only where no plugin distribution is.
"""

from __future__ import annotations

import re

import pytest

from neuroplex.records import KINDS
from neuroplex.registry import FIRST_PARTY, plural

from ._cli import ROOT, clean_env, installed_plugin_distributions, run_cli

pytestmark = pytest.mark.skipif(
    bool(installed_plugin_distributions()),
    reason="needs the kernel without plugins (tox -e bare); installed: "
    + ", ".join(installed_plugin_distributions()),
)

SPEC = ROOT / "specs" / "digits-cnn.toml"


def test_plugins_says_none_installed_and_what_to_install() -> None:
    result = run_cli("plugins")
    assert result.code == 0, result.err
    assert result.out.strip() == (
        "no neuroplex plugins installed; install e.g.: pip install neuroplex-models"
    )
    assert result.err == ""


@pytest.mark.parametrize("kind", KINDS)
def test_list_names_the_distributions_that_provide_the_kind(kind: str) -> None:
    result = run_cli("list", kind)
    assert result.code == 0, result.err
    dists = " ".join(FIRST_PARTY[kind])
    assert f"{plural(kind)} come from plugins, e.g.: pip install {dists}" in result.out


def test_doctor_lists_every_kind_with_its_install_command() -> None:
    result = run_cli("doctor")
    assert result.code == 0, result.out + result.err
    for kind in KINDS:
        assert f"  {kind}: none — pip install {' '.join(FIRST_PARTY[kind])}" in result.out
    assert "plugins: 0 (0 ok)" in result.out
    assert result.out.strip().endswith("ok")


def test_help_and_version_work() -> None:
    assert run_cli("--help").code == 0
    version = run_cli("--version")
    assert version.code == 0 and version.out.strip().splitlines() == [
        f"neuroplex {__import__('neuroplex').__version__}"
    ]


def test_run_digits_cnn_fails_with_one_line_naming_plugins_and_pip_command() -> None:
    assert SPEC.is_file(), f"{SPEC.relative_to(ROOT)} is missing: the run spec is the lead's"
    result = run_cli(
        "run", str(SPEC.relative_to(ROOT)), env=clean_env(NEUROPLEX_STRICT_PLUGINS="1")
    )
    assert result.code == 2, result.out + result.err
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("neuroplex: error: "), line
    match = re.search(r"pip install ((?:neuroplex-[a-z]+ ?)+)", line)
    assert match, f"no pip command in: {line}"
    named = set(match.group(1).split())
    # digits-cnn needs at least a dataset, a model, an optimizer and a device
    for dist in ("neuroplex-datasets", "neuroplex-models", "neuroplex-optim"):
        assert dist in named, line
    assert named <= {d for kind in KINDS for d in FIRST_PARTY[kind]}, line


def test_analyze_names_the_missing_analyzer_plugin(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # what ONNX Runtime 1.2x loads (onnx's default may be newer)
    path = tmp_path / "identity.onnx"
    onnx.save(model, str(path))
    result = run_cli("analyze", str(path), "--analyzer", "fgsm", "--data", "digits")
    assert result.code == 2, result.out + result.err
    assert len(result.err_lines) == 1, result.err
    assert "pip install neuroplex-" in result.err_lines[0], result.err


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "missing.ckpt", "-o", "out.onnx"],
        ["verify", "missing.onnx", "--against", "missing.ckpt"],
        ["predict", "missing.onnx", "missing.npy"],
        ["report", "missing-run-dir"],
    ],
    ids=["export", "verify", "predict", "report"],
)
def test_file_commands_fail_with_one_line_naming_the_file(argv: list[str], tmp_path) -> None:
    result = run_cli(*argv, cwd=tmp_path)
    assert result.code == 2, result.out + result.err
    assert len(result.err_lines) == 1, result.err
    assert "missing" in result.err_lines[0], result.err
    assert "Traceback" not in result.err
