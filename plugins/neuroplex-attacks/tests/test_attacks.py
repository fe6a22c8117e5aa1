"""neuroplex-attacks: oracles (torchattacks, Captum), budgets, seed API, failure paths."""

from __future__ import annotations

import itertools

import pytest
import torch
from neuroplex_attacks import ATTACK_NORMS, ATTACKS, AdversarialTester

import neuroplex
from neuroplex.errors import ConfigError, DataError
from neuroplex.testing import ConformanceSuite

EPS = 0.1


class TestConformance(ConformanceSuite):
    distribution = "neuroplex-attacks"


def test_seed_snippet_runs_as_written(digits, digits_mlp):
    _, _, x, y = digits
    device = torch.device("cpu")
    model = digits_mlp
    from neuroplex_attacks import AdversarialTester

    tester = AdversarialTester(model, device)
    robustness = tester.test_robustness(x, y, attack_type="fgsm", epsilon=0.1)
    noise_robustness = tester.test_noise_robustness(x, y, noise_levels=[0.01, 0.05, 0.1])
    if robustness["is_vulnerable"]:
        dataset = tester.generate_adversarial_dataset(x, y)
        assert len(dataset) == len(x)
    assert robustness["is_vulnerable"] == (
        robustness.robust_accuracy < 0.5 * robustness.clean_accuracy
    )
    assert len(noise_robustness.accuracy) == 3
    assert robustness.clean_accuracy > 0.85  # the fixture model is a real classifier


def test_fgsm_equals_torchattacks_and_captum(digits, digits_mlp):
    torchattacks = pytest.importorskip("torchattacks")
    from captum.robust import FGSM

    _, _, x, y = digits
    ours = AdversarialTester(digits_mlp).attack(x, y, "fgsm", EPS)
    theirs = torchattacks.FGSM(digits_mlp, eps=EPS)(x, y)
    captum = FGSM(
        digits_mlp,
        loss_func=torch.nn.CrossEntropyLoss(reduction="none"),
        lower_bound=0.0,
        upper_bound=1.0,
    )
    captum.zero_thresh = 0.0
    with pytest.warns(UserWarning, match="require gradients"):
        reference = captum.perturb(x.clone(), EPS, y)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, reference)
    assert not torch.equal(ours, x)


def test_fgsm_on_cnn_equals_torchattacks(digits, digits_cnn):
    torchattacks = pytest.importorskip("torchattacks")
    _, _, x, y = digits
    images = x.view(-1, 1, 8, 8)
    ours = AdversarialTester(digits_cnn).attack(images, y, "fgsm", EPS)
    assert torch.equal(ours, torchattacks.FGSM(digits_cnn, eps=EPS)(images, y))


def test_pgd_without_random_start_matches_torchattacks(digits, digits_mlp):
    torchattacks = pytest.importorskip("torchattacks")
    _, _, x, y = digits
    ours = AdversarialTester(digits_mlp).attack(
        x, y, "pgd", EPS, steps=10, alpha=EPS / 4, random_start=False
    )
    theirs = torchattacks.PGD(digits_mlp, eps=EPS, alpha=EPS / 4, steps=10, random_start=False)(
        x, y
    )
    differing = int(((ours - theirs).abs().amax(dim=1) > 1e-6).sum())
    assert differing <= 1


def test_pgd_is_stronger_than_fgsm_and_seeded(digits, digits_mlp):
    _, _, x, y = digits
    tester = AdversarialTester(digits_mlp)
    fgsm = tester.test_robustness(x, y, "fgsm", EPS)
    pgd = tester.test_robustness(x, y, "pgd", EPS, steps=20)
    assert pgd.robust_accuracy <= fgsm.robust_accuracy
    assert torch.equal(tester.attack(x, y, "pgd", EPS), tester.attack(x, y, "pgd", EPS))
    other = tester.attack(x, y, "pgd", EPS, seed=1)
    assert not torch.equal(tester.attack(x, y, "pgd", EPS), other)


def test_robust_accuracy_non_increasing_in_epsilon(digits, digits_mlp):
    _, _, x, y = digits
    eps = [0.0, 0.02, 0.05, 0.1, 0.2]
    curve = AdversarialTester(digits_mlp).robustness_curve(
        x, y, eps, attack_type="pgd", steps=20, random_start=False
    )
    raw, cumulative = curve.per_epsilon_accuracy, curve.robust_accuracy
    assert all(a >= b for a, b in itertools.pairwise(raw)), raw
    assert all(a >= b for a, b in itertools.pairwise(cumulative)), cumulative
    assert cumulative[0] == pytest.approx(curve.clean_accuracy)
    assert cumulative[-1] < 0.5 * curve.clean_accuracy
    assert [r.epsilon for r in curve.results] == eps


