"""AutoAttack and its attacks (APGD-CE/DLR/T, FAB-T, Square): record, defaults, failure paths."""

from __future__ import annotations

import json

import attrs
import pytest
import torch
from neuroplex_attacks import AdversarialTester, AutoAttackResult
from neuroplex_attacks.apgd import checkpoints, dlr_loss, targeted_dlr_loss
from neuroplex_attacks.autoattack import plan
from neuroplex_attacks.fab import box_projection
from neuroplex_attacks.square import square_fraction

import neuroplex
from neuroplex.errors import ConfigError, DataError

EPS = 0.1
N = 100
# the standard attacks at a fraction of their cost: the tests check behaviour, not strength
SMALL = {
    "apgd_ce": {"n_iter": 20},
    "apgd_t": {"n_iter": 20, "n_target_classes": 3},
    "fab_t": {"n_iter": 20, "n_target_classes": 3},
    "square": {"n_queries": 300},
}


@pytest.fixture(scope="module")
def images(digits):
    _, _, x, y = digits
    return x[:N].view(-1, 1, 8, 8), y[:N]


@pytest.fixture(scope="module")
def evaluated(images, digits_cnn) -> AutoAttackResult:
    x, y = images
    return AdversarialTester(digits_cnn).evaluate(x, y, EPS, options=SMALL)


def test_standard_version_runs_the_published_attacks_and_parameters():
    steps = dict(plan("standard", None, "linf"))
    assert list(steps) == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert steps["apgd_ce"] == {"n_iter": 100, "n_restarts": 1, "norm": "linf"}
    assert steps["apgd_t"]["n_target_classes"] == 9
    assert steps["fab_t"]["n_target_classes"] == 9
    assert steps["square"]["n_queries"] == 5000
    assert steps["square"]["p_init"] == 0.8
    rand = dict(plan("rand", None, "l2"))
    assert list(rand) == ["apgd_ce", "apgd_dlr"]
    assert {s["eot_iter"] for s in rand.values()} == {20}
    assert {s["norm"] for s in rand.values()} == {"l2"}
    custom = plan("custom", ["square", "apgd_ce"], "linf", {"square": {"n_queries": 7}})
    assert [name for name, _ in custom] == ["square", "apgd_ce"]
    assert custom[0][1]["n_queries"] == 7


def test_apgd_checkpoints_and_square_schedule_follow_the_papers():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): intervals 22, 19, ...
    assert checkpoints(100) == (22, 3, 6)
    assert checkpoints(10) == (2, 1, 1)
    assert square_fraction(0.8, 0, 5000, rescale=False) == 0.8
    assert square_fraction(0.8, 11, 5000, rescale=False) == 0.4
    assert square_fraction(0.8, 4500, 5000, rescale=False) == 0.8 / 128
    assert square_fraction(0.8, 2500, 5000, rescale=True) == 0.8 / 128  # 5000 of 10 000


def test_dlr_losses_are_shift_and_scale_invariant():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8, 10, generator=gen)
    y = torch.arange(8) % 10
    t = (y + 1) % 10
    for loss in (lambda v: dlr_loss(v, y), lambda v: targeted_dlr_loss(v, y, t)):
        assert torch.allclose(loss(z), loss(3.0 * z + 2.0), atol=1e-5)
    misclassified = dlr_loss(z, z.argmin(dim=1))
    assert bool((misclassified > 0).all())  # the loss is positive once another class wins


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_box_projection_reaches_the_hyperplane_inside_the_box(norm):
    gen = torch.Generator().manual_seed(1)
    point = torch.rand(16, 12, generator=gen)
    w = torch.randn(16, 12, generator=gen)
    c = torch.randn(16, generator=gen) * 0.3
    d = box_projection(point, w, c, norm, (0.0, 1.0))
    reachable = (w * d).sum(dim=1).sub(c).abs() < 1e-5
    assert int(reachable.sum()) >= 12  # the rest cannot reach it inside the box
    assert float((point + d).min()) >= 0.0 and float((point + d).max()) <= 1.0 + 1e-7
    # no smaller step along the same direction reaches the plane: scaling it down misses it
    shrunk = (w * d * 0.99).sum(dim=1)
    assert bool(((shrunk - c).abs()[reachable] > 0).all())


