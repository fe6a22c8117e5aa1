"""transformer, gan, autoencoder: shapes, training steps with the kernel Trainer, errors,
and torch.export for every family."""

from __future__ import annotations

import pytest
import torch
from neuroplex_models import AutoencoderModel, GANModel, TransformerModel

from neuroplex import ConfigError, TrainingConfig, create_model, get_record, list_models
from neuroplex.records import resolve_factory
from neuroplex.training import Trainer

GAN_STEP = get_record("model", "gan").training_step


def test_transformer_reads_digits_rows_as_tokens() -> None:
    model = create_model(
        "transformer", input_dim=8, seq_len=8, d_model=16, nhead=2, num_layers=1, num_classes=10
    ).eval()
    x = torch.rand(5, 64)
    out = model(x)
    assert out.shape == (5, 10)
    torch.testing.assert_close(out, model(x.reshape(5, 8, 8)))
    seq = TransformerModel(input_dim=3, seq_len=4, d_model=8, nhead=2, head="sequence")
    assert seq(torch.rand(2, 4, 3)).shape == (2, 4, 2)


def test_transformer_positions_matter() -> None:
    torch.manual_seed(0)
    model = TransformerModel(input_dim=2, seq_len=5, d_model=8, nhead=2, dropout=0.0).eval()
    x = torch.rand(1, 5, 2)
    flipped = x.flip(1)
    assert not torch.allclose(model(x), model(flipped)), "positional encoding has no effect"


def test_gan_generate_is_seeded_and_conditional() -> None:
    gan = GANModel(latent_dim=3, data_dim=6, generator_layers=[8], discriminator_layers=[8])
    a, b = gan.generate(4, seed=1), gan.generate(4, seed=1)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, gan.generate(4, seed=2))
    assert gan(a).shape == (4, 1)
    cond = GANModel(latent_dim=3, data_dim=6, num_classes=3, generator_layers=[8])
    s0 = cond.generate(2, seed=0, labels=torch.tensor([0, 0]))
    s1 = cond.generate(2, seed=0, labels=torch.tensor([1, 1]))
    assert not torch.equal(s0, s1), "labels do not condition the generator"
    with pytest.raises(Exception, match=r"labels must have shape \(2,\)"):
        cond.generate(2, labels=torch.tensor([0]))


