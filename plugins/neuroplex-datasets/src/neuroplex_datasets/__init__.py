"""neuroplex-datasets: datasets that ship with scikit-learn, CSV/NPZ files, synthetic data.

Every dataset returns :class:`neuroplex.DataSplits` with deterministic stratified splits from
``seed``; see the package README for options.
"""

from neuroplex_datasets.files import csv, npz
from neuroplex_datasets.sets import breast_cancer, digits, iris, synthetic, wine

__all__ = ["breast_cancer", "csv", "digits", "iris", "npz", "synthetic", "wine"]
