"""Foreign ONNX files get gradients derived from their graph (``gradient_source == "onnx"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from torch import nn  # noqa: E402

from neuroplex.onnx import load_onnx  # noqa: E402


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6, 5),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def _export(model: nn.Module, path: Path, opset: int) -> Path:
    torch.onnx.export(
        model,
        (torch.randn(2, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    return path


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    return _cnn()


@pytest.mark.parametrize("opset", [17, 9])
def test_torchscript_export_gets_onnx_gradients(cnn: nn.Module, tmp_path: Path, opset: int) -> None:
    path = _export(cnn, tmp_path / "foreign.onnx", opset)
    module = load_onnx(path, device="cpu")
    assert (module.tier, module.gradient_source) == ("gradients", "onnx"), module.tier_reason
    assert module.gradient_check is not None and module.gradient_check.passed
    cached = list(tmp_path.glob("foreign.onnx.*.vjp1.onnx"))
    assert len(cached) == 1
    x = torch.randn(7, 1, 8, 8)
    y = torch.arange(7) % 5
    # saliency (input gradient of the loss) and FGSM agree with PyTorch
    grads = []
    for model in (cnn, module):
        xr = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xr), y)
        grads.append(torch.autograd.grad(loss, xr)[0])
    scale = float(grads[0].abs().max())
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-5 * scale
    assert torch.equal(grads[0].sign(), grads[1].sign())
    adv = [x + 0.1 * g.sign() for g in grads]
    assert torch.equal(cnn(adv[0]).argmax(1), module(adv[1]).argmax(1))
    # the second load reads the cached graph instead of building and verifying it again
    again = load_onnx(path, device="cpu")
    assert again.gradient_source == "onnx" and "cached" in again.tier_reason
    assert again.gradient_check is None


def test_read_only_folder_caches_in_the_cache_dir(
    cnn: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    path = _export(cnn, folder / "m.onnx", 17)
    cache = tmp_path / "cache"
    monkeypatch.setenv("NEUROPLEX_CACHE_DIR", str(cache))
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:  # the model's folder is read-only
        if Path(kwargs["dir"]) == folder:
            raise PermissionError(13, "Permission denied", str(folder))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    module = load_onnx(path, device="cpu")
    assert module.gradient_source == "onnx"
    assert len(list((cache / "onnx-gradients").glob("*.vjp1.onnx"))) == 1
    assert list(folder.iterdir()) == [path]
    assert load_onnx(path, device="cpu").gradient_check is None  # found in the cache folder


def test_unsupported_operator_makes_the_file_forward_only(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Acosh", ["r"], ["y"], name="acosh_1"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    module = load_onnx(path, device="cpu")
    assert module.tier == "forward_only" and module.gradient_source is None
    assert "no gradient rule for Acosh node 'acosh_1'" in module.tier_reason
    assert module(torch.ones(2, 3) * 2).shape == (2, 3)  # the forward still runs
    assert not list(tmp_path.glob("*.vjp1.onnx"))


def test_neuroplex_export_traced_and_derived_gradients_agree(tmp_path: Path) -> None:
    """A neuroplex export keeps its traced graph; ``gradient_graph="onnx"`` derives one, and
    both give the same input gradients."""
    from neuroplex.onnx import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3), nn.LogSoftmax(1)).eval()
    result = export_onnx(model, torch.randn(2, 4), tmp_path / "m.onnx")
    traced: Any = load_onnx(result.path, device="cpu")
    derived: Any = load_onnx(result.path, device="cpu", gradient_graph="onnx")
    assert (traced.tier, traced.gradient_source) == ("gradients", "traced")
    assert (derived.tier, derived.gradient_source) == ("gradients", "onnx")
    x, g = torch.randn(5, 4), torch.randn(5, 3)
    reference = torch.autograd.grad(model(x.requires_grad_(True)), x, g)[0]
    for module in (traced, derived):
        torch.testing.assert_close(module.vjp(x, g), reference, rtol=1e-5, atol=1e-6)
    assert np.isfinite(derived.vjp(x, g).numpy()).all()


def test_a_graph_failing_finite_differences_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong rule (here: Tanh's gradient replaced by the identity) never reaches the user."""
    from neuroplex.onnx.autodiff import RULES, RuleInfo

    monkeypatch.setitem(RULES, "Tanh", RuleInfo("Tanh", lambda b, node, gy: [gy[0]], "wrong"))
    graph = helper.make_graph(
        [helper.make_node("Tanh", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tanh.onnx"
    onnx.save(model, str(path))
    module = load_onnx(path, device="cpu")
    assert module.tier == "forward_only"
    assert module.tier_reason.startswith("the ONNX-derived gradient graph was dropped")
    assert module.gradient_check is not None and not module.gradient_check.passed
    assert not list(tmp_path.glob("*.vjp1.onnx"))  # nothing cached


@pytest.mark.requires_plugins("neuroplex-attacks", "neuroplex-explain")
def test_dynamo_export_gets_onnx_gradients_and_the_same_analyses(
    cnn: nn.Module, tmp_path: Path
) -> None:
    """A file from PyTorch's dynamo exporter (opset 18+, onnxscript): FGSM, PGD and
    integrated gradients on it agree with the same analyses on the PyTorch original."""
    pytest.importorskip("onnxscript")
    from neuroplex_attacks import AdversarialTester
    from neuroplex_explain import ModelExplainability

    program = torch.onnx.export(
        cnn,
        (torch.randn(2, 1, 8, 8),),
        dynamo=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("N")},),
        verbose=False,
    )
    path = tmp_path / "dynamo.onnx"
    program.save(str(path))
    module = load_onnx(path, device="cpu", input_range=(0.0, 1.0))
    assert (module.tier, module.gradient_source) == ("gradients", "onnx"), module.tier_reason
    check = module.gradient_check
    assert check is not None and check.passed and check.runner == "onnx.reference"  # float64
    x = torch.rand(8, 1, 8, 8)
    y = cnn(x).argmax(1)
    ours, theirs = AdversarialTester(module), AdversarialTester(cnn, input_range=(0.0, 1.0))
    for attack, options in [("fgsm", {}), ("pgd", {"steps": 5})]:
        a = ours.attack(x, y, attack, 0.1, **options)
        b = theirs.attack(x, y, attack, 0.1, **options)
        assert float((a - b).abs().max()) <= 1e-5, attack
        assert torch.equal(module(a).argmax(1), cnn(b).argmax(1)), attack
    ig = [
        ModelExplainability(m).attribute(x, "integrated_gradients", target=y, n_steps=8)
        for m in (module, cnn)
    ]
    scale = float(ig[1].attributions.abs().max())
    assert float((ig[0].attributions - ig[1].attributions).abs().max()) <= 1e-5 * scale


@pytest.mark.slow  # 2-16 s per model on one core (the float64 check of the derived graph)
@pytest.mark.parametrize(
    "name", ["resnet", "mobilenetv3", "efficientnet", "convnext", "vit", "lstm", "gru"]
)
def test_the_zoo_exported_by_torchscript_gets_onnx_gradients(name: str, tmp_path: Path) -> None:
    """Every model of the gradient-engine zoo, exported by PyTorch's TorchScript exporter (a
    foreign file: no neuroplex metadata), gets an ONNX-derived gradient graph that passes the
    float64 check and equals PyTorch's input gradient (LSTM/GRU through unrolling)."""
    from neuroplex.testing.zoo import create

    model, x = create(name, batch=4)
    model.eval()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
    )
    module = load_onnx(path, device="cpu")
    assert (module.tier, module.gradient_source) == ("gradients", "onnx"), module.tier_reason
    assert module.gradient_check is not None and "float32" not in module.gradient_check.runner
    y = torch.arange(4) % 10
    grads = []
    for m in (model, module):
        xr = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(nn.functional.cross_entropy(m(xr), y), xr)[0])
    scale = float(grads[0].abs().max())
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-5 * scale
