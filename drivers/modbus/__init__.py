"""The Modbus driver: line counters and PLC values over Modbus TCP and RTU (see ``docs/drivers/modbus.md``)."""

from floorwatch.drivers.modbus.driver import DRIVER

__all__ = ["DRIVER"]
