"""Every family trains one epoch and evaluates on CUDA (skipped without a GPU)."""

from __future__ import annotations

import math

import pytest
import torch

from neuroplex import TrainingConfig, create_model, get_record, list_models
from neuroplex.records import resolve_factory
from neuroplex.training import Trainer

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("family", list_models())
def test_family_trains_on_cuda(family: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    record = get_record("model", family)
    torch.manual_seed(0)
    model = create_model(family, **record.example_config)
    x = torch.rand(32, *record.example_input[1:])
    y = torch.randint(0, 2, (32,))
    step = resolve_factory(record.training_step)() if record.training_step else None
    config = TrainingConfig(epochs=1, batch_size=8, device="cuda", progress=False)
    history = Trainer(model, config, step=step).train((x, y), (x, y))
    assert len(history) == 1
    assert math.isfinite(history["train_loss"][0] or math.nan)
    assert next(model.parameters()).device.type == "cuda"
    metrics = model.evaluate(x.cuda(), y.cuda())
    assert metrics.n == 32
    if hasattr(model, "generate"):
        assert model.generate(4, seed=0).device.type == "cuda"
    if hasattr(model, "report_samples"):
        for images in model.report_samples(x[:4].cuda()).values():
            assert images.shape[0] == 4
