"""Layer activations: capture, per-layer statistics and dead units.

PyTorch models are observed with forward hooks on their leaf modules (modules without
children, e.g. ``Linear``, ``Conv2d``, ``ReLU``); functional calls inside ``forward`` (``F.relu``)
have no module and are not captured. ONNX models report the intermediate values the
``OnnxModule`` exposes (``OnnxModule.activations``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import torch

from neuroplex.analysis.backend import ResolvedModel, eval_mode
from neuroplex.analysis.inputs import as_inputs
from neuroplex.errors import ConfigError

__all__ = [
    "ActivationStats",
    "DeadNeuronReport",
    "LayerDeadNeurons",
    "LayerStats",
    "activation_stats",
    "capture_activations",
    "dead_neurons",
]

#: module types whose outputs are post-activation values (used by dead-unit detection)
_ACTIVATION_MODULES: tuple[type[torch.nn.Module], ...] = tuple(
    cls
    for cls in vars(torch.nn.modules.activation).values()
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and cls is not torch.nn.Module
)


def _leaf_modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [
        (name, m)
        for name, m in module.named_modules()
        if name and not any(True for _ in m.children())
    ]


def capture_activations(
    resolved: ResolvedModel, x: torch.Tensor, layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Outputs of every named layer for the batch ``x``, in execution order.

    Values are detached *copies* taken when each layer runs, so later in-place operations
    (``ReLU(inplace=True)``) cannot change them. A module called twice in one forward gets
    keys ``name`` and ``name#1``; a module returning a tuple gets ``name.0``, ``name.1``, ...

    Args:
        resolved: the model (see :func:`~neuroplex.analysis.backend.resolve_model`).
        x: inputs, shape ``(N, ...)``.
        layers: only these layer names (default: all).

    Returns:
        ``{layer name: tensor of shape (N, ...)}``.
    """
    module = resolved.module
    if resolved.backend == "onnx":
        with torch.no_grad():
            acts = dict(module.activations(x))  # type: ignore[operator]
        return _select(acts, layers)
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str) -> Any:
        def hook(_m: torch.nn.Module, _inputs: Any, output: Any) -> None:
            outputs = output if isinstance(output, tuple | list) else (output,)
            for i, out in enumerate(outputs):
                if not isinstance(out, torch.Tensor):
                    continue
                key = name if len(outputs) == 1 else f"{name}.{i}"
                base, k = key, 1
                while key in captured:
                    key, k = f"{base}#{k}", k + 1
                captured[key] = out.detach().clone()

        return hook

    leaves = _leaf_modules(module)
    if layers is not None:
        _check_known(layers, [name for name, _ in leaves])
    wanted = set(layers) if layers is not None else None
    for name, leaf in leaves:
        if wanted is None or name in wanted:
            handles.append(leaf.register_forward_hook(make_hook(name)))
    try:
        with eval_mode(module), torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _base(key: str) -> str:
    return key.split("#")[0]


def _select(acts: dict[str, torch.Tensor], layers: Sequence[str] | None) -> dict[str, torch.Tensor]:
    if layers is None:
        return acts
    _check_known(layers, sorted({_base(k) for k in acts}))
    return {
        k: v for k, v in acts.items() if _base(k) in layers or _base(k).rsplit(".", 1)[0] in layers
    }


def _check_known(layers: Sequence[str], known: Sequence[str]) -> None:
    missing = [name for name in layers if name not in known]
    if missing:
        raise ConfigError(
            f"unknown layer(s) {missing}; the model's layers are: {', '.join(known) or 'none'}",
            path="layers",
        )


def activation_layer_names(resolved: ResolvedModel) -> list[str] | None:
    """Names of the activation-function modules (``ReLU``, ``GELU``, ...), ``None`` if none
    are known. ONNX models exported by neuroplex carry each node's module class
    (``pkg.torch.onnx.class_hierarchy``), which identifies them there too."""
    if resolved.backend != "torch":
        return _onnx_activation_layers(resolved.module)
    names = [n for n, m in _leaf_modules(resolved.module) if isinstance(m, _ACTIVATION_MODULES)]
    return names or None


