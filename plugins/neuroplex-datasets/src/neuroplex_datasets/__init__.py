"""neuroplex-datasets: datasets that ship with scikit-learn, CSV/NPZ files, synthetic data.

Every dataset returns :class:`neuroplex.DataSplits` with deterministic stratified splits from
``seed``; see the package README for options. Attributes load lazily: importing the package
(as the plugin entry module does) imports neither torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "csv": "neuroplex_datasets.files",
    "npz": "neuroplex_datasets.files",
    "breast_cancer": "neuroplex_datasets.sets",
    "digits": "neuroplex_datasets.sets",
    "iris": "neuroplex_datasets.sets",
    "synthetic": "neuroplex_datasets.sets",
    "wine": "neuroplex_datasets.sets",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'neuroplex_datasets' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
