"""Classifier files from scikit-learn converters: the ``ai.onnx.ml`` operators written as
standard ONNX (equal to ONNX Runtime's own kernels, gradients checked by finite differences),
and files made by skl2onnx analysed with ONNX-derived gradients, against analytic gradients
(logistic regression) and a PyTorch copy of the weights (MLP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from torch import nn  # noqa: E402

from neuroplex.onnx import load_onnx  # noqa: E402
from neuroplex.onnx._classifier import classifier_output  # noqa: E402
from neuroplex.onnx._outputs import final_op  # noqa: E402
from neuroplex.onnx.autodiff import build_gradient_model  # noqa: E402
from neuroplex.onnx.autodiff.verify import check_gradient_model  # noqa: E402

FEATURES = 4


def _linear_classifier(rows: int, classes: int, post: str, norm: str | None) -> Any:
    """A hand-written ``ai.onnx.ml`` classifier, LinearClassifier [→ Normalizer], with the
    outputs (label, probabilities) of a converter; ``rows == 2 == classes``: opposite rows."""
    rng = np.random.default_rng(rows * 10 + classes)
    weights = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    intercepts = rng.normal(size=rows).astype(np.float32)
    if rows == 2 == classes:
        weights[1], intercepts[1] = -weights[0], -intercepts[0]
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "scores"],
            "linear",
            domain="ai.onnx.ml",
            coefficients=weights.ravel().tolist(),
            intercepts=intercepts.tolist(),
            classlabels_ints=list(range(classes)),
            multi_class=0,
            post_transform=post,
        )
    ]
    probs = "scores"
    if norm is not None:
        nodes.append(
            helper.make_node(
                "Normalizer", ["scores"], ["probs"], "norm", domain="ai.onnx.ml", norm=norm
            )
        )
        probs = "probs"
    graph = helper.make_graph(
        nodes,
        "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info(probs, TensorProto.FLOAT, [None, classes]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    model.ir_version = 8
    return model


def _run(model: Any, x: np.ndarray) -> list[Any]:
    return list(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x}))


@pytest.mark.parametrize(
    ("rows", "classes", "post", "norm", "final"),
    [
        (3, 3, "SOFTMAX", "L1", "Softmax"),  # multinomial logistic regression
        (3, 3, "LOGISTIC", "L1", "Softmax"),  # one-vs-rest: normalised sigmoids
        (2, 2, "LOGISTIC", None, "Softmax"),  # binary, opposite rows
        (1, 2, "LOGISTIC", None, "Softmax"),  # binary, one row: scores [-s, s]
        (1, 2, "NONE", None, "Concat"),
        (3, 3, "LOGISTIC", None, "Sigmoid"),  # independent sigmoids: not a distribution
        (3, 3, "NONE", "L2", "Div"),
    ],
)
def test_ml_classifier_ops_become_standard_onnx(
    rows: int, classes: int, post: str, norm: str | None, final: str
) -> None:
    """The rewritten probability output equals ONNX Runtime's ``ai.onnx.ml`` kernels, uses
    only the default domain, and its derived gradient passes finite differences."""
    model = _linear_classifier(rows, classes, post, norm)
    rewrite = classifier_output(model)
    assert rewrite is not None
    new = rewrite.model
    assert {n.domain for n in new.graph.node} <= {""}
    assert [o.name for o in new.graph.output] == [model.graph.output[1].name]
    assert final_op(new) == final  # through Identity nodes
    assert "label" in rewrite.note and "LinearClassifier node 'linear'" in rewrite.note
    x = np.random.default_rng(1).normal(size=(7, FEATURES)).astype(np.float32) * 2
    expected = _run(model, x)[1]
    np.testing.assert_allclose(_run(new, x)[0], expected, rtol=1e-5, atol=1e-6)
    check = check_gradient_model(new, build_gradient_model(new), x)
    assert check.passed, check.summary()


@pytest.mark.parametrize(
    ("rows", "post", "norm", "kept"),
    [
        (3, "PROBIT", None, "LinearClassifier"),
        (1, "SOFTMAX", None, "LinearClassifier"),
        (3, "NONE", "MAX", "Normalizer"),
    ],
)
def test_ml_ops_without_a_rewrite_are_named(
    rows: int, post: str, norm: str | None, kept: str
) -> None:
    """Left as they are (ONNX Runtime and the ONNX reference disagree on the last two):
    the gradient builder names the node."""
    model = _linear_classifier(rows, 3 if rows == 3 else 2, post, norm)
    rewrite = classifier_output(model)
    assert rewrite is not None and f"{kept} node" not in rewrite.note
    with pytest.raises(Exception, match=f"{kept} node '.*' is in custom domain 'ai.onnx.ml'"):
        build_gradient_model(rewrite.model)


# -- files made by skl2onnx ------------------------------------------------------------------
def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(24, FEATURES)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


def _convert(model: Any, x: np.ndarray, path: Path, **options: Any) -> Path:
    skl2onnx = pytest.importorskip("skl2onnx")
    proto = skl2onnx.to_onnx(model, x[:1], options=options or None)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def logistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A 3-class logistic regression and its skl2onnx file (default options: ZipMap)."""
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    x, y = _data()
    model = sklearn_linear.LogisticRegression(C=10.0).fit(x, y)
    return model, _convert(model, x, tmp_path_factory.mktemp("lr") / "lr.onnx")