def test_square_attack_is_weaker_than_pgd_but_works(digits, digits_mlp):
    _, _, x, y = digits
    tester = AdversarialTester(digits_mlp)
    pgd = tester.test_robustness(x, y, "pgd", EPS, steps=20)
    sq = tester.test_robustness(x, y, "square", EPS, n_queries=300)
    assert sq.robust_accuracy >= pgd.robust_accuracy - 0.05
    assert sq.robust_accuracy < sq.clean_accuracy - 0.1  # it finds adversarial examples
    assert sq.mean_linf <= EPS + 1e-6


def test_square_attack_on_images(digits, digits_cnn):
    _, _, x, y = digits
    images = x[:64].view(-1, 1, 8, 8)
    result = AdversarialTester(digits_cnn).test_robustness(images, y[:64], "square", 0.2)
    assert result.robust_accuracy < result.clean_accuracy


# the ensemble attacks at a fraction of their published cost (their defaults: test_autoattack.py)
FAST = {
    "apgd_t": {"n_iter": 10, "n_target_classes": 3},
    "fab_t": {"n_iter": 10, "n_target_classes": 3},
    "square": {"n_queries": 200},
    "autoattack": {
        "options": {
            "apgd_t": {"n_iter": 10, "n_target_classes": 3},
            "fab_t": {"n_iter": 10, "n_target_classes": 3},
            "square": {"n_queries": 200},
        }
    },
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_attack_respects_budget_and_range(digits, digits_mlp, attack):
    _, _, x, y = digits
    eps = 1.0 if attack == "pgd_l2" else EPS
    tester = AdversarialTester(digits_mlp)
    adv = tester.attack(x, y, attack, eps, **FAST.get(attack, {}))
    d = (adv - x).reshape(len(x), -1)
    assert adv.shape == x.shape
    assert float(adv.min()) >= 0.0
    assert float(adv.max()) <= 1.0
    if ATTACK_NORMS[attack] == "linf":
        assert float(d.abs().max()) <= eps + 1e-6
    if ATTACK_NORMS[attack] == "l2":
        assert float(d.norm(dim=1).max()) <= eps * (1 + 1e-5)
    result = tester.test_robustness(x, y, attack, eps, **FAST.get(attack, {}))
    assert result.norm == ATTACK_NORMS[attack]
    assert result.backend == "torch"
    assert result.tier == "torch"
    assert 0.0 <= result.robust_accuracy <= 1.0


def test_other_input_range_is_respected(digits, digits_mlp):
    _, _, x, y = digits
    shifted = x * 2 - 1
    tester = AdversarialTester(digits_mlp, input_range=(-1.0, 1.0))
    adv = tester.attack(shifted, y, "pgd", 0.3)
    assert float(adv.min()) >= -1.0
    assert float(adv.min()) < 0.0
    assert tester.test_robustness(shifted, y, "fgsm", 0.3).input_range == (-1.0, 1.0)
    with pytest.raises(ConfigError, match="outside input_range"):
        AdversarialTester(digits_mlp).attack(shifted, y, "fgsm", 0.1)


def test_batching_gives_the_same_attack(digits, digits_mlp):
    _, _, x, y = digits
    one = AdversarialTester(digits_mlp, batch_size=1000).attack(
        x, y, "pgd", EPS, random_start=False
    )
    many = AdversarialTester(digits_mlp, batch_size=37).attack(x, y, "pgd", EPS, random_start=False)
    assert torch.allclose(one, many, atol=1e-6)


def test_result_record_is_frozen_and_keyed(digits, digits_mlp):
    _, _, x, y = digits
    result = AdversarialTester(digits_mlp).test_robustness(x, y, "pgd", EPS)
    data = result.to_dict()
    for key in (
        "clean_accuracy",
        "robust_accuracy",
        "attack_success_rate",
        "mean_linf",
        "mean_l2",
        "epsilon",
        "norm",
        "attack_type",
        "n_samples",
        "is_vulnerable",
        "vulnerability_threshold",
        "backend",
        "tier",
    ):
        assert result[key] == data[key]
    assert "is_vulnerable" in result
    assert data["params"] == {
        "steps": 10,
        "alpha": pytest.approx(0.025),
        "random_start": True,
        "seed": 0,
    }
    flipped = result.n_correct - round(result.robust_accuracy * result.n_samples)
    assert result.attack_success_rate == pytest.approx(flipped / result.n_correct, abs=0.01)
    with pytest.raises(AttributeError):
        result.epsilon = 0.5  # type: ignore[misc]
    with pytest.raises(KeyError, match="keys"):
        result["nope"]


def test_vulnerability_threshold_decides(digits, digits_mlp):
    _, _, x, y = digits
    strict = AdversarialTester(digits_mlp, vulnerability_threshold=1.0)
    lenient = AdversarialTester(digits_mlp, vulnerability_threshold=0.01)
    assert strict.test_robustness(x, y, "fgsm", 0.05)["is_vulnerable"]
    assert not lenient.test_robustness(x, y, "fgsm", 0.05)["is_vulnerable"]


def test_noise_robustness_is_seeded(digits, digits_mlp):
    _, _, x, y = digits
    tester = AdversarialTester(digits_mlp)
    a = tester.test_noise_robustness(x, y, noise_levels=[0.0, 0.1, 0.5], n_trials=2)
    b = tester.test_noise_robustness(x, y, noise_levels=[0.0, 0.1, 0.5], n_trials=2)
    assert a == b
    assert a.accuracy[0] == pytest.approx(a.clean_accuracy)
    assert a.accuracy[2] < a.clean_accuracy
    assert a.accuracy_drop[2] == pytest.approx(a.clean_accuracy - a.accuracy[2])
    u = tester.test_noise_robustness(x, y, noise_levels=[0.5], noise="uniform", seed=3)
    assert u.noise == "uniform"
    assert u.seed == 3
    assert a.by_level()[0.1] == a.accuracy[1]
    assert a["accuracy"] == list(a.accuracy)


def test_adversarial_dataset_mixes_and_restores_mode(digits, digits_mlp):
    x, y, _, _ = digits
    x, y = x[:200], y[:200]
    digits_mlp.train()
    try:
        ds = AdversarialTester(digits_mlp).generate_adversarial_dataset(
            x, y, attack="pgd", epsilon=EPS, ratio=0.25, seed=1
        )
        assert digits_mlp.training
        assert all(p.requires_grad for p in digits_mlp.parameters())
    finally:
        digits_mlp.eval()
    assert len(ds) == 200
    assert int(ds.is_adversarial.sum()) == 50
    assert torch.equal(ds.y, y)
    assert torch.equal(ds.x[~ds.is_adversarial], x[~ds.is_adversarial])
    changed = (ds.x[ds.is_adversarial] - x[ds.is_adversarial]).abs().amax(dim=1)
    assert float(changed.max()) <= EPS + 1e-6
    assert float(changed.min()) > 0
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=16)))
    assert xb.shape == (16, 64)
    assert yb.shape == (16,)
    with pytest.raises(ConfigError, match="ratio"):
        AdversarialTester(digits_mlp).generate_adversarial_dataset(x, y, ratio=1.5)


