"""The ``ddp`` and ``fsdp`` strategies: data parallelism under ``torchrun`` (gloo on CPU, nccl
on CUDA).

When the family's step declares ``forward_wrappable = True`` (it reaches the model only by
calling it, as the supervised default does), the Trainer hands the step the model wrapped in
:class:`torch.nn.parallel.DistributedDataParallel`: gradients are averaged in buckets while the
backward pass still runs, and accumulation micro-steps run under ``no_sync`` (one all-reduce
per optimizer step). Checkpoints keep saving the unwrapped module. A step that calls
sub-networks itself (a GAN's alternating updates) can declare
:class:`~neuroplex.protocols.SubnetworkStep`: each sub-network it updates is wrapped instead
and handed to the step. Any other step keeps the explicit path: rank 0's weights are
broadcast at start and each group's gradients are averaged in one flattened all-reduce at its
optimizer step. Each rank reads its share of every global batch
(:mod:`neuroplex.training.data`); epoch metrics are reduced as sums and counts; only rank 0
writes checkpoints, logs and shows progress.

``fsdp`` shards parameters, gradients and optimizer state across the group with FSDP2
(:func:`torch.distributed.fsdp.fully_shard`): the units the model family's
:class:`~neuroplex.protocols.ShardingPolicy` names, then the root. The Trainer trains a
sharded twin of the model (the same parameter names) while the caller's module is emptied
(its tensors on the ``meta`` device, so no rank holds the full model); a finished run gathers
the full weights back into the caller's module on every rank. Checkpoints are sharded
(:mod:`neuroplex.training.sharded`). The fsdp strategy lives in :mod:`neuroplex.training.fsdp`;
:func:`neuroplex.training.components.make_strategy` picks one by name.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import torch

from neuroplex.errors import ConfigError, TrainingError
from neuroplex.protocols import ForwardWrappableStep, SubnetworkStep

__all__ = ["DDPStrategy", "Strategy"]

_NULL = contextlib.nullcontext()

#: DistributedDataParallel's bucket size (MiB): small enough that the first buckets' all-reduce
#: starts early in the backward pass, large enough that a small model is one or two messages
BUCKET_CAP_MB = 25.0


class Strategy:
    """Single process: every collective is the identity."""

    name = "single"
    rank = 0
    world_size = 1
    #: whether checkpoints hold this rank's shards (torch.distributed.checkpoint) rather than
    #: one full state dict
    shards_state = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        """Make every process start from the same weights."""

    def shard(self, model: torch.nn.Module, step: Any) -> torch.nn.Module:
        """The module the Trainer trains, evaluates and checkpoints (``model`` itself unless
        the strategy shards it)."""
        return model

    def unshard(
        self,
        trained: torch.nn.Module,
        model: torch.nn.Module,
        optimizers: Iterable[torch.optim.Optimizer] = (),
    ) -> None:
        """After a finished run: ``trained`` (what :meth:`shard` returned) back into ``model``
        (a sharding strategy first drops the ``optimizers``' sharded state: of no use once
        the group is gone)."""

    def wrap(self, model: torch.nn.Module, step: Any) -> torch.nn.Module:
        """The module to hand ``step.train_step`` (``model`` itself unless a wrapper such as
        DistributedDataParallel takes over the gradient averaging)."""
        return model

    def full_norm(self, norm: torch.Tensor) -> torch.Tensor:
        """A gradient norm as a plain tensor (a sharded one is reduced across the group)."""
        return norm

    def barrier(self) -> None:
        """Wait until every process reaches this point."""

    def no_sync(self) -> contextlib.AbstractContextManager[Any]:
        """The context of an accumulation micro-step that does not step the optimizers."""
        return _NULL

    def backward_guard(self) -> contextlib.AbstractContextManager[Any]:
        """The context of ``loss.backward()`` (a wrapper's all-reduce runs inside it)."""
        return _NULL

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Mean of the gradients across processes."""

    def sum_floats(self, values: list[float]) -> list[float]:
        """Elementwise sum of ``values`` across processes."""
        return values

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's value of ``flag`` everywhere (e.g. early stopping)."""
        return flag

    def gather_objects(self, obj: Any, what: str = "gathering checkpoint state") -> list[Any]:
        """Every rank's ``obj``, in rank order (e.g. RNG states for a checkpoint); ``what``
        names the exchange in the error of a failed one."""
        return [obj]

    def teardown(self) -> None:
        """Release what :meth:`setup` created."""


class DDPStrategy(Strategy):
    """Gradient averaging across the ``torchrun`` group; ``timeout_s`` bounds every collective,
    so a rank that died or hangs fails the job instead of blocking its peers for ever."""

    name = "ddp"

    def __init__(
        self, timeout_s: float = 300.0, static_graph: bool = False, *, scope: str = ""
    ) -> None:
        import torch.distributed as dist

        if not dist.is_available():
            raise ConfigError(
                f"strategy {self.name!r} needs torch.distributed, which this torch build lacks",
                path="training.strategy",
            )
        self.dist = dist
        self.timeout = timedelta(seconds=timeout_s)
        self.static_graph = static_graph
        #: a group formed after another one in the same processes (a run's analysis after
        #: its training) rendezvous under keys of its own
        self.scope = scope
        self._owns_group = False
        self.device = torch.device("cpu")
        self.ddp: Any = None  # the DistributedDataParallel wrapper, when the step allows one
        #: every DistributedDataParallel wrapper (the model's, or each sub-network's)
        self.wrappers: list[Any] = []
        self._bound: SubnetworkStep | None = None  # a step holding sub-network wrappers
        self._backward: contextlib.AbstractContextManager[Any] = _NULL

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        dist = self.dist
        self.device = device
        if not dist.is_initialized():
            if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
                raise ConfigError(
                    f"strategy {self.name!r} runs under torchrun: python -m torch.distributed.run "
                    "--nproc-per-node N your_script.py (or neuroplex run SPEC --nproc N)",
                    path="training.strategy",
                )
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda" and "LOCAL_RANK" in os.environ:
                torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
            store = self._attempt_store()
            if store is None:
                dist.init_process_group(backend=backend, timeout=self.timeout)
            else:
                rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
                dist.init_process_group(
                    backend=backend, store=store, rank=rank, world_size=world, timeout=self.timeout
                )
            self._owns_group = True
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def _attempt_store(self) -> Any:
        """Under torchrun, the rendezvous store seen through a prefix of this restart attempt
        (``None`` elsewhere: plain ``env://``).

        torchrun's agent keeps one TCPStore for the whole job and its workers connect to it
        without a per-attempt prefix (torch 2.13's ``env://`` handler assumes a new store per
        restart). A restarted group then finds the dead group's keys, among them each rank's
        gloo listening address: a rank that reads its peer's old address before the new one
        is written connects to a closed port and gloo's full-mesh connect fails ("Connection
        refused", then "Connect timeout"), in 6 of 8 restarts of a bare two-rank script here.
        Keys under ``neuroplex/attempt_<TORCHELASTIC_RESTART_COUNT>/`` are the attempt's own.
        """
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is None or "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            return None
        dist = self.dist
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            world,
            is_master=not agent and rank == 0,  # as torch's env:// handler decides
            timeout=self.timeout,
            multi_tenant=not agent,
        )
        scope = f"/{self.scope}" if self.scope else ""
        return dist.PrefixStore(f"neuroplex/attempt_{attempt}{scope}", store)

    def _collective(self, what: str) -> _CollectiveGuard:
        """A collective that fails (a peer died, hung past the timeout, or lost its socket) is
        a :class:`TrainingError` saying so and how to continue, not a backend traceback."""
        return _CollectiveGuard(self, what)

    def wrap(self, model: torch.nn.Module, step: Any) -> torch.nn.Module:
        """``model`` in DistributedDataParallel when ``step.forward_wrappable`` says the step
        only calls it; a :class:`~neuroplex.protocols.SubnetworkStep` gets each sub-network
        it names wrapped instead (``step.bind``), and the model itself back. Rank 0's buffers
        were broadcast in :meth:`setup`, and each rank keeps its own afterwards
        (``broadcast_buffers=False``, as without the wrapper)."""
        if self.world_size == 1:
            return model
        if isinstance(step, SubnetworkStep):
            self._wrap_subnetworks(model, step)
            return model
        if not (isinstance(step, ForwardWrappableStep) and step.forward_wrappable):
            return model
        if not any(p.requires_grad for p in model.parameters()):
            return model
        self.ddp = self._ddp(model, "the model")
        return self.ddp  # type: ignore[no-any-return]

    def _ddp(self, module: torch.nn.Module, what: str) -> Any:
        from torch.nn.parallel import DistributedDataParallel

        cuda = self.device.type == "cuda"
        index = self.device.index if self.device.index is not None else 0
        # rank 0's buffers were broadcast in setup; afterwards each rank keeps its own, as on
        # the explicit path (torch >= 2.13 names this forward_sync_buffers)
        params = inspect.signature(DistributedDataParallel.__init__).parameters
        name = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        no_buffer_sync: dict[str, Any] = {name: False}
        with self._collective(f"wrapping {what} in DistributedDataParallel"):
            wrapper = DistributedDataParallel(
                module,
                device_ids=[index] if cuda else None,
                output_device=index if cuda else None,
                bucket_cap_mb=BUCKET_CAP_MB,
                gradient_as_bucket_view=True,
                static_graph=self.static_graph,
                **no_buffer_sync,
            )
        self.wrappers.append(wrapper)
        self._backward = self._collective("averaging gradients")
        return wrapper

    def _wrap_subnetworks(self, model: torch.nn.Module, step: SubnetworkStep) -> None:
        """Each of ``step.subnetworks(model)`` in DistributedDataParallel, handed to the step;
        each must hold exactly its parameter group's trainable parameters."""
        nets = dict(step.subnetworks(model))
        groups = {k: list(v) for k, v in step.param_groups(model).items()}
        if set(nets) != set(groups):
            raise ConfigError(
                f"{type(step).__name__}.subnetworks names {sorted(nets)} but its param_groups "
                f"are {sorted(groups)}: give one sub-network per parameter group",
                path="training.strategy",
            )
        for group, net in nets.items():
            held = {id(p) for p in net.parameters() if p.requires_grad}
            if held != {id(p) for p in groups[group] if p.requires_grad}:
                raise ConfigError(
                    f"{type(step).__name__}.subnetworks: the module of group {group!r} does "
                    "not hold exactly that group's trainable parameters, which "
                    "DistributedDataParallel would average",
                    path="training.strategy",
                )
        wrapped = {group: self._ddp(net, f"sub-network {group!r}") for group, net in nets.items()}
        step.bind(wrapped)
        self._bound = step

    @contextlib.contextmanager
    def _no_sync_all(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for wrapper in self.wrappers:
                stack.enter_context(wrapper.no_sync())
            yield

    def no_sync(self) -> contextlib.AbstractContextManager[Any]:
        if not self.wrappers:
            return _NULL
        if self.ddp is not None:
            return self.ddp.no_sync()  # type: ignore[no-any-return]
        return self._no_sync_all()

    def backward_guard(self) -> contextlib.AbstractContextManager[Any]:
        return _NULL if not self.wrappers else self._backward

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        if self.world_size == 1 or self.wrappers:  # the wrappers averaged in backward
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        with self._collective("averaging gradients"):
            self.dist.all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def barrier(self) -> None:
        if self.world_size > 1:
            with self._collective("waiting for the other processes"):
                self.dist.barrier()

    def sum_floats(self, values: list[float]) -> list[float]:
        if self.world_size == 1 or not values:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        with self._collective("reducing metrics"):
            self.dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def broadcast_flag(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        with self._collective("broadcasting a flag"):
            self.dist.broadcast(t, src=0)
        return bool(t.item() > 0.5)

    def gather_objects(self, obj: Any, what: str = "gathering checkpoint state") -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self._collective(what):
            self.dist.all_gather_object(out, obj)
        return out

    def teardown(self) -> None:
        self.ddp = None
        self.wrappers = []
        if self._bound is not None:
            self._bound.bind({})
            self._bound = None
        if self._owns_group and self.dist.is_initialized():
            # every rank reaches the end before the group goes away: without this, a rank that
            # tears down while its peer still finishes gloo work can abort at exit
            # a barrier that fails here follows a failure already raised (a dead peer): the
            # group is released all the same and the first error stays the one reported
            with contextlib.suppress(RuntimeError):
                self.dist.barrier()
            self.dist.destroy_process_group()
            self._owns_group = False


class _CollectiveGuard:
    """The reusable context of :meth:`DDPStrategy._collective` (entered at every backward
    pass under DistributedDataParallel, so a plain class rather than a generator)."""

    def __init__(self, strategy: DDPStrategy, what: str) -> None:
        self.strategy, self.what = strategy, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if not isinstance(exc, RuntimeError):
            return
        s = self.strategy
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        name = s.scope or s.name
        after = "" if s.scope else "; the last checkpoint is kept: rerun with --resume"
        raise TrainingError(
            f"{name} rank {s.rank}/{s.world_size}: {self.what} failed, another process died "
            f"or did not answer within ddp_timeout_s={s.timeout.total_seconds():g}: "
            f"{first}{after}"
        ) from exc
