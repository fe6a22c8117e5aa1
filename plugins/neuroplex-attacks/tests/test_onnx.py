"""neuroplex-attacks on ONNX Runtime (the kernel's OnnxModule) agrees with PyTorch."""

from __future__ import annotations

import pytest
import torch
from neuroplex_attacks import AdversarialTester

from neuroplex.errors import ConfigError

EPS = 0.1


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


def test_fgsm_on_onnx_equals_pytorch(digits, digits_mlp, onnx_module):
    _, _, x, y = digits
    ours = AdversarialTester(onnx_module).attack(x, y, "fgsm", EPS)
    reference = AdversarialTester(digits_mlp).attack(x, y, "fgsm", EPS)
    differing = int(((ours - reference).abs().amax(dim=1) > 1e-6).sum())
    assert differing <= 1  # gradients agree within 1e-6: signs may flip only at ~0
    onnx_result = AdversarialTester(onnx_module).test_robustness(x, y, "fgsm", EPS)
    torch_result = AdversarialTester(digits_mlp).test_robustness(x, y, "fgsm", EPS)
    assert (onnx_result.backend, onnx_result.tier) == ("onnx", "gradients")
    assert onnx_result.clean_accuracy == torch_result.clean_accuracy
    assert abs(onnx_result.robust_accuracy - torch_result.robust_accuracy) <= 1 / len(x)


def test_pgd_on_onnx_file_matches_pytorch(digits, digits_mlp, digits_onnx):
    _, _, x, y = digits
    onnx_result = AdversarialTester(str(digits_onnx)).test_robustness(x, y, "pgd", EPS, steps=10)
    torch_result = AdversarialTester(digits_mlp).test_robustness(x, y, "pgd", EPS, steps=10)
    assert abs(onnx_result.robust_accuracy - torch_result.robust_accuracy) <= 2 / len(x)
    assert onnx_result.mean_linf == pytest.approx(torch_result.mean_linf, abs=1e-4)
    assert onnx_result.input_range == (0.0, 1.0)


def test_input_range_comes_from_onnx_metadata(digits, onnx_module, digits_onnx):
    from neuroplex.onnx import load_onnx

    _, _, x, y = digits
    assert AdversarialTester(onnx_module).input_range == (0.0, 1.0)
    shifted = load_onnx(digits_onnx)
    shifted.metadata["input_range"] = (-1.0, 2.0)  # as if exported with that range
    tester = AdversarialTester(shifted)
    assert tester.input_range == (-1.0, 2.0)
    assert float(tester.attack(x, y, "pgd", 0.5).min()) < 0.0  # clipped to the wider range
    assert AdversarialTester(shifted, input_range=(0.0, 1.0)).input_range == (0.0, 1.0)


def test_forward_only_onnx_refuses_gradient_attacks(digits, forward_only):
    _, _, x, y = digits
    tester = AdversarialTester(forward_only)
    for attack in ("fgsm", "pgd", "pgd_l2"):
        with pytest.raises(ConfigError, match="forward-only"):
            tester.test_robustness(x[:10], y[:10], attack, EPS)


def test_black_box_attacks_on_forward_only_onnx_match_pytorch(digits, digits_mlp, forward_only):
    _, _, x, y = digits
    for attack, options in (("square", {"n_queries": 100}), ("gaussian_noise", {})):
        onnx_result = AdversarialTester(forward_only).test_robustness(x, y, attack, EPS, **options)
        torch_result = AdversarialTester(digits_mlp).test_robustness(x, y, attack, EPS, **options)
        assert (onnx_result.backend, onnx_result.tier) == ("onnx", "forward_only")
        assert abs(onnx_result.robust_accuracy - torch_result.robust_accuracy) <= 2 / len(x)
    noise = AdversarialTester(forward_only).test_noise_robustness(x, y, [0.05, 0.2])
    reference = AdversarialTester(digits_mlp).test_noise_robustness(x, y, [0.05, 0.2])
    assert noise.accuracy == pytest.approx(reference.accuracy, abs=1 / len(x))


def test_adversarial_dataset_from_onnx(digits, onnx_module):
    x, y, _, _ = digits
    ds = AdversarialTester(onnx_module).generate_adversarial_dataset(x[:100], y[:100], ratio=0.5)
    assert int(ds.is_adversarial.sum()) == 50
    delta = (ds.x - x[:100]).abs().amax(dim=1)
    assert float(delta.max()) <= EPS + 1e-6


