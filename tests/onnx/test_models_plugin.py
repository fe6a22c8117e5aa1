"""Every registered model family exports and verifies (runs when neuroplex-models is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("neuroplex_models")

import neuroplex
from neuroplex.onnx import export_onnx, load_onnx

pytestmark = pytest.mark.requires_plugins("neuroplex-models")


def _example(record: Any) -> torch.Tensor:
    assert record.example_input is not None, f"model {record.name!r} has no example_input"
    shape = tuple(record.example_input)
    shape = (max(shape[0], 2), *shape[1:])
    gen = torch.Generator().manual_seed(0)
    dtype = getattr(torch, record.example_input_dtype)
    if dtype.is_floating_point:
        return torch.rand(shape, generator=gen).to(dtype)
    high = int(record.example_config.get("vocab_size", 2))
    return torch.randint(0, high, shape, generator=gen).to(dtype)


@pytest.mark.parametrize("name", neuroplex.list_models())
def test_registered_model_exports_and_verifies(name: str, tmp_path: Path) -> None:
    record = neuroplex.get_record("model", name)
    torch.manual_seed(0)
    model = neuroplex.create_model(name, **record.example_config)
    result = export_onnx(model, _example(record), tmp_path / "model.onnx")
    assert [g.graph for g in result.graphs] == list(record.export_graphs)
    for item in result.graphs:
        assert item.report is not None and item.report.passed, item.report
        runtime = load_onnx(item.path)
        assert runtime.tier == item.tier
        meta = runtime.metadata
        assert meta["graph"] == item.graph
        assert meta["origin"]["component"] == record.name