def _ce_gradient(model: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d(-log p_y)/dx of a multinomial logistic regression: Wᵀ (p − onehot(y))."""
    p = model.predict_proba(x)
    p[np.arange(len(y)), y] -= 1.0
    return np.asarray(p @ model.coef_)


def test_skl2onnx_logistic_regression_gets_gradients(logistic: tuple[Any, Path]) -> None:
    model, path = logistic
    module = load_onnx(path, device="cpu", input_range=(0.0, 1.0))
    assert (module.tier, module.gradient_source) == ("gradients", "onnx"), module.tier_reason
    assert module.output_kind == "log_probabilities"
    assert "ZipMap node" in module.output_note and "LinearClassifier" in module.output_note
    assert "log-probabilities" in module.output_note
    x, _ = _data()
    y = model.predict(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = module(xt)
    np.testing.assert_allclose(out.exp().detach().numpy(), model.predict_proba(x), atol=1e-6)
    loss = nn.functional.cross_entropy(out, torch.from_numpy(y), reduction="sum")
    grad = torch.autograd.grad(loss, xt)[0].numpy()
    expected = _ce_gradient(model, x, y)
    assert np.abs(grad - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.requires_plugins("neuroplex-attacks", "neuroplex-explain")
def test_attacks_and_ig_on_a_skl2onnx_logistic_regression(logistic: tuple[Any, Path]) -> None:
    """FGSM equals the analytic step x + ε·sign(Wᵀ(p − e_y)); PGD lowers the accuracy; IG
    equals IG of a PyTorch copy of the weights."""
    from neuroplex_attacks import AdversarialTester
    from neuroplex_explain import ModelExplainability

    model, path = logistic
    x, _ = _data()
    y = model.predict(x)
    tester = AdversarialTester(str(path), input_range=(0.0, 1.0))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    adv = tester.attack(xt, yt, "fgsm", 0.1).numpy()
    expected = np.clip(x + 0.1 * np.sign(_ce_gradient(model, x, y)), 0.0, 1.0)
    np.testing.assert_allclose(adv, expected, atol=1e-6)
    fgsm = tester.test_robustness(xt, yt, "fgsm", 0.2)
    pgd = tester.test_robustness(xt, yt, "pgd", 0.2)
    assert "ZipMap node" in pgd.params["model_output"]
    assert pgd.robust_accuracy <= fgsm.robust_accuracy < fgsm.clean_accuracy == 1.0
    copy = nn.Sequential(nn.Linear(FEATURES, 3), nn.LogSoftmax(dim=1)).eval()
    with torch.no_grad():
        copy[0].weight.copy_(torch.from_numpy(model.coef_))
        copy[0].bias.copy_(torch.from_numpy(model.intercept_))
    ours = ModelExplainability(str(path)).attribute(xt, "integrated_gradients", n_steps=16)
    theirs = ModelExplainability(copy).attribute(xt, "integrated_gradients", n_steps=16)
    assert ours.tier == "gradients" and ours.target == theirs.target
    torch.testing.assert_close(ours.attributions, theirs.attributions, rtol=1e-4, atol=1e-6)


def _mlp_copy(model: Any, binary: bool) -> nn.Module:
    """The PyTorch copy of a fitted MLPClassifier (ReLU hidden layers), returning
    log-probabilities (binary: log-softmax of [0, a], i.e. [log(1 - σ(a)), log σ(a)])."""
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        linear = nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
            linear.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        layers.append(linear)
        if i < len(model.coefs_) - 1:
            layers.append(nn.ReLU())
    if binary:
        layers.append(_ZeroLogit())
    layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers).eval()


class _ZeroLogit(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(a), a], dim=1)


@pytest.mark.requires_plugins("neuroplex-attacks")
@pytest.mark.parametrize("binary", [False, True])
def test_skl2onnx_mlp_attacks_equal_pytorch(binary: bool, tmp_path: Path) -> None:
    """A 3-class MLP (``zipmap=False``: a float probability output after the label) and a
    binary one (ZipMap; probabilities written as [1 - σ(a), σ(a)]): FGSM and PGD equal those
    on a PyTorch copy of the weights."""
    from neuroplex_attacks import AdversarialTester

    sklearn_nn = pytest.importorskip("sklearn.neural_network")
    x, y = _data()
    y = (y > 0).astype(np.int64) if binary else y
    model = sklearn_nn.MLPClassifier((6,), solver="lbfgs", max_iter=500, random_state=0).fit(x, y)
    options = {} if binary else {"zipmap": False}
    path = _convert(model, x, tmp_path / "mlp.onnx", **options)
    module = load_onnx(path, device="cpu", input_range=(0.0, 1.0))
    assert (module.tier, module.output_kind) == ("gradients", "log_probabilities")
    assert ("Sigmoid" in module.output_note) == binary
    copy = _mlp_copy(model, binary)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        np.testing.assert_allclose(module(xt).exp().numpy(), model.predict_proba(x), atol=1e-6)
        torch.testing.assert_close(module(xt), copy(xt), rtol=1e-5, atol=1e-5)
    yt = torch.from_numpy(model.predict(x))
    ours, theirs = AdversarialTester(module), AdversarialTester(copy, input_range=(0.0, 1.0))
    for attack in ("fgsm", "pgd"):
        a, b = ours.attack(xt, yt, attack, 0.1), theirs.attack(xt, yt, attack, 0.1)
        assert float((a - b).abs().max()) <= 1e-5, attack
