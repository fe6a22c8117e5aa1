"""Split a VJP graph into a forward graph that returns what its backward needs, and that backward.

The VJP graph ``(input, grad_output) -> (grad_input, output)`` recomputes the forward pass it
needs. Its nodes fall into two sets: those that depend on ``grad_output`` (the backward) and the
others (the forward, which computes ``output``). This is the partition AOT-autograd makes of a
joint graph, done on the ONNX graph itself:

* forward: ``input -> (output, *saved)`` where ``saved`` are the forward values the backward
  reads (activations, masks, shapes);
* backward: ``(*saved, grad_output) -> grad_input``; nodes that depend on neither input
  (constants) are copied into the backward instead of being saved.

So ``OnnxModule(x)`` followed by ``.backward()`` runs the forward once and the backward once.
The partition is exact (the same nodes, split), built when an ``OnnxModule`` loads; a graph it
cannot split (a fixed batch, unknown value types) or should not (more than :data:`MAX_SAVED`
saved tensors) keeps the plain VJP path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_SAVED", "batch_from_input", "partition_vjp"]

#: the most saved tensors a split may pass from forward to backward: each is a graph output
#: and a graph input, a cost per tensor that outweighs the recomputed forward when there are
#: hundreds of small ones (a 2-layer LSTM unrolled over 16 steps saves 352: its split ran
#: 0.16x autograd, the VJP graph 0.68x; the zoo's CNNs and ViT save 10-41)
MAX_SAVED = 128


def batch_from_input(vjp: Any) -> int:
    """Read the batch size from ``input`` where the VJP graph reads it from ``grad_output``.

    The exporter takes the symbolic batch size from the first tensor that has it, which may be
    ``grad_output``: then forward nodes (a class token expanded to the batch, an LSTM's zero
    initial state) depend on ``grad_output``, and the graph can neither be split nor take a
    loss head. ``Shape(grad_output)[0:1]`` is ``Shape(input)[0:1]`` (both are the batch), so
    the rewrite is exact. Changes ``vjp`` in place; returns how many nodes it rewired.
    """
    graph = vjp.graph
    if len(graph.input) != 2:
        return 0
    x_name, go_name = graph.input[0].name, graph.input[1].name
    count = 0
    for node in graph.node:
        if node.op_type != "Shape" or list(node.input) != [go_name]:
            continue
        bounds = {a.name: a.i for a in node.attribute}
        if bounds.get("start", 0) == 0 and bounds.get("end") == 1:
            node.input[0] = x_name
            count += 1
    return count


def _closure(nodes: list[Any], seeds: set[str]) -> tuple[set[int], set[str]]:
    """Indices of the nodes reachable from values ``seeds``, and every value they produce."""
    reached, values = set(), set(seeds)
    for index, node in enumerate(nodes):  # nodes are in topological order
        if any(i in values for i in node.input if i):
            reached.add(index)
            values.update(o for o in node.output if o)
    return reached, values


def _needed(nodes: list[Any], wanted: set[str], allowed: set[int]) -> set[int]:
    """Indices among ``allowed`` of the nodes that produce ``wanted`` (transitively)."""
    producer = {o: i for i, node in enumerate(nodes) for o in node.output if o}
    keep, stack = set(), list(wanted)
    while stack:
        value = stack.pop()
        index = producer.get(value)
        if index is None or index in keep or index not in allowed:
            continue
        keep.add(index)
        stack.extend(i for i in nodes[index].input if i)
    return keep


def partition_vjp(vjp: Any) -> tuple[Any, Any, list[str]] | None:
    """``(forward, backward, saved names)`` of a dynamic-batch VJP graph, or ``None``.

    ``forward``: ``input -> (output, *saved)``; ``backward``: ``(*saved, grad_output) ->
    grad_input``.
    """
    import onnx

    graph = vjp.graph
    if len(graph.input) != 2 or len(graph.output) != 2 or graph.node is None:
        return None
    x_name, go_name = graph.input[0].name, graph.input[1].name
    grad_name, y_name = graph.output[0].name, graph.output[1].name
    nodes = list(graph.node)
    backward, _ = _closure(nodes, {go_name})
    dynamic, x_values = _closure(nodes, {x_name})
    if not backward:
        return None
    forward = set(range(len(nodes))) - backward
    static = forward - dynamic
    producer = {o: i for i, node in enumerate(nodes) for o in node.output if o}
    if producer.get(grad_name) not in backward or producer.get(y_name) in backward:
        return None
    initializers = {t.name: t for t in graph.initializer}
    read = {i for b in backward for i in nodes[b].input if i}
    saved = sorted(v for v in read if v not in initializers and v != go_name and (v in x_values))
    saved = [v for v in saved if producer.get(v) not in backward]
    statics = _needed(nodes, {v for v in read if producer.get(v) in static}, static)
    inferred = onnx.shape_inference.infer_shapes(vjp)
    types = {v.name: v for v in (*inferred.graph.value_info, *graph.input, *graph.output)}
    if len(saved) > MAX_SAVED or any(v not in types and v != x_name for v in saved):
        return None

    def info(name: str, as_name: str | None = None) -> Any:
        value = onnx.ValueInfoProto()
        value.CopyFrom(types[name])
        if as_name is not None:
            value.name = as_name
        return value

    # a saved value may also be the output: give it a second name to keep outputs unique
    saved_out = [f"saved::{v}" for v in saved]
    fwd_nodes = [nodes[i] for i in sorted(forward)]
    fwd_nodes += [
        onnx.helper.make_node("Identity", [v], [s], name=f"save/{k}")
        for k, (v, s) in enumerate(zip(saved, saved_out, strict=True))
    ]
    fwd_used = {i for n in fwd_nodes for i in n.input}
    fwd = onnx.helper.make_graph(
        fwd_nodes,
        f"{graph.name}_forward",
        [graph.input[0]],
        [info(y_name), *(info(v, s) for v, s in zip(saved, saved_out, strict=True))],
        initializer=[t for n, t in initializers.items() if n in fwd_used],
    )
    bwd_nodes = [nodes[i] for i in sorted(statics | backward)]
    bwd_used = {i for n in bwd_nodes for i in n.input}
    bwd = onnx.helper.make_graph(
        bwd_nodes,
        f"{graph.name}_backward",
        [*(info(v) for v in saved), graph.input[1]],
        [graph.output[0]],
        initializer=[t for n, t in initializers.items() if n in bwd_used],
    )
    out = []
    for g in (fwd, bwd):
        model = onnx.helper.make_model(g, opset_imports=list(vjp.opset_import))
        model.ir_version = vjp.ir_version
        model.functions.extend(vjp.functions)
        out.append(model)
    return out[0], out[1], saved
