"""pytest plugin used by deploy/test-arm64.sh: a test that uses a server fixture of tests/harness/services.py
(Mosquitto, InfluxDB, VictoriaMetrics) is a 'service' test even when its module forgot the marker, so that
``-m "not service"`` leaves out exactly the tests that need servers the emulated root does not run.

Loaded with ``-p service_marker`` (deploy/ on PYTHONPATH); it runs before pytest's own marker selection.
"""

from __future__ import annotations

import pytest

SERVICE_MODULE = "harness.services"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        for defs in info.name2fixturedefs.values():
            if any(getattr(d.func, "__module__", "") == SERVICE_MODULE for d in defs):
                item.add_marker(pytest.mark.service)
                break
