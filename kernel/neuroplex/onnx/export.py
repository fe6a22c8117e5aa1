"""Export of PyTorch models to verified ONNX files (torch.onnx dynamo exporter).

:func:`export_onnx` writes, for each graph of a model, ``<name>.onnx`` with a dynamic batch
dimension and neuroplex metadata (see :mod:`neuroplex.onnx.metadata`), plus - when the model
allows it - ``<name>.vjp.onnx``, the vector-Jacobian-product graph that gives the
``OnnxModule`` its gradients. Every file is written to a temporary name, verified against
PyTorch (:func:`~neuroplex.onnx.verify_onnx`) and only then renamed into place: a failed
verification raises :class:`~neuroplex.errors.ExportError` with the comparison table and
leaves no file behind.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from neuroplex.errors import ExportError
from neuroplex.onnx._rewrites import custom_translations, export_rewrites
from neuroplex.onnx.metadata import encode_metadata, package_versions
from neuroplex.onnx.runtime import OnnxModule
from neuroplex.onnx.verify import VerificationReport, verify_onnx
from neuroplex.protocols import Configurable, Exportable
from neuroplex.records import ModelRecord
from neuroplex.registry import origin_of
from neuroplex.torchutils import eval_mode

__all__ = ["ExportResult", "GraphExport", "export_onnx", "graph_path"]

#: opset used when none is given
DEFAULT_OPSET = 18


@attrs.frozen(kw_only=True)
class GraphExport:
    """One exported graph.

    Attributes:
        graph: ``"model"`` or the sub-module name (``"generator"`` ...).
        path: the forward ONNX file.
        gradient_path: the VJP graph file, ``None`` on the forward-only tier.
        tier: ``"gradients"`` or ``"forward_only"``; tier_reason: why.
        report: the verification against PyTorch (``None`` when ``verify=False``).
        seconds: wall time of export and verification.
    """

    graph: str
    path: Path
    gradient_path: Path | None
    tier: str
    tier_reason: str
    report: VerificationReport | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "path": str(self.path),
            "gradient_path": None if self.gradient_path is None else str(self.gradient_path),
            "tier": self.tier,
            "tier_reason": self.tier_reason,
            "report": None if self.report is None else self.report.to_dict(),
            "seconds": self.seconds,
        }


@attrs.frozen(kw_only=True)
class ExportResult:
    """Everything :func:`export_onnx` wrote, one :class:`GraphExport` per graph."""

    graphs: tuple[GraphExport, ...]

    @property
    def path(self) -> Path:
        """The forward file of the first graph (``model.onnx`` for single-graph models)."""
        return self.graphs[0].path

    def __getitem__(self, graph: str) -> GraphExport:
        for item in self.graphs:
            if item.graph == graph:
                return item
        raise KeyError(f"no graph {graph!r}; exported: {[g.graph for g in self.graphs]}")

    def to_dict(self) -> dict[str, Any]:
        return {"graphs": [g.to_dict() for g in self.graphs]}

    def report_sections(self) -> list[dict[str, Any]]:
        """The parity table for ``report.html`` (typed sections, see :mod:`neuroplex.report`)."""
        rows = [
            [
                r.graph,
                r.case,
                r.batch,
                r.output,
                r.max_abs,
                r.max_rel,
                "" if r.argmax_agreement is None else r.argmax_agreement,
                "" if r.sign_agreement is None else r.sign_agreement,
                "yes" if r.passed else "NO",
            ]
            for g in self.graphs
            if g.report is not None
            for r in g.report.rows
        ]
        tiers = [[g.graph, g.path.name, g.tier, g.tier_reason] for g in self.graphs]
        return [
            {
                "type": "table",
                "title": "graphs and tiers",
                "columns": ["graph", "file", "tier", "reason"],
                "rows": tiers,
            },
            {
                "type": "table",
                "title": "ONNX Runtime vs PyTorch",
                "columns": [
                    "graph",
                    "case",
                    "batch",
                    "output",
                    "max_abs",
                    "max_rel",
                    "argmax_agree",
                    "sign_agree",
                    "passed",
                ],
                "rows": rows,
            },
        ]

    def to_markdown(self) -> str:
        parts = [
            f"- `{g.graph}` → {g.path.name} (tier {g.tier}: {g.tier_reason})" for g in self.graphs
        ]
        for g in self.graphs:
            if g.report is not None:
                parts += ["", g.report.to_markdown()]
        return "\n".join(parts)


def graph_path(path: str | os.PathLike[str], graph: str) -> Path:
    """Where graph ``graph`` of an export to ``path`` goes: ``model`` → ``path`` itself,
    others → ``<stem>.<graph>.onnx`` beside it."""
    path = Path(path)
    return path if graph == "model" else path.with_name(f"{path.stem}.{graph}.onnx")


def _vjp_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.vjp.onnx")


def _loss_path(path: Path, loss: str) -> Path:
    return path.with_name(f"{path.stem}.loss-{loss}.onnx")


# -- inputs ------------------------------------------------------------------------------------
def _as_tuple(example: Any, what: str) -> tuple[torch.Tensor, ...]:
    items = example if isinstance(example, tuple | list) else (example,)
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise ExportError(
            f"example input for {what} must be a tensor or a tuple of tensors, "
            f"got {type(example).__name__}"
        )
    return tuple(items)


def _batch_at_least_two(args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    # a batch of 1 gets baked into the graph as a constant: repeat the example instead
    if all(t.dim() > 0 and t.shape[0] == 1 for t in args):
        return tuple(torch.cat([t, t]) for t in args)
    return args


def _graph_module(model: nn.Module, graph: str) -> nn.Module:
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


def _graph_examples(
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

        handles.append(_graph_module(model, g).register_forward_pre_hook(hook))
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


def _first_line(exc: BaseException) -> str:
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


def _to_onnx(
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
            f"{_first_line(exc)}"
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
        raise ExportError(f"graph {graph!r}: ONNX conversion failed: {_first_line(exc)}") from exc
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


def _export_vjp(
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
            proto = _to_onnx(
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
            errors.append(f"{'symbolic' if symbolic else 'fixed-batch'}: {_first_line(exc)}")
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
        return None, f"{loss} loss graph not buildable: {_first_line(exc)}"


def _check_losses(losses: Sequence[str] | None) -> tuple[str, ...]:
    from neuroplex.onnx._losses import DEFAULT_LOSSES, LOSSES

    if losses is None:
        return DEFAULT_LOSSES
    chosen = tuple(dict.fromkeys(losses))
    unknown = [name for name in chosen if name not in LOSSES]
    if unknown:
        raise ExportError(
            f"unknown loss graph(s) {unknown} in losses=: choose from {', '.join(LOSSES)} "
            "(or losses=() for none)"
        )
    return chosen


def _input_spec(args: tuple[torch.Tensor, ...], names: Sequence[str], rng: Any) -> list[Any]:
    return [
        {
            "name": name,
            "shape": [None, *t.shape[1:]],
            "dtype": str(t.dtype).removeprefix("torch."),
            "range": list(rng) if rng is not None else None,
        }
        for name, t in zip(names, args, strict=True)
    ]


def _model_config(model: nn.Module) -> Any:
    if isinstance(model, Configurable):
        try:
            return model.to_config()
        except Exception as exc:  # a broken to_config must not block the export
            return {"error": f"to_config() failed: {type(exc).__name__}: {exc}"}
    return None


def _origin(model: nn.Module) -> dict[str, str] | None:
    reg = origin_of(model)
    if reg is None:
        return None
    return {
        "component": reg.record.name,
        "distribution": reg.distribution,
        "version": reg.version,
    }


def _default_graphs(model: nn.Module) -> tuple[str, ...]:
    reg = origin_of(model)
    if reg is not None and isinstance(reg.record, ModelRecord) and reg.record.export_graphs:
        return tuple(reg.record.export_graphs)
    return ("model",)


def _set_metadata(proto: Any, values: Mapping[str, Any]) -> None:
    encoded = encode_metadata(values)
    keep = [p for p in proto.metadata_props if p.key not in encoded]
    del proto.metadata_props[:]
    for prop in keep:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in encoded.items():
        proto.metadata_props.add(key=key, value=value)


def _save(proto: Any, path: Path) -> None:
    import onnx

    onnx.save_model(proto, str(path))


def _progress(enabled: bool | None, total: int) -> Any:
    from tqdm.auto import tqdm

    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return tqdm(total=total, desc="onnx export", unit="step", disable=disable, leave=False)


def export_onnx(
    model: nn.Module,
    example_input: Any,
    path: str | os.PathLike[str],
    *,
    graphs: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    gradients: bool = True,
    verify: bool = True,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    contrib_ops: bool = True,
    progress: bool | None = None,
    losses: Sequence[str] | None = None,
) -> ExportResult:
    """Export ``model`` to ONNX, verify it against PyTorch, and publish the files.

    Args:
        model: the PyTorch model. It is exported in eval mode (dropout off, BatchNorm running
            statistics); its own mode is restored afterwards.
        example_input: an example batch ``(N, ...)`` (a tensor or tuple of tensors), or a
            dict ``{graph: batch}``. A batch of 1 is repeated to 2 (batch 1 would be baked in).
        path: the forward file of graph ``"model"``; other graphs go to
            ``<stem>.<graph>.onnx`` and gradient graphs to ``<stem>.vjp.onnx``.
        graphs: graph names (default: the model record's ``export_graphs``, else
            ``("model",)``); ``"model"`` is the model itself, others name sub-modules.
        metadata: stored in the file; keys ``input_range`` (``(min, max)``) and
            ``class_names`` are understood, everything else is kept under ``user``.
        opset: the ONNX opset (default 18).
        gradients: also export the VJP graph (tier ``"gradients"``) when the graph has one
            floating-point tensor input and one tensor output and the trace succeeds.
        verify: verify against PyTorch before publishing (strongly recommended).
        input_names, output_names: graph IO names (default ``input`` / ``output``).
        atol, rtol: verification tolerances (default CPU ``1e-5``/``1e-4``).
        contrib_ops: let forward graphs use ONNX Runtime contrib kernels where they are faster
            (``com.microsoft.MultiHeadAttention`` for plain self-attention); ``False`` keeps
            standard ONNX ops only (for other runtimes).
        progress: show a progress bar (default: when stderr is a terminal).
        losses: the fused loss-gradient graphs ``(input, labels) -> (output, loss,
            grad_input)`` to write beside the file as ``<stem>.loss-<name>.onnx`` (names from
            :data:`neuroplex.onnx.LOSSES`; default ``("ce", "selected")``, ``()`` for none).
            Written only with the gradient tier and a ``(N, C)`` output; each is verified
            against autograd, and one that fails is dropped with the reason in the metadata
            (``loss_graphs_dropped``).

    Returns:
        an :class:`ExportResult` with one :class:`GraphExport` per graph.

    Raises:
        ExportError: tracing or conversion failed (naming the operator and module when an
            operator has no ONNX translation) or verification failed (with the table).
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"export_onnx needs a torch.nn.Module, got {type(model).__name__}")
    if not 7 <= opset <= 23:
        raise ExportError(f"opset {opset} is not supported by the exporter: use 18 (7..23)")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"export path {str(path)!r} must end in '.onnx'")
    path.parent.mkdir(parents=True, exist_ok=True)
    graphs = tuple(graphs) if graphs else _default_graphs(model)
    loss_names = _check_losses(losses) if gradients else ()
    meta = dict(metadata or {})
    input_range = meta.pop("input_range", None)
    class_names = list(meta.pop("class_names", []) or [])
    if input_range is not None:
        input_range = (float(input_range[0]), float(input_range[1]))
    common = {
        "format": 1,
        "config": _model_config(model),
        "origin": _origin(model),
        "input_range": input_range,
        "class_names": class_names,
        "versions": package_versions(),
        "user": meta,
    }
    results = []
    bar = _progress(progress, total=len(graphs) * 3)
    try:
        with eval_mode(model, freeze=False):
            examples = _graph_examples(model, example_input, graphs)
            for graph in graphs:
                results.append(
                    _export_graph(
                        model,
                        graph,
                        _batch_at_least_two(examples[graph]),
                        graph_path(path, graph),
                        common=common,
                        opset=opset,
                        gradients=gradients,
                        verify=verify,
                        input_names=input_names,
                        output_names=output_names,
                        atol=atol,
                        rtol=rtol,
                        contrib_ops=contrib_ops,
                        losses=loss_names,
                        bar=bar,
                    )
                )
    finally:
        bar.close()
    return ExportResult(graphs=tuple(results))


