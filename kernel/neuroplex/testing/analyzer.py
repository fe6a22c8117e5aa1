"""Conformance checks for analyzers (:class:`~neuroplex.records.AnalyzerRecord`).

Every check takes the record and raises ``AssertionError`` with a message naming the
component and what is wrong. They build the analyzer from ``example_config`` on the canonical
tiny classifier (:func:`canonical_model`) and run it on the canonical batch
(:func:`canonical_inputs`):

* the factory builds an object with ``analyze(x, y=None)``;
* ``analyze`` returns a frozen attrs record with ``to_dict()``;
* ``to_dict()`` is plain JSON data (dicts, lists, str, numbers, bools, None) without NaN;
* the model's training flags, ``requires_grad`` flags and weights are unchanged afterwards;
* ``analyze(x)`` without labels either works or raises a :class:`~neuroplex.NeuroplexError`;
* an analyzer without the ``"gradients"`` capability works on a model that gives no
  gradients (as a forward-only ONNX model does).

torch is imported inside the functions: importing ``neuroplex`` never imports torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from neuroplex.errors import NeuroplexError
from neuroplex.protocols import AnalysisResult, Analyzer
from neuroplex.records import AnalyzerRecord

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "CHECKS",
    "N_CLASSES",
    "N_FEATURES",
    "canonical_inputs",
    "canonical_model",
    "check_analyze_returns_frozen_record",
    "check_analyze_without_labels",
    "check_builds_from_example_config",
    "check_model_state_restored",
    "check_to_dict_plain_and_finite",
    "check_without_gradients_unless_declared",
]

N_FEATURES = 8
N_CLASSES = 3
N_SAMPLES = 6


def canonical_model() -> torch.nn.Module:
    """The canonical tiny classifier: ``Linear(8, 6) → ReLU → Linear(6, 3)``, weights from seed 0
    (the global RNG is left untouched). Input ``(N, 8)`` in [0, 1], output logits ``(N, 3)``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(N_FEATURES, 6), torch.nn.ReLU(), torch.nn.Linear(6, N_CLASSES)
        )
    return model


def canonical_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """The canonical batch: ``x`` float32 ``(6, 8)`` in [0, 1], ``y`` int64 ``(6,)`` covering
    every class twice."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N_SAMPLES, N_FEATURES, generator=gen)
    y = torch.arange(N_SAMPLES, dtype=torch.int64) % N_CLASSES
    return x, y


def _who(record: AnalyzerRecord) -> str:
    factory = record.factory if isinstance(record.factory, str) else "callable factory"
    return f"analyzer {record.name!r} ({factory})"


def _build(record: AnalyzerRecord, model: Any) -> Any:
    try:
        analyzer = record.load()(model, **record.example_config)
    except Exception as exc:
        raise AssertionError(
            f"{_who(record)} cannot be built from example_config {record.example_config!r} on "
            f"the canonical classifier: {type(exc).__name__}: {exc}"
        ) from exc
    return analyzer


def _analyze(record: AnalyzerRecord, analyzer: Any, *args: Any) -> Any:
    try:
        return analyzer.analyze(*args)
    except Exception as exc:
        raise AssertionError(
            f"{_who(record)}.analyze failed on the canonical inputs: {type(exc).__name__}: {exc}"
        ) from exc


def check_builds_from_example_config(record: AnalyzerRecord) -> None:
    """``factory(model, **example_config)`` builds an object with a callable ``analyze``."""
    analyzer = _build(record, canonical_model())
    assert isinstance(analyzer, Analyzer), (
        f"{_who(record)} built a {type(analyzer).__name__} without an analyze(x, y=None) method "
        "(the neuroplex.protocols.Analyzer protocol)"
    )


def _result(record: AnalyzerRecord) -> Any:
    x, y = canonical_inputs()
    return _analyze(record, _build(record, canonical_model()), x, y)


def check_analyze_returns_frozen_record(record: AnalyzerRecord) -> None:
    """``analyze(x, y)`` returns a frozen attrs record whose ``to_dict()`` is a dict."""
    result = _result(record)
    kind = type(result).__name__
    assert attrs.has(type(result)), f"{_who(record)}.analyze returned a {kind}, not an attrs record"
    first = attrs.fields(type(result))[0].name
    try:
        setattr(result, first, getattr(result, first))
    except (attrs.exceptions.FrozenInstanceError, AttributeError):
        pass
    else:
        raise AssertionError(f"{_who(record)}.analyze returned a mutable {kind}: use @attrs.frozen")
    assert isinstance(result, AnalysisResult), f"{kind} of {_who(record)} has no to_dict()"
    assert isinstance(result.to_dict(), dict), f"{kind}.to_dict() of {_who(record)} is not a dict"


def _walk(value: Any, path: str) -> list[str]:
    """Paths of NaN leaves; raises AssertionError on non-plain leaves."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        assert not bad, f"to_dict() key(s) {bad!r} at {path or '<root>'} are not strings"
        return [p for k, v in value.items() for p in _walk(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _walk(v, f"{path}[{i}]")]
    if isinstance(value, float):
        return [path] if math.isnan(value) else []
    assert value is None or isinstance(value, str | int | bool), (
        f"to_dict() leaf {path!r} is a {type(value).__name__}: return plain Python values"
    )
    return []


def check_to_dict_plain_and_finite(record: AnalyzerRecord) -> None:
    """``to_dict()`` holds only plain JSON values and no NaN."""
    data = _result(record).to_dict()
    nans = _walk(data, "")
    assert not nans, f"{_who(record)}: to_dict() has NaN at {', '.join(nans[:5])}"
    json.dumps(data)


def _state(model: torch.nn.Module) -> tuple[list[bool], list[bool], list[Any]]:
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.detach().clone() for p in model.parameters()],
    )


