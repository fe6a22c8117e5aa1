"""Kernel test configuration: the suite runs with strict plugin loading."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("NEUROPLEX_STRICT_PLUGINS", "1")

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