def _node_prop(node: Any, key: str) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == key:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return []
            return [str(v) for v in value] if isinstance(value, list) else []
    return []


def _onnx_activation_layers(module: torch.nn.Module) -> list[str] | None:
    proto = getattr(module, "_proto", None)  # OnnxModule's validated ModelProto
    names = getattr(module, "activation_names", None)
    if proto is None or names is None:
        return None
    exposed = set(names())
    found: dict[str, None] = {}
    for node in proto.graph.node:
        scopes = _node_prop(node, "pkg.torch.onnx.name_scopes")
        classes = _node_prop(node, "pkg.torch.onnx.class_hierarchy")
        for scope, cls in zip(scopes[1:-1], classes[1:-1], strict=False):
            if cls.startswith("torch.nn.modules.activation.") and scope in exposed:
                found[scope] = None
    return list(found) or None


def _units(t: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """``t`` reshaped to ``(units, values)``: one row per unit of dimension ``unit_dim``."""
    if t.ndim == 1:
        return t.reshape(1, -1)
    dim = unit_dim if unit_dim >= 0 else t.ndim + unit_dim
    return t.movedim(dim, 0).reshape(t.shape[dim], -1)


@attrs.frozen(kw_only=True)
class LayerStats:
    """Statistics of one layer's output over a batch.

    Attributes:
        name: layer name.
        shape: output shape of one sample (without the batch dimension).
        mean, std, min, max: over every value of the batch (``std`` is the population std).
        zero_fraction: fraction of values exactly equal to 0.
        negative_fraction: fraction of values < 0 (informative on pre-activation layers).
        unit_max: per unit (index along ``unit_dim``: features of ``(N, D)``, channels of
            ``(N, C, H, W)``), the maximum over samples and positions.
    """

    name: str
    shape: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    negative_fraction: float
    unit_max: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["shape"] = list(self.shape)
        data["unit_max"] = list(self.unit_max)
        return data


@attrs.frozen(kw_only=True)
class ActivationStats:
    """Per-layer activation statistics (:class:`LayerStats`), in execution order.

    ``stats["fc1"]`` returns one layer's statistics. ``backend``/``tier`` name the engine.
    """

    layers: tuple[LayerStats, ...]
    n_samples: int
    backend: str
    tier: str

    def __getitem__(self, name: str) -> LayerStats:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[s.name for s in self.layers]}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html``: one table row per layer."""
        rows = [
            [s.name, s.mean, s.std, s.min, s.max, s.zero_fraction, s.negative_fraction]
            for s in self.layers
        ]
        columns = ["layer", "mean", "std", "min", "max", "zero_fraction", "negative_fraction"]
        return [
            {
                "type": "table",
                "title": f"per layer ({self.backend}/{self.tier})",
                "columns": columns,
                "rows": rows,
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "backend": self.backend,
            "tier": self.tier,
            "layers": {layer.name: layer.to_dict() for layer in self.layers},
        }


def activation_stats(
    resolved: ResolvedModel, x: Any, *, layers: Sequence[str] | None = None, unit_dim: int = 1
) -> ActivationStats:
    """Statistics of every layer's output for the batch ``x`` (see :class:`LayerStats`)."""
    x = as_inputs(x, resolved.device, keep_dtype=True)
    acts = capture_activations(resolved, x, layers)
    out = []
    for name, t in acts.items():
        t = t.detach().double()
        out.append(
            LayerStats(
                name=name,
                shape=tuple(t.shape[1:]),
                mean=float(t.mean()),
                std=float(t.std(unbiased=False)),
                min=float(t.min()),
                max=float(t.max()),
                zero_fraction=float((t == 0).double().mean()),
                negative_fraction=float((t < 0).double().mean()),
                unit_max=tuple(_units(t, unit_dim).max(dim=1).values.tolist()),
            )
        )
    return ActivationStats(
        layers=tuple(out), n_samples=int(x.shape[0]), backend=resolved.backend, tier=resolved.tier
    )


