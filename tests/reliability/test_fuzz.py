"""Fuzzing the spec loader and the command line with hypothesis.

* Specs: a valid spec dict mutated (keys deleted, unknown keys inserted, values swapped for
  other types, garbage nested in), random TOML/JSON text and mutated valid TOML: the loader
  returns a ``RunSpec`` or raises ``ConfigError`` (with a dotted path for dict input) — never
  another exception, never a hang.
* The CLI: random argv from the real vocabulary of commands, options and values: ``main``
  returns 0, 1 or 2 or exits through argparse with 0 or 2; never a traceback.

Derandomized (the same examples on every CI run); ``NEUROPLEX_FUZZ_EXAMPLES`` scales every
budget (default 1.0, e.g. ``NEUROPLEX_FUZZ_EXAMPLES=20`` for a long local hunt), and
``NEUROPLEX_FUZZ_RANDOM=1`` draws new examples instead.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from neuroplex.config import RunSpec, load_spec

SCALE = float(os.environ.get("NEUROPLEX_FUZZ_EXAMPLES", "1"))
DERANDOMIZE = os.environ.get("NEUROPLEX_FUZZ_RANDOM", "") in ("", "0")


def budget(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        derandomize=DERANDOMIZE,
        deadline=timedelta(seconds=5),  # a hang is a failure, not a slow test
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


VALID: dict[str, Any] = {
    "name": "fuzz",
    "output_dir": "runs",
    "data": {"name": "digits", "options": {"scale": "minmax"}, "val_fraction": 0.1},
    "model": {
        "name": "mlp",
        "hyperparameters": {
            "input_size": 64,
            "output_size": 10,
            "hidden_layers": [{"out_features": 8}],
        },
    },
    "training": {
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 0.01,
        "optimizer": "adam",
        "optimizer_params": {"betas": [0.9, 0.99]},
        "scheduler": "cosine",
        "grad_clip_norm": 1.0,
        "precision": "fp32",
        "nonfinite_policy": "skip",
        "early_stopping_patience": 3,
        "seed": 1,
        "device": "cpu",
    },
    "export": {"enabled": True, "opset": 18, "atol": 1e-5},
    "analysis": {"analyzers": [{"name": "fgsm", "options": {"epsilon": 0.1}, "n_samples": 8}]},
    "feedback": {
        "sinks": [{"name": "sqlite", "options": {}}],
        "policies": [{"name": "adversarial", "options": {"epsilon": 0.1}, "max_rounds": 2}],
        "sink_timeout_s": 5.0,
    },
    "plugins": {"enable": None, "disable": ["x"], "prefer": {"model:mlp": "a"}, "strict": False},
}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "mlp", "adam", "fp16", "ddp", "rollback", "../../etc", "\x00"])
)
GARBAGE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.none(), inner, max_size=3)
        | st.frozensets(st.integers(), max_size=2)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    spec: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(spec)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "insert", "replace", "swap", "nest", "wrap"]))
        if path == ():
            if op in ("replace", "swap"):
                spec = draw(GARBAGE)
                continue
            path_parent, key = None, None
        else:
            path_parent, key = path[:-1], path[-1]
        target = _get(spec, path)
        parent = _get(spec, path_parent) if path_parent is not None else None
        if op == "delete" and parent is not None:
            del parent[key]
        elif op == "insert" and isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=10))] = draw(GARBAGE)
        elif op == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(GARBAGE))
        elif op == "replace" and parent is not None:
            parent[key] = draw(GARBAGE)
        elif op == "swap" and parent is not None:  # the same value, another type
            value = parent[key]
            parent[key] = draw(
                st.sampled_from(
                    [str(value), [value], {"value": value}, None, True, 1.5, -1, 0, 2**64]
                )
            )
        elif op == "nest" and parent is not None:
            parent[key] = {"nested": target, draw(st.text(max_size=5)): draw(GARBAGE)}
        elif op == "wrap" and parent is not None:
            parent[key] = [target, draw(GARBAGE)]
    return spec


def _check_dict(data: Any) -> None:
    from neuroplex import ConfigError

    error: ConfigError | None = None
    try:
        spec = load_spec(data) if isinstance(data, dict) else _load_any(data)
    except ConfigError as exc:
        error = exc
    if error is None:
        assert isinstance(spec, RunSpec)
    elif isinstance(data, dict):
        assert error.path, f"ConfigError without a dotted path: {error}"
        assert str(error).startswith(f"{error.path}: ")


def _load_any(data: Any) -> Any:
    from neuroplex.config import structure

    return structure(data, RunSpec)


@pytest.mark.reliability("control", "the unmutated spec loads")
def test_the_valid_spec_is_valid() -> None:
    assert isinstance(load_spec(VALID), RunSpec)


@pytest.mark.reliability("hostile", "fuzzed spec dicts (mutated valid spec)")
@budget(2000)
@given(spec=mutated_specs())
def test_mutated_specs_give_only_config_errors(spec: Any, reliability) -> None:
    reliability.tried(1)
    _check_dict(spec)


@pytest.mark.reliability("hostile", "fuzzed spec dicts (random structures)")
@budget(500)
@given(spec=st.dictionaries(st.sampled_from([*VALID, "x"]), GARBAGE, max_size=6) | GARBAGE)
def test_random_structures_give_only_config_errors(spec: Any, reliability) -> None:
    reliability.tried(1)
    _check_dict(spec)


VALID_TOML = """\
name = "fuzz"
[data]
name = "digits"
val_fraction = 0.1
[model]
name = "mlp"
[model.hyperparameters]
input_size = 64
hidden_layers = [{ out_features = 8, activation = "relu" }]
[training]
epochs = 2
learning_rate = 1e-2
precision = "bf16"
[[analysis.analyzers]]
name = "fgsm"
options = { epsilon = 0.1 }
[[feedback.sinks]]
name = "sqlite"
"""


@st.composite
def mutated_text(draw: st.DrawFn, base: str) -> str:
    text = base
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "duplicate", "digits", "nest"]))
        if op == "insert":
            text = text[:i] + draw(st.text(max_size=8)) + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 40)) :]
        elif op == "duplicate":
            lines = text.splitlines(keepends=True)
            j = draw(st.integers(0, max(0, len(lines) - 1)))
            text = "".join(lines[: j + 1] + lines[j:])
        elif op == "digits":  # integers past Python's int-from-string limit
            text = text[:i] + "1" * draw(st.sampled_from([5, 4301, 5000])) + text[i:]
        else:  # deep nesting
            depth = draw(st.sampled_from([3, 200, 3000]))
            text = text[:i] + "[" * depth + "1" + "]" * depth + text[i:]
    return text


def _check_file(text: str, suffix: str) -> None:
    from neuroplex import ConfigError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"spec{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            spec = load_spec(path)
        except ConfigError:
            return
        assert isinstance(spec, RunSpec)


@pytest.mark.reliability("control", "the unmutated TOML loads")
def test_the_valid_toml_is_valid() -> None:
    tomllib.loads(VALID_TOML)
    _check_file(VALID_TOML, ".toml")


@pytest.mark.reliability("hostile", "fuzzed spec files (random and mutated TOML / JSON text)")
@budget(700)
@given(
    text=st.text(max_size=200) | mutated_text(VALID_TOML) | mutated_text(json.dumps(VALID)),
    suffix=st.sampled_from([".toml", ".json", ".TOML", ""]),
)
@example(text="epochs = " + "9" * 5000, suffix=".toml")
@example(text='{"name": ' + "1" * 5000 + "}", suffix=".json")
@example(text="a = " + "[" * 5000 + "]" * 5000, suffix=".toml")
def test_random_spec_files_give_only_config_errors(text: str, suffix: str, reliability) -> None:
    reliability.tried(1)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    _check_file(text, suffix)


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def cli_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the random argv may name: none of them is a usable spec, model or checkpoint."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    (root / "dir").mkdir()
    (root / "garbage.toml").write_text("[[[ not toml")
    (root / "bad.json").write_text('{"data": 3}')
    (root / "random.onnx").write_bytes(os.urandom(256))
    (root / "random.npy").write_bytes(os.urandom(64))
    (root / "random.pt").write_bytes(os.urandom(64))
    return root


COMMANDS = ["plugins", "list", "doctor", "run", "export", "verify", "predict", "analyze", "report"]
OPTIONS = [
    "--help", "-h", "--version", "--debug", "--strict-plugins", "--json", "--kind", "--resume",
    "--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--max-restarts", "--output", "-o",
    "--epochs", "--against", "--analyzer", "-a", "--data",
    "--n-samples", "--", "-", "--unknown",
]  # fmt: skip
VALUES = [
    "layer", "model", "dataset", "feedback_sink", "nonsense", "*", "m*", "[", "fgsm", "digits",
    "0", "1", "2", "-1", "1e9", "3.5", "", " ", "ünïcode", "a" * 300, "\t",
]  # fmt: skip
FILES = [
    "dir", "garbage.toml", "bad.json", "random.onnx", "random.npy", "random.pt", "missing.toml",
    "missing.onnx", "dir/missing/deeper.npz",
]  # fmt: skip


@st.composite
def argvs(draw: st.DrawFn, root: Path) -> list[str]:
    token = st.sampled_from(OPTIONS) | st.sampled_from(VALUES)
    token |= st.sampled_from(FILES).map(lambda f: str(root / f))
    head = draw(st.sampled_from([*COMMANDS, *OPTIONS[:3]]) | token)
    rest = draw(st.lists(token | st.text(max_size=6), max_size=6))
    return [head, *rest]


@pytest.mark.reliability("hostile", "fuzzed command lines (random argv)")
def test_random_argv_exits_cleanly(cli_sandbox: Path, reliability, capsys) -> None:
    from neuroplex.cli import main

    seen: list[list[str]] = []

    @budget(400)
    @given(argv=argvs(cli_sandbox))
    @example(argv=["run", str(cli_sandbox / "garbage.toml"), "--nproc", "0"])
    @example(argv=["report", str(cli_sandbox / "dir")])
    @example(argv=["export", str(cli_sandbox / "random.pt"), "-o", str(cli_sandbox / "x.onnx")])
    @example(argv=["predict", str(cli_sandbox / "random.onnx"), str(cli_sandbox / "random.npy")])
    def check(argv: list[str]) -> None:
        seen.append(argv)
        capsys.readouterr()
        try:
            code: Any = main(argv)
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = ("exit", exc.code)
        assert code in (0, 1, 2, ("exit", 0), ("exit", 2), ("exit", None)), f"{argv}: {code!r}"
        err = capsys.readouterr().err
        assert "Traceback" not in err, f"{argv}: {err}"

    cwd = Path.cwd()
    os.chdir(cli_sandbox / "dir")  # anything written by default goes here
    try:
        check()
    finally:
        os.chdir(cwd)
    reliability.tried(len(seen))
    assert not (cli_sandbox / "x.onnx").exists()


@pytest.mark.reliability("hostile", "out-of-range numbers on the command line")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--nproc", "-2"], "--nproc must be >= 1, got -2"),
        (["--nproc", "2"], "training.strategy: --nproc 2 trains in several processes, which needs"),
        (["--nnodes", "0"], "--nnodes must be >= 1, got 0"),
        (
            ["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "127.0.0.1:29511"],
            "--node-rank 2 is out of range for --nnodes 2: use 0..1",
        ),
        (["--node-rank", "-1"], "--node-rank -1 is out of range for --nnodes 1: use 0..0"),
        (["--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
        (
            ["--nnodes", "2", "--rdzv-endpoint", "nohost"],
            "--rdzv-endpoint 'nohost' is not HOST:PORT",
        ),
        (["--rdzv-endpoint", "127.0.0.1:29511"], "--rdzv-endpoint is for several nodes"),
        (["--max-restarts", "-1"], "--max-restarts must be >= 0, got -1"),
        (["--epochs", "0"], "epochs: must be > 0, got 0"),
        (["--epochs", "-3"], "epochs: must be > 0, got -3"),
    ],
)
def test_out_of_range_numbers_are_refused_before_any_work(
    args: list[str], message: str, tmp_path: Path, capsys
) -> None:
    from neuroplex.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(VALID))
    out = tmp_path / "run"
    assert main(["run", str(spec), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert f"neuroplex: error: {message}" in err and "Traceback" not in err
    assert not (out / "checkpoints").exists()