def test_fgsm_on_onnx_cnn_equals_pytorch(digits, tmp_path):
    from neuroplex.onnx import export_onnx, load_onnx

    _, _, x, y = digits
    images = x[:100].view(-1, 1, 8, 8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random init: the conv VJP graph passes the bridge's 1e-6 check
        cnn = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.ReLU(inplace=True),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(8 * 4 * 4, 10),
        ).eval()
    export_onnx(cnn, images[:4], tmp_path / "cnn.onnx", progress=False)
    module = load_onnx(tmp_path / "cnn.onnx")
    assert module.tier == "gradients", module.tier_reason
    ours = AdversarialTester(module).attack(images, y[:100], "fgsm", EPS)
    reference = AdversarialTester(cnn).attack(images, y[:100], "fgsm", EPS)
    assert int(((ours - reference).abs().flatten(1).amax(dim=1) > 1e-6).sum()) <= 1


# the standard AutoAttack at a fraction of its cost (the published defaults: test_autoattack.py)
SMALL = {
    "apgd_ce": {"n_iter": 20},
    "apgd_t": {"n_iter": 20, "n_target_classes": 3},
    "fab_t": {"n_iter": 20, "n_target_classes": 3},
    "square": {"n_queries": 300},
}


def test_autoattack_on_onnx_runtime_equals_pytorch(digits, digits_mlp, onnx_module):
    _, _, x, y = digits
    x, y = x[:100], y[:100]
    onnx = AdversarialTester(onnx_module).evaluate(x, y, EPS, options=SMALL)
    torch_ = AdversarialTester(digits_mlp).evaluate(x, y, EPS, options=SMALL)
    assert (onnx.backend, onnx.tier) == ("onnx", "gradients")
    assert onnx.attacks == torch_.attacks == ("apgd_ce", "apgd_t", "fab_t", "square")
    assert onnx.clean_correct == torch_.clean_correct
    assert onnx.robust_accuracy == torch_.robust_accuracy
    differing = sum(a != b for a, b in zip(onnx.robust, torch_.robust, strict=True))
    assert differing <= 1  # gradients agree to ~1e-6; a point may flip only at a boundary
    assert onnx.max_perturbation <= EPS + 1e-6


def test_forward_only_onnx_runs_square_and_says_why(digits, digits_mlp, forward_only):
    _, _, x, y = digits
    x, y = x[:100], y[:100]
    result = AdversarialTester(forward_only).evaluate(x, y, EPS, options=SMALL)
    assert result.tier == "forward_only"
    assert result.attacks == ("square",)
    assert set(result.skipped) == {"apgd_ce", "apgd_t", "fab_t"}
    assert all("forward-only" in why for why in result.skipped.values())
    assert any("skipped" in str(row) for row in result.report_sections()[0]["rows"])
    square_only = AdversarialTester(digits_mlp).evaluate(
        x, y, EPS, version="custom", attacks=["square"], options=SMALL
    )
    assert result.robust == square_only.robust  # the same seeded search on either engine
    adv = AdversarialTester(forward_only).attack(x, y, "autoattack", EPS, options=SMALL)
    assert float((adv - x).abs().max()) <= EPS + 1e-6
    tester = AdversarialTester(forward_only)
    with pytest.raises(ConfigError, match="forward-only"):
        tester.evaluate(x, y, EPS, version="rand")
    with pytest.raises(ConfigError, match="forward-only"):
        tester.evaluate(x, y, EPS, version="custom", attacks=["apgd_ce", "square"])
    for attack in ("apgd_ce", "apgd_t", "fab_t"):
        with pytest.raises(ConfigError, match="forward-only"):
            tester.test_robustness(x[:10], y[:10], attack, EPS)


def test_torch_is_single_threaded_beside_onnx_runtime_and_restored(
    digits, digits_mlp, onnx_module, monkeypatch
):
    _, _, x, y = digits
    calls: list[int] = []
    real = torch.set_num_threads

    def spy(n: int) -> None:
        calls.append(n)
        real(n)

    monkeypatch.setattr(torch, "set_num_threads", spy)
    before = torch.get_num_threads()
    tiny = {"square": {"n_queries": 5}}
    ort = AdversarialTester(onnx_module).evaluate(
        x[:8], y[:8], EPS, version="custom", attacks=["square"], options=tiny
    )
    assert calls == [1, before] and torch.get_num_threads() == before
    calls.clear()
    same = AdversarialTester(digits_mlp).evaluate(
        x[:8], y[:8], EPS, version="custom", attacks=["square"], options=tiny
    )
    assert calls == []  # a PyTorch model keeps its threads for its own forward passes
    assert ort.robust == same.robust
