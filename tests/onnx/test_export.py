"""Export and verification of every model family; failure paths of the exporter."""

from __future__ import annotations

import json
from typing import Any

import onnx
import pytest
import torch
from torch import nn

from neuroplex.errors import ExportError
from neuroplex.onnx import (
    OnnxModule,
    VerificationReport,
    export_onnx,
    graph_path,
    load_onnx,
    read_metadata,
    verify_onnx,
)

FAMILY_NAMES = ["mlp", "cnn", "transformer", "gan", "autoencoder"]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_exports_and_verifies(family: str, family_export: Any, families: Any) -> None:
    _, _, result = family_export(family)
    graphs = families[family][2]
    assert [g.graph for g in result.graphs] == list(graphs)
    for item in result.graphs:
        assert item.path == graph_path(result.graphs[0].path.parent / "model.onnx", item.graph)
        assert item.path.is_file()
        assert item.report is not None and item.report.passed, item.report
        cases = {r.case for r in item.report.rows}
        assert {"random", "zeros"} <= cases
        assert {r.batch for r in item.report.rows} == {1, 2, 5}
        # every single-input float graph of these families gets the gradient tier
        assert item.tier == "gradients", item.tier_reason
        # batch 4 equals some model dims (4 classes, head size 4): still a dynamic batch
        assert "dynamic batch" in item.tier_reason, item.tier_reason
        assert item.gradient_path is not None and item.gradient_path.is_file()
        # no temporary files are left behind
        leftovers = [p.name for p in item.path.parent.iterdir() if p.name.startswith(".")]
        assert leftovers == []


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_onnx_module_matches_torch_at_new_batch_sizes(family: str, family_export: Any) -> None:
    model, _, result = family_export(family)
    for item in result.graphs:
        sub = model if item.graph == "model" else getattr(model, item.graph)
        runtime = load_onnx(item.path)
        shape = runtime.input_specs[0].shape
        x = torch.rand((7, *shape[1:]))
        with torch.no_grad():
            expected = sub.eval()(x)
            got = runtime(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        assert runtime.input_specs[0].shape[0] is None  # dynamic batch


def test_metadata_describes_the_model_without_python(family_export: Any) -> None:
    model, _, result = family_export("mlp")
    meta = read_metadata(result.path)
    assert meta["config"] == model.to_config()
    assert meta["graph"] == "model"
    assert meta["opset"] == 18
    assert meta["input_spec"] == [
        {"name": "input", "shape": [None, 6], "dtype": "float32", "range": None}
    ]
    assert meta["output_names"] == ["output"]
    assert meta["versions"]["torch"] == torch.__version__.split("+")[0] or meta["versions"]["torch"]
    assert "neuroplex" in meta["versions"] and "onnx" in meta["versions"]
    assert meta["tier"] == "gradients"
    assert meta["gradient_graph"] == "model.vjp.onnx"
    # raw props are JSON strings under the neuroplex. prefix
    raw = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(raw["neuroplex.input_spec"])[0]["dtype"] == "float32"


def test_class_names_and_range_in_metadata(cnn_export: Any) -> None:
    _, result = cnn_export
    meta = read_metadata(result.path)
    assert meta["input_range"] == (0.0, 1.0)
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert {r.case for r in result.path and result.graphs[0].report.rows} >= {"min", "max"}


def test_gan_exports_both_graphs_with_their_own_inputs(family_export: Any) -> None:
    _, _, result = family_export("gan")
    gen, disc = load_onnx(result["generator"].path), load_onnx(result["discriminator"].path)
    assert gen.input_specs[0].shape == (None, 4)
    assert disc.input_specs[0].shape == (None, 1, 4, 4)  # judged the generator's output
    assert read_metadata(result["discriminator"].path)["graph"] == "discriminator"
    assert not (result.path.parent / "model.onnx").exists()  # no "model" graph requested
    with pytest.raises(KeyError, match="exported"):
        result["model"]


def test_autoencoder_graphs_are_named_files(family_export: Any) -> None:
    _, _, result = family_export("autoencoder")
    names = sorted(p.name for p in result.path.parent.glob("*.onnx"))
    assert names == sorted(
        [
            "model.encoder.onnx",
            "model.encoder.vjp.onnx",
            "model.decoder.onnx",
            "model.decoder.vjp.onnx",
            "model.onnx",
            "model.vjp.onnx",
        ]
    )


def test_batch_one_example_still_gives_dynamic_batch(tmp_path: Any) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    result = export_onnx(model, torch.randn(1, 3), tmp_path / "m.onnx", gradients=False)
    runtime = load_onnx(result.path)
    assert runtime.input_specs[0].shape == (None, 3)
    assert runtime(torch.randn(6, 3)).shape == (6, 2)
    assert runtime.tier == "forward_only"
    assert "gradients=False" in runtime.tier_reason


def test_training_mode_model_is_exported_in_eval_and_restored(tmp_path: Any) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.9), nn.Linear(8, 2)).train()
    result = export_onnx(model, torch.randn(4, 3), tmp_path / "m.onnx", gradients=False)
    assert model.training  # restored
    x = torch.randn(5, 3)
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(load_onnx(result.path)(x), expected)


