"""Writing one exported graph: convert, write to temporary files, verify, publish.

:func:`export_graph` is the per-graph step of :func:`~neuroplex.onnx.export_onnx`: it converts
the graph (and its gradient and loss graphs, :mod:`neuroplex.onnx._convert`), writes every file
to a temporary folder beside the target, verifies them against PyTorch and only then renames
them into place. A forward graph that fails verification raises
:class:`~neuroplex.errors.ExportError` and leaves no file behind; a gradient or loss graph that
fails is dropped, with the reason in the metadata.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from neuroplex.errors import ExportError
from neuroplex.onnx._convert import export_losses, export_vjp, first_line, graph_module, to_onnx
from neuroplex.onnx.metadata import encode_metadata
from neuroplex.onnx.results import GraphExport, VerificationReport
from neuroplex.onnx.runtime import OnnxModule
from neuroplex.onnx.verify import verify_loss_graph, verify_onnx

__all__ = ["export_graph", "verify_graph", "verify_losses"]


def _vjp_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.vjp.onnx")


def _loss_path(path: Path, loss: str) -> Path:
    return path.with_name(f"{path.stem}.loss-{loss}.onnx")


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


def export_graph(
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
    """Convert graph ``graph`` of ``model``, write, verify and publish its files at ``target``
    (forward, VJP and loss graphs); ``bar`` advances three steps."""
    start = time.perf_counter()
    module = graph_module(model, graph)
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
    proto = to_onnx(
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
        vjp_proto, reason = export_vjp(module, args[0], opset=opset, graph=graph)
        tier = "gradients" if vjp_proto is not None else "forward_only"
    loss_protos: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    if vjp_proto is not None and losses:
        bar.set_description(f"onnx export {graph}: loss graphs")
        loss_protos, dropped = export_losses(vjp_proto, outputs, losses, opset, graph)
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
            report, tier, reason = verify_graph(
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
                failed, rows = verify_losses(
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


def verify_losses(
    fwd: Path,
    vjp: Path,
    files: Mapping[str, Path],
    module: nn.Module,
    graph: str,
    input_range: Any,
) -> tuple[dict[str, str], list[Any]]:
    """Verify each loss graph against autograd: ``{loss: why it failed}`` and the rows."""
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
            failed[loss] = f"failed verification: {type(exc).__name__}: {first_line(exc)}"
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


def verify_graph(
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
