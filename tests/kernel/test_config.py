"""Typed config: structuring errors name the dotted path; round trips are exact."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroplex import ConfigError
from neuroplex.config import (
    AnalysisConfig,
    AnalyzerSpec,
    DataConfig,
    ModelConfig,
    RunSpec,
    TrainingConfig,
    load_spec,
    structure,
    unstructure,
)

BASE = {"data": {"name": "digits"}, "model": {"name": "cnn"}}


def spec(**sections: object) -> dict[str, object]:
    return {**BASE, **sections}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            spec(training={"epoch": 3}),
            "training.epoch: unknown key; valid keys: epochs,",
        ),
        (spec(training={"epochs": "x"}), "training.epochs: expected int, got 'x' (str)"),
        (spec(training={"epochs": 0}), "training.epochs: must be > 0, got 0"),
        (spec(training={"learning_rate": -1.0}), "training.learning_rate: must be > 0, got -1.0"),
        (spec(training={"use_gpu": "yes"}), "training.use_gpu: expected bool, got 'yes' (str)"),
        (
            spec(training={"precision": "fp8"}),
            "training.precision: 'fp8' is not one of 'fp32', 'bf16', 'fp16'",
        ),
        (
            spec(analysis={"analyzers": [{"name": "fgsm"}, {"nme": "x"}]}),
            "analysis.analyzers[1].nme: unknown key; valid keys: name, options, backend, "
            "n_samples, id, models; did you mean 'name'?",
        ),
        (
            spec(analysis={"analyzers": [{"name": "fgsm"}, {"name": "fgsm", "backend": "torch"}]}),
            "analysis.analyzers[1].id: 'fgsm' is also the id of analyzers[0] (fgsm on onnx); an "
            "entry's id defaults to its analyzer name, so give one of the two its own id, "
            'e.g. id = "fgsm-torch"',
        ),
        (
            spec(analysis={"analyzers": [{"name": "pgd", "id": "a"}, {"name": "fgsm", "id": "a"}]}),
            "analysis.analyzers[1].id: 'a' is also the id of analyzers[0] (pgd on onnx)",
        ),
        (
            spec(analysis={"analyzers": [{"name": "fgsm", "id": ""}]}),
            "analysis.analyzers[0].id: must be a non-empty name, got ''",
        ),
        (spec(plugins={"prefer": {"model:cnn": 1}}), "plugins.prefer.model:cnn: expected a string"),
        ({"data": {"name": "digits"}}, "model: required key is missing"),
        (
            spec(data={"name": "digits", "val_fraction": 1.5}),
            "data.val_fraction: must be in [0, 1)",
        ),
        (spec(model={"name": ""}), "model.name: must be a non-empty name, got ''"),
        (spec(modell={}), "modell: unknown key; valid keys: data, model, training"),
        (spec(training=[1, 2]), "training: expected a table/dict for TrainingConfig, got list"),
    ],
)
def test_bad_specs_name_the_dotted_path(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        structure(data, RunSpec)
    assert str(err.value).startswith(message), str(err.value)


def test_load_spec_from_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[data]\nname = "digits"\n[model]\nname = "cnn"\n[model.hyperparameters]\n'
        'input_channels = 1\n[training]\nepochs = 2\noptimizer = "Adam"\n'
    )
    from_toml = load_spec(toml)
    assert from_toml.model == ModelConfig("cnn", {"input_channels": 1})
    assert from_toml.training.epochs == 2
    js = tmp_path / "s.json"
    js.write_text(json.dumps(unstructure(from_toml)))
    assert load_spec(js) == from_toml


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("[data\nname=", ".toml", "not valid toml"),
        ("{", ".json", "not valid json"),
    ],
)
def test_unparsable_files_are_config_errors(tmp_path, content, suffix, message) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_spec(path)


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml")


def test_seed_training_config_fields() -> None:
    config = TrainingConfig(
        epochs=50, batch_size=32, learning_rate=0.001, optimizer="adam", use_gpu=True
    )
    assert config.resolved_device() == "auto"
    assert TrainingConfig(use_gpu=False).resolved_device() == "cpu"
    assert TrainingConfig(device="cuda").resolved_device() == "cuda"


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
json_scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    names,
    st.booleans(),
)
hyper = st.dictionaries(names, st.one_of(json_scalars, st.lists(json_scalars, max_size=3)))
positive_int = st.integers(1, 10_000)
positive_float = st.floats(1e-8, 10.0, allow_nan=False)

training = st.builds(
    TrainingConfig,
    epochs=positive_int,
    batch_size=positive_int,
    learning_rate=positive_float,
    optimizer=names,
    use_gpu=st.booleans(),
    device=st.none() | names,
    optimizer_params=hyper,
    grad_clip_norm=st.none() | positive_float,
    precision=st.sampled_from(["fp32", "bf16", "fp16"]),
    accumulate_grad_batches=st.integers(1, 16),
    early_stopping_patience=st.none() | st.integers(1, 20),
    seed=st.integers(0, 2**31),
    deterministic=st.booleans(),
    nonfinite_policy=st.sampled_from(["skip", "stop", "rollback"]),
    strategy=st.sampled_from(["single", "ddp"]),
    progress=st.none() | st.booleans(),
)
run_specs = st.builds(
    RunSpec,
    data=st.builds(
        DataConfig,
        name=names,
        options=hyper,
        val_fraction=st.floats(0, 0.5),
        test_fraction=st.floats(0, 0.5),
    ),
    model=st.builds(ModelConfig, name=names, hyperparameters=hyper),
    training=training,
    analysis=st.builds(
        AnalysisConfig,
        analyzers=st.lists(
            st.builds(AnalyzerSpec, name=names, options=hyper, id=st.none() | names),
            max_size=3,
            unique_by=lambda a: a.key,
        ),
    ),
    name=names,
)


@settings(max_examples=200, deadline=None)
@given(run_specs)
def test_round_trip(run_spec: RunSpec) -> None:
    plain = unstructure(run_spec)
    assert structure(plain, RunSpec) == run_spec
    assert structure(json.loads(json.dumps(plain)), RunSpec) == run_spec
