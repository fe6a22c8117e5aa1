"""Files whose output is already probabilities: analyse their log-probabilities instead.

A classifier exported with its final ``Softmax`` returns probabilities. Cross-entropy on
probabilities is wrong (it treats them as logits), and their gradients vanish where the model
is confident. :func:`log_probability_output` routes the first graph output through a
``LogSoftmax`` of the ``Softmax``'s input instead (same axis, same opset semantics):
log-probabilities differ from the logits only by a per-row constant, so the argmax, the
cross-entropy, the margin losses (CW, DLR) and their gradients are those of the logits, and
``exp()`` of the new output gives the file's probabilities back.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["OutputRewrite", "log_probability_output"]

#: nodes that pass a value through unchanged, followed back from the graph output
_PASS_THROUGH = frozenset({"Identity"})


@attrs.frozen
class OutputRewrite:
    """What :func:`log_probability_output` did.

    Attributes:
        model: the rewritten ``onnx.ModelProto`` (a copy; the input is not modified).
        kind: ``"log_probabilities"``.
        note: one line for results and reports, naming the node.
    """

    model: Any
    kind: str
    note: str


def _producer(model: Any, name: str) -> Any:
    """The node making ``name``, followed back through pass-through nodes; ``None`` for a
    graph input or initializer."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        node = producers.get(node.input[0])
    return node


def final_op(model: Any) -> str | None:
    """The op type that makes the first graph output (through ``Identity`` nodes)."""
    node = _producer(model, model.graph.output[0].name)
    return None if node is None else str(node.op_type)


def log_probability_output(model: Any) -> OutputRewrite | None:
    """The model with its first output replaced by log-probabilities when that output is made
    by a ``Softmax`` (default domain); ``None`` otherwise (nothing to do)."""
    import onnx

    first = model.graph.output[0]
    softmax = _producer(model, first.name)
    if softmax is None or softmax.op_type != "Softmax" or softmax.domain not in ("", "ai.onnx"):
        return None
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    taken = {v for node in graph.node for v in (*node.input, *node.output)}
    name = f"{first.name}_log_probabilities"
    while name in taken:
        name += "_"
    log_softmax = onnx.helper.make_node(
        "LogSoftmax",
        [softmax.input[0]],
        [name],
        f"{softmax.name or 'softmax'}/log_probabilities",
    )
    log_softmax.attribute.extend(a for a in softmax.attribute if a.name == "axis")
    graph.node.append(log_softmax)
    graph.output[0].name = name
    note = (
        f"the output {first.name!r} is made by Softmax node {softmax.name or '(unnamed)'!r} "
        "(probabilities): analyses use its log-probabilities (LogSoftmax of the same input; "
        "same argmax, logits up to a per-row constant; exp() gives the probabilities)"
    )
    return OutputRewrite(rewritten, "log_probabilities", note)
