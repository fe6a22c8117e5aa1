"""Plumbing every analyzer plugin shares (imports torch; ``import neuroplex`` does not).

* :mod:`neuroplex.analysis.backend` — which engine runs an analysis (a PyTorch module, an
  ``OnnxModule`` or a ``.onnx`` file), with the backend and tier every result reports;
* :mod:`neuroplex.analysis.inputs` — input, label and logit validation with clear errors.
"""
