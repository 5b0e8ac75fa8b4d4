"""The ``modbus`` driver: line counters and PLC values over Modbus TCP and RTU (function codes 1-4).

One job per module; the arrows are the only imports between them:

* ``codec``      16-bit registers <-> numbers, for every type and word order;
* ``points``     the register map's schema (``Point``, ``ModbusOptions``) and the default map  -> codec;
* ``plan``       which unit each point is read from, its channel, and the few requests that read them -> points;
* ``counters``   production counts that survive wraps, resets, a replaced device and a restart -> plan, points;
* ``transport``  pymodbus' client: connect with clear errors, read, reconnect with backoff -> plan, points;
* ``driver``     ``ModbusDriver``: polls every unit, backs off a silent one, emits measurements
  -> codec, points, plan, counters, transport;
* ``simulator``  a device (or a bus of them) served by pymodbus' own server -> codec, points;
* ``probe``      ``floorwatch probe --modbus``: which units answer, what their first registers hold
  -> codec, transport.

This package is the registry's entry for ``driver = "modbus"``: it holds the ``DRIVER`` spec, which joins
the driver and its simulator (neither imports the other). Documentation: ``docs/drivers/modbus.md``.
"""

from __future__ import annotations

from pydantic import BaseModel

from floorwatch.drivers.base import DriverSpec, Simulator
from floorwatch.drivers.modbus.driver import ModbusDriver
from floorwatch.drivers.modbus.points import ModbusOptions
from floorwatch.drivers.modbus.simulator import SCENARIOS, ModbusSimulator
from floorwatch.edge.clock import Clock


def _simulator(scenario: str, options: BaseModel | None, clock: Clock) -> Simulator:
    return ModbusSimulator(scenario, options if isinstance(options, ModbusOptions) else None, clock)


DRIVER = DriverSpec(
    name="modbus",
    summary="Line counters and PLC values over Modbus TCP and RTU (function codes 1-4)",
    transport="modbus",
    driver=ModbusDriver,  # its serial_defaults: 8E1, the Modbus serial-line specification's default
    options=ModbusOptions,
    parser=None,
    probe_request=None,
    simulator=_simulator,
    scenarios=SCENARIOS,
)

__all__ = ["DRIVER"]
