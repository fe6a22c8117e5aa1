"""The Trainer acts on declared contracts only: a scheduler is stepped with the monitored
metric because its record has the ``needs_metric`` capability, never because the object
happens to carry an attribute of that name."""

from __future__ import annotations

import pytest
import torch

from neuroplex import OptimizerRecord, TrainingConfig, hookimpl
from neuroplex.records import NEEDS_METRIC
from neuroplex.training import Trainer

pytestmark = pytest.mark.requires_plugins("neuroplex-optim", "neuroplex-devices")

CALLS: list[tuple[float, ...]] = []


class RecordingScheduler:
    """A scheduler that records how the Trainer steps it."""

    needs_metric = True  # an undeclared attribute: the kernel must not act on it

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def step(self, *args: float) -> None:
        CALLS.append(tuple(float(a) for a in args))

    def state_dict(self) -> dict[str, int]:
        return {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        pass


class Plugin:
    @hookimpl
    def neuroplex_register_optimizers(self):
        yield OptimizerRecord(
            name="metric_sched",
            factory=RecordingScheduler,
            role="scheduler",
            capabilities={NEEDS_METRIC},
        )
        yield OptimizerRecord(name="plain_sched", factory=RecordingScheduler, role="scheduler")


@pytest.fixture
def schedulers():
    from neuroplex.plugins import get_plugin_manager

    manager = get_plugin_manager()
    manager.register(Plugin(), "test_schedulers", distribution="sched-dist")
    CALLS.clear()
    yield
    manager.unregister("test_schedulers")


@pytest.mark.usefixtures("schedulers")
@pytest.mark.parametrize(("name", "with_metric"), [("metric_sched", True), ("plain_sched", False)])
def test_scheduler_is_stepped_as_its_record_declares(name: str, with_metric: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(4, 2)
    config = TrainingConfig(
        epochs=2,
        batch_size=16,
        learning_rate=0.1,
        scheduler=name,
        progress=False,
        device="cpu",
    )
    Trainer(model, config).train((x, y), (x, y))
    assert len(CALLS) == 2
    assert all(len(args) == (1 if with_metric else 0) for args in CALLS), CALLS
