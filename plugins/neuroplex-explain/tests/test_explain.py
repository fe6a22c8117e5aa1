"""neuroplex-explain: seed API, hand-computed statistics, Captum oracles, failure paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from neuroplex_explain import ModelExplainability

import neuroplex
from neuroplex.errors import ConfigError, DataError
from neuroplex.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    distribution = "neuroplex-explain"


def test_seed_snippet_runs_as_written(digits, digits_mlp):
    _, _, x, _ = digits
    model = digits_mlp
    from neuroplex_explain import ModelExplainability

    explainer = ModelExplainability(model)
    activations = explainer.get_activations(x)
    stats = explainer.analyze_layer_activations(x)
    dead_neurons = explainer.detect_dead_neurons(x)
    bias_stats = explainer.detect_bias(x)
    assert list(activations) == ["0", "1", "2"]
    assert stats.names == ("0", "1", "2")
    assert dead_neurons.layers[0].name == "1"  # the ReLU module
    assert bias_stats.reference == "uniform"
    assert bias_stats.kl_divergence < 0.1  # digits are balanced; so are the predictions


def test_activations_are_copies_unharmed_by_inplace_relu(digits, digits_cnn):
    _, _, x, _ = digits
    images = x[:32].view(-1, 1, 8, 8)
    acts = ModelExplainability(digits_cnn).get_activations(images)
    conv = digits_cnn[0]
    expected = torch.nn.functional.conv2d(images, conv.weight, conv.bias, padding=1)
    assert torch.allclose(acts["0"], expected, atol=1e-6)
    assert float(acts["0"].min()) < 0  # the in-place ReLU did not clip the captured conv output
    assert float(acts["1"].min()) == 0.0
    assert not acts["0"].requires_grad
    acts["4"].zero_()  # a copy: the model's next output is unaffected
    assert not torch.equal(digits_cnn(images), acts["4"])


def test_activations_of_selected_layers_and_shared_module():
    lin = torch.nn.Linear(4, 4)

    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(self.lin(x))

    acts = ModelExplainability(Twice()).get_activations(torch.rand(3, 4))
    assert list(acts) == ["lin", "lin#1"]
    assert torch.allclose(acts["lin#1"], lin(acts["lin"]))
    seq = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    assert list(ModelExplainability(seq).get_activations(torch.rand(2, 4), layers=["2"])) == ["2"]
    with pytest.raises(ConfigError, match="unknown layer"):
        ModelExplainability(seq).get_activations(torch.rand(2, 4), layers=["fc9"])


def test_layer_statistics_match_hand_computation(digits, digits_mlp):
    _, _, x, _ = digits
    stats = ModelExplainability(digits_mlp).analyze_layer_activations(x)
    pre = (x @ digits_mlp[0].weight.T + digits_mlp[0].bias).detach().double()
    s = stats["0"]
    assert s.shape == (32,)
    assert s.mean == pytest.approx(float(pre.mean()), abs=1e-6)
    assert s.std == pytest.approx(float(pre.std(unbiased=False)), abs=1e-6)
    assert s.min == pytest.approx(float(pre.min()), abs=1e-5)
    assert s.negative_fraction == pytest.approx(float((pre < 0).double().mean()))
    assert s.unit_max == pytest.approx(pre.max(dim=0).values.tolist(), abs=1e-5)
    relu = stats["1"]
    assert relu.negative_fraction == 0.0
    assert relu.zero_fraction == pytest.approx(s.negative_fraction, abs=1e-3)
    assert stats.to_dict()["layers"]["1"]["zero_fraction"] == relu.zero_fraction
    with pytest.raises(AttributeError):
        relu.mean = 0.0  # type: ignore[misc]


def _model_with_dead_units() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(6, 4))
        model[0].bias.zero_()
        model[0].bias[[2, 5]] = -100.0  # units 2 and 5 never fire
        model[0].bias[4] = 0.5  # unit 4 (no weights) always fires
        model[0].bias[1] = -0.9  # unit 1 fires only when x[:, 1] > 0.9
    return model


def test_dead_neurons_found_and_batch_dependent():
    model = _model_with_dead_units()
    low = torch.full((5, 4), 0.5)
    report = ModelExplainability(model).detect_dead_neurons(low)
    assert report["1"].dead_indices == (1, 2, 5)
    assert report["1"].dead_fraction == pytest.approx(0.5)
    high = torch.cat([low, torch.tensor([[0.5, 1.0, 0.5, 0.5]])])
    assert ModelExplainability(model).detect_dead_neurons(high)["1"].dead_indices == (2, 5)
    loose = ModelExplainability(model).detect_dead_neurons(high, tol=0.2)
    assert loose["1"].dead_indices == (1, 2, 5)  # unit 1 peaks at 0.1 <= tol
    everything = ModelExplainability(model).detect_dead_neurons(low, layers=["0", "2"])
    assert [layer.name for layer in everything.layers] == ["0", "2"]
    assert report.total_units == 6
    assert report.to_dict()["layers"]["1"]["dead_indices"] == [1, 2, 5]


class _Fixed(torch.nn.Module):
    """Returns the given logits row i for input row i (input holds the row index)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()]


