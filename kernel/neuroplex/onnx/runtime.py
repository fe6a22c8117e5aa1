"""ONNX Runtime behind a ``torch.nn.Module``: :class:`OnnxModule`.

Analysis code written against ``torch.nn.Module`` runs unchanged on an exported model:

* **forward** — one ``InferenceSession`` (all graph optimizations on); CPU tensors go in as
  NumPy *views* and come back through ``torch.from_numpy`` (no copies); on CUDA, IO binding
  keeps tensors on the device.
* **gradients** — when the export wrote a vector-Jacobian-product graph beside the model
  (``model.vjp.onnx``), ``forward`` is a ``torch.autograd.Function`` whose backward runs that
  graph, so ``torch.autograd.grad`` / ``loss.backward()`` work (FGSM, PGD, saliency, integrated
  gradients). :attr:`OnnxModule.tier` is ``"gradients"`` then, ``"forward_only"`` otherwise,
  with the reason in :attr:`OnnxModule.tier_reason`.
* **activations** — :meth:`OnnxModule.activations` exposes the output of every PyTorch
  module that survives in the graph (found through the exporter's node metadata
  ``pkg.torch.onnx.name_scopes``) as extra graph outputs of a second session.

The session plumbing (providers, options, input specs and checks, the CUDA IO-binding run, the
activation map) is :mod:`neuroplex.onnx._session`; the records are in :mod:`neuroplex.onnx.results`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuroplex.errors import ConfigError, DataError, ExportError
from neuroplex.onnx._checks import MAX_ONNX_BYTES, load_checked_model
from neuroplex.onnx._session import (
    DEFAULT_DISABLED_OPTIMIZERS,
    activation_map,
    explain_bad_inputs,
    input_spec,
    numpy_dtype,
    providers_for,
    resolve_device,
    run_cuda,
    session_options,
)
from neuroplex.onnx.metadata import decode_metadata
from neuroplex.onnx.results import InputSpec, LossGradient
from neuroplex.ranges import InputRange, check_input_range, range_channels

__all__ = [
    "DEFAULT_DISABLED_OPTIMIZERS",
    "InputSpec",
    "LossGradient",
    "OnnxModule",
    "activation_map",
    "check_input_range",
    "load_onnx",
    "predict",
]

#: a loss graph spliced on first use onto the derived VJP graph (not a file)
_DERIVED = b"<derived>"


class _OrtVjp(torch.autograd.Function):
    """Forward and backward on ONNX Runtime.

    With the split VJP graph (:mod:`neuroplex.onnx._partition`): the forward session also
    returns the tensors the backward needs, and the backward session takes them (one forward,
    one backward). Otherwise: the forward session, then the VJP session (which recomputes the
    forward).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, owner: OnnxModule) -> torch.Tensor:
        ctx.owner = owner
        split = owner._split_sessions()
        if split is None:
            ctx.saved = None
            ctx.save_for_backward(x)
            return owner._run([x])[0]
        output, *saved = owner._run([x], split[0])
        ctx.saved, ctx.dtype = saved, x.dtype
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        owner: OnnxModule = ctx.owner
        if ctx.saved is None:
            (x,) = ctx.saved_tensors
            return owner.vjp(x, grad_output), None
        split = owner._split_sessions()
        assert split is not None
        saved, ctx.saved = ctx.saved, None  # a second backward would need retain_graph
        grad = grad_output.detach().to(ctx.dtype).contiguous()
        return owner._run([*saved, grad], split[1])[0], None


