"""neuroplex-explain on ONNX Runtime (the kernel's OnnxModule) agrees with PyTorch."""

from __future__ import annotations

import pytest
import torch
from neuroplex_explain import ModelExplainability

import neuroplex
from neuroplex.errors import ConfigError


@pytest.fixture(scope="module")
def onnx_module(digits_onnx):
    from neuroplex.onnx import load_onnx

    module = load_onnx(digits_onnx)
    assert module.tier == "gradients", module.tier_reason
    return module


@pytest.fixture(scope="module")
def forward_only(digits_onnx):
    from neuroplex.onnx import load_onnx

    return load_onnx(digits_onnx, gradient_graph=None)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_gradient_attributions_on_onnx_equal_pytorch(digits, digits_mlp, onnx_module, method):
    _, _, x, y = digits
    x, y = x[:64], y[:64]
    ours = ModelExplainability(onnx_module).attribute(x, method, target=y)
    reference = ModelExplainability(digits_mlp).attribute(x, method, target=y)
    assert (ours.backend, ours.tier) == ("onnx", "gradients")
    assert torch.allclose(ours.attributions, reference.attributions, atol=1e-5, rtol=1e-4)
    if method == "integrated_gradients":
        assert ours.convergence_delta == pytest.approx(reference.convergence_delta, abs=1e-4)


@pytest.mark.parametrize("method", ["occlusion", "feature_ablation"])
def test_perturbation_attributions_on_forward_only_onnx(digits, digits_mlp, forward_only, method):
    _, _, x, _ = digits
    ours = ModelExplainability(forward_only).attribute(x[:32], method)
    reference = ModelExplainability(digits_mlp).attribute(x[:32], method)
    assert (ours.backend, ours.tier) == ("onnx", "forward_only")
    assert ours.target == reference.target
    assert torch.allclose(ours.attributions, reference.attributions, atol=1e-5)


def test_gradient_methods_refused_on_forward_only_onnx(digits, forward_only):
    _, _, x, _ = digits
    explainer = ModelExplainability(forward_only)
    for method in ("saliency", "input_x_gradient", "integrated_gradients"):
        with pytest.raises(ConfigError, match="forward-only"):
            explainer.attribute(x[:4], method)


def test_activations_and_statistics_on_onnx_equal_pytorch(digits, digits_mlp, digits_onnx):
    _, _, x, y = digits
    onnx_explainer = ModelExplainability(digits_onnx)  # a path: loaded through the bridge
    torch_explainer = ModelExplainability(digits_mlp)
    ours, reference = onnx_explainer.get_activations(x), torch_explainer.get_activations(x)
    assert list(ours) == list(reference)
    for name in reference:
        assert torch.allclose(ours[name], reference[name], atol=1e-5), name
    stats = onnx_explainer.analyze_layer_activations(x)
    expected = torch_explainer.analyze_layer_activations(x)
    assert stats.backend == "onnx"
    for a, b in zip(stats.layers, expected.layers, strict=True):
        assert a.mean == pytest.approx(b.mean, abs=1e-5)
        assert a.zero_fraction == pytest.approx(b.zero_fraction, abs=1e-3)
        assert a.unit_max == pytest.approx(b.unit_max, abs=1e-5)
    dead = onnx_explainer.detect_dead_neurons(x)
    assert dead.to_dict()["layers"] == torch_explainer.detect_dead_neurons(x).to_dict()["layers"]
    bias = onnx_explainer.detect_bias(x, y)
    assert bias.predicted_distribution == torch_explainer.detect_bias(x, y).predicted_distribution
    assert bias.accuracy > 0.85


def test_registry_analyzers_take_onnx_paths(digits, digits_onnx):
    _, _, x, y = digits
    ig = neuroplex.create_analyzer("integrated_gradients", str(digits_onnx), n_steps=16)
    result = ig.analyze(x[:8], y[:8])
    assert (result.backend, result.tier) == ("onnx", "gradients")
    assert max(abs(d) for d in result.convergence_delta) < 0.1