def _fixed_predictions(pred: list[int], n_classes: int) -> tuple[torch.nn.Module, torch.Tensor]:
    logits = torch.nn.functional.one_hot(torch.tensor(pred), n_classes).float() * 2 - 0.5
    x = torch.arange(len(pred), dtype=torch.float32)[:, None]
    return _Fixed(logits), x


def test_bias_numbers_by_hand():
    model, x = _fixed_predictions([0, 0, 0, 1, 1, 2], 3)
    report = ModelExplainability(model).detect_bias(x)
    p = np.array([3, 2, 1]) / 6
    assert report.predicted_distribution == pytest.approx(tuple(p))
    assert report.kl_divergence == pytest.approx(float(np.sum(p * np.log(p * 3))))
    assert report.total_variation == pytest.approx(0.5 * float(np.abs(p - 1 / 3).sum()))
    assert report.mean_logit_per_class == pytest.approx((0.5, 1 / 6, -1 / 6))
    y = [0, 1, 0, 1, 1, 1]
    with_labels = ModelExplainability(model).detect_bias(x, y=y)
    assert with_labels.reference == "label_prior"
    assert with_labels.reference_distribution == pytest.approx((2 / 6, 4 / 6, 0.0))
    assert with_labels.kl_divergence == math.inf  # class 2 predicted, never a label
    assert with_labels.accuracy == pytest.approx(4 / 6)


def test_demographic_parity_and_equalized_odds_binary_by_hand():
    pred = [1, 1, 0, 0, 1, 0, 0, 0]
    y = [1, 0, 0, 1, 1, 1, 0, 0]
    groups = ["a", "a", "a", "a", "b", "b", "b", "b"]
    model, x = _fixed_predictions(pred, 2)
    report = ModelExplainability(model).detect_bias(x, y=y, groups=groups)
    # selection rates P(ŷ=1 | g): a = 2/4, b = 1/4
    assert report.demographic_parity_difference == pytest.approx(0.25)
    # TPR: a = 1/2 (y=1 at rows 0,3), b = 1/2 (rows 4,5); FPR: a = 1/2 (rows 1,2), b = 0/2
    assert report.equalized_odds_difference == pytest.approx(0.5)
    assert report.group_selection_rates == {"a": (0.5, 0.5), "b": (0.75, 0.25)}
    no_labels = ModelExplainability(model).detect_bias(x, groups=groups)
    assert no_labels.equalized_odds_difference is None
    assert no_labels["demographic_parity_difference"] == pytest.approx(0.25)
    with pytest.raises(DataError, match="groups"):
        ModelExplainability(model).detect_bias(x, groups=groups[:-1])


def _captum_target(result) -> torch.Tensor:
    return torch.tensor(result.target)


