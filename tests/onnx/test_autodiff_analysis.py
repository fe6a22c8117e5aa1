"""Analysing foreign ONNX files: probability outputs, the input range, fused loss graphs on
derived gradient graphs, and ``neuroplex analyze`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from neuroplex.errors import ConfigError  # noqa: E402
from neuroplex.onnx import LOSSES, load_onnx  # noqa: E402


def _cnn(final: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 5),
    ]
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers).eval()


def _export(model: nn.Module, path: Path) -> Path:
    torch.onnx.export(
        model,
        (torch.rand(2, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
    )
    return path


@pytest.fixture(scope="module")
def softmax_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """A foreign file whose graph ends in Softmax, and its PyTorch model without it."""
    model = _cnn()
    path = _export(
        nn.Sequential(model, nn.Softmax(dim=1)).eval(), tmp_path_factory.mktemp("sm") / "m.onnx"
    )
    return model, path


def test_final_softmax_is_analysed_as_log_probabilities(
    softmax_file: tuple[nn.Module, Path],
) -> None:
    logits_model, path = softmax_file
    module = load_onnx(path, device="cpu")
    assert (module.tier, module.gradient_source) == ("gradients", "onnx"), module.tier_reason
    assert module.output_kind == "log_probabilities"
    assert "Softmax node" in module.output_note and "log-probabilities" in module.output_note
    x = torch.rand(6, 1, 8, 8)
    y = torch.arange(6) % 5
    with torch.no_grad():
        logits = logits_model(x)
        torch.testing.assert_close(module(x).exp(), logits.softmax(1), rtol=1e-5, atol=1e-6)
    # cross-entropy of the log-probabilities is that of the logits: same input gradient
    grads = []
    for model in (logits_model, module):
        xr = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)[0])
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-5 * float(grads[0].abs().max())
    kept = load_onnx(path, device="cpu", probabilities="keep")
    assert kept.output_kind == "scores" and kept.output_note == ""
    with torch.no_grad():
        torch.testing.assert_close(kept(x), logits.softmax(1), rtol=1e-5, atol=1e-6)


@pytest.mark.requires_plugins("neuroplex-attacks")
def test_attacks_on_a_softmax_file_say_so_and_match_pytorch(
    softmax_file: tuple[nn.Module, Path],
) -> None:
    from neuroplex_attacks import AdversarialTester

    logits_model, path = softmax_file
    x = torch.rand(8, 1, 8, 8)
    y = logits_model(x).argmax(1)
    ours = AdversarialTester(str(path), input_range=(0.0, 1.0))
    theirs = AdversarialTester(logits_model, input_range=(0.0, 1.0))
    result = ours.test_robustness(x, y, "fgsm", 0.05)
    reference = theirs.test_robustness(x, y, "fgsm", 0.05)
    assert "Softmax node" in result.params["model_output"]
    assert result.robust_accuracy == reference.robust_accuracy
    torch.testing.assert_close(
        ours.attack(x, y, "fgsm", 0.05), theirs.attack(x, y, "fgsm", 0.05), rtol=0, atol=1e-6
    )
    with pytest.raises(Exception, match="outputs probabilities"):
        AdversarialTester(load_onnx(path, probabilities="keep"), input_range=(0, 1)).attack(
            x, y, "fgsm", 0.05
        )


def test_log_softmax_output_is_left_alone(tmp_path: Path) -> None:
    path = _export(_cnn(nn.LogSoftmax(dim=1)), tmp_path / "logp.onnx")
    module = load_onnx(path, device="cpu")
    assert module.output_kind == "log_probabilities" and module.output_note == ""
    assert module.output_names == ("probs",)


@pytest.mark.requires_plugins("neuroplex-attacks")
def test_input_range_argument_and_its_errors(softmax_file: tuple[nn.Module, Path]) -> None:
    from neuroplex_attacks import AdversarialTester

    _, path = softmax_file
    assert load_onnx(path).input_range is None  # a foreign file says nothing
    module = load_onnx(path, input_range=(0, 255))
    assert module.input_range == (0.0, 255.0)
    assert AdversarialTester(module).input_range == (0.0, 255.0)
    for bad, match in [
        ((1.0, 0.0), r"min < max, got \(1, 0\)"),
        ((0.0, float("nan")), "finite"),
        ((0.0,), "two numbers"),
        ("ab", "two numbers"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            load_onnx(path, input_range=bad)
        assert info.value.path == "input_range"
    with pytest.raises(ConfigError, match=r"input_range is unknown.*--input-range MIN MAX"):
        AdversarialTester(str(path))
    x = torch.rand(4, 1, 8, 8) * 2
    with pytest.raises(ConfigError, match=r"outside input_range \(0, 1\)"):
        AdversarialTester(str(path), input_range=(0, 1)).attack(x, None, "fgsm", 0.1)


def test_fused_loss_graphs_on_a_derived_graph(softmax_file: tuple[nn.Module, Path]) -> None:
    """Every loss head is spliced onto the derived VJP graph; output, loss and input
    gradient equal autograd through the derived graph."""
    _, path = softmax_file
    module = load_onnx(path, device="cpu")
    assert set(module.loss_graphs) == set(LOSSES)
    x = torch.rand(5, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4])
    target = (labels + 2) % 5
    for name, spec in LOSSES.items():
        args = {"labels": labels, "target": target}
        inputs = [args[n] for n in spec.inputs]
        fused = module.loss_and_grad(x, *inputs, loss=name)
        xr = x.clone().requires_grad_(True)
        out = module(xr)
        loss = spec.fn(out, *inputs)
        grad = torch.autograd.grad(loss.sum(), xr)[0]
        torch.testing.assert_close(fused.output, out.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fused.loss, loss.detach(), rtol=1e-5, atol=1e-6)
        scale = float(grad.abs().max())
        assert float((fused.grad - grad).abs().max()) <= 1e-5 * scale + 1e-7, name


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from neuroplex.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.requires_plugins("neuroplex-attacks", "neuroplex-explain")
def test_neuroplex_analyze_a_foreign_file_end_to_end(
    softmax_file: tuple[nn.Module, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """FGSM, PGD, saliency and integrated gradients on a file exported by PyTorch's own
    exporter, on ONNX Runtime with ONNX-derived gradients, in units of 0..255."""
    logits_model, _ = softmax_file
    x = torch.rand(6, 1, 8, 8)
    y = logits_model(x).argmax(1)
    data = tmp_path / "x.npz"
    np.savez(data, X=(x * 255).numpy(), y=y.numpy())
    scaled = tmp_path / "scaled.onnx"  # the same model taking 0..255 inputs
    _export(nn.Sequential(_Scale(1 / 255), logits_model, nn.Softmax(dim=1)).eval(), scaled)
    argv = ["analyze", str(scaled), "--data", str(data), "--n-samples", "6"]
    attacks = ["-a", "fgsm", "-a", "pgd", "-a", "saliency", "-a", "integrated_gradients"]
    code, _, err = _run_cli([*argv, *attacks], capsys)
    assert code == 2 and "input_range is unknown" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_cli([*argv, "-a", "fgsm", "--input-range", "255", "0"], capsys)
    assert code == 2 and "min < max, got (255, 0)" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run_cli([*argv, *attacks, "--input-range", "0", "255", "--json"], capsys)
    assert code == 0, err
    results: dict[str, Any]
    results, end = json.JSONDecoder().raw_decode(out)  # then one line per robustness row
    rows = out[end:].strip().splitlines()
    assert [r.split()[0] for r in rows] == ["fgsm", "pgd"] and all("[onnx" in r for r in rows)
    for name in ("fgsm", "pgd", "saliency", "integrated_gradients"):
        assert (results[name]["backend"], results[name]["tier"]) == ("onnx", "gradients")
        assert "Softmax node" in results[name]["params"]["model_output"]
    assert results["fgsm"]["input_range"] == [0.0, 255.0]
    assert results["pgd"]["robust_accuracy"] <= results["fgsm"]["clean_accuracy"]
    # the saliency map is PyTorch's |d log p_y / d x| on the original model (inputs 0..255)
    saliency = torch.tensor(results["saliency"]["attributions"])
    torch.testing.assert_close(
        saliency, _log_prob_saliency(logits_model, x * 255, y), rtol=1e-4, atol=1e-7
    )


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _log_prob_saliency(model: nn.Module, x255: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|d log p_y / d x| of the PyTorch model (the analysed output is log-probabilities)."""
    xr = x255.clone().requires_grad_(True)
    score = model(xr / 255).log_softmax(1).gather(1, y[:, None]).sum()
    return torch.autograd.grad(score, xr)[0].abs()


