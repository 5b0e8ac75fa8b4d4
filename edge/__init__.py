"""Floorwatch core library: data model, configuration, statistics, rules, alerts, spool, MQTT, sinks.

Hardware-agnostic and free of the application: nothing here imports ``drivers`` or ``gateway``.
"""

__version__ = "0.1.0"
