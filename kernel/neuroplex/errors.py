"""The kernel's one exception hierarchy.

Every error a user can cause derives from :class:`NeuroplexError`; the CLI prints
``str(error)`` as one line and exits 2 for these (tracebacks only with ``--debug``).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ComponentNotFoundError",
    "ConfigError",
    "DataError",
    "ExportError",
    "NeuroplexError",
    "PluginError",
    "RunRejected",
    "SinkError",
    "TrainingError",
]


class NeuroplexError(Exception):
    """Base class of every error neuroplex raises on purpose."""


class ConfigError(NeuroplexError, ValueError):
    """A configuration value is wrong; the message names the dotted path and the fix."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ComponentNotFoundError(ConfigError, LookupError):
    """A component name is not registered; the message lists what is installed."""


class PluginError(NeuroplexError):
    """A plugin failed to import, register or run; the message names the plugin."""


class ExportError(NeuroplexError):
    """Exporting, validating or verifying an ONNX model failed."""


class CheckpointError(NeuroplexError):
    """A checkpoint is missing, corrupt, truncated or not safe to load."""


class DataError(NeuroplexError, ValueError):
    """Input data is malformed (shapes, NaN, labels out of range, missing columns)."""


class TrainingError(NeuroplexError):
    """Training cannot go on (e.g. non-finite loss under the ``stop`` policy)."""


class SinkError(NeuroplexError):
    """A feedback sink failed; the Mechanic isolates these so a run never stops."""


class RunRejected(NeuroplexError):
    """A policy rejected the run (e.g. ``early_reject``: a number beyond its threshold); the
    message names the policy, the number, its value and the threshold. ``neuroplex run``
    exits 3 (a user error exits 2)."""