@pytest.mark.requires_plugins("neuroplex-attacks")
def test_a_fixed_batch_file_takes_any_batch(tmp_path: Path) -> None:
    """A TorchScript export without dynamic axes (batch fixed at 1) is re-batched after a
    check, and attacks on it match PyTorch; a graph that hard-codes its batch keeps it."""
    from neuroplex_attacks import AdversarialTester
    from onnx import TensorProto, helper

    model = _cnn()
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(model, (torch.rand(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17)
    module = load_onnx(path, device="cpu", input_range=(0.0, 1.0))
    assert module.input_specs[0].shape == (None, 1, 8, 8)
    assert "fixed batch of 1" in module.batch_note and module.gradient_source == "onnx"
    x = torch.rand(6, 1, 8, 8)
    y = model(x).argmax(1)
    ours = AdversarialTester(module).attack(x, y, "fgsm", 0.05)
    theirs = AdversarialTester(model, input_range=(0.0, 1.0)).attack(x, y, "fgsm", 0.05)
    assert float((ours - theirs).abs().max()) <= 1e-6
    # Reshape to a hard-coded (1, -1): batch 2 cannot run, so the batch stays fixed
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["flat"]),
            helper.make_node("Relu", ["flat"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        initializer=[onnx.numpy_helper.from_array(np.asarray([1, -1], np.int64), "shape")],
    )
    hard = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    hard.ir_version = 8
    onnx.save(hard, str(tmp_path / "hard.onnx"))
    kept = load_onnx(tmp_path / "hard.onnx", device="cpu")
    assert kept.input_specs[0].shape == (1, 2, 3) and kept.batch_note == ""
    assert kept.tier == "gradients"


@pytest.mark.requires_plugins("neuroplex-attacks")
def test_per_channel_input_range_on_a_foreign_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--input-range MIN_0,MIN_1,... MAX_0,MAX_1,...`` (normalised RGB): checked against the
    file's channels, recorded per channel, and FGSM equals PyTorch's with the same range."""
    from neuroplex_attacks import AdversarialTester

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    path = tmp_path / "rgb.onnx"
    torch.onnx.export(
        model.eval(),
        (torch.rand(2, 3, 4, 4),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        dynamic_axes={"input": {0: "N"}},
    )
    lo, hi = (-2.0, -1.5, 0.0), (2.0, 1.5, 0.5)
    x = torch.tensor(lo).view(1, 3, 1, 1) + torch.rand(6, 3, 4, 4) * (
        torch.tensor(hi) - torch.tensor(lo)
    ).view(1, 3, 1, 1)
    y = model(x).argmax(1)
    with pytest.raises(ConfigError, match="2 per-channel values, but the input has 3 channels"):
        load_onnx(path, input_range=((0, 0), (1, 1)))
    module = load_onnx(path, device="cpu", input_range=(lo, hi))
    assert module.input_range == (lo, hi)
    ours = AdversarialTester(module).attack(x, y, "fgsm", 0.4)
    theirs = AdversarialTester(model, input_range=(lo, hi)).attack(x, y, "fgsm", 0.4)
    assert float((ours - theirs).abs().max()) <= 1e-6
    assert float(ours[:, 2].max()) <= 0.5 and float(ours[:, 0].max()) > 0.5
    data = tmp_path / "x.npz"
    np.savez(data, X=x.numpy(), y=y.numpy())
    argv = ["analyze", str(path), "--data", str(data), "-a", "fgsm", "--input-range"]
    code, _, err = _run_cli([*argv, "0,0", "1,1"], capsys)
    assert code == 2 and "the input has 3 channels" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run_cli([*argv, "-2,-1.5,0", "2,1.5,0.5", "--json"], capsys)
    assert code == 0, err
    results, _ = json.JSONDecoder().raw_decode(out)
    assert results["fgsm"]["input_range"] == [list(lo), list(hi)]
