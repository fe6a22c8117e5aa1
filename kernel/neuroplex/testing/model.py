"""Conformance checks for model families: every registered model must pass these.

Each check takes the :class:`~neuroplex.records.ModelRecord`, builds the family from its
``example_config`` (``factory(ModelConfig(name, example_config))``, as ``create_model`` does)
and raises ``AssertionError`` with a message naming the family and what went wrong. torch is
imported inside the checks only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from neuroplex.protocols import TrainingStep
from neuroplex.records import ModelRecord, resolve_factory

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKS", "build", "example_batch"]


def build(record: ModelRecord, seed: int = 0) -> torch.nn.Module:
    """The family built from ``example_config`` after ``torch.manual_seed(seed)``, through the
    record's own factory (so unregistered records can be checked too)."""
    import torch

    from neuroplex.config import ModelConfig

    torch.manual_seed(seed)
    config = ModelConfig(name=record.name, hyperparameters=dict(record.example_config))
    model = record.load()(config)
    assert isinstance(model, torch.nn.Module), (
        f"model {record.name!r}: the factory returned {type(model).__name__}, not an nn.Module"
    )
    return model


def example_batch(record: ModelRecord, seed: int = 0) -> torch.Tensor:
    """A random batch of ``example_input``'s shape and dtype (ints below ``vocab_size``)."""
    import torch

    assert record.example_input is not None, f"model {record.name!r} declares no example_input"
    shape = tuple(record.example_input)
    assert len(shape) >= 1 and all(d > 0 for d in shape), (
        f"model {record.name!r}: example_input {shape} must be positive sizes, batch first"
    )
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, record.example_input_dtype)
    if dtype.is_floating_point:
        return torch.rand(shape, generator=gen).to(dtype)
    high = int(record.example_config.get("vocab_size", 2))
    return torch.randint(0, high, shape, generator=gen).to(dtype)


def _output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    import torch

    out = model(x)
    assert isinstance(out, torch.Tensor), (
        f"forward returned {type(out).__name__}; models return one tensor"
    )
    return out


def check_builds_from_example_config(record: ModelRecord) -> None:
    """The example config builds a module with trainable parameters and a valid step."""
    model = build(record)
    params = [p for p in model.parameters() if p.requires_grad]
    assert params, f"model {record.name!r} has no trainable parameters"
    for graph in record.export_graphs:
        if graph != "model":
            import torch

            sub = getattr(model, graph, None)
            assert isinstance(sub, torch.nn.Module), (
                f"model {record.name!r}: export graph {graph!r} is not a sub-module attribute"
            )
    if record.training_step is not None:
        step = resolve_factory(record.training_step, component=f"model:{record.name}")()
        missing = [m for m in ("param_groups", "train_step", "eval_step") if not hasattr(step, m)]
        assert isinstance(step, TrainingStep), (
            f"model {record.name!r}: training step {type(step).__name__} is not a "
            f"neuroplex.protocols.TrainingStep (lacks {', '.join(f'{m}()' for m in missing)})"
        )


def check_forward_finite(record: ModelRecord) -> None:
    """Forward on a random example batch: a finite tensor that keeps the batch dimension."""
    import torch

    model = build(record).eval()
    x = example_batch(record)
    with torch.no_grad():
        out = _output(model, x)
    assert out.shape[0] == x.shape[0], (
        f"model {record.name!r}: input batch {x.shape[0]} gives output batch {out.shape[0]} "
        f"(output shape {tuple(out.shape)})"
    )
    assert torch.isfinite(out).all(), f"model {record.name!r}: output has NaN or inf"


def _backward(record: ModelRecord, model: torch.nn.Module, x: torch.Tensor) -> None:
    import torch

    if record.training_step is None:
        _output(model, x).float().square().mean().backward()  # type: ignore[no-untyped-call]
        return
    step = resolve_factory(record.training_step, component=f"model:{record.name}")()
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def optimize(_group: str, loss: torch.Tensor) -> None:
        assert torch.isfinite(loss), f"model {record.name!r}: non-finite loss {float(loss)}"
        loss.backward()  # type: ignore[no-untyped-call]

    metrics = step.train_step(model, (x, y), optimize)
    assert isinstance(metrics, Mapping) and "loss" in metrics, (
        f"model {record.name!r}: train_step must return metrics with 'loss', got {metrics!r}"
    )


def check_backward_reaches_every_parameter(record: ModelRecord) -> None:
    """A training step (the family's own, else a loss on the output) gives every trainable
    parameter a finite gradient."""
    import torch

    model = build(record).train()
    _backward(record, model, example_batch(record))
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"model {record.name!r}: no gradient reaches {missing}"
    bad = [
        n
        for n, p in model.named_parameters()
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    assert not bad, f"model {record.name!r}: non-finite gradients in {bad}"


def check_state_dict_round_trip(record: ModelRecord) -> None:
    """Weights loaded into a differently seeded instance give the same outputs."""
    import torch

    source, target = build(record, seed=0).eval(), build(record, seed=1).eval()
    target.load_state_dict(source.state_dict())
    x = example_batch(record)
    with torch.no_grad():
        a, b = _output(source, x), _output(target, x)
    assert torch.equal(a, b), (
        f"model {record.name!r}: outputs differ after a state_dict round trip "
        f"(max diff {float((a - b).abs().max())})"
    )


def check_same_output_under_seed(record: ModelRecord) -> None:
    """Two builds under the same seed give the same outputs; another seed differs."""
    import torch

    x = example_batch(record)
    with torch.no_grad():
        a = _output(build(record, seed=0).eval(), x)
        b = _output(build(record, seed=0).eval(), x)
        c = _output(build(record, seed=1).eval(), x)
    assert torch.equal(a, b), f"model {record.name!r}: same seed, different outputs"
    assert not torch.equal(a, c), (
        f"model {record.name!r}: seeds 0 and 1 give identical outputs (initialisation ignores "
        "the seed, or the output ignores the weights)"
    )


CHECKS: list[Callable[[ModelRecord], None]] = [
    check_builds_from_example_config,
    check_forward_finite,
    check_backward_reaches_every_parameter,
    check_state_dict_round_trip,
    check_same_output_under_seed,
]
