"""neuroplex-optim: names, weight-decay exclusions, warm-up cosine, plateau, errors."""

from __future__ import annotations

import pytest
import torch

import neuroplex
from neuroplex import ConfigError


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))


@pytest.mark.parametrize("name", ["sgd", "SGD", "Adam", "adamw", "RMSprop"])
def test_names_are_case_insensitive(name: str) -> None:
    opt = neuroplex.create_optimizer(name, _model().parameters(), lr=0.01)
    assert isinstance(opt, torch.optim.Optimizer)


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = _model()
    opt = neuroplex.create_optimizer("adamw", model.parameters(), lr=0.01, weight_decay=0.1)
    by_decay = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert {p.ndim for p in by_decay[0.1]} == {2}
    assert {p.ndim for p in by_decay[0.0]} == {1}
    assert len(by_decay[0.1]) + len(by_decay[0.0]) == len(list(model.parameters()))
    everything = neuroplex.create_optimizer(
        "sgd", model.parameters(), lr=0.01, weight_decay=0.1, decay_all=True
    )
    assert [g["weight_decay"] for g in everything.param_groups] == [0.1]


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(ConfigError, match="nesterov needs momentum > 0"):
        neuroplex.create_optimizer("sgd", _model().parameters(), lr=0.1, nesterov=True)
    opt = neuroplex.create_optimizer(
        "sgd", _model().parameters(), lr=0.1, momentum=0.9, nesterov=True
    )
    assert opt.param_groups[0]["nesterov"] is True


def test_cosine_warmup_then_decay() -> None:
    opt = torch.optim.SGD(_model().parameters(), lr=1.0)
    sched = neuroplex.create_scheduler(
        "cosine", opt, total_epochs=6, warmup_epochs=2, warmup_start_factor=0.1
    )
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[1] == pytest.approx(0.55)
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[2] > lrs[3] > lrs[4] > lrs[5] > lrs[6]
    assert lrs[6] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        neuroplex.create_scheduler("cosine", opt, total_epochs=2, warmup_epochs=2)


def test_plateau_reduces_after_patience() -> None:
    opt = torch.optim.SGD(_model().parameters(), lr=1.0)
    sched = neuroplex.create_scheduler("plateau", opt, patience=1, factor=0.5)
    for value in (1.0, 1.0, 1.0):
        sched.step(value)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_roles_are_kept_apart() -> None:
    with pytest.raises(neuroplex.ComponentNotFoundError, match="is a scheduler"):
        neuroplex.create_optimizer("step", _model().parameters())
    with pytest.raises(ConfigError, match="learning_rate"):
        neuroplex.create_optimizer("adam", _model().parameters(), lr=-1.0)


def test_entry_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, neuroplex_optim.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