def check_model_state_restored(record: AnalyzerRecord) -> None:
    """Training flags, ``requires_grad`` flags and weights are as before ``analyze``."""
    import torch

    model = canonical_model()
    model.train()
    before = _state(model)
    x, y = canonical_inputs()
    _analyze(record, _build(record, model), x, y)
    after = _state(model)
    assert before[0] == after[0], f"{_who(record)} left the model's train/eval flags changed"
    assert before[1] == after[1], f"{_who(record)} left parameters' requires_grad changed"
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2], strict=True)), (
        f"{_who(record)} changed the model's weights"
    )


def check_analyze_without_labels(record: AnalyzerRecord) -> None:
    """``analyze(x)`` works without labels, or refuses with a clear NeuroplexError."""
    x, _ = canonical_inputs()
    analyzer = _build(record, canonical_model())
    try:
        result = analyzer.analyze(x)
    except NeuroplexError:
        return
    except Exception as exc:
        raise AssertionError(
            f"{_who(record)}.analyze(x) without labels raised {type(exc).__name__}: {exc}; "
            "work without labels or raise a NeuroplexError (e.g. DataError) that says so"
        ) from exc
    assert callable(getattr(result, "to_dict", None)), (
        f"{_who(record)}.analyze(x) returned a {type(result).__name__} without to_dict()"
    )


def _forward_only(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    class ForwardOnly(torch.nn.Module):
        """Gives outputs without autograd history, like a forward-only ONNX model."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out: torch.Tensor = self.inner(x)
            return out

    return ForwardOnly(model)


def check_without_gradients_unless_declared(record: AnalyzerRecord) -> None:
    """Without the ``"gradients"`` capability, the analyzer works on a gradient-free model."""
    if "gradients" in record.capabilities:
        return
    x, y = canonical_inputs()
    analyzer = _build(record, _forward_only(canonical_model()))
    try:
        analyzer.analyze(x, y)
    except Exception as exc:
        raise AssertionError(
            f"{_who(record)} does not declare the 'gradients' capability but fails on a model "
            f"without gradients: {type(exc).__name__}: {exc}"
        ) from exc


CHECKS: list[Callable[[AnalyzerRecord], None]] = [
    check_builds_from_example_config,
    check_analyze_returns_frozen_record,
    check_to_dict_plain_and_finite,
    check_model_state_restored,
    check_analyze_without_labels,
    check_without_gradients_unless_declared,
]
