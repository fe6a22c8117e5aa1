"""Classifier files from other converters (skl2onnx): pick the probability output, and write
the ``ai.onnx.ml`` operators on its path as standard ONNX operators.

A scikit-learn classifier converted by skl2onnx has two outputs: the predicted label (int64 or
string, no gradient) first, then the probabilities, as a float tensor (``zipmap=False``) or
as a sequence of maps made by ``ZipMap`` (the default). Its linear models are
``ai.onnx.ml`` operators (``LinearClassifier``, ``Normalizer``), which have no gradient rules
and no float64 kernels in ONNX Runtime. :func:`classifier_output` rewrites such a file:

* the analysed output is the probability tensor: the first float tensor among the outputs, or
  the input of the ``ZipMap`` that makes one; the other outputs (labels, maps) are dropped, and
  so are the nodes only they need (the label is the argmax of the probabilities);
* ``LinearClassifier`` becomes ``MatMul`` + ``Add`` followed by its ``post_transform``
  (``NONE``, ``SOFTMAX`` → ``Softmax``, ``LOGISTIC`` → ``Sigmoid``); a binary model with one
  row of coefficients gives what ONNX Runtime computes: ``[1 - σ(s), σ(s)]`` (``LOGISTIC``) or
  ``[1 - s, s]`` (``NONE``);
* probabilities written as normalised sigmoids become a ``Softmax`` of log-sigmoids, the same
  values: ``σ(z)ᵢ / Σⱼ σ(z)ⱼ = Softmax(log σ(z))ᵢ`` (a ``LOGISTIC`` classifier followed by an
  L1 ``Normalizer``: one-vs-rest; or a binary one whose two rows are opposite, where
  ``Σ σ = 1``), and ``[1 - σ(a), σ(a)]`` (skl2onnx's binary MLP) becomes ``Softmax([0, a])``;
* ``Normalizer`` (L1, L2) becomes ``Abs``/``ReduceSum``/``Div``; an L1 ``Normalizer`` of a
  ``Softmax`` (already normalised) becomes ``Identity``.

The probability output then ends in a ``Softmax``, so :func:`neuroplex.onnx._outputs.
log_probability_output` analyses its log-probabilities. The ``PROBIT`` and ``SOFTMAX_ZERO``
post-transforms, ``SOFTMAX`` on one row of coefficients, the ``MAX`` norm (where ONNX Runtime
and the ONNX reference disagree) and the other ``ai.onnx.ml`` operators are left as they are
(the gradient builder then names them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroplex.onnx._outputs import OutputRewrite

__all__ = ["classifier_output"]

_ML = "ai.onnx.ml"
_FLOAT = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _is_float_tensor(info: Any) -> bool:
    return bool(info.type.HasField("tensor_type") and info.type.tensor_type.elem_type in _FLOAT)


class _Graph:
    """Fresh names and emitted nodes/initializers for one rewrite."""

    def __init__(self, graph: Any) -> None:
        self.taken = {v for node in graph.node for v in (*node.input, *node.output)}
        self.taken.update(t.name for t in graph.initializer)
        self.taken.update(i.name for i in (*graph.input, *graph.output))
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def fresh(self, hint: str) -> str:
        name, i = hint, 0
        while name in self.taken:
            i += 1
            name = f"{hint}_{i}"
        self.taken.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, output: str = "", **attrs: Any) -> str:
        import onnx

        out = output or self.fresh(hint)
        self.nodes.append(
            onnx.helper.make_node(op_type, inputs, [out], self.fresh(f"{hint}/{op_type}"), **attrs)
        )
        return out

    def const(self, array: np.ndarray, hint: str) -> str:
        import onnx

        name = self.fresh(hint)
        self.initializers.append(onnx.numpy_helper.from_array(array, name))
        return name


def _types(model: Any) -> tuple[dict[str, int], dict[str, tuple[Any, ...]]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # shape inference is a help here, never required
        inferred = model
    types: dict[str, int] = {}
    shapes: dict[str, tuple[Any, ...]] = {}
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if info.type.HasField("tensor_type"):
            tensor = info.type.tensor_type
            types[info.name] = tensor.elem_type
            if tensor.HasField("shape"):
                shapes[info.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim
                )
    for init in model.graph.initializer:
        types[init.name] = init.data_type
        shapes[init.name] = tuple(init.dims)
    return types, shapes


def _probability_output(model: Any) -> tuple[str, str] | None:
    """``(value name, how it was chosen)`` of the probability tensor, or ``None``."""
    graph = model.graph
    for info in graph.output:
        if _is_float_tensor(info):
            return info.name, f"the float tensor output {info.name!r}"
    producers = {out: node for node in graph.node for out in node.output}
    for info in graph.output:
        node = producers.get(info.name)
        if node is not None and node.op_type == "ZipMap" and node.domain == _ML:
            return node.input[0], (
                f"the probability tensor {node.input[0]!r} (input of ZipMap node "
                f"{node.name or '(unnamed)'!r}, which makes the output {info.name!r})"
            )
    return None


def _prune(nodes: list[Any], outputs: list[str]) -> list[Any]:
    """The nodes needed for ``outputs``, in order."""
    wanted, kept = set(outputs), []
    for node in reversed(nodes):
        if any(o in wanted for o in node.output):
            kept.append(node)
            wanted.update(i for i in node.input if i)
    return list(reversed(kept))


def _default_opset(model: Any) -> int:
    return max(
        (int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), default=0
    )


class _Rewriter:
    def __init__(self, model: Any, nodes: list[Any]) -> None:
        self.model = model
        self.g = _Graph(model.graph)
        self.types, self.shapes = _types(model)
        self.opset = _default_opset(model)
        self.consumers: dict[str, list[Any]] = {}
        for node in nodes:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        #: values made by a Softmax over axis 1 (after the rewrite)
        self.softmax_values: set[str] = set()
        self.done: list[str] = []

    def reduce_sum(self, x: str, hint: str) -> str:
        """``ReduceSum`` over axis 1, keepdims (axes as an input from opset 13)."""
        if self.opset >= 13:
            axes = self.g.const(np.asarray([1], np.int64), f"{hint}/axes")
            return self.g.op("ReduceSum", [x, axes], hint)
        return self.g.op("ReduceSum", [x], hint, axes=[1], keepdims=1)

    def softmax_of_log_sigmoid(self, z: str, hint: str, output: str) -> str:
        """``σ(z) / Σ σ(z)`` along axis 1, as ``Softmax(-Softplus(-z))``."""
        neg = self.g.op("Neg", [z], hint)
        log_sigmoid = self.g.op("Neg", [self.g.op("Softplus", [neg], hint)], hint)
        self.softmax_values.add(output)
        return self.g.op("Softmax", [log_sigmoid], hint, output, axis=1)

    # -- ai.onnx.ml operators --------------------------------------------------------------
    def linear_classifier(self, node: Any) -> bool:
        x = node.input[0]
        label, scores_out = [*node.output, "", ""][:2]
        if not scores_out or label in self.consumers or self.types.get(x) not in _FLOAT:
            return False
        post = _attr(node, "post_transform", "NONE")
        if post not in ("NONE", "SOFTMAX", "LOGISTIC"):
            return False
        dtype = np.float64 if self.types.get(x) == 11 else np.float32
        coefficients = np.asarray(_attr(node, "coefficients", []), dtype=dtype)
        intercepts = _attr(node, "intercepts")
        classes = len(_attr(node, "classlabels_ints", None) or []) or len(
            _attr(node, "classlabels_strings", None) or []
        )
        shape = self.shapes.get(x)
        features = shape[-1] if shape and len(shape) == 2 else None
        if intercepts:
            rows = len(intercepts)
        elif isinstance(features, int) and features:
            rows = coefficients.size // features
        else:
            return False
        if rows <= 0 or coefficients.size % rows:
            return False
        weights = coefficients.reshape(rows, -1)
        hint = node.name or "LinearClassifier"
        s = self.g.op("MatMul", [x, self.g.const(weights.T.copy(), f"{hint}/weights")], hint)
        bias = np.asarray(intercepts, dtype=dtype) if intercepts else None
        if bias is not None:
            s = self.g.op("Add", [s, self.g.const(bias, f"{hint}/intercepts")], hint)
        opposite = rows == 2 and bool(
            np.array_equal(weights[0], -weights[1])
            and (bias is None or float(bias[0]) == -float(bias[1]))
        )
        if rows == 1 and classes == 2:
            # the binary case, as ONNX Runtime computes it (the ONNX reference differs):
            # LOGISTIC gives [1 - σ(s), σ(s)] = σ([-s, s]), NONE gives [1 - s, s]; SOFTMAX
            # also gives [1 - s, s] there and is left alone
            if post == "SOFTMAX":
                return False
            if post == "NONE":
                one = self.g.const(np.asarray(1.0, dtype=dtype), f"{hint}/one")
                s = self.g.op("Concat", [self.g.op("Sub", [one, s], hint), s], hint, axis=1)
            else:
                s = self.g.op("Concat", [self.g.op("Neg", [s], hint), s], hint, axis=1)
                opposite = True
        if post == "NONE":
            self.g.op("Identity", [s], hint, scores_out)
        elif post == "SOFTMAX":
            self.softmax_values.add(scores_out)
            self.g.op("Softmax", [s], hint, scores_out, axis=1)
        elif opposite or self._l1_normalized(scores_out):
            self.softmax_of_log_sigmoid(s, hint, scores_out)
        else:
            self.g.op("Sigmoid", [s], hint, scores_out)
        self.done.append(f"LinearClassifier node {node.name or '(unnamed)'!r} ({post})")
        return True

    def _l1_normalized(self, value: str) -> bool:
        users = self.consumers.get(value, [])
        return len(users) == 1 and (
            users[0].op_type == "Normalizer"
            and users[0].domain == _ML
            and _attr(users[0], "norm") == "L1"
        )

    def normalizer(self, node: Any) -> bool:
        x, out = node.input[0], node.output[0]
        norm = _attr(node, "norm", "MAX")
        shape = self.shapes.get(x)
        if self.types.get(x) not in _FLOAT or shape is None or len(shape) != 2:
            return False
        hint = node.name or "Normalizer"
        if norm == "L1" and x in self.softmax_values:  # already sums to 1
            self.softmax_values.add(out)
            self.g.op("Identity", [x], hint, out)
        else:
            if norm == "L1":
                size = self.reduce_sum(self.g.op("Abs", [x], hint), hint)
            elif norm == "L2":
                square = self.g.op("Mul", [x, x], hint)
                size = self.g.op("Sqrt", [self.reduce_sum(square, hint)], hint)
            else:  # MAX: ONNX Runtime divides by the signed maximum, the reference by max |x|
                return False
            dtype = np.float64 if self.types.get(x) == 11 else np.float32
            tiny = self.g.const(np.asarray(1e-30, dtype), f"{hint}/tiny")
            self.g.op("Div", [x, self.g.op("Max", [size, tiny], hint)], hint, out)
        self.done.append(f"Normalizer node {node.name or '(unnamed)'!r} ({norm})")
        return True

    # -- standard-domain patterns ----------------------------------------------------------
    def sigmoid_pair(self, node: Any, producers: dict[str, Any]) -> bool:
        """``Concat([1 - σ(a), σ(a)], axis=1)`` with ``a`` of width 1 → ``Softmax([0, a])``."""
        if len(node.input) != 2 or _attr(node, "axis") not in (1, -1):
            return False
        sub, sig = producers.get(node.input[0]), producers.get(node.input[1])
        if sub is None or sig is None or sub.op_type != "Sub" or sig.op_type != "Sigmoid":
            return False
        if sub.input[1] != sig.output[0] or self.shapes.get(sig.input[0], (None, None))[-1] != 1:
            return False
        one = _constant(self.model, sub.input[0])
        if one is None or one.size != 1 or float(one.reshape(-1)[0]) != 1.0:
            return False
        a = sig.input[0]
        dtype = np.float64 if self.types.get(a) == 11 else np.float32
        hint = node.name or "Concat"
        zero = self.g.op("Mul", [a, self.g.const(np.asarray(0.0, dtype), f"{hint}/zero")], hint)
        logits = self.g.op("Concat", [zero, a], hint, axis=1)
        self.softmax_values.add(node.output[0])
        self.g.op("Softmax", [logits], hint, node.output[0], axis=1)
        self.done.append(f"[1 - Sigmoid, Sigmoid] Concat node {node.name or '(unnamed)'!r}")
        return True


def _constant(model: Any, name: str) -> np.ndarray | None:
    import onnx

    for init in model.graph.initializer:
        if init.name == name:
            return np.asarray(onnx.numpy_helper.to_array(init))
    for node in model.graph.node:
        first = node.attribute[0] if node.attribute else None
        if node.op_type == "Constant" and node.output[0] == name and first is not None:
            return (
                np.asarray(onnx.numpy_helper.to_array(first.t)) if first.name == "value" else None
            )
    return None


def classifier_output(model: Any) -> OutputRewrite | None:
    """The model with the probability tensor as its only output and the ``ai.onnx.ml``
    operators on its path in standard ONNX; ``None`` when there is nothing to do."""
    import onnx

    graph = model.graph
    chosen = _probability_output(model)
    if chosen is None:
        return None
    target, how = chosen
    first_kept = target == graph.output[0].name
    nodes = _prune(list(graph.node), [target]) if not first_kept else list(graph.node)
    rewriter = _Rewriter(model, nodes)
    producers = {out: node for node in nodes for out in node.output}
    path = {id(n) for n in _prune(nodes, [target])}
    new_nodes: list[Any] = []
    for node in nodes:
        rewritten = False
        start = len(rewriter.g.nodes)
        if node.domain == _ML and node.op_type == "LinearClassifier":
            rewritten = rewriter.linear_classifier(node)
        elif node.domain == _ML and node.op_type == "Normalizer":
            rewritten = rewriter.normalizer(node)
        elif node.op_type == "Concat" and node.domain in ("", "ai.onnx") and id(node) in path:
            rewritten = rewriter.sigmoid_pair(node, producers)
        elif node.op_type == "Softmax" and _attr(node, "axis", -1) in (1, -1):
            rewriter.softmax_values.add(node.output[0])
        if rewritten:
            new_nodes.extend(rewriter.g.nodes[start:])
        else:
            del rewriter.g.nodes[start:]
            new_nodes.append(node)
    if first_kept and not rewriter.done:
        return None
    rewritten_model = onnx.ModelProto()
    rewritten_model.CopyFrom(model)
    new_graph = rewritten_model.graph
    new_nodes = _prune(new_nodes, [o.name for o in graph.output] if first_kept else [target])
    del new_graph.node[:]
    new_graph.node.extend(new_nodes)
    new_graph.initializer.extend(rewriter.g.initializers)
    used = {i for node in new_nodes for i in node.input}
    kept_inits = [t for t in new_graph.initializer if t.name in used]
    del new_graph.initializer[:]
    new_graph.initializer.extend(kept_inits)
    if not first_kept:
        elem = rewriter.types.get(target, onnx.TensorProto.FLOAT)
        dims = rewriter.shapes.get(target, (None, None))
        info = onnx.helper.make_tensor_value_info(target, elem, list(dims))
        del new_graph.output[:]
        new_graph.output.append(info)
    if not any(n.domain == _ML for n in new_nodes):
        imports = [i for i in model.opset_import if i.domain != _ML]
        del rewritten_model.opset_import[:]
        rewritten_model.opset_import.extend(imports)
    parts = []
    if not first_kept:
        dropped = [o.name for o in graph.output]
        parts.append(f"the file's outputs {dropped} are a classifier's: analyses use {how}")
    if rewriter.done:
        parts.append("standard ONNX ops in place of " + ", ".join(rewriter.done))
    return OutputRewrite(rewritten_model, "probabilities", "; ".join(parts))
