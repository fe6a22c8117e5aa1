"""Oracle: our APGD, Square and AutoAttack against ART (adversarial-robustness-toolbox), an
independent implementation on PyPI (test-only extra).

Robust accuracy on the same points agrees within 1 percentage point on the digits CNN, the MLP
and an adversarially trained MLP; AutoAttack's robust accuracy is at most PGD-20's. The ART
square attack, ART's own AutoAttack ensemble (five restarts each, 5000 queries), the targeted
APGD over nine targets and our full standard AutoAttack on the CNN and the robust MLP take
minutes on CPU: those comparisons are marked ``slow`` and run only with
``NEUROPLEX_ORACLE_FULL=1`` (CI runs APGD-CE on all three models and AutoAttack on the MLP).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from neuroplex_attacks import AdversarialTester

art = pytest.importorskip("art", reason="needs adversarial-robustness-toolbox (test extra)")

EPS = 0.1
N = 200
TOL = 0.01  # one percentage point
FULL = pytest.mark.skipif(
    os.environ.get("NEUROPLEX_ORACLE_FULL") != "1",
    reason="minutes of ART on CPU: set NEUROPLEX_ORACLE_FULL=1",
)


@pytest.fixture(scope="module", autouse=True)
def _quiet_art():
    logging.getLogger("art").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def robust_mlp(digits) -> torch.nn.Module:
    """MLP 64 → 64 → 10 trained 15 epochs on PGD-3 examples at ε = 0.1 (seeded)."""
    x, y, _, _ = digits
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(15):
            for i in range(0, len(x), 100):
                xb, yb = x[i : i + 100], y[i : i + 100]
                delta = torch.empty_like(xb).uniform_(-EPS, EPS)
                for _ in range(3):
                    delta.requires_grad_(True)
                    loss = torch.nn.functional.cross_entropy(model((xb + delta).clamp(0, 1)), yb)
                    (grad,) = torch.autograd.grad(loss, delta)
                    delta = (delta + 0.05 * grad.sign()).clamp(-EPS, EPS).detach()
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model((xb + delta).clamp(0, 1)), yb)
                loss.backward()
                opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def case(request, digits, digits_cnn, digits_mlp, robust_mlp):
    """(name, model, x, y) for the model named by the test's parameter."""
    _, _, x, y = digits
    x, y = x[:N], y[:N]
    model = {"cnn": digits_cnn, "mlp": digits_mlp, "robust_mlp": robust_mlp}[request.param]
    if request.param == "cnn":
        x = x.view(-1, 1, 8, 8)
    return request.param, model, x, y


MODELS = pytest.mark.parametrize("case", ["cnn", "mlp", "robust_mlp"], indirect=True)


def _classifier(model: torch.nn.Module, x: torch.Tensor):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )


def _accuracy(classifier, x_adv: np.ndarray, y: torch.Tensor) -> float:
    return float((classifier.predict(x_adv).argmax(axis=1) == y.numpy()).mean())


def _art_apgd(classifier, loss: str, restarts: int = 1, **kw):
    from art.attacks.evasion import AutoProjectedGradientDescent

    return AutoProjectedGradientDescent(
        classifier,
        eps=EPS,
        eps_step=2 * EPS,  # the paper's initial step size
        max_iter=100,
        nb_random_init=restarts,
        batch_size=N,
        loss_type=loss,
        verbose=False,
        **kw,
    )


_OURS: dict[str, object] = {}