def test_record_is_consistent_per_sample(evaluated):
    r = evaluated
    assert attrs.has(type(r))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        r.robust_accuracy = 1.0  # type: ignore[misc]
    assert (r.attack, r.version, r.norm, r.epsilon, r.n_samples) == (
        "autoattack",
        "standard",
        "linf",
        EPS,
        N,
    )
    assert r.attacks == ("apgd_ce", "apgd_t", "fab_t", "square")
    assert (r.backend, r.tier) == ("torch", "torch")
    assert r.robust_accuracy == sum(r.robust) / N
    assert r.clean_accuracy == sum(r.clean_correct) / N
    assert r.n_correct == sum(r.clean_correct)
    for clean, robust, by in zip(r.clean_correct, r.robust, r.broken_by, strict=True):
        assert by == ("clean" if not clean else "" if robust else by)
        assert by in ("clean", "", *r.attacks)
        assert not robust or clean
    after = list(r.robust_accuracy_after.values())
    assert after == sorted(after, reverse=True)
    assert after[-1] == r.robust_accuracy
    assert r.robust_accuracy < r.clean_accuracy  # it breaks points
    assert r.max_perturbation <= EPS + 1e-6
    assert max(r.linf) == pytest.approx(r.max_perturbation)
    assert all(v == 0.0 for v, b in zip(r.linf, r.broken_by, strict=True) if b in ("", "clean"))
    assert r.params["square"]["n_queries"] == 300
    assert set(r.attack_seconds) == set(r.attacks) and r.seconds > 0
    assert sum(r.broken_counts().values()) == r.n_correct - sum(r.robust)
    data = r.to_dict()
    json.dumps(data)
    assert data["broken_by"][:3] == list(r.broken_by[:3])
    assert r["robust_accuracy"] == r.robust_accuracy
    (section,) = r.report_sections()
    assert "linf epsilon 0.1" in section["title"] and "n=100" in section["title"]


def test_seeded_deterministic_and_matching_attack(evaluated, images, digits_cnn):
    x, y = images
    tester = AdversarialTester(digits_cnn)
    again = tester.evaluate(x, y, EPS, options=SMALL)
    assert again.broken_by == evaluated.broken_by
    assert again.linf == evaluated.linf
    adv = tester.attack(x, y, "autoattack", EPS, options=SMALL)
    with torch.no_grad():
        still = (digits_cnn(adv).argmax(dim=1) == y).tolist()
    assert tuple(still) == evaluated.robust
    split = AdversarialTester(digits_cnn, batch_size=40).evaluate(x, y, EPS, options=SMALL)
    assert split.batch_size == 40 and split.clean_correct == evaluated.clean_correct


def test_autoattack_is_at_most_pgd_and_each_attack(evaluated, images, digits_cnn):
    x, y = images
    tester = AdversarialTester(digits_cnn)
    pgd = tester.test_robustness(x, y, "pgd", EPS, steps=20)
    assert evaluated.robust_accuracy <= pgd.robust_accuracy
    for name in ("apgd_ce", "square"):
        alone = tester.evaluate(x, y, EPS, version="custom", attacks=[name], options=SMALL)
        assert alone.attack == name
        assert evaluated.robust_accuracy <= alone.robust_accuracy


def test_l2_threat_model(images, digits_cnn):
    x, y = images
    eps = 0.8
    r = AdversarialTester(digits_cnn).evaluate(x, y, eps, norm="l2", options=SMALL)
    assert r.norm == "l2" and r.params["apgd_ce"]["norm"] == "l2"
    assert max(r.l2) <= eps * (1 + 1e-5)
    assert r.robust_accuracy < r.clean_accuracy
    for attack in ("apgd_ce", "apgd_t", "fab_t", "square"):
        adv = AdversarialTester(digits_cnn).attack(x, y, attack, eps, norm="l2", **SMALL[attack])
        assert float((adv - x).reshape(N, -1).norm(dim=1).max()) <= eps * (1 + 1e-5)
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


