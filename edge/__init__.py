"""Floorwatch core library: data model, configuration, signal catalogue, statistics, alerts, spool, MQTT.

Hardware-agnostic and free of the application: nothing here imports ``floorwatch.drivers``,
``floorwatch.gateway`` or ``floorwatch.bridge``.
"""

from importlib.metadata import version

# One home for the version: pyproject.toml's, as installed.
__version__ = version("floorwatch")
