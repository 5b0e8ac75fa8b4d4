"""Test configuration. Fixtures that start real services live in tests/harness/, one module per service;
every module there is loaded as a pytest plugin, so a new service is one new file."""

from __future__ import annotations

import sys
from pathlib import Path

import floorwatch.edge  # noqa: F401  (before any test module imports pymodbus or aiohttp: see edge/__init__.py)

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

pytest_plugins = sorted(
    f"harness.{p.stem}" for p in (TESTS / "harness").glob("*.py") if not p.stem.startswith("_")
)
