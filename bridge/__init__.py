"""Floorwatch bridge: the cloud-side program that moves what gateways publish over MQTT into InfluxDB.

It runs on a server next to the broker and the database, not on the Pi (``floorwatch bridge --config
FILE``; commented example: ``bridge/example.toml``). It builds on ``floorwatch.edge`` only (records,
topics, configuration helpers, backoff) and never imports ``floorwatch.gateway`` or ``floorwatch.drivers``.
"""

import floorwatch.edge  # noqa: F401  (first: it keeps the process's floating point IEEE-754, see there)
