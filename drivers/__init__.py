"""Instrument drivers: serial protocol parsers and ports, Modbus, simulators (`floorwatch.drivers`)."""

import floorwatch.edge  # noqa: F401  (first: it keeps the process's floating point IEEE-754, see there)
