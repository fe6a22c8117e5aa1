"""Fused loss-gradient graphs: ``(input, labels[, target]) -> (output, loss, grad_input)``.

One graph per loss the built-in analyzers use:

    out = model(x);  loss = per_sample_loss(out, labels);  grad = d sum(loss) / d x

so an attack step or an attribution is one ONNX Runtime call, with no second forward. The model
is traced once, for the VJP graph ``(input, grad_output) -> (grad_input, output)``; each loss
adds only its *head* ``(logits, labels) -> (loss, d loss / d logits)``, a dozen ONNX operators
written here (:func:`head_graph`), spliced into the VJP graph in place of its ``grad_output``
input (:func:`splice`). A loss graph therefore costs no trace and no export of the model, only
its verification against autograd (a wrong head would be dropped there, never published). Samples
are independent in eval mode, so ``grad[i]`` is the gradient of ``loss[i]`` alone; the gradient
of the batch mean is ``grad / N``.

=================  ================  ==========================================================
loss               label inputs      per-sample loss (``z`` = logits, ``y`` = labels)
=================  ================  ==========================================================
``ce``             labels            cross-entropy ``-log softmax(z)[y]``
``cw``             labels            Carlini-Wagner margin ``max_{j != y} z_j - z_y``
``dlr``            labels            ``-(z_y - max_{j != y} z_j) / (z_(1) - z_(3) + 1e-12)``
``dlr_targeted``   labels, target    ``-(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2 + 1e-12)``
``selected``       target            the selected output ``z_t`` (saliency, IxG, IG)
=================  ================  ==========================================================

``z_(k)`` is the k-th largest logit (Croce & Hein 2020, the DLR losses of AutoAttack).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_LOSSES", "LOSSES", "LossSpec", "head_graph", "splice"]


def _others_max(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{j != y} z_j`` per row."""
    mask = F.one_hot(y, z.shape[1]).to(torch.bool)
    return z.masked_fill(mask, float("-inf")).amax(dim=1)


def _ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, reduction="none")


