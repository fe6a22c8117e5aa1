"""The torch.onnx conversion layer of :func:`~neuroplex.onnx.export_onnx`.

* example inputs per graph (given, from the model's ``export_examples``, or captured from a
  forward pass) and the sub-module each graph names;
* :func:`to_onnx`: ``torch.export`` + the dynamo ONNX exporter → an ``onnx.ModelProto`` with a
  batch dimension named ``batch``, or an :class:`~neuroplex.errors.ExportError` that names the
  operator and module the exporter could not translate;
* :func:`export_vjp` and :func:`export_losses`: the vector-Jacobian-product graph and the fused
  loss-gradient graphs spliced onto it (each ``None`` with the reason when not possible).

Nothing here writes a file; :mod:`neuroplex.onnx._publish` does.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from neuroplex.errors import ExportError
from neuroplex.onnx._rewrites import custom_translations, export_rewrites
from neuroplex.protocols import Exportable

__all__ = [
    "batch_at_least_two",
    "export_losses",
    "export_vjp",
    "first_line",
    "graph_examples",
    "graph_module",
    "to_onnx",
    "warnings_quiet",
]


# -- inputs ------------------------------------------------------------------------------------
def _as_tuple(example: Any, what: str) -> tuple[torch.Tensor, ...]:
    items = example if isinstance(example, tuple | list) else (example,)
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise ExportError(
            f"example input for {what} must be a tensor or a tuple of tensors, "
            f"got {type(example).__name__}"
        )
    return tuple(items)


def batch_at_least_two(args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    # a batch of 1 gets baked into the graph as a constant: repeat the example instead
    if all(t.dim() > 0 and t.shape[0] == 1 for t in args):
        return tuple(torch.cat([t, t]) for t in args)
    return args


def graph_module(model: nn.Module, graph: str) -> nn.Module:
    if graph == "model":
        return model
    sub = getattr(model, graph, None)
    if not isinstance(sub, nn.Module):
        children = [name for name, _ in model.named_children()]
        raise ExportError(
            f"graph {graph!r} is not a sub-module of {type(model).__name__} (its children: "
            f"{', '.join(children) or 'none'}); use graphs=('model',) or a child name"
        )
    return sub


def graph_examples(
    model: nn.Module, example_input: Any, graphs: Sequence[str]
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Example inputs per graph: given in a dict, else from the model's own
    ``export_examples(batch) -> {graph: tensor}`` when it has one (a GAN's generator takes
    latent vectors, not data), else captured from a forward pass of the model; a sub-graph the
    forward pass never calls gets the model's output."""
    given: dict[str, Any] = dict(example_input) if isinstance(example_input, Mapping) else {}
    full = given.get("model", None if isinstance(example_input, Mapping) else example_input)
    if isinstance(model, Exportable) and full is not None:
        with torch.no_grad():
            given = {**dict(model.export_examples(full)), **given}
    examples = {g: _as_tuple(v, f"graph {g!r}") for g, v in given.items() if g in graphs}
    missing = [g for g in graphs if g not in examples]
    if not missing:
        return examples
    if full is None:
        raise ExportError(
            f"no example input for graph(s) {missing}: pass example_input as a tensor for the "
            "whole model or a dict {graph: tensor}"
        )
    args = _as_tuple(full, "the model")
    captured: dict[str, tuple[torch.Tensor, ...]] = {}
    handles = []
    for g in missing:
        if g == "model":
            captured[g] = args
            continue

        def hook(_m: nn.Module, inputs: tuple[Any, ...], g: str = g) -> None:
            if g not in captured and all(isinstance(t, torch.Tensor) for t in inputs):
                captured[g] = tuple(t.detach() for t in inputs)

        handles.append(graph_module(model, g).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            output = model(*args)
    finally:
        for handle in handles:
            handle.remove()
    for g in missing:
        if g in captured:
            examples[g] = captured[g]
        elif isinstance(output, torch.Tensor):
            examples[g] = (output.detach(),)
        else:
            raise ExportError(
                f"graph {g!r} is not called by the model's forward pass: pass its example "
                f"input as example_input={{'{g}': tensor, ...}}"
            )
    return examples


# -- errors ------------------------------------------------------------------------------------
_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)"),
    re.compile(r"target=torch\.ops\.([\w.]+)\.(\w+)"),
)


def _unsupported_op(exc: BaseException) -> str | None:
    text = str(exc)
    cause = exc.__cause__
    while cause is not None:
        text += "\n" + str(cause)
        cause = cause.__cause__
    for pattern in _OP_PATTERNS:
        match = pattern.search(text)
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return None


def _module_of_op(program: Any, op: str) -> str | None:
    for node in program.graph.nodes:
        if node.op == "call_function" and str(node.target) == op:
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, cls = list(stack.values())[-1]
                cls_name = str(cls).rsplit(".", 1)[-1]
                return f"{path or '<root>'} ({cls_name})"
            return "<root>"
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- export steps ------------------------------------------------------------------------------
def _rename_batch(proto: Any, names: Sequence[str]) -> None:
    """Give the dynamic batch dimension the readable name ``batch``."""
    symbols = set()
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in names and dims and dims[0].dim_param:
            symbols.add(dims[0].dim_param)
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = "batch"


