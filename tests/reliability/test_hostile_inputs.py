"""Hostile and malformed inputs: malicious checkpoints, bad ONNX files, bad data files.

Each is refused with a clear one-line error (``neuroplex: error: ...``, exit 2) through the
CLI, and with the documented exception through the Python API; nothing in them runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ._helpers import (
    assert_same_weights,
    cli_env,
    final_weights,
    manifest,
    run_cli,
    tiny_spec,
    write_spec,
)

pytestmark = pytest.mark.requires_plugins(
    "neuroplex-models", "neuroplex-datasets", "neuroplex-optim", "neuroplex-sinks"
)


# ---------------------------------------------------------------------------- checkpoints
class _Exploit:
    """Unpickling this runs ``exec``: it writes ``marker`` (what an attacker's payload does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _evil_checkpoint(path: Path, marker: Path, **manifest_fields: Any) -> Path:
    """A checkpoint carrying the exploit, with a manifest whose size and sha256 match (an
    attacker can compute those: the checksum catches accidents, weights_only catches code)."""
    import torch

    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Exploit(marker)}, buffer)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    fields = {"kind": "epoch", "epoch": 99, "global_step": 10**6, "batch_in_epoch": 0}
    fields.update(manifest_fields)
    manifest_ = {
        "format": 1,
        "file": path.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **fields,
    }
    path.with_suffix(".json").write_text(json.dumps(manifest_))
    return path


