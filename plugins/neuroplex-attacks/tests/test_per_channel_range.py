"""Per-channel input ranges: every attack clips each channel to its own range."""

from __future__ import annotations

import pytest
import torch
from neuroplex_attacks import AdversarialTester
from torch import nn

from neuroplex.errors import ConfigError

LO, HI = (0.0, -1.0, 0.2), (1.0, 1.0, 0.5)


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4)
    ).eval()


def _inputs(n: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(n, 3, 4, 4, generator=gen)
    lo, hi = torch.tensor(LO).view(1, 3, 1, 1), torch.tensor(HI).view(1, 3, 1, 1)
    return lo + (hi - lo) * u


def _inside(adv: torch.Tensor) -> None:
    for c in range(3):
        assert float(adv[:, c].min()) >= LO[c] - 1e-6 and float(adv[:, c].max()) <= HI[c] + 1e-6


def test_fgsm_clips_each_channel_to_its_range(cnn: nn.Module) -> None:
    x = _inputs()
    y = cnn(x).argmax(1)
    tester = AdversarialTester(cnn, input_range=([0, -1, 0.2], [1, 1, 0.5]))
    assert tester.input_range == (LO, HI)
    adv = tester.attack(x, y, "fgsm", 0.3)
    xr = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(nn.functional.cross_entropy(cnn(xr), y), xr)[0]
    lo, hi = torch.tensor(LO).view(1, 3, 1, 1), torch.tensor(HI).view(1, 3, 1, 1)
    expected = torch.maximum(torch.minimum(x + 0.3 * grad.sign(), hi), lo)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)
    # the narrow channel hits its own bounds, not the widest channel's
    assert float(adv[:, 2].max()) == pytest.approx(0.5)
    assert float(adv[:, 2].min()) == pytest.approx(0.2)
    _inside(adv)
    result = tester.test_robustness(x, y, "pgd", 0.3)
    assert result.input_range == (LO, HI)
    assert result.to_dict()["input_range"] == [list(LO), list(HI)]


def test_every_attack_stays_in_the_per_channel_range(cnn: nn.Module) -> None:
    """Gradient, score-based and ensemble attacks (APGD, FAB, Square flatten or reshape the
    input): the tester itself raises when an output leaves the range; checked here too."""
    x = _inputs(6)
    y = cnn(x).argmax(1)
    tester = AdversarialTester(cnn, input_range=(LO, HI))
    for attack, params in [
        ("pgd", {"steps": 3}),
        ("pgd_l2", {"steps": 3}),
        ("square", {"n_queries": 20}),
        ("gaussian_noise", {}),
    ]:
        _inside(tester.attack(x, y, attack, 0.5, **params))
    result = tester.evaluate(
        x,
        y,
        0.5,
        version="custom",
        attacks=["fab_t", "square", "apgd_ce"],
        options={"apgd_ce": {"n_iter": 3}, "fab_t": {"n_iter": 3}, "square": {"n_queries": 20}},
    )
    assert result.input_range == (LO, HI) and result.attacks[0] == "fab_t"
    assert result.n_correct == 6  # fab_t ran on every point


def test_per_channel_range_errors(cnn: nn.Module) -> None:
    x = _inputs(2)
    tester = AdversarialTester(cnn, input_range=((0, 0), (1, 1)))
    with pytest.raises(ConfigError, match=r"2 per-channel values, but the input has 3 channels"):
        tester.attack(x, None, "fgsm", 0.1)
    wide = x.clone()
    wide[0, 2] = 0.9  # inside the widest channel's range, outside channel 2's
    with pytest.raises(ConfigError, match=r"outside input_range per channel min \(0, -1, 0.2\)"):
        AdversarialTester(cnn, input_range=(LO, HI)).attack(wide, None, "fgsm", 0.1)