@attrs.frozen(kw_only=True)
class LayerDeadNeurons:
    """Dead units of one layer: units whose output is ``<= tol`` for every sample and position.

    Attributes:
        name: layer name.
        n_units: number of units (size of ``unit_dim``).
        n_dead: number of dead units.
        dead_fraction: ``n_dead / n_units``.
        dead_indices: indices of the dead units along ``unit_dim``.
    """

    name: str
    n_units: int
    n_dead: int
    dead_fraction: float
    dead_indices: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["dead_indices"] = list(self.dead_indices)
        return data


@attrs.frozen(kw_only=True)
class DeadNeuronReport:
    """Dead units per layer, for one batch.

    Batch-dependent: a unit is "dead" only relative to the samples given (a unit that fires on
    rare inputs looks dead on a batch without them); use a large, representative batch.

    Attributes:
        layers: one :class:`LayerDeadNeurons` per examined layer.
        tol: the threshold (a unit is dead when every value is ``<= tol``).
        total_units, total_dead: summed over layers; ``dead_fraction = total_dead / total_units``.
        n_samples: batch size the verdict is based on.
    """

    layers: tuple[LayerDeadNeurons, ...]
    tol: float
    total_units: int
    total_dead: int
    dead_fraction: float
    n_samples: int
    backend: str
    tier: str

    def __getitem__(self, name: str) -> LayerDeadNeurons:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[s.name for s in self.layers]}")

    def report_sections(self) -> list[dict[str, Any]]:
        """Typed sections for ``report.html``: dead fraction per layer."""
        return [
            {
                "type": "bars",
                "title": f"dead units per layer (tol {self.tol:g})",
                "labels": [layer.name for layer in self.layers],
                "ylabel": "dead fraction",
                "series": {"dead_fraction": [layer.dead_fraction for layer in self.layers]},
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tol": self.tol,
            "total_units": self.total_units,
            "total_dead": self.total_dead,
            "dead_fraction": self.dead_fraction,
            "n_samples": self.n_samples,
            "backend": self.backend,
            "tier": self.tier,
            "layers": {layer.name: layer.to_dict() for layer in self.layers},
        }


def dead_neurons(
    resolved: ResolvedModel,
    x: Any,
    *,
    tol: float = 0.0,
    layers: Iterable[str] | None = None,
    unit_dim: int = 1,
) -> DeadNeuronReport:
    """Units whose output is ``<= tol`` for every sample of ``x`` (see :class:`DeadNeuronReport`).

    By default the activation-function modules of a PyTorch model are examined (``ReLU``,
    ``GELU``, ...); models without such modules, and ONNX models, have every layer examined.
    """
    x = as_inputs(x, resolved.device, keep_dtype=True)
    chosen = list(layers) if layers is not None else activation_layer_names(resolved)
    acts = capture_activations(resolved, x, chosen)
    per_layer = []
    for name, t in acts.items():
        unit_max = _units(t.detach(), unit_dim).max(dim=1).values
        dead = torch.nonzero(unit_max <= tol).flatten().tolist()
        n_units = int(unit_max.numel())
        per_layer.append(
            LayerDeadNeurons(
                name=name,
                n_units=n_units,
                n_dead=len(dead),
                dead_fraction=len(dead) / n_units,
                dead_indices=tuple(int(i) for i in dead),
            )
        )
    total_units = sum(layer.n_units for layer in per_layer)
    total_dead = sum(layer.n_dead for layer in per_layer)
    return DeadNeuronReport(
        layers=tuple(per_layer),
        tol=float(tol),
        total_units=total_units,
        total_dead=total_dead,
        dead_fraction=total_dead / total_units if total_units else 0.0,
        n_samples=int(x.shape[0]),
        backend=resolved.backend,
        tier=resolved.tier,
    )