class _Noisy(torch.nn.Module):
    """A randomized defense: Gaussian input noise at every call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x + 0.05 * torch.randn_like(x))
        return out


def test_rand_version_averages_gradients_over_draws(digits, digits_mlp):
    _, _, x, y = digits
    options = {"apgd_ce": {"n_iter": 10, "eot_iter": 3}, "apgd_dlr": {"n_iter": 10, "eot_iter": 3}}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        r = AdversarialTester(_Noisy(digits_mlp)).evaluate(
            x[:60], y[:60], EPS, version="rand", options=options
        )
    assert r.attacks == ("apgd_ce", "apgd_dlr")
    assert r.params["apgd_ce"]["eot_iter"] == 3
    assert r.robust_accuracy < r.clean_accuracy


def test_single_attack_analyzers_and_autoattack_from_the_registry(digits, digits_mlp):
    _, _, x, y = digits
    aa = neuroplex.create_analyzer("autoattack", digits_mlp, epsilon=EPS, options=SMALL)
    result = aa.analyze(x[:50], y[:50])
    assert isinstance(result, AutoAttackResult) and result.attack == "autoattack"
    assert aa.adversarial_examples(x[:50], y[:50]).shape == x[:50].shape
    for name, options in (("apgd_ce", {"n_iter": 10}), ("apgd_t", {"n_iter": 10})):
        one = neuroplex.create_analyzer(name, digits_mlp, epsilon=EPS, **options)
        single = one.analyze(x[:50], y[:50])
        assert (single.attack, single.attacks, single.version) == (name, (name,), "custom")
        assert single.params[name]["n_iter"] == 10
    fab = neuroplex.create_analyzer("fab_t", digits_mlp, epsilon=0.5, norm="l2", n_iter=10)
    assert fab.analyze(x[:50], y[:50]).norm == "l2"
    with pytest.raises(ConfigError, match="n_queries"):
        neuroplex.create_analyzer("apgd_ce", digits_mlp, n_queries=3)
    with pytest.raises(ConfigError, match="autoattack does not take"):
        neuroplex.create_analyzer("autoattack", digits_mlp, steps=3)


def _two_class(model: torch.nn.Module) -> torch.nn.Module:
    return torch.nn.Sequential(model, torch.nn.Linear(10, 2))


def _regression(model: torch.nn.Module) -> torch.nn.Module:
    return torch.nn.Sequential(model, torch.nn.Linear(10, 1))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda t, x, y: t.evaluate(x, y, 0.0), ConfigError, "epsilon must be > 0"),
        (lambda t, x, y: t.evaluate(x, y, -0.1), ConfigError, "epsilon"),
        (lambda t, x, y: t.evaluate(x, y, EPS, version="strong"), ConfigError, "unknown Auto"),
        (lambda t, x, y: t.evaluate(x, y, EPS, norm="l1"), ConfigError, "norm"),
        (lambda t, x, y: t.evaluate(x, y, EPS, version="custom"), ConfigError, "needs attacks"),
        (lambda t, x, y: t.evaluate(x, y, EPS, attacks=["square"]), ConfigError, "only for"),
        (
            lambda t, x, y: t.evaluate(x, y, EPS, version="custom", attacks=["cw"]),
            ConfigError,
            "unknown attacks",
        ),
        (
            lambda t, x, y: t.evaluate(x, y, EPS, options={"square": {"steps": 3}}),
            ConfigError,
            "square does not take",
        ),
        (
            lambda t, x, y: t.evaluate(x, y, EPS, options={"square": {"norm": "l2"}}),
            ConfigError,
            "norm once",
        ),
        (
            lambda t, x, y: t.evaluate(x, y, EPS, options={"apgd_ce": {"n_iter": 0}}),
            ConfigError,
            "n_iter",
        ),
        (lambda t, x, y: t.evaluate(x, y + 10, EPS), DataError, "out of range"),
        (lambda t, x, y: t.test_robustness(x, y, "apgd_ce", 0.0), ConfigError, "> 0"),
        (lambda t, x, y: t.attack(x, y, "autoattack", EPS, version="x"), ConfigError, "version"),
        (lambda t, x, y: t.attack(x, y, "apgd_t", EPS, norm="l1"), ConfigError, "norm"),
    ],
)
def test_bad_input_gives_one_clear_error(digits, digits_mlp, call, error, match):
    _, _, x, y = digits
    with pytest.raises(error, match=match):
        call(AdversarialTester(digits_mlp), x[:20], y[:20])


def test_models_that_are_no_classifiers_are_refused(digits, digits_mlp):
    _, _, x, y = digits
    with pytest.raises(DataError, match=r"class scores of shape \(N, C\) with C >= 2"):
        AdversarialTester(_regression(digits_mlp)).evaluate(x[:20], torch.zeros(20).long(), EPS)
    probs = torch.nn.Sequential(digits_mlp, torch.nn.Softmax(dim=1))
    with pytest.raises(DataError, match="probabilities"):
        AdversarialTester(probs).evaluate(x[:20], y[:20], EPS)
    with pytest.raises(ConfigError, match="apgd_t needs at least 3 classes"):
        AdversarialTester(_two_class(digits_mlp)).evaluate(x[:20], y[:20] % 2, EPS)
    two = AdversarialTester(_two_class(digits_mlp)).evaluate(
        x[:20], y[:20] % 2, EPS, version="custom", attacks=["apgd_ce", "square"], options=SMALL
    )
    assert two.attacks == ("apgd_ce", "square")
