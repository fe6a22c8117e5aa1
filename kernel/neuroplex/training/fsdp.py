"""The ``fsdp`` strategy: FSDP2 (:func:`torch.distributed.fsdp.fully_shard`) over the
``torchrun`` group, on top of :class:`~neuroplex.training.distributed.DDPStrategy`'s process
group, timeouts and collectives (see :mod:`neuroplex.training.distributed`)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from neuroplex.errors import ConfigError
from neuroplex.protocols import ForwardWrappableStep, ShardingPolicy
from neuroplex.training.distributed import DDPStrategy

_NULL = contextlib.nullcontext()

__all__ = ["FSDPStrategy"]


class FSDPStrategy(DDPStrategy):
    """FSDP2 across the ``torchrun`` group: ``sharding`` names the units to shard (see
    :class:`~neuroplex.protocols.ShardingPolicy`); ``family`` names the model in errors."""

    name = "fsdp"
    shards_state = True

    def __init__(
        self,
        timeout_s: float = 300.0,
        sharding: ShardingPolicy | None = None,
        family: str | None = None,
    ) -> None:
        super().__init__(timeout_s)
        self.sharding = sharding
        self.family = family
        self.sharded: Any = None  # the FSDP root module, while training

    def shard(self, model: torch.nn.Module, step: Any) -> torch.nn.Module:
        """A twin of ``model`` with the policy's units and the root sharded (FSDP2); the
        twin takes over ``model``'s tensors, and ``model`` keeps only ``meta`` tensors of the
        same shapes until :meth:`unshard`."""
        what = f"model {self.family!r}" if self.family else "this model"
        if self.sharding is None:
            raise ConfigError(
                f"strategy 'fsdp' needs a sharding policy and {what} gives none (its plugin "
                "sets ModelRecord.sharding; Trainer(..., sharding=policy) in Python): use "
                "strategy 'ddp' for it",
                path="training.strategy",
            )
        if not (isinstance(step, ForwardWrappableStep) and step.forward_wrappable):
            raise ConfigError(
                f"strategy 'fsdp' needs a training step that only calls the model "
                f"(forward_wrappable); the step of {what} ({type(step).__name__}) reaches "
                "into it: use strategy 'ddp'",
                path="training.strategy",
            )
        units = _policy_units(model, self.sharding, what)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        tensors = [*model.parameters(), *model.buffers()]
        twin = copy.deepcopy(model, {id(t): t for t in tensors})  # shares every tensor
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        with self._collective("sharding the model"):
            for name in units:
                fully_shard(twin.get_submodule(name), mesh=mesh)
            fully_shard(twin, mesh=mesh)
        model.to("meta")  # the shards are copies: the full tensors go
        self.sharded = twin
        return twin

    def unshard(
        self,
        trained: torch.nn.Module,
        model: torch.nn.Module,
        optimizers: Iterable[torch.optim.Optimizer] = (),
    ) -> None:
        """Every rank drops the sharded optimizer state, then gathers the full weights of
        ``trained`` into ``model``, one parameter at a time (at most one full tensor beyond
        ``model``'s own), and copies the buffers."""
        from torch.distributed.tensor import DTensor

        for opt in optimizers:
            opt.state.clear()
        model.to_empty(device=self.device)
        with torch.no_grad(), self._collective("gathering the full weights"):
            for name, param in trained.named_parameters():
                full = param.full_tensor() if isinstance(param, DTensor) else param
                model.get_parameter(name).copy_(full)
                del full
            for name, buf in trained.named_buffers():
                model.get_buffer(name).copy_(buf)

    def wrap(self, model: torch.nn.Module, step: Any) -> torch.nn.Module:
        return model  # the sharded twin does its own collectives (hooks on each unit)

    @contextlib.contextmanager
    def _no_sync(self) -> Iterator[None]:
        self.sharded.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.sharded.set_requires_gradient_sync(True)

    def no_sync(self) -> contextlib.AbstractContextManager[Any]:
        return _NULL if self.sharded is None else self._no_sync()

    def backward_guard(self) -> contextlib.AbstractContextManager[Any]:
        return self._collective("reduce-scattering gradients")

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """FSDP reduce-scattered the mean gradient in backward."""

    def full_norm(self, norm: torch.Tensor) -> torch.Tensor:
        from torch.distributed.tensor import DTensor

        if isinstance(norm, DTensor):
            with self._collective("reducing the gradient norm"):
                return norm.full_tensor()
        return norm

    def teardown(self) -> None:
        self.sharded = None
        super().teardown()


def _policy_units(model: torch.nn.Module, policy: ShardingPolicy, what: str) -> list[str]:
    """The names of the policy's units inside ``model`` (each a proper sub-module, once)."""
    names = {id(m): n for n, m in model.named_modules() if n}
    units: list[str] = []
    for unit in policy(model):
        name = names.get(id(unit))
        if name is None or name in units:
            raise ConfigError(
                f"the sharding policy of {what} gave {type(unit).__name__}, which is not a "
                "sub-module of the model (or came twice): a policy returns distinct "
                "sub-modules, never the model itself",
                path="training.strategy",
            )
        units.append(name)
    return units