def _cw(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _others_max(z, y) - z.gather(1, y[:, None]).squeeze(1)


def _dlr(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    top = z.topk(3, dim=1).values
    margin = z.gather(1, y[:, None]).squeeze(1) - _others_max(z, y)
    return -margin / (top[:, 0] - top[:, 2] + 1e-12)


def _dlr_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    top = z.topk(4, dim=1).values
    margin = z.gather(1, y[:, None]).squeeze(1) - z.gather(1, t[:, None]).squeeze(1)
    return -margin / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _selected(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return z.gather(1, t[:, None]).squeeze(1)


@attrs.frozen
class LossSpec:
    """A per-sample loss of ``(N, C)`` logits and ``(N,)`` int64 label inputs.

    Attributes:
        name: the key in :data:`LOSSES`.
        inputs: names of the label inputs after ``input`` (``labels``, ``target``).
        min_classes: the fewest output columns it is defined for.
        fn: ``fn(logits, *labels) -> (N,)``.
    """

    name: str
    inputs: tuple[str, ...]
    min_classes: int
    fn: Callable[..., torch.Tensor]


LOSSES: dict[str, LossSpec] = {
    s.name: s
    for s in (
        LossSpec("ce", ("labels",), 2, _ce),
        LossSpec("cw", ("labels",), 2, _cw),
        LossSpec("dlr", ("labels",), 3, _dlr),
        LossSpec("dlr_targeted", ("labels", "target"), 4, _dlr_targeted),
        LossSpec("selected", ("target",), 1, _selected),
    )
}

#: the loss graphs :func:`~neuroplex.onnx.export_onnx` writes by default
DEFAULT_LOSSES: tuple[str, ...] = ("ce", "selected")


def example_labels(spec: LossSpec, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Seeded example label inputs for ``spec`` (a target never equals its label)."""
    n, c = logits.shape
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, c, (n,), generator=gen)
    if spec.inputs == ("labels", "target"):
        return labels, (labels + torch.randint(1, c, (n,), generator=gen)) % c
    return (labels,)


class _Head:
    """Builds an ONNX loss head ``(logits, *labels) -> (loss, grad_logits)`` node by node."""

    def __init__(self, elem: int, opset: int = 18) -> None:
        self.elem = elem
        self.opset = opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._count = 0

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        import onnx

        self._count += 1
        out = f"h{self._count}_{op_type.lower()}"
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value: float | list[int], *, ints: bool = False) -> str:
        import numpy as np
        import onnx

        self._count += 1
        name = f"c{self._count}"
        dtype = np.int64 if ints else onnx.helper.tensor_dtype_to_np_dtype(self.elem)
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def onehot(self, z: str, index: str) -> str:
        """``(N, C)`` float, 1 at ``index[i]`` in row ``i``."""
        classes = self.op("Gather", self.op("Shape", z), self.const(1, ints=True))
        cols = self.op("Range", self.const(0, ints=True), classes, self.const(1, ints=True))
        rows = self.op("Unsqueeze", index, self.const([1], ints=True))
        return self.op("Cast", self.op("Equal", rows, cols), to=self.elem)

    def pick(self, z: str, onehot: str) -> str:
        """``z[i, index[i]]`` as ``(N, 1)`` (the row sum of ``z * onehot`` is exact)."""
        return self.op("ReduceSum", self.op("Mul", z, onehot), self.const([1], ints=True))

    def others_max(self, z: str, onehot: str) -> tuple[str, str]:
        """``max_{j != y} z_j`` ``(N, 1)`` and its gradient (ties share it, like ``amax``)."""
        masked = self.op("Where", self.op("Cast", onehot, to=9), self.const(float("-inf")), z)
        if self.opset >= 18:
            top = self.op("ReduceMax", masked, self.const([1], ints=True))
        else:  # before opset 18 ReduceMax takes its axes as an attribute (derived graphs)
            top = self.op("ReduceMax", masked, axes=[1])
        ties = self.op("Cast", self.op("Equal", masked, top), to=self.elem)
        share = self.op("Div", ties, self.op("ReduceSum", ties, self.const([1], ints=True)))
        return top, share

    def topk(self, z: str, k: int) -> tuple[list[str], list[str]]:
        """The ``k`` largest logits ``(N, 1)`` each, and one-hot rows of where they are."""
        import onnx

        self._count += 1
        values, indices = f"h{self._count}_topv", f"h{self._count}_topi"
        self.nodes.append(
            onnx.helper.make_node(
                "TopK", [z, self.const([k], ints=True)], [values, indices], axis=1
            )
        )
        vs, hots = [], []
        for i in range(k):
            at = self.const([i], ints=True)
            vs.append(self.op("Gather", values, at, axis=1))
            index = self.op(
                "Squeeze", self.op("Gather", indices, at, axis=1), self.const([1], ints=True)
            )
            hots.append(self.onehot(z, index))
        return vs, hots


def _ratio_head(h: _Head, margin: str, d_margin: str, denom: str, d_denom: str) -> tuple[str, str]:
    """``loss = -margin / denom`` and ``d loss = -d_margin / denom + margin / denom² d_denom``."""
    loss = h.op("Neg", h.op("Div", margin, denom))
    first = h.op("Neg", h.op("Div", d_margin, denom))
    second = h.op("Mul", h.op("Div", margin, h.op("Mul", denom, denom)), d_denom)
    return loss, h.op("Add", first, second)


def _build_head(h: _Head, loss: str, z: str, labels: list[str]) -> tuple[str, str]:
    """Loss ``(N, 1)`` and gradient ``(N, C)`` of ``loss`` on logits ``z``."""
    if loss == "selected":
        hot = h.onehot(z, labels[0])
        return h.pick(z, hot), hot
    hot = h.onehot(z, labels[0])
    if loss == "ce":
        logp = h.op("LogSoftmax", z, axis=1)
        value = h.op("Neg", h.pick(logp, hot))
        return value, h.op("Sub", h.op("Exp", logp), hot)
    if loss == "cw":
        top, share = h.others_max(z, hot)
        return h.op("Sub", top, h.pick(z, hot)), h.op("Sub", share, hot)
    eps = h.const(1e-12)
    if loss == "dlr":
        top, share = h.others_max(z, hot)
        (v1, _, v3), (i1, _, i3) = h.topk(z, 3)
        margin = h.op("Sub", h.pick(z, hot), top)
        denom = h.op("Add", h.op("Sub", v1, v3), eps)
        return _ratio_head(h, margin, h.op("Sub", hot, share), denom, h.op("Sub", i1, i3))
    # dlr_targeted
    target = h.onehot(z, labels[1])
    (v1, _, v3, v4), (i1, _, i3, i4) = h.topk(z, 4)
    half = h.const(0.5)
    margin = h.op("Sub", h.pick(z, hot), h.pick(z, target))
    denom = h.op("Add", h.op("Sub", v1, h.op("Mul", half, h.op("Add", v3, v4))), eps)
    d_denom = h.op("Sub", i1, h.op("Mul", half, h.op("Add", i3, i4)))
    return _ratio_head(h, margin, h.op("Sub", hot, target), denom, d_denom)


def head_graph(spec: LossSpec, logits: Any, opset: int) -> Any:
    """The ONNX loss head ``(logits, *labels) -> (loss, grad_logits)`` of ``spec``: the
    per-sample loss and its gradient written directly in ONNX operators (no trace, no export
    of the model), checked against autograd when the fused graph is verified.

    Args:
        spec: the loss.
        logits: the ``ValueInfoProto`` of the model's output (its element type and shape).
        opset: the default-domain opset of the graph it joins.
    """
    import onnx

    elem = logits.type.tensor_type.elem_type
    h = _Head(elem, opset)
    z = "logits"
    labels = list(spec.inputs)
    value, grad = _build_head(h, spec.name, z, labels)
    h.nodes.append(onnx.helper.make_node("Squeeze", [value, h.const([1], ints=True)], ["loss"]))
    h.nodes.append(onnx.helper.make_node("Identity", [grad], ["grad_logits"]))
    batch = "batch"
    graph = onnx.helper.make_graph(
        h.nodes,
        f"loss_head_{spec.name}",
        [
            onnx.helper.make_tensor_value_info(z, elem, [batch, None]),
            *(
                onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT64, [batch])
                for n in labels
            ),
        ],
        [
            onnx.helper.make_tensor_value_info("loss", elem, [batch]),
            onnx.helper.make_tensor_value_info("grad_logits", elem, [batch, None]),
        ],
        initializer=h.inits,
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


def _toposort(nodes: list[Any], available: set[str]) -> list[Any]:
    """Nodes in an order where every input is produced before it is used."""
    ordered, pending, known = [], list(nodes), set(available)
    while pending:
        ready = [n for n in pending if all(not i or i in known for i in n.input)]
        if not ready:
            raise ValueError("the spliced loss graph has a cycle or a missing value")
        for node in ready:
            ordered.append(node)
            known.update(node.output)
        pending = [n for n in pending if n not in ready]
    return ordered


def splice(vjp: Any, head: Any, spec: LossSpec) -> Any:
    """The fused graph: ``head`` computes ``grad_output`` of the VJP graph from its ``output``.

    ``vjp``: ``(input, grad_output) -> (grad_input, output)``; ``head``: ``(logits, *labels)
    -> (loss, grad_logits)``. The result is ``(input, *labels) -> (output, loss, grad_input)``
    (the forward runs once: the head sits between the model's output and the backward).
    """
    import onnx

    g, h = vjp.graph, head.graph
    x_name, go_name = g.input[0].name, g.input[1].name
    out = {o.name: o for o in g.output}
    grad_name, y_name = g.output[0].name, g.output[1].name
    z_name, *label_names = (i.name for i in h.input)
    loss_name, dz_name = h.output[0].name, h.output[1].name
    keep = {z_name: y_name, dz_name: go_name, loss_name: "loss"}
    keep.update({n: n for n in label_names})

    def rename(name: str) -> str:
        return keep.get(name, f"loss_head/{name}") if name else name

    nodes = list(g.node)
    for index, node in enumerate(h.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"loss_head/{index}_{node.op_type}"
        copy.input[:] = [rename(i) for i in node.input]
        copy.output[:] = [rename(o) for o in node.output]
        nodes.append(copy)
    inits = list(g.initializer)
    for init in h.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = rename(init.name)
        inits.append(copy)
    names = {x_name, *label_names, *(i.name for i in inits)}
    loss_info = onnx.ValueInfoProto()
    loss_info.CopyFrom(h.output[0])
    loss_info.name = "loss"
    fused = onnx.helper.make_graph(
        _toposort(nodes, names),
        f"{g.name}_loss_{spec.name}",
        [g.input[0], *h.input[1:]],
        [out[y_name], loss_info, out[grad_name]],
        initializer=inits,
    )
    model = onnx.helper.make_model(fused, opset_imports=list(vjp.opset_import))
    model.ir_version = vjp.ir_version
    model.functions.extend(vjp.functions)
    model.functions.extend(
        f for f in head.functions if f.name not in {x.name for x in vjp.functions}
    )
    return model