class _Qr(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.qr(x)[0]


class _WithQr(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.odd = nn.Sequential(_Qr())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.proj(x))


def test_unsupported_operator_names_op_and_module(tmp_path: Any) -> None:
    with pytest.raises(ExportError) as info:
        export_onnx(_WithQr(), torch.randn(2, 3, 3), tmp_path / "qr.onnx")
    message = str(info.value)
    assert "aten.linalg_qr" in message
    assert "odd.0" in message and "_Qr" in message
    assert not (tmp_path / "qr.onnx").exists()


class _ExportDiffers(nn.Module):
    """Adds 1 only while being exported: the ONNX graph cannot match PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y + 1.0 if torch.compiler.is_exporting() else y


def test_failed_verification_raises_with_table_and_writes_nothing(tmp_path: Any) -> None:
    with pytest.raises(ExportError) as info:
        export_onnx(_ExportDiffers(), torch.randn(4, 3), tmp_path / "bad.onnx")
    message = str(info.value)
    assert "**FAILED**" in message and "| model | random |" in message
    assert "nothing was written" in message
    assert list(tmp_path.iterdir()) == []


def test_verify_report_records_and_markdown(cnn_export: Any) -> None:
    model, result = cnn_export
    report = verify_onnx(result.path, model, batch_sizes=(1, 3))
    assert isinstance(report, VerificationReport)
    assert report.passed and report.failures == ()
    data = report.to_dict()
    assert data["passed"] is True and data["atol"] == 1e-5 and data["rtol"] == 1e-4
    assert {row["batch"] for row in data["rows"]} == {1, 3}
    assert any(row["case"] == "gradient" for row in data["rows"])
    table = report.to_markdown()
    assert "| graph | case | batch | output | max abs err |" in table
    assert str(report) == table
    for row in report.rows:
        if row.case != "gradient":
            assert row.argmax_agreement == 1.0 and row.max_abs <= 1e-5


def test_verify_detects_a_different_model(cnn_export: Any) -> None:
    _, result = cnn_export
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    report = verify_onnx(result.path, other, gradients=False)
    assert not report.passed and report.failures
    with pytest.raises(ExportError, match="verification failed"):
        verify_onnx(result.path, other, gradients=False, raise_on_failure=True)


class _TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.lin(x)
        return y, y.softmax(-1)


def test_multi_output_model_is_forward_only_with_reason(tmp_path: Any) -> None:
    result = export_onnx(_TwoOutputs(), torch.randn(3, 3), tmp_path / "two.onnx")
    item = result.graphs[0]
    assert item.tier == "forward_only" and "one tensor output" in item.tier_reason
    runtime = load_onnx(item.path)
    assert runtime.output_names == ("output_0", "output_1")
    a, b = runtime(torch.randn(2, 3))
    assert a.shape == b.shape == (2, 4)
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ExportError, match="forward-only"):
        runtime(x)


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(tokens).mean(1))


def test_integer_input_model_verifies_forward_only(tmp_path: Any) -> None:
    tokens = torch.randint(0, 10, (3, 5))
    result = export_onnx(_Tokens(), tokens, tmp_path / "tok.onnx", metadata={"input_range": (0, 9)})
    item = result.graphs[0]
    assert item.report is not None and item.report.passed
    assert item.tier == "forward_only" and "floating-point" in item.tier_reason
    runtime = OnnxModule(item.path)
    assert runtime.input_specs[0].dtype == torch.int64


def test_bad_export_arguments(tmp_path: Any) -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(ExportError, match="must end in '.onnx'"):
        export_onnx(model, torch.randn(2, 2), tmp_path / "m.txt")
    with pytest.raises(ExportError, match="opset 99"):
        export_onnx(model, torch.randn(2, 2), tmp_path / "m.onnx", opset=99)
    with pytest.raises(ExportError, match="torch.nn.Module"):
        export_onnx("not a model", torch.randn(2, 2), tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="not a sub-module"):
        export_onnx(model, torch.randn(2, 2), tmp_path / "m.onnx", graphs=("generator",))
    with pytest.raises(ExportError, match="tensor or a tuple of tensors"):
        export_onnx(model, [[1.0, 2.0]], tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_attention_rewrite_is_equivalent_and_restored() -> None:
    from neuroplex.onnx._rewrites import export_rewrites

    torch.manual_seed(0)
    original = nn.MultiheadAttention.forward
    attn = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, -1] = True
    with torch.no_grad():
        plain = attn(x, x, x, need_weights=False)[0]
        masked = attn(x, x, x, key_padding_mask=mask, need_weights=False)[0]
        weights = attn(x, x, x)[1]
        with export_rewrites():
            assert nn.MultiheadAttention.forward is not original
            out, none = attn(x, x, x, need_weights=False)
            torch.testing.assert_close(out, plain, atol=1e-6, rtol=1e-5)
            assert none is None
            # masks and attention weights take PyTorch's own path
            torch.testing.assert_close(
                attn(x, x, x, key_padding_mask=mask, need_weights=False)[0], masked
            )
            torch.testing.assert_close(attn(x, x, x)[1], weights)
    assert nn.MultiheadAttention.forward is original


class _MaskedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
        return self.attn(x, x, x, attn_mask=causal, need_weights=False)[0].mean(1)


def test_masked_attention_exports_through_pytorch_path(tmp_path: Any) -> None:
    torch.manual_seed(0)
    result = export_onnx(_MaskedAttention(), torch.randn(3, 5, 8), tmp_path / "m.onnx")
    assert result.graphs[0].report is not None and result.graphs[0].report.passed


@pytest.mark.parametrize("contrib", [True, False])
def test_transformer_attention_kernel_choice(contrib: bool, tmp_path: Any, families: Any) -> None:
    torch.manual_seed(0)
    model = families["transformer"][0]()
    result = export_onnx(
        model, torch.randn(4, 5, 8), tmp_path / "t.onnx", contrib_ops=contrib, gradients=False
    )
    assert result.graphs[0].report is not None and result.graphs[0].report.passed
    graph = onnx.load(str(result.path)).graph
    fused = [n for n in graph.node if n.op_type == "MultiHeadAttention"]
    domains = {n.domain for n in graph.node}
    if contrib:
        assert len(fused) == 2 and all(n.domain == "com.microsoft" for n in fused)
    else:
        assert not fused and domains <= {"", "ai.onnx"}
    names = load_onnx(result.path).activation_names()
    assert "encoder.layers.0" in names and "head" in names