def test_model_mode_and_grad_flags_restored(digits, digits_mlp):
    _, _, x, y = digits
    digits_mlp.train()
    digits_mlp[0].weight.requires_grad_(False)
    try:
        AdversarialTester(digits_mlp).test_robustness(x, y, "pgd", EPS, steps=2)
        assert digits_mlp.training
        assert all(m.training for m in digits_mlp.modules())
        assert not digits_mlp[0].weight.requires_grad
        assert digits_mlp[2].weight.requires_grad
    finally:
        digits_mlp.eval()
        digits_mlp[0].weight.requires_grad_(True)


def test_probability_outputs_are_refused(digits, digits_mlp):
    _, _, x, y = digits
    probs = torch.nn.Sequential(digits_mlp, torch.nn.Softmax(dim=1))
    with pytest.raises(DataError, match="probabilities"):
        AdversarialTester(probs).test_robustness(x, y, "fgsm", EPS)


def test_labels_default_to_predictions(digits, digits_mlp):
    _, _, x, _ = digits
    result = AdversarialTester(digits_mlp).test_robustness(x, None, "fgsm", EPS)
    assert result.clean_accuracy == 1.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda t, x, y: t.test_robustness(x, y[:-1]), DataError, "shape"),
        (lambda t, x, y: t.test_robustness(x, y, epsilon=-0.1), ConfigError, "epsilon"),
        (lambda t, x, y: t.test_robustness(x, y, epsilon=float("nan")), ConfigError, "epsilon"),
        (lambda t, x, y: t.test_robustness(x, y, attack_type="pgdd"), ConfigError, "did you mean"),
        (lambda t, x, y: t.test_robustness(x, y + 10), DataError, "out of range"),
        (lambda t, x, y: t.test_robustness(x, y - 20), DataError, "out of range"),
        (lambda t, x, y: t.test_robustness(x, y, "fgsm", 0.1, steps=3), ConfigError, "options"),
        (lambda t, x, y: t.test_robustness(x, y, "pgd", 0.1, steps=0), ConfigError, "steps"),
        (lambda t, x, y: t.test_robustness(x * float("nan"), y), DataError, "NaN"),
        (lambda t, x, y: t.test_noise_robustness(x, y, noise="salt"), ConfigError, "noise"),
        (lambda t, x, y: t.robustness_curve(x, y, []), ConfigError, "epsilons"),
    ],
)
def test_bad_input_gives_clear_errors(digits, digits_mlp, call, error, match):
    _, _, x, y = digits
    with pytest.raises(error, match=match):
        call(AdversarialTester(digits_mlp), x[:20], y[:20])


