"""The adversarial policy's training step (PGD-AT, TRADES, shift augmentation) and its
validation checkpoint keeper, on a tiny model; and the policy's option errors."""

from __future__ import annotations

import pytest
import torch
from neuroplex_attacks.policy import AdversarialPolicy
from neuroplex_attacks.training import AdversarialStep, BestRobustCheckpoint

from neuroplex.errors import ConfigError

EPS = 0.1


def _tiny() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 16, generator=gen)
    y = (x[:, :8].sum(1) > x[:, 8:].sum(1)).long()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return model, x, y


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_the_step_attacks_within_epsilon_and_trains(method: str) -> None:
    model, x, y = _tiny()
    step = AdversarialStep(method=method, epsilon=EPS, input_range=(0.0, 1.0), steps=3, seed=1)
    seen: list[torch.Tensor] = []

    def objective(out: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, y, reduction="sum")

    x_adv = step._attack(model, x, objective, EPS)
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with torch.no_grad():
        gain = objective(model(x_adv)) - objective(model(x))
    assert float(gain) > 0  # the attack raises the loss it maximises
    before = [p.detach().clone() for p in model.parameters()]
    metrics = step.train_step(model, (x, y), lambda group, loss: seen.append(loss))
    assert len(seen) == 1 and seen[0].requires_grad and set(metrics) == {"loss", "accuracy"}
    assert model.training  # crafted in eval mode, trained in train mode
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_step_is_seeded_and_ramps_its_budget() -> None:
    model, x, y = _tiny()
    a = AdversarialStep(epsilon=EPS, input_range=(0.0, 1.0), steps=2, ramp_steps=4, seed=3)
    b = AdversarialStep(epsilon=EPS, input_range=(0.0, 1.0), steps=2, ramp_steps=4, seed=3)
    budgets = []
    for _ in range(5):
        budgets.append(a.current_epsilon())
        a.train_step(model, (x, y), lambda g, loss: None)
    assert budgets == pytest.approx([EPS / 4, EPS / 2, 3 * EPS / 4, EPS, EPS])

    def objective(out: torch.Tensor) -> torch.Tensor:
        return out.sum()

    c = AdversarialStep(epsilon=EPS, input_range=(0.0, 1.0), steps=2, ramp_steps=4, seed=3)
    assert torch.equal(b._attack(model, x, objective, EPS), c._attack(model, x, objective, EPS))


def test_shift_translates_images_with_zero_fill() -> None:
    step = AdversarialStep(epsilon=EPS, input_range=(0.0, 1.0), shift=1, image_shape=(4, 4))
    x = torch.arange(1, 17, dtype=torch.float32).repeat(64, 1)
    out = step._shifted(x).view(64, 4, 4)
    base = x[0].view(4, 4)
    shifts = set()
    for img in out:
        found = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if torch.equal(img, _translate(base, dy, dx))
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) == 9  # every translation occurs among 64 draws
    with pytest.raises(ValueError, match="image_shape"):
        AdversarialStep(epsilon=EPS, input_range=(0.0, 1.0), shift=1)._shifted(x)


def _translate(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(img)
    h, w = img.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[i, j] = img[i - dy, j - dx]
    return out


def test_the_keeper_keeps_the_best_validation_checkpoint() -> None:
    model, _, _ = _tiny()
    scores = iter([(0.9, 0.5), (0.95, 0.7), (0.6, 0.9), (0.97, 0.6)])
    keeper = BestRobustCheckpoint(lambda m: next(scores), min_clean=0.8)
    assert keeper.restore(model) is False
    keeper.offer(model, "start")
    with torch.no_grad():
        model[0].weight.add_(1.0)
    kept = model[0].weight.detach().clone()
    keeper.offer(model, "epoch 1")  # best: robust 0.7
    with torch.no_grad():
        model[0].weight.add_(1.0)
    keeper.offer(model, "epoch 2")  # more robust but clean 0.6 < min_clean: not kept
    keeper.offer(model, "epoch 3")
    assert keeper.restore(model) and torch.equal(model[0].weight, kept)
    assert (keeper.best_tag, keeper.best_robust) == ("epoch 1", 0.7)
    assert [h["checkpoint"] for h in keeper.history] == ["start", "epoch 1", "epoch 2", "epoch 3"]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"training": "fgsm"}, "training='fgsm' is invalid: use pgd, trades or static"),
        ({"epsilon": 0}, "epsilon=0.0 is invalid"),
        ({"beta": -1}, "beta >= 0"),
        ({"train_steps": 0}, "train_steps >= 1"),
        ({"shift": -1}, "shift and ramp_epochs must be >= 0"),
        ({"image_shape": [8]}, "image_shape=[8] is invalid"),
        ({"backend": "tf"}, "backend='tf' is invalid"),
        ({"selct_every": 2}, "unknown option 'selct_every'"),
    ],
)
def test_bad_policy_options_are_one_clear_error(options: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        AdversarialPolicy(**options)