@pytest.mark.reliability("hostile", "checkpoint with a code-executing pickle (__reduce__)")
def test_a_code_executing_checkpoint_is_refused(tmp_path: Path) -> None:
    import torch

    from neuroplex import CheckpointError
    from neuroplex.training import load_checkpoint

    # control: the payload is real — an unsafe load runs it
    control = tmp_path / "control-marker"
    evil = _evil_checkpoint(tmp_path / "control.pt", control)
    torch.load(evil, weights_only=False)
    assert control.read_text() == "code ran"

    marker = tmp_path / "marker"
    evil = _evil_checkpoint(tmp_path / "evil" / "checkpoints" / "epoch-0099.pt", marker)
    with pytest.raises(CheckpointError, match="cannot load: UnpicklingError"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil.parent)  # the directory form picks it as newest, and refuses it
    for command in (
        ["export", evil, "-o", tmp_path / "m.onnx"],
        ["verify", evil, "--against", evil],
    ):
        done = run_cli(*command)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
    done = run_cli("export", evil, "-o", tmp_path / "m.onnx")
    assert f"neuroplex: error: {evil}: cannot load: UnpicklingError" in done.stderr
    assert not marker.exists(), "code in a checkpoint ran"
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.reliability("hostile", "code-executing checkpoint planted as newest, then --resume")
def test_resume_skips_a_planted_malicious_checkpoint(tmp_path: Path, reference_run: Path) -> None:
    spec = write_spec(tmp_path / "spec.json", tiny_spec(training={"epochs": 8}))
    out = tmp_path / "run"
    killed = run_cli("run", spec, "--output", out, env=cli_env(NPREL_KILL_AFTER_STEPS="300"))
    assert killed.returncode == -signal.SIGKILL
    marker = tmp_path / "marker"
    _evil_checkpoint(out / "checkpoints" / "epoch-0099.pt", marker)
    done = run_cli("run", spec, "--resume", "--output", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch-0099.pt: cannot load: UnpicklingError" in done.stderr
    assert not marker.exists(), "code in a checkpoint ran"
    assert manifest(out)["status"] == "completed"
    from neuroplex.training import load_checkpoint

    last = load_checkpoint(out / "checkpoints" / "epoch-0008.pt")["model"]
    assert_same_weights(last, final_weights(reference_run))
    # the planted file is still refused by everything that might pick it up later
    done = run_cli("export", out / "checkpoints", "-o", tmp_path / "m.onnx")
    assert done.returncode == 2 and "UnpicklingError" in done.stderr
    assert not marker.exists(), "code in a checkpoint ran"


@pytest.mark.reliability("hostile", "checkpoint without manifest / with a forged manifest")
def test_checkpoints_without_or_with_a_wrong_manifest_are_refused(tmp_path: Path) -> None:
    from neuroplex import CheckpointError
    from neuroplex.training import load_checkpoint

    evil = _evil_checkpoint(tmp_path / "a.pt", tmp_path / "marker")
    evil.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="no manifest a.json beside it"):
        load_checkpoint(evil)
    evil.with_suffix(".json").write_text('{"sha256": "00", "size": 1}')
    with pytest.raises(CheckpointError, match="truncated or replaced"):
        load_checkpoint(evil)
    evil.with_suffix(".json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="unreadable manifest"):
        load_checkpoint(evil)
    assert not (tmp_path / "marker").exists()


# ---------------------------------------------------------------------------- ONNX files
def _linear_onnx(opset: int = 18, external: str | None = None, op: str = "MatMul") -> Any:
    """A tiny ONNX model ``Y = X @ W + b`` (X: [N, 4], Y: [N, 3]) built by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    b = numpy_helper.from_array(np.ones(3, dtype=np.float32), "b")
    if external is not None:
        w.ClearField("raw_data")
        w.ClearField("float_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=external)
    graph = helper.make_graph(
        [helper.make_node(op, ["X", "W"], ["H"]), helper.make_node("Add", ["H", "b"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return (
        model
        if external is not None or op != "MatMul"
        else onnx.shape_inference.infer_shapes(model)
    )


@pytest.fixture
def onnx_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    np.save(folder / "x.npy", np.ones((2, 4), dtype=np.float32))
    (tmp_path / "secret.bin").write_bytes(np.ones(12, dtype=np.float32).tobytes())
    return folder


def _hostile_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name: (file, what the error must say)."""
    good = _linear_onnx().SerializeToString()
    files: dict[str, tuple[bytes, str]] = {
        "random bytes": (os.urandom(4096), "is not a valid ONNX model"),
        "truncated model": (good[: len(good) // 2], "is not a valid ONNX model"),
        "empty file": (b"", "is empty"),
        "a text file": (b"name = 'model'\n", "is not a valid ONNX model"),
        "a zip (a .pt) renamed .onnx": (b"PK\x03\x04" + os.urandom(200), "not a valid ONNX model"),
        # opsets 7-12 are upgraded in memory (tests/onnx/test_autodiff_files.py); 6 is refused
        "opset 6": (_linear_onnx(opset=6).SerializeToString(), "opset 6, outside"),
        "opset 99": (_linear_onnx(opset=99).SerializeToString(), "opset 99, outside"),
        "unknown operator": (
            _linear_onnx(op="DefinitelyNotAnOp").SerializeToString(),
            "failed the ONNX checker",
        ),
        "external data ../secret.bin": (
            _linear_onnx(external="../secret.bin").SerializeToString(),
            "outside its directory",
        ),
        "external data sub/../../secret.bin": (
            _linear_onnx(external="sub/../../secret.bin").SerializeToString(),
            "outside its directory",
        ),
        "external data at an absolute path": (
            _linear_onnx(external=str(folder.parent / "secret.bin")).SerializeToString(),
            "outside its directory",
        ),
        "external data through a symlink out": (
            _linear_onnx(external="link.bin").SerializeToString(),
            "outside its directory",
        ),
        "external data file missing": (
            _linear_onnx(external="missing.bin").SerializeToString(),
            "is missing",
        ),
    }
    (folder / "link.bin").symlink_to(folder.parent / "secret.bin")
    out = {}
    for i, (name, (data, expected)) in enumerate(files.items()):
        path = folder / f"hostile{i}.onnx"
        path.write_bytes(data)
        out[name] = (path, expected)
    return out


@pytest.mark.reliability("hostile", "ONNX files: garbage, truncated, bad opset, escaping paths")
def test_hostile_onnx_files_are_refused_through_api_and_cli(
    onnx_dir: Path, reliability, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroplex import ExportError
    from neuroplex.cli import main
    from neuroplex.onnx import load_onnx

    good = onnx_dir / "good.onnx"
    good.write_bytes(_linear_onnx().SerializeToString())
    ok = run_cli("predict", good, onnx_dir / "x.npy")  # control: a good file works
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == [2, 2]
    hostile = _hostile_files(onnx_dir)
    # every file through the API and the CLI's own entry point (in this process: a new
    # interpreter per file costs seconds); one of them through a real `neuroplex` process below
    for name, (path, expected) in hostile.items():
        with pytest.raises(ExportError, match=expected):
            load_onnx(path)
        capsys.readouterr()
        code = main(["predict", str(path), str(onnx_dir / "x.npy")])
        err = capsys.readouterr().err
        assert code == 2, f"{name}: {err}"
        (line,) = err.strip().splitlines()
        assert line.startswith("neuroplex: error:") and expected in line, f"{name}: {line}"
    name, (path, expected) = next(iter(hostile.items()))
    done = run_cli("predict", path, onnx_dir / "x.npy")
    assert done.returncode == 2, f"{name}: {done.stderr}"
    assert "Traceback" not in done.stderr, f"{name}: {done.stderr}"
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("neuroplex: error:") and expected in line, f"{name}: {line}"
    with pytest.raises(ExportError, match="over the 100-byte limit"):
        load_onnx(good, max_bytes=100)
    with pytest.raises(ExportError, match="does not exist"):
        load_onnx(onnx_dir / "nope.onnx")
    reliability.tried(len(hostile) + 2)


@pytest.mark.reliability("hostile", "ONNX metadata naming a gradient graph outside the folder")
def test_a_gradient_graph_path_escaping_the_folder_is_not_followed(onnx_dir: Path) -> None:
    from neuroplex.onnx import load_onnx
    from neuroplex.onnx.metadata import encode_metadata

    outside = onnx_dir.parent / "outside.onnx"
    outside.write_bytes(_linear_onnx().SerializeToString())
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    for name in ("../outside.onnx", str(outside)):
        model = _linear_onnx()
        meta = encode_metadata({"gradient_graph": name, "gradient_sha256": digest})
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        path = onnx_dir / "tricky.onnx"
        path.write_bytes(model.SerializeToString())
        module = load_onnx(path)
        assert module.tier == "forward_only"
        assert "outside" in module.tier_reason, module.tier_reason


# ---------------------------------------------------------------------------- data files
def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


ROWS = "".join(f"{i % 5}.0,{i % 3}.5,{i % 2}\n" for i in range(40))

BAD_CSV = {
    "NaN value": ("a,b,label\n" + ROWS + "nan,1.0,0\n", {}, "(NaN/inf)"),
    "inf value": ("a,b,label\n" + ROWS + "1.0,inf,0\n", {}, "(NaN/inf)"),
    "too few columns": ("a,b,label\n" + ROWS + "1.0,0\n", {}, "has 2 columns, expected 3"),
    "too many columns": ("a,b,label\n" + ROWS + "1.0,0,1,7\n", {}, "has 4 columns, expected 3"),
    "label out of range": (
        "a,b,label\n" + ROWS + "1.0,2.0,7\n",
        {"num_classes": 2},
        "label 7 is out of range for num_classes=2",
    ),
    "negative label": ("a,b,label\n" + ROWS + "1.0,2.0,-1\n", {}, "labels must be >= 0"),
    "fractional label": ("a,b,label\n" + ROWS + "1.0,2.0,0.5\n", {}, "must be integers"),
    "text in a feature": ("a,b,label\n" + ROWS + "x,2.0,1\n", {}, "'x' is not a number"),
    "no target column": ("a,b,c\n" + ROWS, {}, "no target column 'label'"),
    "header only": ("a,b,label\n", {}, "needs a header row and at least one data row"),
    "empty file": ("", {}, "is empty"),
}


def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _bad_npz(folder: Path) -> dict[str, tuple[Path, dict[str, Any], str]]:
    x = np.random.default_rng(0).random((40, 3)).astype(np.float32)
    y = np.arange(40) % 2
    nan_x = x.copy()
    nan_x[5, 1] = np.nan
    inf_x = x.copy()
    inf_x[7, 0] = np.inf
    return {
        "NaN in X": (_npz(folder / "nan.npz", X=nan_x, y=y), {}, "contain NaN or inf"),
        "inf in X": (_npz(folder / "inf.npz", X=inf_x, y=y), {}, "contain NaN or inf"),
        "label out of range": (
            _npz(folder / "range.npz", X=x, y=y + 5),
            {"num_classes": 2},
            "out of range for num_classes=2",
        ),
        "fewer labels than samples": (
            _npz(folder / "short.npz", X=x, y=y[:30]),
            {},
            "40 samples but 30 labels",
        ),
        "2-D labels": (_npz(folder / "y2d.npz", X=x, y=np.c_[y, y]), {}, "must be 1-D"),
        "missing y": (_npz(folder / "noy.npz", X=x), {}, "needs arrays 'X' and 'y'"),
        "object array (pickle)": (
            _npz(folder / "obj.npz", X=np.array([{"a": 1}] * 40, dtype=object), y=y),
            {},
            "not a readable .npz",
        ),
        "string X": (_npz(folder / "str.npz", X=np.array(["a"] * 40), y=y), {}, "must be numeric"),
        "empty X": (
            _npz(folder / "empty.npz", X=np.zeros((0, 3)), y=np.zeros(0, dtype=int)),
            {},
            "non-empty",
        ),
        "not an npz": (_csv(folder / "fake.npz", "hello"), {}, "not a readable .npz"),
        "empty file": (_csv(folder / "zero.npz", ""), {}, "is empty"),
    }


@pytest.mark.reliability("hostile", "data files: NaN/inf, column counts, labels, empty (csv/npz)")
def test_malformed_data_files_give_clear_errors(tmp_path: Path, reliability) -> None:
    from neuroplex import DataError, create_dataset

    cases: list[tuple[str, str, Path, dict[str, Any], str]] = []
    for name, (text, options, expected) in BAD_CSV.items():
        path = _csv(tmp_path / f"bad{len(cases)}.csv", text)
        cases.append((f"csv: {name}", "csv", path, options, expected))
    for name, (path, options, expected) in _bad_npz(tmp_path).items():
        cases.append((f"npz: {name}", "npz", path, options, expected))
    good = _csv(tmp_path / "good.csv", "a,b,label\n" + ROWS)
    assert create_dataset("csv", path=str(good)).num_classes == 2  # control
    for name, kind, path, options, expected in cases:
        with pytest.raises(DataError) as info:
            create_dataset(kind, path=str(path), **options)
        assert expected in str(info.value), f"{name}: {info.value}"
        assert str(path) in str(info.value) or path.stem in str(info.value), name
    reliability.tried(len(cases))


@pytest.mark.reliability("hostile", "data files through `neuroplex run`: one line, run 'failed'")
@pytest.mark.parametrize("case", ["NaN value", "too few columns", "label out of range"])
def test_malformed_data_files_through_the_cli(case: str, tmp_path: Path) -> None:
    text, options, expected = BAD_CSV[case]
    path = _csv(tmp_path / "data.csv", text)
    spec = tiny_spec(
        data={"name": "csv", "options": {"path": str(path), **options}},
        model={
            "name": "mlp",
            "hyperparameters": {
                "input_size": 2,
                "output_size": 2,
                "hidden_layers": [{"out_features": 4}],
            },
        },
    )
    out = tmp_path / "run"
    done = run_cli("run", write_spec(tmp_path / "spec.json", spec), "--output", out)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("neuroplex: error:")]
    assert expected in line and "data.csv" in line
    assert manifest(out)["status"] == "failed"
