"""Attacks on an ONNX file from another exporter (gradients derived from its ONNX graph)."""

from __future__ import annotations

import pytest
import torch
from neuroplex_attacks import AdversarialTester
from torch import nn

EPS = 0.1


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A small CNN and its TorchScript-exporter (``dynamo=False``) file."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3)
    ).eval()
    path = tmp_path_factory.mktemp("foreign") / "cnn.onnx"
    torch.onnx.export(
        model,
        (torch.rand(2, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=13,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
    )
    return model, path


def test_fgsm_and_pgd_on_a_foreign_file_equal_pytorch(foreign):
    model, path = foreign
    x = torch.rand(40, 1, 8, 8)
    y = model(x).argmax(1)
    onnx_tester = AdversarialTester(path, input_range=(0.0, 1.0))
    torch_tester = AdversarialTester(model, input_range=(0.0, 1.0))
    assert onnx_tester.tier == "gradients"
    for attack in ("fgsm", "pgd"):
        ours = onnx_tester.test_robustness(x, y, attack, EPS)
        theirs = torch_tester.test_robustness(x, y, attack, EPS)
        assert (ours.backend, ours.tier) == ("onnx", "gradients")
        assert abs(ours.robust_accuracy - theirs.robust_accuracy) <= 1 / len(x)
    adv_onnx = onnx_tester.attack(x, y, "fgsm", EPS)
    adv_torch = torch_tester.attack(x, y, "fgsm", EPS)
    assert float((adv_onnx - adv_torch).abs().max()) <= 1e-6
