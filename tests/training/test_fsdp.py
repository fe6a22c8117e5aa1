"""fsdp in one process (a gloo group of one, formed by the Trainer as under torchrun): the
sharding policy's checks, the weights back in the caller's module, sharded checkpoints
(verified, safe to load) and exact resume from them. Two processes: test_distributed.py."""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch

from neuroplex import CheckpointError, ConfigError, TrainingConfig
from neuroplex.training import SupervisedStep, Trainer, find_checkpoints, load_checkpoint

pytestmark = [
    pytest.mark.requires_plugins("neuroplex-optim"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed"),
]


@pytest.fixture
def group_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    yield
    assert not torch.distributed.is_initialized()  # the Trainer released its group


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 6, generator=gen)
    return x, x[:, :3].argmax(1)


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _per_layer(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [model[0], model[2]]


def _config(**changes: object) -> TrainingConfig:
    base: dict[str, object] = {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.05,
        "optimizer": "adam",
        "strategy": "fsdp",
        "seed": 3,
        "progress": False,
        "ddp_timeout_s": 30.0,
    }
    return TrainingConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_a_model_without_a_sharding_policy_is_one_clear_error(group_of_one: None) -> None:
    with pytest.raises(ConfigError, match="needs a sharding policy and model 'Sequential'"):
        Trainer(_model(), _config()).train(_data())


def test_a_policy_must_give_distinct_sub_modules(group_of_one: None) -> None:
    with pytest.raises(ConfigError, match="not a sub-module of the model"):
        Trainer(_model(), _config(), sharding=lambda m: [m]).train(_data())


def test_a_step_that_reaches_into_the_model_cannot_train_under_fsdp(group_of_one: None) -> None:
    class OwnStep(SupervisedStep):
        forward_wrappable = False

    with pytest.raises(ConfigError, match="needs a training step that only calls the model"):
        Trainer(_model(), _config(), step=OwnStep(), sharding=_per_layer).train(_data())


def test_fsdp_trains_the_callers_module_and_checkpoints_in_shards(
    group_of_one: None, tmp_path: Path
) -> None:
    x, y = _data()
    ref = _model()
    Trainer(ref, _config(strategy="single")).train((x, y), (x[:8], y[:8]))
    model = _model()
    seen: list[str] = []

    class Seen:
        def on_train_start(self, trainer: Trainer) -> None:
            seen.append(type(trainer.model).__name__)
            seen.append(str(next(model.parameters()).device))  # the caller's, meanwhile

    ckpt = tmp_path / "ck"
    config = _config(checkpoint_dir=str(ckpt), early_stopping_patience=5)
    Trainer(model, config, sharding=_per_layer, callbacks=[Seen()]).train((x, y), (x[:8], y[:8]))
    assert seen == ["FSDPSequential", "meta"]
    # one process: the same arithmetic as strategy "single" (sharding over 1 rank splits nothing)
    for (name, a), b in zip(ref.state_dict().items(), model.state_dict().values(), strict=True):
        assert type(b) is torch.Tensor and b.device.type == "cpu", name
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    (info,) = find_checkpoints(ckpt)
    shards = ckpt / "epoch-0002.dcp"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "epoch-0002.dcp",
        "epoch-0002.json",
        "epoch-0002.pt",
    ]
    listed = json.loads(info.path.with_suffix(".json").read_text())["sharded"]
    assert listed["dir"] == shards.name
    assert set(listed["files"]) == {p.name for p in shards.iterdir()}
    state = load_checkpoint(info.path)  # the full weights, read in one process
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value), key

    # a changed shard is refused before anything is unpickled
    victim = next(p for p in shards.iterdir() if p.suffix == ".distcp")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="size or sha256 differs from the manifest"):
        load_checkpoint(info.path)


def test_an_fsdp_run_resumed_from_its_sharded_checkpoint_is_bit_identical(
    group_of_one: None, tmp_path: Path
) -> None:
    """2 epochs, then 2 more from the epoch-2 checkpoint == 4 epochs at once (Adam moments,
    RNG and position come back), past the leftovers of a crash in the middle of writing epoch
    3; a full (single/ddp) checkpoint does not resume under fsdp."""
    x, y = _data()
    full = _model()
    Trainer(full, _config(epochs=4, checkpoint_dir=str(tmp_path / "a")), sharding=_per_layer).train(
        (x, y), (x[:8], y[:8])
    )
    part = tmp_path / "b"
    Trainer(_model(), _config(checkpoint_dir=str(part)), sharding=_per_layer).train(
        (x, y), (x[:8], y[:8])
    )
    # what a crash while writing epoch 3 leaves (shards half written, no manifest) is not a
    # checkpoint: resume takes epoch 2, and the next save clears the leftovers
    (part / "epoch-0003.dcp.partial").mkdir()
    (part / "epoch-0003.dcp.partial" / "__0_0.distcp").write_bytes(b"half")
    (part / "epoch-0003.pt").write_bytes(b"half")
    resumed = _model()
    trainer = Trainer(resumed, _config(epochs=4, checkpoint_dir=str(part)), sharding=_per_layer)
    history = trainer.train((x, y), (x[:8], y[:8]), resume="last")
    assert history.resumed_from is not None and history.resumed_from.endswith("epoch-0002.pt")
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert not list(part.glob("*.partial"))

    single = tmp_path / "c"
    Trainer(_model(), _config(strategy="single", checkpoint_dir=str(single))).train((x, y))
    with pytest.raises(CheckpointError, match="resume it under the strategy that wrote it"):
        Trainer(_model(), _config(epochs=3, checkpoint_dir=str(single)), sharding=_per_layer).train(
            (x, y), resume="last"
        )


def test_shard_metadata_that_would_run_code_is_refused(tmp_path: Path) -> None:
    from neuroplex.training.sharded import safe_reader

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    buffer = io.BytesIO()
    pickle.dump(Boom(), buffer)
    (tmp_path / ".metadata").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="is not allowed in checkpoint metadata"):
        safe_reader(tmp_path).read_metadata()


def test_the_first_party_families_give_a_policy_and_the_gan_says_it_has_none() -> None:
    pytest.importorskip("neuroplex_models")
    from neuroplex import create_model
    from neuroplex.records import ModelRecord
    from neuroplex.registry import get_record
    from neuroplex.run.build import sharding_policy

    for family in ("mlp", "cnn", "transformer"):
        record = get_record("model", family)
        assert isinstance(record, ModelRecord)
        model = create_model(family, **record.example_config)
        units = list(sharding_policy(record, "fsdp")(model))
        assert units and all(any(u is m for m in model.modules()) for u in units), family
    assert sharding_policy(get_record("model", "mlp"), "ddp") is None  # type: ignore[arg-type]
    gan = get_record("model", "gan")
    with pytest.raises(ConfigError, match="needs a sharding policy and model 'gan' gives none"):
        sharding_policy(gan, "fsdp")  # type: ignore[arg-type]