def test_bad_construction_gives_clear_errors(digits_mlp, tmp_path):
    # the kernel's check_input_range: one message for the tester, OnnxModule and the CLI
    with pytest.raises(
        ConfigError, match=r"input_range must be finite with min < max, got \(1, 0\)$"
    ):
        AdversarialTester(digits_mlp, input_range=(1.0, 0.0))
    with pytest.raises(
        ConfigError,
        match=r"input_range must be two numbers \(min, max\) or two per-channel sequences, "
        r"got 'ab'",
    ):
        AdversarialTester(digits_mlp, input_range="ab")
    with pytest.raises(ConfigError, match="vulnerability_threshold"):
        AdversarialTester(digits_mlp, vulnerability_threshold=0.0)
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        AdversarialTester(object())
    with pytest.raises(ConfigError, match="not an ONNX file"):
        AdversarialTester(tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        AdversarialTester(tmp_path / "missing.onnx")


def test_device_accepts_neuroplex_style_device(digits, digits_mlp):
    _, _, x, y = digits

    class CpuDevice:
        def torch_device(self) -> torch.device:
            return torch.device("cpu")

    tester = AdversarialTester(digits_mlp, CpuDevice())
    assert tester.device == torch.device("cpu")
    assert tester.test_robustness(x, y, "fgsm", EPS).n_samples == len(x)


@pytest.mark.gpu
def test_runs_on_cuda_and_moves_model_back(digits, digits_mlp):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _, _, x, y = digits
    cpu = AdversarialTester(digits_mlp).test_robustness(x, y, "fgsm", EPS)
    gpu = AdversarialTester(digits_mlp, "cuda").test_robustness(x, y, "fgsm", EPS)
    assert next(digits_mlp.parameters()).device.type == "cpu"
    assert gpu.robust_accuracy == pytest.approx(cpu.robust_accuracy, abs=2 / len(x))


def test_registry_builds_attack_analyzers(digits, digits_mlp):
    _, _, x, y = digits
    pgd = neuroplex.create_analyzer("pgd", digits_mlp, epsilon=EPS, steps=5, seed=2)
    result = pgd.analyze(x, y)
    assert result.attack_type == "pgd"
    assert result.params["steps"] == 5
    assert result.params["seed"] == 2
    curve = neuroplex.create_analyzer("robustness_curve", digits_mlp, epsilons=[0.0, 0.1])
    assert len(curve.analyze(x, y).robust_accuracy) == 2
    noise = neuroplex.create_analyzer("noise", digits_mlp, noise_levels=[0.1])
    assert noise.analyze(x, y).noise_levels == (0.1,)
    with pytest.raises(ConfigError, match="options"):
        neuroplex.create_analyzer("fgsm", digits_mlp, steps=3)
    crafter = neuroplex.create_analyzer("fgsm", digits_mlp, epsilon=EPS, input_range=(0.0, 1.0))
    x_adv = crafter.adversarial_examples(x, y)
    assert torch.equal(x_adv, AdversarialTester(digits_mlp).attack(x, y, "fgsm", EPS))


def test_entry_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, neuroplex_attacks.plugin as p; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "print(len(list(p.neuroplex_register_analyzers())))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 8
