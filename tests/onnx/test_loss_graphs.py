"""Fused loss-gradient graphs: one ONNX Runtime call gives output, per-sample loss and gradient."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from torch import nn

from neuroplex.errors import DataError, ExportError
from neuroplex.onnx import LOSSES, export_onnx, load_onnx, read_metadata

ALL = tuple(LOSSES)


def _cnn(families: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    model: nn.Module = families["cnn"][0]()
    return model.eval()


@pytest.fixture(scope="module")
def all_losses(
    tmp_path_factory: pytest.TempPathFactory, families: dict[str, Any]
) -> tuple[nn.Module, Any]:
    """The digits CNN exported with every loss graph."""
    model = _cnn(families)
    path = tmp_path_factory.mktemp("losses") / "model.onnx"
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    result = export_onnx(
        model, x, path, metadata={"input_range": (0.0, 1.0)}, losses=ALL, progress=False
    )
    return model, result


def _labels(loss: str, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    y = torch.randint(0, 10, (n,), generator=gen)
    if LOSSES[loss].inputs == ("labels", "target"):
        return y, (y + torch.randint(1, 10, (n,), generator=gen)) % 10
    return (y,)


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("loss", ALL)
def test_fused_loss_gradient_equals_autograd(all_losses: Any, loss: str) -> None:
    model, result = all_losses
    runtime = load_onnx(result.path)
    assert runtime.has_loss_graph(loss) and set(runtime.loss_graphs) == set(ALL)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(7, 1, 8, 8, generator=gen)
    labels = _labels(loss, 7, gen)
    got = runtime.loss_and_grad(x, *labels, loss=loss)
    xt = x.clone().requires_grad_(True)
    out = model(xt)
    value = LOSSES[loss].fn(out, *labels)
    (grad,) = torch.autograd.grad(value.sum(), xt)
    assert got.output.shape == (7, 10) and got.loss.shape == (7,) and got.grad.shape == x.shape
    assert _rel(got.output, out.detach()) <= 1e-5
    assert _rel(got.loss, value.detach()) <= 1e-5
    assert _rel(got.grad, grad) <= 1e-5
    rows = [r for r in result.graphs[0].report.rows if r.case == f"loss-{loss}"]
    assert rows and all(r.passed for r in rows)  # verified at export, recorded in the report


def test_cross_entropy_step_is_bit_identical_to_pytorch_fgsm(all_losses: Any) -> None:
    model, result = all_losses
    runtime = load_onnx(result.path)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(16, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (16,), generator=gen)
    xt = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(xt), y), xt)
    fused = runtime.loss_and_grad(x, y, loss="ce").grad / 16
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    assert torch.equal((x + 0.1 * fused.sign()).clamp(0, 1), expected)


def test_cross_entropy_gradient_routes_max_pool_ties_like_pytorch(all_losses: Any) -> None:
    """Constant 2x2 patches tie whole max-pool windows at positive values: the fused graph's
    pooling backward (no indices) gives each window's gradient to its first maximum."""
    model, result = all_losses
    runtime = load_onnx(result.path)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(6, 1, 4, 4, generator=gen).round()
    x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    x[:2] = 0.5  # constant images
    y = torch.randint(0, 10, (6,), generator=gen)
    pooled: list[torch.Tensor] = []
    pool = next(m for m in model.modules() if isinstance(m, nn.MaxPool2d))
    hook = pool.register_forward_hook(lambda _m, inputs, _out: pooled.append(inputs[0]))
    xt = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(xt), y, reduction="sum"), xt)
    hook.remove()
    windows = pooled[0].detach().unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    top = windows.amax(-1, keepdim=True)
    tied = ((windows == top).sum(-1) > 1) & (top.squeeze(-1) > 0)
    assert tied.sum() > 20  # the case under test: ties that the ReLU backward does not erase
    fused = runtime.loss_and_grad(x, y, loss="ce").grad
    assert _rel(fused, grad) <= 1e-5


def test_default_export_writes_ce_and_selected_beside_the_file(cnn_export: Any) -> None:
    _, result = cnn_export
    meta = read_metadata(result.path)
    assert set(meta["loss_graphs"]) == {"ce", "selected"} and meta["loss_graphs_dropped"] == {}
    for loss, entry in meta["loss_graphs"].items():
        assert (result.path.parent / entry["file"]).is_file()
        assert entry["file"] == f"model.loss-{loss}.onnx"