def _blobs(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = (0.7 + 0.05 * torch.randn(n, 4, generator=gen)).clamp(0, 1)
    return x, torch.zeros(n, dtype=torch.long)


def test_gan_step_trains_both_players_with_the_trainer() -> None:
    torch.manual_seed(0)
    gan = GANModel(latent_dim=2, data_dim=4, generator_layers=[16], discriminator_layers=[16])
    before = gan.generate(256, seed=0).mean().item()
    g0 = [p.detach().clone() for p in gan.generator.parameters()]
    d0 = [p.detach().clone() for p in gan.discriminator.parameters()]
    config = TrainingConfig(epochs=30, batch_size=16, learning_rate=5e-3, progress=False)
    history = Trainer(gan, config, step=resolve_factory(GAN_STEP)()).train(_blobs(), _blobs(32))
    assert len(history) == 30
    assert all(not torch.equal(a, b) for a, b in zip(g0, gan.generator.parameters(), strict=True))
    assert all(
        not torch.equal(a, b) for a, b in zip(d0, gan.discriminator.parameters(), strict=True)
    )
    after = gan.generate(256, seed=0).mean().item()
    assert abs(after - 0.7) < abs(before - 0.7), (before, after)
    metrics = gan.evaluate(_blobs(32)[0])
    assert {"d_loss", "g_loss", "loss", "d_real_accuracy"} <= set(metrics.to_dict())


def test_autoencoder_step_learns_and_scores_anomalies() -> None:
    torch.manual_seed(0)
    ae = AutoencoderModel(input_dim=4, encoder_layers=[8], latent_dim=2)
    x, _ = _blobs(128)
    before = ae.evaluate(x)["reconstruction_error"]
    step = get_record("model", "autoencoder").training_step
    assert step == "neuroplex_models.steps:AutoencoderStep"
    config = TrainingConfig(epochs=40, batch_size=32, learning_rate=1e-2, progress=False)
    Trainer(ae, config).train((x, None))  # the model names its own step
    after = ae.evaluate(x)["reconstruction_error"]
    assert after < before / 4, (before, after)
    outliers = torch.rand(8, 4) * 0.2
    assert ae.anomaly_score(outliers).mean() > 5 * ae.anomaly_score(x).mean()
    assert ae.anomaly_score(x).shape == (128,)


def test_vae_samples_only_in_training() -> None:
    vae = AutoencoderModel(input_dim=6, encoder_layers=[5], latent_dim=2, variational=True)
    x = torch.rand(3, 6)
    torch.testing.assert_close(vae.reconstruct(x), vae.reconstruct(x))
    assert vae.encode(x).shape == (3, 2) and vae.decode(vae.encode(x)).shape == (3, 6)
    assert "kl" in vae.evaluate(x)


def test_report_samples_are_images() -> None:
    x = torch.rand(5, 16)
    gan = GANModel(latent_dim=2, data_dim=16, image_shape=[4, 4], generator_layers=[8])
    samples = gan.report_samples(x)
    assert {k: v.shape for k, v in samples.items()} == {
        "Real samples": (5, 4, 4),
        "Generated samples": (5, 4, 4),
    }
    ae = AutoencoderModel(input_dim=16, encoder_layers=[8], latent_dim=2, image_shape=[1, 4, 4])
    assert ae.report_samples(x)["Reconstructions"].shape == (5, 4, 4)
    assert AutoencoderModel(input_dim=16).report_samples(x) == {}


@pytest.mark.parametrize(
    ("family", "hp", "match"),
    [
        ("transformer", {"d_model": 10, "nhead": 4}, r"transformer\.nhead.*valid: \[1, 2, 5, 10\]"),
        ("transformer", {"head": "pooled"}, r"transformer\.head.*'classification', 'sequence'"),
        ("transformer", {"seq_len": 0}, r"transformer\.seq_len.*positive"),
        ("gan", {"latent_dim": -2}, r"gan\.latent_dim.*positive"),
        ("gan", {"data_dim": 10, "image_shape": [3, 3]}, r"gan\.image_shape.*product data_dim"),
        (
            "gan",
            {"generator_layers": [8, {"out_features": 4, "activation": "nope"}]},
            r"gan\.generator_layers\[1\].*installed activations",
        ),
        ("autoencoder", {"latent": 3}, r"autoencoder\.latent.*did you mean 'latent_dim'"),
        ("autoencoder", {"variational": "yes"}, r"autoencoder\.variational"),
    ],
)
def test_bad_hyperparameters(family: str, hp: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model(family, **hp)


@pytest.mark.parametrize(
    ("family", "hp", "shape", "match"),
    [
        ("transformer", {"input_dim": 8, "seq_len": 8, "d_model": 8}, (2, 60), r"\(N, 64\)"),
        ("cnn", {"input_size": [8, 8]}, (2, 60), "C\\*H\\*W = 64"),
        ("mlp", {"input_size": 5}, (2, 4), "input_size = 5"),
    ],
)
def test_wrong_input_shapes_say_what_is_expected(
    family: str, hp: dict[str, object], shape: tuple[int, ...], match: str
) -> None:
    from neuroplex import DataError

    with pytest.raises(DataError, match=match):
        create_model(family, **hp)(torch.rand(shape))


def test_config_of_another_family_is_refused() -> None:
    from neuroplex_models import CNNModel, ModelConfig

    with pytest.raises(ConfigError, match="builds family 'cnn'"):
        CNNModel(ModelConfig(name="mlp"))


@pytest.mark.parametrize("family", list_models())
def test_torch_export_every_family(family: str) -> None:
    record = get_record("model", family)
    torch.manual_seed(0)
    model = create_model(family, **record.example_config).eval()
    x = torch.rand(*record.example_input)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    x2 = torch.rand(6, *record.example_input[1:])
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x2), model(x2))
    for graph in record.export_graphs:
        if graph != "model":
            assert isinstance(getattr(model, graph), torch.nn.Module)


def test_gan_exports_to_onnx_with_its_examples(tmp_path: object) -> None:
    from pathlib import Path

    from neuroplex.onnx import export_onnx

    record = get_record("model", "gan")
    gan = create_model("gan", **record.example_config)
    x = torch.rand(4, record.example_config["data_dim"])
    result = export_onnx(gan, gan.export_examples(x), Path(str(tmp_path)) / "gan.onnx")
    assert [g.graph for g in result.graphs] == ["generator", "discriminator"]
    assert all(g.report is not None and g.report.passed for g in result.graphs)