def test_saliency_and_input_x_gradient_equal_captum(digits, digits_mlp):
    from captum.attr import InputXGradient, Saliency

    _, _, x, y = digits
    x = x[:64]
    explainer = ModelExplainability(digits_mlp)
    ours = explainer.attribute(x, "saliency")
    assert ours.target == tuple(digits_mlp(x).argmax(dim=1).tolist())
    with pytest.warns(UserWarning, match="require gradients"):
        ref = Saliency(digits_mlp).attribute(x.clone(), target=_captum_target(ours))
    assert torch.allclose(ours.attributions, ref, atol=1e-6, rtol=0)
    ixg = explainer.attribute(x, "input_x_gradient", target=y[:64])
    with pytest.warns(UserWarning, match="require gradients"):
        ref = InputXGradient(digits_mlp).attribute(x.clone(), target=y[:64])
    assert torch.allclose(ixg.attributions, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_integrated_gradients_equal_captum(digits, digits_mlp, method):
    from captum.attr import IntegratedGradients

    _, _, x, y = digits
    x, y = x[:32], y[:32]
    ours = ModelExplainability(digits_mlp).attribute(
        x,
        "integrated_gradients",
        target=y,
        n_steps=20,
        integration_method=method,
        internal_batch_size=100,
    )
    ref, delta = IntegratedGradients(digits_mlp).attribute(
        x, target=y, n_steps=20, method=method, return_convergence_delta=True
    )
    assert torch.allclose(ours.attributions, ref, atol=1e-5, rtol=0)
    assert ours.convergence_delta == pytest.approx(delta.tolist(), abs=1e-5)


def test_integrated_gradients_completeness_improves_with_steps(digits, digits_mlp):
    _, _, x, _ = digits
    explainer = ModelExplainability(digits_mlp)
    errors = [
        float(np.mean(np.abs(explainer.attribute(x[:64], n_steps=n).convergence_delta)))
        for n in (2, 8, 64)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 10


def test_integrated_gradients_exact_on_linear_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x = torch.rand(4, 5)
    result = ModelExplainability(model).attribute(x, target=1, baseline=0.5, n_steps=3)
    expected = model.weight[1].detach() * (x - 0.5)
    assert torch.allclose(result.attributions, expected, atol=1e-6)
    assert max(abs(d) for d in result.convergence_delta) < 1e-5


def test_perturbation_methods_match_captum(digits, digits_cnn):
    from captum.attr import FeatureAblation, Occlusion

    _, _, x, _ = digits
    images = x[:8].view(-1, 1, 8, 8)
    explainer = ModelExplainability(digits_cnn)
    occ = explainer.attribute(images, "occlusion", sliding_window_shapes=(1, 2, 2), strides=2)
    ref = Occlusion(digits_cnn).attribute(
        images, sliding_window_shapes=(1, 2, 2), strides=2, target=_captum_target(occ)
    )
    assert torch.allclose(occ.attributions, ref, atol=1e-6)
    mask = torch.arange(64).view(1, 1, 8, 8) // 16  # 4 horizontal bands
    abl = explainer.attribute(images, "feature_ablation", feature_mask=mask)
    ref = FeatureAblation(digits_cnn).attribute(
        images, target=_captum_target(abl), feature_mask=mask
    )
    assert torch.allclose(abl.attributions, ref, atol=1e-6)
    assert abl.to_dict()["method"] == "feature_ablation"


def test_training_mode_and_grad_flags_restored(digits, digits_mlp):
    _, _, x, _ = digits
    digits_mlp.train()
    digits_mlp[2].bias.requires_grad_(False)
    try:
        explainer = ModelExplainability(digits_mlp)
        explainer.attribute(x[:16], "integrated_gradients", n_steps=4)
        explainer.analyze_layer_activations(x[:16])
        explainer.detect_bias(x[:16])
        assert all(m.training for m in digits_mlp.modules())
        assert not digits_mlp[2].bias.requires_grad
        assert digits_mlp[0].weight.requires_grad
    finally:
        digits_mlp.eval()
        digits_mlp[2].bias.requires_grad_(True)


def test_registry_builds_explain_analyzers(digits, digits_mlp):
    _, _, x, y = digits
    ig = neuroplex.create_analyzer("integrated_gradients", digits_mlp, n_steps=8)
    result = ig.analyze(x[:8], y[:8])
    assert result.target == tuple(y[:8].tolist())
    assert result.backend == "torch"
    assert neuroplex.create_analyzer("dead_neurons", digits_mlp, tol=0.0).analyze(x).n_samples
    assert neuroplex.create_analyzer("bias", digits_mlp).analyze(x, y).accuracy > 0.85
    assert neuroplex.get_record("analyzer", "saliency").capabilities >= {"gradients"}
    assert "gradients" not in neuroplex.get_record("analyzer", "occlusion").capabilities
    with pytest.raises(ConfigError, match="does not take"):
        neuroplex.create_analyzer("occlusion", digits_mlp, n_steps=3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda e, x, y: e.attribute(x, "lime"), ConfigError, "unknown attribution method"),
        (lambda e, x, y: e.attribute(x, target=y + 10), DataError, "out of range"),
        (lambda e, x, y: e.attribute(x, target=y[:-1]), DataError, "shape"),
        (lambda e, x, y: e.attribute(x, n_steps=0), ConfigError, "n_steps"),
        (lambda e, x, y: e.attribute(x, "saliency", n_steps=5), ConfigError, "options are abs"),
        (lambda e, x, y: e.attribute(x, integration_method="x"), ConfigError, "integration"),
        (lambda e, x, y: e.attribute(x, baseline=torch.zeros(3)), ConfigError, "baseline"),
        (lambda e, x, y: e.detect_bias(x, y=y[:-1]), DataError, "shape"),
        (lambda e, x, y: e.detect_bias(x, y=y - 20), DataError, "out of range"),
        (lambda e, x, y: e.get_activations(x[:0]), DataError, "N >= 1"),
        (lambda e, x, y: e.analyze_layer_activations(x * float("inf")), DataError, "NaN or inf"),
    ],
)
def test_bad_input_gives_clear_errors(digits, digits_mlp, call, error, match):
    _, _, x, y = digits
    with pytest.raises(error, match=match):
        call(ModelExplainability(digits_mlp), x[:10], y[:10])