class OnnxModule(nn.Module):
    """An ONNX model run by ONNX Runtime, usable wherever a ``torch.nn.Module`` is.

    Args:
        source: path of a ``.onnx`` file, or its bytes. Validated before use (checker,
            opset range, size limit, external-data paths); bad files raise ExportError.
        providers: ONNX Runtime execution providers; default from ``device``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` or a neuroplex Device
            (default: CUDA when a GPU and the CUDA provider are present, else CPU).
        gradient_graph: ``"auto"`` (the file named in the metadata, beside ``source``; for a
            file not exported by neuroplex, one derived from its ONNX graph, see
            :mod:`neuroplex.onnx.autodiff.cache`), ``"onnx"`` (always derive), a path or bytes
            of a VJP graph, or ``None`` for forward only.
        loss_graphs: ``"auto"`` (the fused loss-gradient graphs named in the metadata, beside
            ``source``; for a derived gradient graph, every loss of :data:`LOSSES` the output
            allows, spliced in memory), ``{loss: path or bytes}``, or ``None`` for none. They
            load on first use.
        input_range: ``(min, max)`` of valid inputs, or per channel ``(mins, maxs)`` (one
            value per channel of axis 1, see :mod:`neuroplex.ranges`), overriding the file's
            metadata (files from other tools have none; attacks clip to it).
        probabilities: for a file not exported by neuroplex (or ``gradient_graph="onnx"``)
            whose first output is made by a ``Softmax``: ``"log"`` (default) returns its
            log-probabilities instead (see :mod:`neuroplex.onnx._outputs`; said in
            :attr:`output_note`), ``"keep"`` the probabilities.
        intra_op_threads: ONNX Runtime intra-op threads (default: ORT's, the physical cores).
        tf32: allow TF32 on the CUDA provider (off by default, for parity with PyTorch).
        spin: let idle ORT worker threads spin (lower latency when ORT runs alone; off by
            default so ORT does not starve PyTorch code running between calls).
        disabled_optimizers: ORT graph transformers to skip (default
            :data:`DEFAULT_DISABLED_OPTIMIZERS`); every other optimization stays on.
        max_bytes: refuse larger files.

    Shapes: inputs as in :attr:`input_specs` (``N`` = any batch); outputs as exported.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        providers: Sequence[Any] | None = None,
        device: Any = None,
        *,
        gradient_graph: str | os.PathLike[str] | bytes | None = "auto",
        loss_graphs: str | Mapping[str, str | os.PathLike[str] | bytes] | None = "auto",
        intra_op_threads: int | None = None,
        tf32: bool = False,
        spin: bool = False,
        disabled_optimizers: Sequence[str] = DEFAULT_DISABLED_OPTIMIZERS,
        max_bytes: int = MAX_ONNX_BYTES,
        input_range: Any = None,
        probabilities: str = "log",
    ) -> None:
        super().__init__()
        self._input_range = None if input_range is None else check_input_range(input_range)
        if probabilities not in ("log", "keep"):
            raise ConfigError(
                f"probabilities must be 'log' or 'keep', got {probabilities!r}",
                path="probabilities",
            )
        self._source = None if isinstance(source, bytes | bytearray) else Path(source)
        self._proto = load_checked_model(source, max_bytes=max_bytes)
        self.metadata: dict[str, Any] = decode_metadata(
            {p.key: p.value for p in self._proto.metadata_props}
        )
        #: ``"log_probabilities"`` when the output was rewritten (or already is), else ``"scores"``
        self.output_kind = "scores"
        #: one line saying how the file's output was changed ("" when it was not)
        self.output_note = ""
        self._digest_suffix = ""
        derived = gradient_graph == "onnx" or (
            gradient_graph == "auto" and "format" not in self.metadata
        )
        #: how a fixed-batch file was made to take any batch ("" when it was not)
        self.batch_note = ""
        if derived:
            self._rewrite_classifier()
            self._rewrite_probabilities(probabilities)
            self._rebatch()
        requested = resolve_device(device)
        self._providers = (
            list(providers) if providers is not None else providers_for(requested, tf32)
        )
        self._options = session_options(intra_op_threads, spin)
        self._disabled = list(disabled_optimizers)
        self._max_bytes = max_bytes
        try:
            self.session = self._new_session(self._proto)
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            raise ExportError(f"ONNX Runtime cannot load {self._what()}: {exc}") from None
        active = self.session.get_providers()
        if requested.type == "cuda" and "CUDAExecutionProvider" not in active:
            warnings.warn(
                f"the CUDA provider did not load for {self._what()}; ONNX Runtime runs on "
                f"{active} instead (check onnxruntime-gpu and the CUDA/cuDNN libraries)",
                RuntimeWarning,
                stacklevel=2,
            )
        self.device = (
            requested
            if "CUDAExecutionProvider" in active and requested.type == "cuda"
            else torch.device("cpu")
        )
        self.input_specs = tuple(input_spec(arg) for arg in self.session.get_inputs())
        self.output_names = tuple(out.name for out in self.session.get_outputs())
        self._check_range_channels()
        self._plans: dict[int, tuple[list[str], list[str], Any]] = {}
        self._on_cpu = self.device.type == "cpu"
        self._last_ok: tuple[Any, Any] = (None, None)
        self._vjp_session: Any = None
        self._vjp_batch: int | None = None
        self._vjp_proto: Any = None
        self._split: tuple[Any, Any] | None = None
        self._derived_vjp: Any = None  # the derived VJP model, for fused loss graphs
        #: ``"traced"`` (exported VJP graph), ``"onnx"`` (derived from the ONNX graph) or None
        self.gradient_source: str | None = None
        self.gradient_check: Any = None  # the finite-difference table of a derived graph
        self.tier, self.tier_reason = self._load_gradient_graph(gradient_graph)
        self._loss_sources = self._find_loss_graphs(loss_graphs)
        self._loss_sessions: dict[str, tuple[Any, int | None]] = {}
        self._activation_session: Any = None
        self._activation_map: dict[str, str] | None = None

    # -- properties --------------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """The execution providers ONNX Runtime actually uses (never the requested ones)."""
        return list(self.session.get_providers())

    @property
    def input_range(self) -> InputRange | None:
        """``(min, max)`` of valid inputs (or per channel ``(mins, maxs)``): the
        ``input_range`` argument, else the file's metadata, else ``None`` (unknown)."""
        if self._input_range is not None:
            return self._input_range
        value: InputRange | None = self.metadata.get("input_range")
        return value

    @property
    def input_channels(self) -> int | None:
        """The channel count (axis 1) of the file's single input when it is static, else
        ``None``: what a per-channel ``input_range`` must match."""
        shape = self.input_specs[0].shape if len(self.input_specs) == 1 else ()
        channels = shape[1] if len(shape) >= 2 else None
        return channels if isinstance(channels, int) else None

    def _check_range_channels(self) -> None:
        """A per-channel ``input_range`` has one value per channel of the input's axis 1."""
        if self._input_range is None or range_channels(self._input_range) is None:
            return
        if self.input_channels is not None:
            check_input_range(self._input_range, channels=self.input_channels)

    @property
    def foreign(self) -> bool:
        """Whether the file was written by another tool (no neuroplex export metadata)."""
        return "format" not in self.metadata

    def _rewrite_classifier(self) -> None:
        from neuroplex.onnx._classifier import classifier_output

        rewrite = classifier_output(self._proto)
        if rewrite is not None:
            self._proto, self.output_note = rewrite.model, rewrite.note
            self._digest_suffix += "|classifier"

    def _rewrite_probabilities(self, probabilities: str) -> None:
        from neuroplex.onnx._outputs import final_op, log_probability_output

        if final_op(self._proto) == "LogSoftmax":
            self.output_kind = "log_probabilities"
            return
        if probabilities == "keep":
            return
        rewrite = log_probability_output(self._proto)
        if rewrite is not None:
            self._proto = rewrite.model
            self.output_kind = rewrite.kind
            self.output_note = "; ".join(n for n in (self.output_note, rewrite.note) if n)
            self._digest_suffix += "|log_probabilities"

    def _rebatch(self) -> None:
        from neuroplex.onnx._batch import rebatch

        done = rebatch(self._proto)
        if done is not None:
            self._proto, self.batch_note = done
            self._digest_suffix += "|rebatched"

    def extra_repr(self) -> str:
        inputs = "; ".join(spec.describe() for spec in self.input_specs)
        return f"{self._what()}, inputs=[{inputs}], providers={self.providers}, tier={self.tier}"

    def _new_session(self, proto: Any) -> Any:
        """An ONNX Runtime session of ``proto`` with this module's options and providers."""
        import onnxruntime as ort

        return ort.InferenceSession(
            proto.SerializeToString(),
            self._options,
            providers=self._providers,
            disabled_optimizers=self._disabled,
        )

    def _what(self) -> str:
        return repr(str(self._source)) if self._source is not None else "<bytes>"

    # -- gradient graph ----------------------------------------------------------------------
    def _load_gradient_graph(
        self, gradient_graph: str | os.PathLike[str] | bytes | None
    ) -> tuple[str, str]:
        if gradient_graph is None:
            return "forward_only", "gradient graph disabled (gradient_graph=None)"
        source = "traced"
        if isinstance(gradient_graph, str) and gradient_graph in ("auto", "onnx"):
            name = self.metadata.get("gradient_graph")
            foreign = "format" not in self.metadata  # not written by neuroplex.onnx.export
            if gradient_graph == "onnx" or (not name and foreign):
                from neuroplex.onnx.autodiff.cache import derive_gradient_graph

                derived = derive_gradient_graph(self._proto, self._source, digest=self._digest())
                self.gradient_check = derived.check
                if derived.model is None:
                    return "forward_only", derived.reason
                return self._open_vjp(derived.model, "onnx", derived.reason)
            if not name:
                reason = self.metadata.get("tier_reason") or "the file has no gradient graph"
                return "forward_only", str(reason)
            if self._source is None:
                return "forward_only", "loaded from bytes: pass gradient_graph= explicitly"
            folder = self._source.parent.resolve()
            path = (folder / str(name)).resolve()
            if Path(str(name)).is_absolute() or not path.is_relative_to(folder):
                return "forward_only", (
                    f"the gradient graph named in the metadata, {str(name)!r}, is outside the "
                    f"model's folder {str(folder)!r}: refused"
                )
            if not path.is_file():
                return "forward_only", f"gradient graph {str(path)!r} is missing"
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != self.metadata.get("gradient_sha256"):
                return "forward_only", f"gradient graph {str(path)!r} does not match this model"
            gradient_graph = path
        proto = load_checked_model(gradient_graph, max_bytes=self._max_bytes)
        return self._open_vjp(proto, source, "")

    def _digest(self) -> str | None:
        """The cache key of a derived gradient graph: the file's SHA-256, changed when the
        graph was rewritten before deriving (``None``: let the cache hash the bytes)."""
        if not self._digest_suffix:
            return None
        data = self._source.read_bytes() if self._source is not None else b""
        digest = hashlib.sha256(data or self._proto.SerializeToString())
        digest.update(b"\0" + self._digest_suffix.encode())
        return digest.hexdigest()

    def _open_vjp(self, proto: Any, source: str, reason: str) -> tuple[str, str]:
        try:
            self._vjp_session = self._new_session(proto)
        except Exception as exc:  # ORT raises its own exception types
            return "forward_only", f"ONNX Runtime cannot load the gradient graph: {exc}"
        names = [i.name for i in self._vjp_session.get_inputs()]
        if len(names) != 2 or len(self.input_specs) != 1:
            self._vjp_session = None
            return (
                "forward_only",
                f"gradient graph has inputs {names}, expected (input, grad_output)",
            )
        batch = self._vjp_session.get_inputs()[0].shape[0]
        self._vjp_batch = batch if isinstance(batch, int) else None
        self._vjp_proto = proto if self._vjp_batch is None else None
        how = f"fixed batch {batch}, padded" if self._vjp_batch else "dynamic batch"
        self.gradient_source = source
        if source == "onnx":
            self._derived_vjp = proto
        return "gradients", reason or f"exported VJP graph ({how})"

    def _split_sessions(self) -> tuple[Any, Any] | None:
        """Sessions of the split VJP graph (forward with saved tensors, backward), built on
        first use; ``None`` when the graph cannot be split (then the VJP session is used)."""
        if self._split is None and self._vjp_proto is not None:
            from neuroplex.onnx._partition import partition_vjp

            proto, self._vjp_proto = self._vjp_proto, None
            try:
                parts = partition_vjp(proto)
                if parts is not None:
                    fwd, bwd = (self._new_session(p) for p in parts[:2])
                    self._split = (fwd, bwd)
            except Exception:  # an unusual graph: keep the VJP path, which is verified
                self._split = None
        return self._split

    # -- fused loss-gradient graphs ----------------------------------------------------------
    def _find_loss_graphs(
        self, loss_graphs: str | Mapping[str, str | os.PathLike[str] | bytes] | None
    ) -> dict[str, tuple[Path | bytes, str | None]]:
        """``{loss: (file or bytes, expected sha256 or None)}`` of the usable loss graphs."""
        if loss_graphs is None or self.tier != "gradients":
            return {}
        if not isinstance(loss_graphs, str):
            return {
                str(k): (v if isinstance(v, bytes) else Path(v), None)
                for k, v in loss_graphs.items()
            }
        if loss_graphs != "auto":
            raise ExportError(f"loss_graphs must be 'auto', a mapping or None, got {loss_graphs!r}")
        if self._derived_vjp is not None:
            return self._derivable_losses()
        listed = self.metadata.get("loss_graphs") or {}
        if self._source is None or not isinstance(listed, dict):
            return {}
        folder = self._source.parent.resolve()
        found: dict[str, tuple[Path | bytes, str | None]] = {}
        for loss, entry in listed.items():
            name = str(entry.get("file", "")) if isinstance(entry, dict) else ""
            path = (folder / name).resolve()
            if name and not Path(name).is_absolute() and path.is_relative_to(folder):
                found[str(loss)] = (path, str(entry.get("sha256")))
        return found

    def _derivable_losses(self) -> dict[str, tuple[Path | bytes, str | None]]:
        """The losses of :data:`~neuroplex.onnx.LOSSES` whose head fits the derived graph's
        output ``(N, C)`` and whose names are free in it; spliced on first use."""
        from neuroplex.onnx._losses import LOSSES

        graph = self._derived_vjp.graph
        dims = graph.output[1].type.tensor_type.shape.dim
        if len(dims) != 2 or not dims[1].HasField("dim_value"):
            return {}
        classes = int(dims[1].dim_value)
        taken = {v for node in graph.node for v in (*node.input, *node.output)}
        taken.update(i.name for i in graph.initializer)
        return {
            name: (_DERIVED, None)
            for name, spec in LOSSES.items()
            if classes >= spec.min_classes and not taken & {"loss", *spec.inputs}
        }

    def _splice_loss_graph(self, loss: str) -> bytes:
        """The fused graph of ``loss`` on the derived VJP graph (its loss head, from
        :func:`neuroplex.onnx._losses.head_graph`, in place of ``grad_output``)."""
        from neuroplex.onnx._losses import LOSSES, head_graph, splice

        vjp = self._derived_vjp
        spec = LOSSES[loss]
        opset = next(i.version for i in vjp.opset_import if i.domain in ("", "ai.onnx"))
        fused = splice(vjp, head_graph(spec, vjp.graph.output[1], int(opset)), spec)
        data: bytes = fused.SerializeToString()
        return data

    @property
    def loss_graphs(self) -> tuple[str, ...]:
        """The losses with a fused loss-gradient graph (see :meth:`loss_and_grad`)."""
        return tuple(self._loss_sources)

    def has_loss_graph(self, loss: str) -> bool:
        """Whether :meth:`loss_and_grad` can run ``loss`` in one session call."""
        return loss in self._loss_sources

    def _loss_session(self, loss: str) -> tuple[Any, int | None]:
        cached = self._loss_sessions.get(loss)
        if cached is not None:
            return cached
        if loss not in self._loss_sources:
            raise ExportError(
                f"{self._what()} has no {loss!r} loss graph (it has: "
                f"{', '.join(self._loss_sources) or 'none'}); re-export with "
                f"export_onnx(..., losses=[{loss!r}]) or use autograd through the model"
            )
        source, digest = self._loss_sources[loss]
        if source is _DERIVED:
            source = self._splice_loss_graph(loss)
        elif isinstance(source, Path):
            if not source.is_file():
                del self._loss_sources[loss]
                raise ExportError(f"the {loss!r} loss graph {str(source)!r} is missing")
            if digest is not None and hashlib.sha256(source.read_bytes()).hexdigest() != digest:
                del self._loss_sources[loss]
                raise ExportError(
                    f"the {loss!r} loss graph {str(source)!r} does not match this model: refused"
                )
        proto = load_checked_model(source, max_bytes=self._max_bytes)
        session = self._new_session(proto)
        batch = session.get_inputs()[0].shape[0]
        cached = (session, batch if isinstance(batch, int) else None)
        self._loss_sessions[loss] = cached
        return cached

    def loss_and_grad(
        self, x: torch.Tensor, *labels: torch.Tensor, loss: str = "ce"
    ) -> LossGradient:
        """Output, per-sample ``loss`` and its input gradient in one ONNX Runtime call.

        Args:
            x: the input batch ``(N, ...)``.
            labels: the loss's label inputs, int64 ``(N,)`` each: ``labels`` for ``ce``,
                ``cw`` and ``dlr``; ``labels, target`` for ``dlr_targeted``; ``target`` for
                ``selected`` (see :data:`neuroplex.onnx.LOSSES`).
            loss: which fused graph.

        Raises:
            ExportError: the file has no such graph (:attr:`loss_graphs` lists those it has).
            DataError: wrong inputs.
        """
        session, fixed = self._loss_session(loss)
        expected = len(session.get_inputs()) - 1
        if len(labels) != expected:
            names = [i.name for i in session.get_inputs()[1:]]
            raise DataError(f"the {loss!r} loss graph takes {names} after the input")
        self._check_inputs([x])
        n = x.shape[0]
        ints = []
        for t in labels:
            t = torch.as_tensor(t).to(torch.int64)
            if t.shape != (n,):
                raise DataError(
                    f"labels for the {loss!r} loss graph must have shape ({n},) like the "
                    f"batch, got {tuple(t.shape)}"
                )
            ints.append(t)
        if fixed is None:
            out, value, grad = self._run([x.detach(), *ints], session)
            return LossGradient(output=out, loss=value, grad=grad)
        parts = []
        for start in range(0, n, fixed):
            xs = x.detach()[start : start + fixed]
            ls = [t[start : start + fixed] for t in ints]
            m = xs.shape[0]
            if m < fixed:  # samples are independent: pad, then drop the padded rows
                xs = torch.cat([xs, xs.new_zeros((fixed - m, *xs.shape[1:]))])
                ls = [torch.cat([t, t.new_zeros(fixed - m)]) for t in ls]
            parts.append([o[:m] for o in self._run([xs, *ls], session)])
        out, value, grad = (torch.cat(p) for p in zip(*parts, strict=True))
        return LossGradient(output=out, loss=value, grad=grad)

    # -- running -----------------------------------------------------------------------------
    def _check_inputs(self, inputs: Sequence[Any]) -> None:
        if len(inputs) == 1:  # fastest path: same shape and dtype as the last checked call
            t = inputs[0]
            if (
                type(t) is torch.Tensor
                and t.shape == self._last_ok[0]
                and t.dtype is self._last_ok[1]
            ):
                return
        specs = self.input_specs
        if len(inputs) == len(specs):  # fast path: everything as expected
            for tensor, spec in zip(inputs, specs, strict=True):
                if (
                    not isinstance(tensor, torch.Tensor)
                    or tensor.dtype is not spec.dtype
                    or tensor.dim() != len(spec.shape)
                ):
                    break
                shape = tensor.shape
                if any(w is not None and w != g for w, g in zip(spec.shape, shape, strict=True)):
                    break
            else:
                if len(inputs) == 1:
                    self._last_ok = (inputs[0].shape, inputs[0].dtype)
                return
        explain_bad_inputs(self.input_specs, inputs)

    def _plan(self, session: Any) -> tuple[list[str], list[str], Any]:
        """Cached input names, output names and run function of a session."""
        plan = self._plans.get(id(session))
        if plan is None:
            # the C-level run skips the Python wrapper's re-validation of names we checked
            raw = getattr(getattr(session, "_sess", None), "run", None) or session.run
            plan = (
                [i.name for i in session.get_inputs()],
                [o.name for o in session.get_outputs()],
                raw,
            )
            self._plans[id(session)] = plan
        return plan

    def _run(self, inputs: Sequence[torch.Tensor], session: Any = None) -> list[torch.Tensor]:
        session = self.session if session is None else session
        if not self._on_cpu:
            return run_cuda(session, inputs, self.device)
        names, output_names, run = self._plan(session)
        feed = {}
        all_cpu = True
        for name, t in zip(names, inputs, strict=True):
            if t.requires_grad:
                t = t.detach()
            if not t.is_cpu:
                all_cpu = False
                t = t.cpu()
            # a NumPy view of a contiguous CPU tensor: no copy
            feed[name] = (t if t.is_contiguous() else t.contiguous()).numpy()
        outputs = run(output_names, feed, None)
        if all_cpu:
            return [torch.from_numpy(o) for o in outputs]
        target = inputs[0].device
        return [torch.from_numpy(o).to(target) for o in outputs]

    def forward(self, *inputs: torch.Tensor) -> Any:
        """Run the model; one output gives a tensor, several a tuple.

        Differentiable with respect to the (single) input when :attr:`tier` is
        ``"gradients"``; on ``"forward_only"`` a backward pass raises a clear error.
        """
        self._check_inputs(inputs)
        if inputs[0].requires_grad and len(inputs) == 1 and torch.is_grad_enabled():
            if self.tier != "gradients":
                raise ExportError(
                    f"{self._what()} is forward-only ({self.tier_reason}): gradients of its "
                    "outputs are unavailable; re-export with neuroplex.onnx.export_onnx "
                    "(gradients=True) or use a perturbation method"
                )
            out: torch.Tensor = _OrtVjp.apply(inputs[0], self)  # type: ignore[no-untyped-call]
            return out
        outputs = self._run(inputs)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def vjp(self, x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        """``(d output / d x)^T · grad_output`` on the VJP session; shape of ``x``."""
        if self._vjp_session is None:
            raise ExportError(f"{self._what()} has no gradient graph: {self.tier_reason}")
        x = x.detach()
        grad_output = grad_output.detach().to(x.dtype)
        if self._vjp_batch is None:
            return self._run([x, grad_output], self._vjp_session)[0]
        batch, chunks = self._vjp_batch, []
        for start in range(0, x.shape[0], batch):
            xs, gs = x[start : start + batch], grad_output[start : start + batch]
            n = xs.shape[0]
            if n < batch:  # pad with zero rows; their zero grad_output contributes nothing
                xs = torch.cat([xs, xs.new_zeros((batch - n, *xs.shape[1:]))])
                gs = torch.cat([gs, gs.new_zeros((batch - n, *gs.shape[1:]))])
            chunks.append(self._run([xs, gs], self._vjp_session)[0][:n])
        return torch.cat(chunks)

    def run_numpy(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """NumPy in, NumPy out (all outputs), with the same input checks as ``forward``."""
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        self._check_inputs(tensors)
        return [o.cpu().numpy() for o in self._run(tensors)]

    # -- activations -------------------------------------------------------------------------
    def activation_names(self) -> list[str]:
        """PyTorch module names whose outputs :meth:`activations` can return, in graph order."""
        if self._activation_map is None:
            self._activation_map = activation_map(self._proto)
        return list(self._activation_map)

    def activations(
        self, *inputs: torch.Tensor, names: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Outputs of PyTorch modules (``{module name: tensor (N, ...)}``) for a batch.

        Args:
            inputs: as for ``forward``.
            names: only these module names (default: all of :meth:`activation_names`).
        """
        import onnx

        available = self.activation_names()
        wanted = list(names) if names is not None else available
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise DataError(
                f"unknown module name(s) {unknown}; this ONNX model exposes: "
                f"{', '.join(available) or 'none'}"
            )
        self._check_inputs(inputs)
        assert self._activation_map is not None
        if self._activation_session is None:
            proto = onnx.ModelProto()
            proto.CopyFrom(self._proto)
            existing = {o.name for o in proto.graph.output}
            for value in dict.fromkeys(self._activation_map.values()):
                if value not in existing:
                    proto.graph.output.append(onnx.ValueInfoProto(name=value))
            self._activation_session = self._new_session(proto)
        outputs = self._run(list(inputs), self._activation_session)
        by_value = {
            o.name: t for o, t in zip(self._activation_session.get_outputs(), outputs, strict=True)
        }
        return {n: by_value[self._activation_map[n]] for n in wanted}


def load_onnx(path: str | os.PathLike[str] | bytes, **options: Any) -> OnnxModule:
    """Open an exported model (with its gradient graph when present) as an :class:`OnnxModule`."""
    return OnnxModule(path, **options)


def predict(path: str | os.PathLike[str] | OnnxModule, array: Any, **options: Any) -> np.ndarray:
    """Run an ONNX model on a NumPy array and return the first output as a NumPy array.

    Floating-point arrays are cast to the model's floating input dtype (float64 -> float32);
    other dtype mismatches are errors.
    """
    module = path if isinstance(path, OnnxModule) else OnnxModule(path, **options)
    arr = np.asarray(array)
    want = module.input_specs[0].dtype
    if want.is_floating_point and np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(numpy_dtype(want), copy=False)
    return module.run_numpy(arr)[0]