def _export_graph(
    model: nn.Module,
    graph: str,
    args: tuple[torch.Tensor, ...],
    target: Path,
    *,
    common: Mapping[str, Any],
    opset: int,
    gradients: bool,
    verify: bool,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    atol: float | None,
    rtol: float | None,
    contrib_ops: bool,
    losses: tuple[str, ...],
    bar: Any,
) -> GraphExport:
    start = time.perf_counter()
    module = _graph_module(model, graph)
    names = (
        list(input_names)
        if input_names
        else (["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))])
    )
    if len(names) != len(args):
        raise ExportError(f"graph {graph!r}: {len(names)} input_names for {len(args)} inputs")
    with torch.no_grad():
        outputs = module(*args)
    n_out = 1 if isinstance(outputs, torch.Tensor) else len(outputs)
    outs = (
        list(output_names)
        if output_names
        else (["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)])
    )
    bar.set_description(f"onnx export {graph}: forward graph")
    proto = _to_onnx(
        module,
        args,
        opset=opset,
        input_names=names,
        output_names=outs,
        graph=graph,
        contrib_ops=contrib_ops,
    )
    bar.update()

    vjp_proto, tier, reason = None, "forward_only", ""
    if not gradients:
        reason = "gradient graph not requested (gradients=False)"
    elif len(args) != 1 or not args[0].dtype.is_floating_point:
        reason = "gradients need one floating-point tensor input"
    elif not isinstance(outputs, torch.Tensor):
        reason = "gradients need one tensor output"
    else:
        bar.set_description(f"onnx export {graph}: gradient graph")
        vjp_proto, reason = _export_vjp(module, args[0], opset=opset, graph=graph)
        tier = "gradients" if vjp_proto is not None else "forward_only"
    loss_protos: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    if vjp_proto is not None and losses:
        bar.set_description(f"onnx export {graph}: loss graphs")
        loss_protos, dropped = _export_losses(vjp_proto, outputs, losses, opset, graph)
    bar.update()

    vjp_target = _vjp_path(target)
    actual_opset = next(
        (imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx")), None
    )
    if actual_opset != opset:
        warnings.warn(
            f"graph {graph!r}: requested opset {opset}, the exporter produced opset "
            f"{actual_opset} (its version conversion failed); the file says so in its metadata",
            RuntimeWarning,
            stacklevel=3,
        )
    metadata = {
        **common,
        "opset": actual_opset,
        "graph": graph,
        "input_spec": _input_spec(args, names, common.get("input_range")),
        "output_names": outs,
    }
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".onnx-export-") as tmp:
        tmp_fwd, tmp_vjp = Path(tmp) / target.name, Path(tmp) / vjp_target.name
        if vjp_proto is not None:
            _set_metadata(vjp_proto, {"graph": f"{graph}/vjp", "versions": common["versions"]})
            _save(vjp_proto, tmp_vjp)
        _set_metadata(proto, {**metadata, "tier": tier, "tier_reason": reason})
        _save(proto, tmp_fwd)
        tmp_losses = {}
        for loss, loss_proto in loss_protos.items():
            tmp_losses[loss] = Path(tmp) / _loss_path(target, loss).name
            _set_metadata(
                loss_proto, {"graph": f"{graph}/loss-{loss}", "versions": common["versions"]}
            )
            _save(loss_proto, tmp_losses[loss])
        report = None
        if verify:
            bar.set_description(f"onnx export {graph}: verify")
            report, tier, reason = _verify(
                target,
                tmp_fwd,
                tmp_vjp if vjp_proto is not None else None,
                module,
                graph,
                common.get("input_range"),
                atol,
                rtol,
                tier,
                reason,
            )
            if tier != "gradients":
                vjp_proto = None
                dropped.update(dict.fromkeys(tmp_losses, "the gradient graph failed verification"))
                tmp_losses = {}
            else:
                failed, rows = _verify_losses(
                    tmp_fwd, tmp_vjp, tmp_losses, module, graph, common.get("input_range")
                )
                dropped.update(failed)
                tmp_losses = {k: v for k, v in tmp_losses.items() if k not in failed}
                report = attrs.evolve(report, rows=(*report.rows, *rows))
        loss_meta = {
            loss: {
                "file": _loss_path(target, loss).name,
                "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
            }
            for loss, file in tmp_losses.items()
        }
        if vjp_proto is not None:
            digest = hashlib.sha256(tmp_vjp.read_bytes()).hexdigest()
            final: dict[str, Any] = {
                "gradient_graph": vjp_target.name,
                "gradient_sha256": digest,
            }
        else:
            final = {"gradient_graph": None, "gradient_sha256": None}
        final.update({"loss_graphs": loss_meta, "loss_graphs_dropped": dropped})
        _set_metadata(proto, {**metadata, "tier": tier, "tier_reason": reason, **final})
        _save(proto, tmp_fwd)
        if vjp_proto is not None:
            os.replace(tmp_vjp, vjp_target)
        elif vjp_target.exists():
            vjp_target.unlink()  # a stale gradient graph of an earlier export
        for stale in target.parent.glob(f"{glob.escape(target.stem)}.loss-*.onnx"):
            stale.unlink()  # loss graphs of an earlier export
        for loss, file in tmp_losses.items():
            os.replace(file, _loss_path(target, loss))
        os.replace(tmp_fwd, target)
    bar.update()
    return GraphExport(
        graph=graph,
        path=target,
        gradient_path=vjp_target if vjp_proto is not None else None,
        tier=tier,
        tier_reason=reason,
        report=report,
        seconds=time.perf_counter() - start,
    )


def _export_losses(
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


def _verify_losses(
    fwd: Path,
    vjp: Path,
    files: Mapping[str, Path],
    module: nn.Module,
    graph: str,
    input_range: Any,
) -> tuple[dict[str, str], list[Any]]:
    """Verify each loss graph against autograd: ``{loss: why it failed}`` and the rows."""
    from neuroplex.onnx.verify import verify_loss_graph

    if not files:
        return {}, []
    runtime = OnnxModule(fwd, device="cpu", gradient_graph=vjp, loss_graphs=dict(files))
    failed: dict[str, str] = {}
    rows: list[Any] = []
    for loss in files:
        try:
            loss_rows = verify_loss_graph(
                runtime, module, loss, graph=graph, input_range=input_range
            )
        except Exception as exc:  # ONNX Runtime refused the graph: drop it, say why
            failed[loss] = f"failed verification: {type(exc).__name__}: {_first_line(exc)}"
            continue
        rows += loss_rows
        bad = [r for r in loss_rows if not r.passed]
        if bad:
            worst = max(bad, key=lambda r: r.max_rel)
            failed[loss] = (
                f"failed verification: {worst.output} max abs err {worst.max_abs:.3g}, "
                f"max rel err {worst.max_rel:.3g}, sign agreement {worst.sign_agreement}"
            )
    return failed, rows


def _verify(
    target: Path,
    fwd: Path,
    vjp: Path | None,
    module: nn.Module,
    graph: str,
    input_range: Any,
    atol: float | None,
    rtol: float | None,
    tier: str,
    reason: str,
) -> tuple[VerificationReport, str, str]:
    """Verify forward (must pass) and gradients (a failure only drops the gradient tier)."""
    runtime = OnnxModule(fwd, device="cpu", gradient_graph=vjp)
    report = verify_onnx(
        runtime, module, graph=graph, atol=atol, rtol=rtol, input_range=input_range
    )
    report = attrs.evolve(report, source=str(target))
    forward_rows = [r for r in report.rows if r.case != "gradient"]
    if not all(r.passed for r in forward_rows):
        raise ExportError(
            f"ONNX export of graph {graph!r} does not match PyTorch; nothing was written.\n"
            + report.to_markdown()
        )
    grad_rows = [r for r in report.rows if r.case == "gradient"]
    if grad_rows and not all(r.passed for r in grad_rows):
        worst = max(grad_rows, key=lambda r: r.max_abs)
        tier = "forward_only"
        reason = (
            f"gradient graph failed verification (max abs err {worst.max_abs:.3g} > "
            f"{report.grad_atol:g} or sign agreement {worst.sign_agreement} < 0.999)"
        )
        report = attrs.evolve(report, rows=tuple(forward_rows))
    return report, tier, reason
