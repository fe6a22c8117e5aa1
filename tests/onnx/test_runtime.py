"""OnnxModule: file validation, input checks, gradients (FGSM, IG), activations."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from neuroplex.errors import DataError, ExportError
from neuroplex.onnx import OnnxModule, load_onnx, predict, read_metadata


# -- file validation ------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        OnnxModule(tmp_path / "nope.onnx")


@pytest.mark.parametrize(
    "content", [b"", b"\x00\x01garbage" * 50, b"hello, I am a text file\n", bytes(range(256)) * 8]
)
def test_random_and_non_onnx_bytes_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ExportError, match="empty|not a valid ONNX model|checker"):
        OnnxModule(path)
    with pytest.raises(ExportError):
        read_metadata(path)


def test_truncated_file_is_refused(cnn_export: Any, tmp_path: Path) -> None:
    _, result = cnn_export
    data = result.path.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="not a valid ONNX model|checker"):
        OnnxModule(path)


def test_size_limit(cnn_export: Any) -> None:
    _, result = cnn_export
    with pytest.raises(ExportError, match="byte limit"):
        OnnxModule(result.path, max_bytes=100)


def test_opset_out_of_range_is_refused(cnn_export: Any, tmp_path: Path) -> None:
    _, result = cnn_export
    model = onnx.load(str(result.path))
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = 7
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match="opset 7, outside the supported range"):
        OnnxModule(path)


def test_external_data_escaping_the_directory_is_refused(cnn_export: Any, tmp_path: Path) -> None:
    _, result = cnn_export
    model = onnx.load(str(result.path))
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 4096)
    inner = tmp_path / "inner"
    inner.mkdir()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../secret.bin")
    path = inner / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ExportError, match="outside its directory"):
        OnnxModule(path)


def test_loads_from_bytes(cnn_export: Any) -> None:
    model, result = cnn_export
    runtime = OnnxModule(result.path.read_bytes())
    assert runtime.tier == "forward_only" and "bytes" in runtime.tier_reason
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(runtime(x), model(x))


# -- input checks and plain inference ---------------------------------------------------------
def test_wrong_shape_dtype_and_count_give_clear_errors(cnn_export: Any) -> None:
    _, result = cnn_export
    runtime = load_onnx(result.path)
    with pytest.raises(DataError, match=r"shape \(2, 1, 9, 9\), expected \[input: \(N, 1, 8, 8\)"):
        runtime(torch.rand(2, 1, 9, 9))
    with pytest.raises(DataError, match="shape"):
        runtime(torch.rand(2, 64))
    with pytest.raises(DataError, match=r"dtype torch.float64, expected torch.float32"):
        runtime(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(DataError, match="takes 1 input"):
        runtime(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(DataError, match="must be a torch.Tensor"):
        runtime(np.zeros((2, 1, 8, 8), dtype=np.float32))


def test_module_properties_and_repr(cnn_export: Any) -> None:
    _, result = cnn_export
    runtime = load_onnx(result.path)
    assert runtime.providers == ["CPUExecutionProvider"]
    assert runtime.device == torch.device("cpu")
    assert runtime.input_range == (0.0, 1.0)
    assert runtime.metadata["class_names"][3] == "3"
    assert "tier=gradients" in repr(runtime) and "(N, 1, 8, 8)" in repr(runtime)
    assert list(runtime.parameters()) == []


def test_outputs_are_fresh_cpu_tensors_without_grad(cnn_export: Any) -> None:
    model, result = cnn_export
    runtime = load_onnx(result.path)
    x = torch.rand(4, 1, 8, 8)
    out = runtime(x)
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu" and not out.requires_grad
    # a non-contiguous input is accepted (copied once)
    xt = torch.rand(8, 8, 4, 1).permute(2, 3, 0, 1)
    with torch.no_grad():
        torch.testing.assert_close(runtime(xt), model(xt), atol=1e-5, rtol=1e-4)


def test_predict_and_run_numpy(cnn_export: Any) -> None:
    model, result = cnn_export
    x = np.random.default_rng(0).random((5, 1, 8, 8))  # float64: cast by predict
    out = predict(result.path, x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-4)
    runtime = load_onnx(result.path)
    (again,) = runtime.run_numpy(x.astype(np.float32))
    np.testing.assert_allclose(again, out)
    with pytest.raises(DataError, match="dtype"):
        predict(runtime, x.astype(np.int64))


# -- gradients --------------------------------------------------------------------------------
def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0.0, 1.0).detach()


def test_fgsm_on_onnx_equals_fgsm_on_pytorch(cnn_export: Any) -> None:
    model, result = cnn_export
    runtime = load_onnx(result.path)
    assert runtime.tier == "gradients"
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(16, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (16,), generator=gen)
    adv_torch = _fgsm(model, x, y, eps=0.1)
    adv_onnx = _fgsm(runtime, x, y, eps=0.1)
    assert torch.equal(adv_torch, adv_onnx)
    assert not torch.equal(adv_torch, x)


def test_integrated_gradients_agree(cnn_export: Any) -> None:
    captum = pytest.importorskip("captum.attr")
    model, result = cnn_export
    runtime = load_onnx(result.path)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([0, 3, 5, 9])
    ref = captum.IntegratedGradients(model).attribute(x, target=target, n_steps=16)
    got = captum.IntegratedGradients(runtime).attribute(x, target=target, n_steps=16)
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel <= 1e-5, rel


def test_backward_matches_autograd_for_every_output_weighting(cnn_export: Any) -> None:
    model, result = cnn_export
    runtime = load_onnx(result.path)
    x = torch.rand(3, 1, 8, 8)
    w = torch.randn(3, 10)
    xa = x.clone().requires_grad_(True)
    (runtime(xa) * w).sum().backward()
    xb = x.clone().requires_grad_(True)
    (model(xb) * w).sum().backward()
    assert xa.grad is not None and xb.grad is not None
    assert (xa.grad - xb.grad).abs().max().item() <= 1e-6


def test_tampered_gradient_graph_is_not_used(cnn_export: Any, tmp_path: Path) -> None:
    _, result = cnn_export
    folder = tmp_path / "copy"
    shutil.copytree(result.path.parent, folder)
    vjp = folder / "model.vjp.onnx"
    graph = onnx.load(str(vjp))
    graph.doc_string = "changed"
    onnx.save(graph, str(vjp))
    runtime = load_onnx(folder / "model.onnx")
    assert runtime.tier == "forward_only" and "does not match" in runtime.tier_reason
    vjp.unlink()
    runtime = load_onnx(folder / "model.onnx")
    assert runtime.tier == "forward_only" and "missing" in runtime.tier_reason
    assert hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()


def test_fixed_batch_gradient_graph_pads_any_batch(tmp_path: Path) -> None:
    from neuroplex.onnx._convert import to_onnx
    from neuroplex.onnx._gradients import VjpModule, trace_vjp

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    x = torch.randn(3, 4)
    fwd = to_onnx(model, (x,), opset=18, input_names=["input"], output_names=["output"], graph="m")
    traced = trace_vjp(model, x, symbolic=False)
    vjp = to_onnx(
        VjpModule(traced).eval(),
        (x, torch.zeros(3, 3)),
        opset=18,
        input_names=["input", "grad_output"],
        output_names=["grad_input", "output"],
        graph="v",
        dynamic=False,
    )
    onnx.save(fwd, str(tmp_path / "m.onnx"))
    onnx.save(vjp, str(tmp_path / "v.onnx"))
    runtime = OnnxModule(tmp_path / "m.onnx", gradient_graph=tmp_path / "v.onnx")
    assert runtime.tier == "gradients" and "fixed batch 3" in runtime.tier_reason
    for batch in (1, 3, 7):
        xb = torch.randn(batch, 4, requires_grad=True)
        go = torch.randn(batch, 3)
        (expected,) = torch.autograd.grad(model(xb), xb, go)
        got = runtime.vjp(xb, go)
        assert got.shape == (batch, 4)
        assert (got - expected).abs().max().item() <= 1e-6


# -- activations ------------------------------------------------------------------------------
def test_activations_map_back_to_module_names(family_export: Any) -> None:
    model, _, result = family_export("mlp")
    runtime = load_onnx(result.path)
    names = runtime.activation_names()
    assert {"net.0", "net.1", "net.3", "net.4", "head"} <= set(names)
    x = torch.randn(5, 6)
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach())
        )
        for name, module in model.named_modules()
        if name
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    acts = runtime.activations(x)
    for name in ("net.1", "net.4", "head"):  # post-activation values and the logits
        torch.testing.assert_close(acts[name], captured[name], atol=1e-5, rtol=1e-4)
    only = runtime.activations(x, names=["net.1"])
    assert list(only) == ["net.1"]
    with pytest.raises(DataError, match="unknown module name"):
        runtime.activations(x, names=["nope"])
    # the forward session is unaffected by the activation session
    torch.testing.assert_close(runtime(x), captured["head"], atol=1e-5, rtol=1e-4)


def test_activations_of_cnn_include_post_relu_features(cnn_export: Any) -> None:
    model, result = cnn_export
    runtime = load_onnx(result.path)
    x = torch.rand(2, 1, 8, 8)
    acts = runtime.activations(x, names=["features.2", "features.5"])
    with torch.no_grad():
        expected = model.features[:3](x)
    torch.testing.assert_close(acts["features.2"], expected, atol=1e-5, rtol=1e-4)
    assert (acts["features.5"] >= 0).all()


# -- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_provider_io_binding_and_gradients(cnn_export: Any) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model, result = cnn_export
    runtime = load_onnx(result.path, device="cuda")
    assert "CUDAExecutionProvider" in runtime.providers
    assert runtime.device.type == "cuda"
    x = torch.rand(8, 1, 8, 8, device="cuda")
    out = runtime(x)
    assert out.device.type == "cuda"
    cuda_model = model.to("cuda")
    try:
        with torch.no_grad():
            torch.testing.assert_close(out, cuda_model(x), atol=1e-4, rtol=1e-3)
        xa = x.clone().requires_grad_(True)
        runtime(xa).sum().backward()
        xb = x.clone().requires_grad_(True)
        cuda_model(xb).sum().backward()
        assert xa.grad is not None and xb.grad is not None
        assert (xa.grad - xb.grad).abs().max().item() <= 1e-4
    finally:
        model.to("cpu")


@pytest.mark.gpu
def test_verify_on_cuda_states_looser_tolerances(cnn_export: Any) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from neuroplex.onnx import verify_onnx

    model, result = cnn_export
    report = verify_onnx(result.path, model, device="cuda")
    assert report.atol == 1e-4 and report.rtol == 1e-3
    assert report.passed, report


@pytest.mark.parametrize(
    ("pool", "side"), [(nn.MaxPool2d(2), 8), (nn.MaxPool2d(3, stride=2, padding=1), 7)]
)
def test_max_pool_gradient_routes_ties_like_pytorch(
    pool: nn.Module, side: int, tmp_path: Path
) -> None:
    from neuroplex.onnx import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), pool, nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, side, side))  # materialize the lazy layer
    result = export_onnx(model.eval(), torch.rand(2, 1, side, side), tmp_path / "pool.onnx")
    runtime = load_onnx(result.path)
    assert runtime.tier == "gradients", runtime.tier_reason
    # no MaxPool with an indices output (a slow path of ONNX Runtime) in the gradient graph
    pools = [
        n
        for n in onnx.load(str(result.graphs[0].gradient_path)).graph.node
        if n.op_type == "MaxPool"
    ]
    assert pools and all(len([o for o in n.output if o]) == 1 for n in pools)
    # rounded inputs: many equal values inside pooling windows (ties)
    x = (torch.rand(4, 1, side, side) * 2).round()
    go = torch.randn(4, 3)
    xt = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(xt), xt, go)
    got = runtime.vjp(x, go)
    assert (got - expected).abs().max().item() <= 1e-6


def test_backward_runs_the_split_graph_without_a_second_forward(cnn_export: Any) -> None:
    model, result = cnn_export
    runtime = load_onnx(result.path)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    w = torch.randn(5, 10, generator=torch.Generator().manual_seed(7))
    xa = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad((runtime(xa) * w).sum(), xa)
    split = runtime._split_sessions()
    assert split is not None  # forward returned the saved tensors, backward took them
    assert split[0].get_outputs()[0].name == "output"
    xb = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((model(xb) * w).sum(), xb)
    assert (got - ref).abs().max().item() <= 1e-6


def test_too_many_saved_tensors_keep_the_vjp_graph(
    cnn_export: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuroplex.onnx import _partition

    monkeypatch.setattr(_partition, "MAX_SAVED", 0)
    model, result = cnn_export
    runtime = load_onnx(result.path)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    w = torch.randn(3, 10, generator=torch.Generator().manual_seed(7))
    xa = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad((runtime(xa) * w).sum(), xa)
    assert runtime._split_sessions() is None  # the VJP graph (recomputed forward) served
    xb = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((model(xb) * w).sum(), xb)
    assert (got - ref).abs().max().item() <= 1e-6


@pytest.mark.parametrize(
    ("local_rank", "gpus", "expected"),
    [("2", 4, "cuda:2"), ("5", 4, "cuda:1"), ("1", 1, "cuda"), (None, 4, "cuda"), ("x", 4, "cuda")],
)
def test_a_torchrun_process_takes_the_gpu_of_its_local_rank(
    monkeypatch: pytest.MonkeyPatch, local_rank: str | None, gpus: int, expected: str
) -> None:
    import onnxruntime as ort

    from neuroplex.onnx._session import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert resolve_device(None) == torch.device(expected)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