def test_bad_loss_inputs_give_clear_errors(all_losses: Any) -> None:
    _, result = all_losses
    runtime = load_onnx(result.path)
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(DataError, match=r"must have shape \(3,\)"):
        runtime.loss_and_grad(x, torch.tensor([1, 2]), loss="ce")
    with pytest.raises(DataError, match="takes"):
        runtime.loss_and_grad(x, torch.tensor([1, 2, 3]), loss="dlr_targeted")
    with pytest.raises(ExportError, match="losses=\\['nope'\\]"):
        runtime.loss_and_grad(x, torch.tensor([1, 2, 3]), loss="nope")


def test_unknown_loss_name_is_refused_at_export(tmp_path: Path) -> None:
    model = nn.Linear(6, 3)
    with pytest.raises(ExportError, match="unknown loss graph.*choose from ce, cw"):
        export_onnx(model, torch.randn(3, 6), tmp_path / "m.onnx", losses=["cee"])


def test_a_loss_graph_failing_verification_is_dropped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, families: dict[str, Any]
) -> None:
    from neuroplex.onnx import _losses

    original = _losses._build_head

    def wrong(h: Any, loss: str, z: str, labels: list[str]) -> tuple[str, str]:
        value, grad = original(h, loss, z, labels)
        return value, h.op("Mul", grad, h.const(2.0)) if loss == "cw" else grad

    monkeypatch.setattr(_losses, "_build_head", wrong)
    model = _cnn(families)
    path = tmp_path / "model.onnx"
    export_onnx(model, torch.rand(4, 1, 8, 8), path, losses=("ce", "cw"), progress=False)
    meta = read_metadata(path)
    assert list(meta["loss_graphs"]) == ["ce"]
    assert "failed verification: grad_input" in meta["loss_graphs_dropped"]["cw"]
    assert not (tmp_path / "model.loss-cw.onnx").exists()
    runtime = load_onnx(path)
    assert runtime.tier == "gradients" and runtime.loss_graphs == ("ce",)
    with pytest.raises(ExportError, match="no 'cw' loss graph"):
        runtime.loss_and_grad(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), loss="cw")


def test_loss_graphs_need_class_scores(family_export: Any) -> None:
    _, _, result = family_export("autoencoder")
    meta = read_metadata(result["model"].path)
    assert meta["loss_graphs"] == {}
    assert "needs (N, C) logits" in meta["loss_graphs_dropped"]["ce"]


def test_tampered_loss_graph_is_refused(cnn_export: Any, tmp_path: Path) -> None:
    _, result = cnn_export
    folder = tmp_path / "copy"
    shutil.copytree(result.path.parent, folder)
    graph = onnx.load(str(folder / "model.loss-ce.onnx"))
    graph.doc_string = "changed"
    onnx.save(graph, str(folder / "model.loss-ce.onnx"))
    runtime = load_onnx(folder / "model.onnx")
    with pytest.raises(ExportError, match="does not match this model"):
        runtime.loss_and_grad(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), loss="ce")
    assert not runtime.has_loss_graph("ce") and runtime.has_loss_graph("selected")


class _TokenModel(nn.Module):
    """A learned token expanded to the batch (like a ViT's class token): the exporter may take
    the symbolic batch size from ``grad_output``, tying the forward to the backward's input."""

    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(1, 3))
        self.head = nn.Linear(7, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.token.expand(x.shape[0], -1), x], dim=1))


def test_batch_read_from_grad_output_still_splices_and_splits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _TokenModel().eval()
    x = torch.randn(3, 4)
    result = export_onnx(model, x, tmp_path / "m.onnx", losses=("ce",), progress=False)
    vjp = onnx.load(str(result.graphs[0].gradient_path))
    assert not [n for n in vjp.graph.node if n.op_type == "Shape" and "grad_output" in n.input]
    runtime = load_onnx(result.path)
    assert runtime.has_loss_graph("ce"), read_metadata(result.path)["loss_graphs_dropped"]
    assert runtime._split_sessions() is not None
    y = torch.tensor([0, 3, 1, 2, 2])
    xb = torch.randn(5, 4)
    xt = xb.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(
        nn.functional.cross_entropy(model(xt), y, reduction="sum"), xt
    )
    torch.testing.assert_close(runtime.loss_and_grad(xb, y).grad, expected, rtol=1e-5, atol=1e-6)