def to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    opset: int,
    input_names: Sequence[str],
    output_names: Sequence[str] | None,
    graph: str,
    dynamic: bool = True,
    contrib_ops: bool = False,
) -> Any:
    """torch.export + torch.onnx (dynamo) → ``onnx.ModelProto``; clear ExportError on failure."""
    batch = torch.export.Dim("batch")
    shapes = tuple({0: batch} for _ in args) if dynamic else None
    try:
        with export_rewrites(contrib=contrib_ops):
            program = torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
    except Exception as exc:  # torch.export raises many types (UserError, GuardOnDataDependent)
        raise ExportError(
            f"graph {graph!r} ({type(module).__name__}) cannot be traced by torch.export: "
            f"{first_line(exc)}"
        ) from exc
    try:
        with warnings_quiet():
            onnx_program = torch.onnx.export(
                program,
                (),
                dynamo=True,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names) if output_names else None,
                custom_translation_table=custom_translations(),
                verbose=False,
                optimize=True,
            )
    except Exception as exc:  # the exporter wraps everything in its own error types
        op = _unsupported_op(exc)
        if op is not None:
            where = _module_of_op(program, op) or "an unknown module"
            raise ExportError(
                f"graph {graph!r}: operator {op} in module {where} has no ONNX translation "
                f"(opset {opset}): replace it with supported operations or register a custom "
                "ONNX function"
            ) from exc
        raise ExportError(f"graph {graph!r}: ONNX conversion failed: {first_line(exc)}") from exc
    if onnx_program is None:  # pragma: no cover - only with dynamo=False
        raise ExportError(f"graph {graph!r}: the exporter returned nothing")
    proto = onnx_program.model_proto
    if dynamic:
        _rename_batch(proto, input_names)
    return proto


@contextlib.contextmanager
def warnings_quiet() -> Iterator[None]:
    """Silence the exporter's chatter (warnings about torchvision, deprecations)."""
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def export_vjp(
    module: nn.Module, x: torch.Tensor, *, opset: int, graph: str
) -> tuple[Any | None, str]:
    """The VJP graph (or ``None``) and a one-line account of how it was made or why not."""
    from neuroplex.onnx._gradients import VjpModule, distinct_batch, trace_vjp
    from neuroplex.onnx._partition import batch_from_input

    errors = []
    for symbolic in (True, False):
        try:
            example = distinct_batch(module, x) if symbolic else x
            traced = trace_vjp(module, example, symbolic=symbolic)
            with torch.no_grad():
                zeros = torch.zeros_like(module(example))
            proto = to_onnx(
                VjpModule(traced).eval(),
                (example, zeros),
                opset=opset,
                input_names=("input", "grad_output"),
                output_names=("grad_input", "output"),
                graph=f"{graph}/vjp",
                dynamic=symbolic,
            )
            batch_from_input(proto)
            how = "dynamic batch" if symbolic else f"fixed batch {x.shape[0]}, padded at run time"
            return proto, f"exported VJP graph ({how})"
        except Exception as exc:  # tracing or exporting the backward graph failed
            errors.append(f"{'symbolic' if symbolic else 'fixed-batch'}: {first_line(exc)}")
    return None, "gradient graph not exportable: " + "; ".join(errors)


def _export_loss(vjp: Any, loss: str, *, opset: int) -> tuple[Any | None, str]:
    """The fused loss-gradient graph of ``loss`` (or ``None``) and how it was made or why not:
    the loss head (ONNX operators) spliced into the VJP graph."""
    from neuroplex.onnx._losses import LOSSES, head_graph, splice

    spec = LOSSES[loss]
    try:
        head = head_graph(spec, vjp.graph.output[1], opset)
        return splice(vjp, head, spec), f"{loss} loss graph (VJP graph + loss head)"
    except Exception as exc:  # an unusual VJP graph the splice cannot handle
        return None, f"{loss} loss graph not buildable: {first_line(exc)}"


def export_losses(
    vjp: Any,
    outputs: torch.Tensor,
    losses: tuple[str, ...],
    opset: int,
    graph: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The loss graphs that export, and why the others did not."""
    from neuroplex.onnx._losses import LOSSES

    protos: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for loss in losses:
        spec = LOSSES[loss]
        if outputs.dim() != 2 or outputs.shape[1] < spec.min_classes:
            dropped[loss] = (
                f"needs (N, C) logits with C >= {spec.min_classes}, the output has shape "
                f"{tuple(outputs.shape)}"
            )
            continue
        proto, how = _export_loss(vjp, loss, opset=opset)
        if proto is None:
            dropped[loss] = how
        else:
            protos[loss] = proto
    return protos, dropped