def _ours_standard(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Our standard AutoAttack (published parameters), once per model."""
    if name not in _OURS:
        _OURS[name] = AdversarialTester(model).evaluate(x, y, EPS)
    return _OURS[name]


@MODELS
def test_apgd_ce_agrees_with_art(case):
    """Three random starts each: with one, either implementation moves by ±1 point of 200
    from seed to seed (measured: 0.345-0.36 for both on the MLP)."""
    name, model, x, y = case
    tester = AdversarialTester(model)
    ours = tester.test_robustness(x, y, "apgd_ce", EPS, n_restarts=3).robust_accuracy
    np.random.seed(0)
    classifier = _classifier(model, x)
    attack = _art_apgd(classifier, "cross_entropy", restarts=3)
    theirs = _accuracy(classifier, attack.generate(x.numpy(), y.numpy()), y)
    assert abs(ours - theirs) <= TOL, (name, ours, theirs)


HEAVY = [pytest.mark.slow, FULL]


@pytest.mark.parametrize(
    "case",
    [pytest.param("cnn", marks=HEAVY), "mlp", pytest.param("robust_mlp", marks=HEAVY)],
    indirect=True,
)
def test_autoattack_agrees_with_art_apgd_ensemble_and_beats_pgd20(case):
    """ART's AutoAttack with its APGD-CE and APGD-DLR (one restart each) vs our standard
    version; both at most PGD-20, ours within 1 point of ART's."""
    from art.attacks.evasion import AutoAttack

    name, model, x, y = case
    ours = _ours_standard(name, model, x, y)
    np.random.seed(0)
    classifier = _classifier(model, x)
    ensemble = AutoAttack(
        classifier,
        eps=EPS,
        eps_step=2 * EPS,
        batch_size=N,
        attacks=[
            _art_apgd(classifier, "cross_entropy"),
            _art_apgd(classifier, "difference_logits_ratio"),
        ],
    )
    theirs = _accuracy(classifier, ensemble.generate(x.numpy(), y.numpy()), y)
    pgd20 = AdversarialTester(model).test_robustness(x, y, "pgd", EPS, steps=20).robust_accuracy
    assert ours.robust_accuracy <= pgd20, (name, ours.robust_accuracy, pgd20)
    assert abs(ours.robust_accuracy - theirs) <= TOL, (name, ours.robust_accuracy, theirs)
    assert ours.max_perturbation <= EPS + 1e-6


@pytest.mark.slow
@FULL
@pytest.mark.parametrize("case", ["cnn"], indirect=True)
def test_square_is_at_least_as_strong_as_art_square(case):
    """5000 queries each. One-sided: ART's square draws one sign per channel for the whole
    batch and stalls above the gradient attacks (measured on this CNN, 200 points: ART 0.535
    at both 1000 and 5000 queries; ours 0.48, APGD-CE 0.475), so ours must be no weaker than
    ART's and within 1 point of APGD-CE's figure plus the 1-point tolerance."""
    from art.attacks.evasion import SquareAttack

    name, model, x, y = case
    ours = AdversarialTester(model).test_robustness(x, y, "square", EPS).robust_accuracy
    np.random.seed(0)
    classifier = _classifier(model, x)
    attack = SquareAttack(
        classifier, eps=EPS, max_iter=5000, p_init=0.8, nb_restarts=1, batch_size=N, verbose=False
    )
    theirs = _accuracy(classifier, attack.generate(x.numpy(), y.numpy()), y)
    apgd = AdversarialTester(model).test_robustness(x, y, "apgd_ce", EPS).robust_accuracy
    assert ours <= theirs + TOL, (name, ours, theirs)
    assert ours <= apgd + 2 * TOL, (name, ours, apgd)


@pytest.mark.slow
@FULL
@MODELS
def test_apgd_t_is_at_least_as_strong_as_art_targeted_apgd_over_the_top9(case):
    """ART's targeted APGD once per class the clean logits rank 2nd to 10th, each on the points
    still robust, vs our ``apgd_t``. One-sided: ART's targeted loss is its untargeted DLR
    towards the target (denominator ``z_π1 − z_π3``), not the paper's targeted DLR, and is the
    weaker of the two on the robust MLP (measured, 200 points: ours 0.60, ART 0.62; on the CNN
    and the MLP within 1 point)."""
    name, model, x, y = case
    ours = AdversarialTester(model).test_robustness(x, y, "apgd_t", EPS).robust_accuracy
    np.random.seed(0)
    classifier = _classifier(model, x)
    with torch.no_grad():
        ranked = model(x).argsort(dim=1, descending=True)
    robust = classifier.predict(x.numpy()).argmax(axis=1) == y.numpy()
    for rank in range(1, 10):
        idx = np.flatnonzero(robust)
        if idx.size == 0:
            break
        attack = _art_apgd(classifier, "difference_logits_ratio", targeted=True)
        target = np.eye(10)[ranked[idx, rank].numpy()]
        adv = attack.generate(x.numpy()[idx], target)
        robust[idx] = classifier.predict(adv).argmax(axis=1) == y.numpy()[idx]
    theirs = float(robust.mean())
    assert ours <= theirs + TOL, (name, ours, theirs)


@pytest.mark.slow
@FULL
@pytest.mark.parametrize("case", ["cnn"], indirect=True)
def test_autoattack_agrees_with_art_default_autoattack(case):
    """ART's default AutoAttack (APGD-CE, APGD-DLR, DeepFool, Square, five restarts each; about
    16 minutes on a loaded 2-core machine). The CNN only: ART's Square refuses inputs that are
    not images ("Attack can only be applied to image data")."""
    from art.attacks.evasion import AutoAttack

    name, model, x, y = case
    ours = _ours_standard(name, model, x, y)
    np.random.seed(0)
    classifier = _classifier(model, x)
    ensemble = AutoAttack(classifier, eps=EPS, eps_step=2 * EPS, batch_size=N)
    theirs = _accuracy(classifier, ensemble.generate(x.numpy(), y.numpy()), y)
    assert abs(ours.robust_accuracy - theirs) <= TOL, (name, ours.robust_accuracy, theirs)
