"""Floorwatch core library: data model, configuration, signal catalogue, statistics, alerts, spool, MQTT.

Hardware-agnostic and free of the application: nothing here imports ``floorwatch.drivers``,
``floorwatch.gateway`` or ``floorwatch.bridge``.
"""

import os
import platform
from importlib.metadata import version

# One home for the version: pyproject.toml's, as installed.
__version__ = version("floorwatch")

# IEEE-754 arithmetic for the whole process. yarl (the URL library under aiohttp, which the local page uses
# and pymodbus' server imports) ships 32-bit ARM wheels whose C extension is built with -ffast-math: loading
# it turns on flush-to-zero for the whole process, so every subnormal float becomes 0 — statistics included
# (found by `make test-armhf`). On 32-bit ARM yarl runs its pure-Python code instead. This must happen before
# yarl is first imported, so every part of Floorwatch imports this package first (drivers, gateway, bridge,
# dashboards do in their __init__); tests/test_float_semantics.py checks it.
if platform.machine().startswith(("armv6", "armv7", "armv8l")):
    os.environ.setdefault("YARL_NO_EXTENSIONS", "1")
