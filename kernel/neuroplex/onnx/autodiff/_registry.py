"""The rule registry: ``{ONNX op type: (rule, note)}``, filled by the rule modules."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from neuroplex.onnx.autodiff._builder import Rule

__all__ = ["NON_DIFFERENTIABLE", "REFUSED", "RULES", "RuleInfo", "rule"]


@attrs.frozen
class RuleInfo:
    """One registered gradient rule: the op type, the function, a one-line note for the docs."""

    op_type: str
    function: Rule
    note: str


RULES: dict[str, RuleInfo] = {}

#: ops whose outputs are constants for the gradient (shapes, indices, comparisons, and the
#: piecewise-constant rounding ops, whose derivative is zero almost everywhere)
NON_DIFFERENTIABLE: frozenset[str] = frozenset(
    {
        "Shape",
        "Size",
        "ConstantOfShape",
        "Range",
        "NonZero",
        "ArgMax",
        "ArgMin",
        "Equal",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
        "Not",
        "And",
        "Or",
        "Xor",
        "IsNaN",
        "IsInf",
        "Sign",
        "Floor",
        "Ceil",
        "Round",
        "EyeLike",
        "Constant",
    }
)


#: ops refused on purpose, with the reason added to the "no gradient rule" message
#: (``LSTM`` and ``GRU`` are unrolled by :mod:`neuroplex.onnx.autodiff.expand` when they can be)
REFUSED: dict[str, str] = {
    "RNN": "simple recurrent layers are not unrolled (LSTM and GRU are)",
}


def rule(*op_types: str, note: str = "") -> Callable[[Rule], Rule]:
    """Register a gradient rule for ``op_types``."""

    def register(function: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = RuleInfo(op_type, function, note)
        return function

    return register
