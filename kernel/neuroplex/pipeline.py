"""``neuroplex.pipeline.run(spec)``, the name the docs have used for :func:`neuroplex.run.run`.

The stages live in the :mod:`neuroplex.run` package; this module only keeps the old import
path working.
"""

from __future__ import annotations

from neuroplex.run import RunResult, check_requirements, required_components, run

__all__ = ["RunResult", "check_requirements", "required_components", "run"]