def test_bad_models_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        ModelExplainability(object())
    with pytest.raises(ConfigError, match="does not exist"):
        ModelExplainability(tmp_path / "missing.onnx")
    scalar = torch.nn.Linear(4, 1)
    with pytest.raises(DataError, match=r"\(N, C\) with C >= 2"):
        ModelExplainability(scalar).detect_bias(torch.rand(3, 4))


def test_entry_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, neuroplex_explain.plugin as p; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "print(len(list(p.neuroplex_register_analyzers())))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 8


def test_token_inputs_keep_their_dtype():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 3)
    )
    tokens = torch.randint(0, 10, (5, 3))
    explainer = ModelExplainability(model)
    acts = explainer.get_activations(tokens)
    assert acts["0"].shape == (5, 3, 4)
    assert explainer.detect_bias(tokens).n_classes == 3
    stats = explainer.analyze_layer_activations(tokens, unit_dim=-1)
    assert len(stats["0"].unit_max) == 4


@pytest.mark.gpu
def test_cuda_model_takes_cpu_inputs(digits, digits_mlp):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import copy

    _, _, x, y = digits
    model = copy.deepcopy(digits_mlp).cuda()
    cpu = ModelExplainability(digits_mlp).attribute(x[:16], target=y[:16])
    gpu = ModelExplainability(model).attribute(x[:16], target=y[:16])
    assert gpu.attributions.device.type == "cuda"
    assert torch.allclose(gpu.attributions.cpu(), cpu.attributions, atol=1e-4)
    assert ModelExplainability(model).detect_bias(x, y).accuracy > 0.85
