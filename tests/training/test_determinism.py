"""Deterministic mode is scoped to the training run: the global torch flag is restored after."""

from __future__ import annotations

import pytest
import torch

from neuroplex.config import TrainingConfig
from neuroplex.training import Trainer
from neuroplex.training.rng import deterministic_algorithms


@pytest.fixture
def restore_flag():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("previous", [False, True])
def test_deterministic_algorithms_is_on_inside_and_restored_after(previous, restore_flag) -> None:
    torch.use_deterministic_algorithms(previous)
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() is previous
    with deterministic_algorithms(False):  # off: the flag is left as it is
        assert torch.are_deterministic_algorithms_enabled() is previous


@pytest.mark.requires_plugins("neuroplex-optim")
def test_a_deterministic_training_run_leaves_the_global_flag_as_it_was(restore_flag) -> None:
    torch.use_deterministic_algorithms(False)
    seen = []

    class Probe:
        def on_epoch_end(self, trainer, record) -> None:
            seen.append(torch.are_deterministic_algorithms_enabled())

    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    config = TrainingConfig(epochs=1, batch_size=8, deterministic=True, progress=False)
    Trainer(torch.nn.Linear(3, 2), config, callbacks=[Probe()]).train((x, y))
    assert seen == [True]
    assert not torch.are_deterministic_algorithms_enabled()
