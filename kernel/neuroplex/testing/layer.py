"""Conformance checks for layers and activations: every registered layer must pass these.

Each check takes the :class:`~neuroplex.records.LayerRecord`, builds the layer from its
``example_config`` (``factory(**example_config)``, as ``create_layer`` does) and raises
``AssertionError`` with a message naming the layer. Layers without ``example_input`` get the
build check only. torch is imported inside the checks only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from neuroplex.records import LayerRecord

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKS", "build", "example_batch"]


def build(record: LayerRecord, seed: int = 0) -> torch.nn.Module:
    """The layer built from ``example_config`` after ``torch.manual_seed(seed)``, through the
    record's own factory (so unregistered records can be checked too)."""
    import torch

    torch.manual_seed(seed)
    layer = record.load()(**record.example_config)
    assert isinstance(layer, torch.nn.Module), (
        f"layer {record.name!r}: the factory returned {type(layer).__name__}, not an nn.Module"
    )
    return layer


def example_batch(record: LayerRecord, seed: int = 0) -> torch.Tensor | None:
    """A random batch of ``example_input``'s shape and dtype, ``None`` when undeclared.

    Floats are standard normal (activations see both signs); ints lie below
    ``num_embeddings`` (or 2).
    """
    import torch

    if record.example_input is None:
        return None
    shape = tuple(record.example_input)
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, record.example_input_dtype)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    high = int(record.example_config.get("num_embeddings", 2))
    return torch.randint(0, high, shape, generator=gen).to(dtype)


def _output(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    import torch

    out = layer(x)
    assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, not a tensor"
    return out


def check_builds_from_example_config(record: LayerRecord) -> None:
    """The example config builds an ``nn.Module``; an activation declares ``example_input``."""
    build(record)
    if "activation" in record.capabilities:
        assert record.example_input is not None, (
            f"activation {record.name!r} must declare example_input"
        )


def check_forward_finite(record: LayerRecord) -> None:
    """Forward on a random batch: finite, batch dimension kept; an activation keeps the
    whole shape."""
    import torch

    x = example_batch(record)
    if x is None:
        return
    layer = build(record).eval()
    with torch.no_grad():
        out = _output(layer, x)
    assert out.shape[0] == x.shape[0], (
        f"layer {record.name!r}: batch {x.shape[0]} in, {out.shape[0]} out"
    )
    assert torch.isfinite(out).all(), f"layer {record.name!r}: output has NaN or inf"
    if "activation" in record.capabilities:
        assert out.shape == x.shape, (
            f"activation {record.name!r} changed the shape {tuple(x.shape)} -> {tuple(out.shape)}"
        )


def check_backward_reaches_every_parameter(record: LayerRecord) -> None:
    """A loss on the output gives every trainable parameter (and float inputs) a finite
    gradient."""
    import torch

    x = example_batch(record)
    if x is None:
        return
    layer = build(record).train()
    if x.is_floating_point():
        x.requires_grad_(True)
    _output(layer, x).float().square().mean().backward()  # type: ignore[no-untyped-call]
    missing = [n for n, p in layer.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"layer {record.name!r}: no gradient reaches {missing}"
    bad = [
        n
        for n, p in layer.named_parameters()
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    assert not bad, f"layer {record.name!r}: non-finite gradients in {bad}"
    if x.is_floating_point():
        assert x.grad is not None and torch.isfinite(x.grad).all(), (
            f"layer {record.name!r}: no finite gradient reaches the input"
        )


def check_state_dict_round_trip(record: LayerRecord) -> None:
    """Weights loaded into a differently seeded instance give the same outputs."""
    import torch

    x = example_batch(record)
    if x is None:
        return
    source, target = build(record, seed=0).eval(), build(record, seed=1).eval()
    target.load_state_dict(source.state_dict())
    with torch.no_grad():
        a, b = _output(source, x), _output(target, x)
    assert torch.equal(a, b), f"layer {record.name!r}: outputs differ after a state_dict round trip"


def check_same_output_under_seed(record: LayerRecord) -> None:
    """Two builds under the same seed give the same outputs (eval mode)."""
    import torch

    x = example_batch(record)
    if x is None:
        return
    with torch.no_grad():
        a = _output(build(record, seed=0).eval(), x)
        b = _output(build(record, seed=0).eval(), x)
    assert torch.equal(a, b), f"layer {record.name!r}: same seed, different outputs"


CHECKS: list[Callable[[LayerRecord], None]] = [
    check_builds_from_example_config,
    check_forward_finite,
    check_backward_reaches_every_parameter,
    check_state_dict_round_trip,
    check_same_output_under_seed,
]
