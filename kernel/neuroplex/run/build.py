"""Stage 2, build: the spec's policies (built before any work, so bad options fail at once),
then the spec's model, created from its plugin after seeding every RNG."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import torch

from neuroplex.config import ModelConfig, PolicyConfig
from neuroplex.errors import ConfigError, NeuroplexError, PluginError
from neuroplex.protocols import Policy
from neuroplex.records import ModelRecord, resolve_factory
from neuroplex.registry import create_model, create_policy, get_record, origin_of
from neuroplex.run.data import Loaded
from neuroplex.training import seed_everything

__all__ = [
    "Built",
    "build",
    "build_policies",
    "model_record",
    "sharding_policy",
    "plugin_errors",
    "training_step",
]


@attrs.frozen(kw_only=True)
class Built:
    """The build stage's result: the data stage's, plus the model, its record and the
    spec's policies ``(name, policy)`` in spec order."""

    loaded: Loaded
    record: ModelRecord
    model: torch.nn.Module
    policies: tuple[tuple[str, Policy], ...] = ()


def build(loaded: Loaded) -> Built:
    policies = build_policies(loaded.spec.feedback.policies)
    seed_everything(loaded.spec.training.seed)
    record = model_record(loaded.spec.model)
    sharding_policy(record, loaded.spec.training.strategy)  # fails before the model is built
    model = create_model(loaded.spec.model)
    return Built(loaded=loaded, record=record, model=model, policies=policies)


def build_policies(policies: Sequence[PolicyConfig]) -> tuple[tuple[str, Policy], ...]:
    """The spec's policies, built from the registry before any work (bad options fail early)."""
    built: list[tuple[str, Policy]] = []
    for i, cfg in enumerate(policies):
        try:
            built.append(
                (cfg.name, create_policy(cfg.name, max_rounds=cfg.max_rounds, **cfg.options))
            )
        except ConfigError as exc:
            if exc.path:
                raise
            raise ConfigError(str(exc), path=f"feedback.policies[{i}]") from None
    return tuple(built)


def model_record(spec: ModelConfig) -> ModelRecord:
    record = get_record("model", spec.name)
    assert isinstance(record, ModelRecord)
    return record


def training_step(record: ModelRecord) -> Any:
    """The family's own training step (``ModelRecord.training_step``), or ``None``."""
    if record.training_step is None:
        return None
    return resolve_factory(record.training_step, component=f"model:{record.name}")()


def sharding_policy(record: ModelRecord, strategy: str) -> Any:
    """The family's FSDP sharding policy (``ModelRecord.sharding``) when ``strategy`` is
    ``"fsdp"``, else ``None``; a family without one is a :class:`ConfigError` here, before
    any process group forms."""
    if strategy != "fsdp":
        return None
    return resolve_factory(record.require_sharding(), component=f"model:{record.name}")()


@contextlib.contextmanager
def plugin_errors(component: Any, kind: str, name: str, doing: str) -> Iterator[None]:
    """An exception from plugin code while ``doing`` something with ``component`` becomes a
    :class:`PluginError` naming the component, its plugin and its distribution (the original
    stays chained: ``--debug`` shows its traceback). Neuroplex's own errors pass through."""
    try:
        yield
    except NeuroplexError:
        raise
    except Exception as exc:
        reg = origin_of(component)
        where = f" from {reg.origin} (plugin {reg.plugin!r})" if reg is not None else ""
        raise PluginError(
            f"{kind} {name!r}{where} failed while {doing}: {type(exc).__name__}: {exc} "
            "(--debug shows the traceback)"
        ) from exc
