"""The gateway process keeps IEEE-754 arithmetic: no dependency may switch on flush-to-zero.

A C extension built with -ffast-math can set the processor's flush-to-zero mode for the whole process when
it is loaded (yarl's 32-bit ARM wheels do; floorwatch/edge/__init__.py keeps them out). Subnormal floats would
then become 0 everywhere, the statistics included. Checked in a fresh interpreter after importing what the
gateway and the bridge load, on whatever architecture the suite runs (make test-armhf runs it on armv7l).
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import floorwatch.drivers.modbus  # first, as the gateway's modbus driver: pymodbus' server imports aiohttp
import floorwatch.gateway.service, floorwatch.gateway.web, floorwatch.bridge.service, floorwatch.edge.stats
import aiohttp, yarl  # already loaded by the imports above
tiny = 5e-324  # the smallest subnormal double
print(tiny > 0.0 and tiny * 2 == 1e-323 and 2.2250738585072014e-308 / 2 > 0.0)
"""


def test_importing_the_gateway_keeps_subnormal_floats():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True", "a loaded library turned on flush-to-zero: subnormal floats became 0"
