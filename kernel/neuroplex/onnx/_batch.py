"""Files exported with a fixed batch (often 1): made to take any batch where the graph allows.

Exporters fix the batch dimension unless told otherwise (PyTorch's TorchScript exporter without
``dynamic_axes``), and attacks and attributions run on batches. :func:`rebatch` renames the
fixed first dimension of the input (and of the outputs that share it) to a symbolic ``N`` and
checks that the graph really is batch-independent: a batch of ``2B + 1`` random rows through
the re-batched graph must equal the same rows run ``B`` at a time through the original (a
``Reshape`` to a hard-coded batch fails that, and the file keeps its fixed batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["rebatch"]

_SYMBOL = "N"


def _fixed_batch(model: Any) -> int | None:
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value < 1:
        return None
    return int(dims[0].dim_value)


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def rebatch(model: Any) -> tuple[Any, str] | None:
    """``(re-batched model, note)`` for a model whose single input has a fixed batch that the
    graph does not depend on; ``None`` when there is nothing to do or it cannot be done (then
    the note is not needed: the input spec shows the fixed batch)."""
    import onnx

    batch = _fixed_batch(model)
    if batch is None:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    del graph.value_info[:]  # inferred shapes that name the fixed batch
    initializers = {t.name for t in graph.initializer}
    x = next(i for i in graph.input if i.name not in initializers)
    x.type.tensor_type.shape.dim[0].dim_param = _SYMBOL
    for out in graph.output:
        dims = out.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = _SYMBOL
    try:
        original, rebatched = _session(model), _session(copy)
        arg = original.get_inputs()[0]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(x.type.tensor_type.elem_type)
        if not np.issubdtype(dtype, np.floating):
            return None
        shape = [batch if d is None or isinstance(d, str) else int(d) for d in arg.shape]
        rows = 2 * batch + 1
        data = np.random.default_rng(0).standard_normal([rows, *shape[1:]]).astype(dtype)
        together = rebatched.run(None, {arg.name: data})
        padded = np.concatenate([data, np.zeros([batch - 1, *shape[1:]], dtype)])
        chunks = [
            original.run(None, {arg.name: padded[i : i + batch]}) for i in range(0, rows, batch)
        ]
        for k, got in enumerate(together):
            want = np.concatenate([c[k] for c in chunks])[:rows]
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                return None
    except Exception:  # ORT cannot run it with another batch (a hard-coded Reshape, ...)
        return None
    note = (
        f"the file has a fixed batch of {batch}; it is run with any batch (checked: "
        f"{rows} rows at once equal {batch} at a time)"
    )
    return copy, note
