"""The Modbus driver: polls a register map from one Modbus TCP host or every unit on one RTU bus.

Line counters and PLC values over Modbus TCP and Modbus RTU (RS-485), function codes 1-4. The register
map (``floorwatch.drivers.modbus.points``) is grouped into few requests (``plan``), read over the
connection (``transport``), decoded (``codec``) and, for counter points, turned into a production count
that survives wraps, operator resets and device replacement (``counters``).

Field failures this module is built against (see ``shared/reference/instruments.md`` section 3):

* one dead unit stalling a whole RS-485 bus -> per-unit timeouts with exponential backoff; the other
  units keep their poll rate, and each unit's state is in ``health.extra["units"]``;
* devices that need quiet time between requests -> ``[modbus] inter_request_delay``;
* float word-order confusion -> ``order`` per point, and ``floorwatch probe --modbus`` shows raw words;
* a device sending NaN, or a scale that overflows -> an error reading that says so, never a number.

Documentation: ``docs/drivers/modbus.md``.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pymodbus.exceptions import ConnectionException

from floorwatch.drivers.base import Driver
from floorwatch.drivers.modbus import codec
from floorwatch.drivers.modbus.counters import ProductionCounters
from floorwatch.drivers.modbus.plan import ReadGroup, bind_points, plan_reads
from floorwatch.drivers.modbus.points import DEFAULT_POINTS, ModbusOptions
from floorwatch.drivers.modbus.transport import (
    SERIAL_DEFAULTS,
    ModbusConnection,
    NoReply,
    Refused,
    raise_if_cancelled,
)
from floorwatch.edge.backoff import Backoff
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement, MeasurementStatus

Emit = Callable[[Measurement], None]


class UnitState(enum.StrEnum):
    """Where one unit on the bus stands."""

    WAITING = "waiting"  # not read yet
    OK = "ok"
    NO_RESPONSE = "no_response"  # silent: skipped until its backoff expires
    EXCEPTION = "exception"  # answers, but refuses part of the map


@dataclass
class UnitStatus:
    """Health of one unit on the bus (shown in ``health.extra["units"]``), and when to try it again."""

    unit_id: int
    retry: Backoff  # the wait before a silent unit is tried again; reset when it answers
    state: UnitState = UnitState.WAITING
    responses: int = 0
    timeouts: int = 0
    exceptions: int = 0
    next_try: float = 0.0
    last_error: str = ""
    last_ok_ns: int = 0
    groups: list[ReadGroup] = field(default_factory=list)

    def as_dict(self, now: float) -> dict[str, str | int | float]:
        return {
            "state": self.state.value,
            "responses": self.responses,
            "timeouts": self.timeouts,
            "exceptions": self.exceptions,
            "last_error": self.last_error,
            "last_ok_ns": self.last_ok_ns,
            "retry_in": round(max(0.0, self.next_try - now), 3),
        }


class ModbusDriver(Driver):
    """Polls a register map from one Modbus TCP host or one RTU bus (several units)."""

    serial_defaults = SERIAL_DEFAULTS
    terminator = b""

    def __init__(self, config: InstrumentConfig, options: BaseModel | None, clock: Clock = SYSTEM_CLOCK) -> None:
        if options is None:
            options = ModbusOptions()
        if not isinstance(options, ModbusOptions):
            raise TypeError(f"modbus driver needs ModbusOptions, got {type(options).__name__}")
        super().__init__(config, options, clock)
        self.opts: ModbusOptions = options
        points = list(options.points)
        if not points:
            if config.simulate is None:
                raise ValueError(
                    f"instrument {config.name!r}: the modbus driver needs a register map; add one "
                    "[[instruments.options.points]] table per value, e.g. name = \"good_parts\", "
                    "address = 0, type = \"u32\", counter = true (see docs/drivers/modbus.md)"
                )
            points = list(DEFAULT_POINTS)
        unit_ids = list(config.modbus.unit_ids) if config.modbus else [1]
        self.inter_request_delay = config.modbus.inter_request_delay if config.modbus else 0.0
        bound = bind_points(points, unit_ids, config.name)
        self.units: dict[int, UnitStatus] = {}
        for group in plan_reads(bound, options.max_registers, options.max_gap):
            unit = self.units.get(group.unit_id)
            if unit is None:
                retry = Backoff(first=config.poll_interval, maximum=options.backoff_max)
                unit = self.units[group.unit_id] = UnitStatus(group.unit_id, retry)
            unit.groups.append(group)
        self.counters = ProductionCounters(bound, options, clock)
        self.connection = ModbusConnection(config, options, self.health)
        self.health.extra["units"] = {}
        self.health.extra["counters"] = {}
        self.health.extra["endpoint"] = self.where

    # ---------------------------------------------------------------- connection
    @property
    def where(self) -> str:
        return self.connection.where

    @property
    def connected(self) -> bool:
        return self.connection.connected

    async def connect(self) -> None:
        """Open the TCP connection or the serial port; raises ConnectionException/OSError with a clear text."""
        await self.connection.connect()

    def close(self) -> None:
        self.connection.close()

    # ---------------------------------------------------------------- polling
    async def poll(self, emit: Emit) -> None:
        """One pass over every unit; a silent unit is skipped until its backoff expires."""
        first = True
        for unit in self.units.values():
            if unit.next_try > self.clock.monotonic():
                continue
            errors: list[str] = []
            for group in unit.groups:
                if not first and self.inter_request_delay:
                    await asyncio.sleep(self.inter_request_delay)
                first = False
                reply = await self.connection.read(group)
                if isinstance(reply, NoReply):
                    self._no_response(unit, group)
                    break
                unit.responses += 1
                unit.retry.reset()
                unit.next_try = 0.0
                if isinstance(reply, Refused):
                    errors.append(reply.reason)
                    unit.exceptions += 1
                    self.health.frames_rejected += 1
                    self.health.last_reject_reason = reply.reason
                    self.health.last_error = reply.reason
                    continue
                unit.last_ok_ns = self.clock.now_ns()
                self.health.frames_ok += 1
                self.decode_group(group, reply.values, emit)
            else:
                unit.state = UnitState.EXCEPTION if errors else UnitState.OK
                unit.last_error = "; ".join(errors)
        self._publish_health()

    def _no_response(self, unit: UnitStatus, group: ReadGroup) -> None:
        unit.timeouts += 1
        unit.state = UnitState.NO_RESPONSE
        delay = unit.retry.next()
        unit.next_try = self.clock.monotonic() + delay
        unit.last_error = (f"{group.describe()}: no reply within {self.config.timeout:g} s (unit off, wrong unit "
                           f"id, wiring or serial settings); retrying in {delay:g} s")
        self.health.last_error = unit.last_error

    def decode_group(self, group: ReadGroup, values: list[int] | list[bool], emit: Emit) -> None:
        ts = self.clock.now_ns()  # one request: every value in it was read at the same time

        def out(m: Measurement) -> None:
            emit(self.stamp(m, ts))

        for b in group.members:
            p, i = b.point, b.point.address - group.start
            if p.kind == "bool":
                out(Measurement(1.0 if values[i] else 0.0, p.unit, MeasurementStatus.OK, b.channel))
                continue
            raw = codec.decode([int(v) for v in values[i : i + p.register_count]], p.kind, p.order)
            if p.counter:
                counted = self.counters.read(b, int(raw))
                if counted.refused:
                    self.health.frames_rejected += 1
                    self.health.last_reject_reason = counted.refused
                for m in counted.measurements:
                    out(m)
                self.health.extra["counters"] = self.counters.health()
                continue
            if isinstance(raw, float) and not math.isfinite(raw):
                detail = (f"device sent {raw} at {p.function} {p.address}: sensor fault, or the type/order "
                          f"({p.kind}, {p.order}) does not match the device")
                out(Measurement(math.nan, p.unit, MeasurementStatus.ERROR, b.channel, detail))
                continue
            value = codec.physical(raw, p.scale, p.offset)
            if not math.isfinite(value):
                detail = f"{raw} x scale {p.scale:g} overflows: check scale and type of {p.function} {p.address}"
                out(Measurement(math.nan, p.unit, MeasurementStatus.ERROR, b.channel, detail))
                continue
            out(Measurement(value, p.unit, MeasurementStatus.OK, b.channel))

    def _publish_health(self) -> None:
        now = self.clock.monotonic()
        self.health.extra["units"] = {str(u.unit_id): u.as_dict(now) for u in self.units.values()}
        self.health.extra["counters"] = self.counters.health()
        if any(u.state in (UnitState.OK, UnitState.EXCEPTION) for u in self.units.values()):
            self.health.last_value_ns = max(u.last_ok_ns for u in self.units.values())

    async def _poll_forever(self, emit: Emit) -> None:
        """Poll every ``poll_interval`` seconds over an open connection, until the link fails."""
        while True:
            started = time.monotonic()
            await self.poll(emit)
            raise_if_cancelled()
            if not self.connected:
                raise ConnectionException(f"connection to {self.where} lost")
            await asyncio.sleep(max(0.0, self.config.poll_interval - (time.monotonic() - started)))

    async def run(self, emit: Emit) -> None:
        """Connect, poll every ``poll_interval`` seconds, reconnect with backoff; returns only when cancelled."""
        # A link that blinked is back at once: the first reconnect waits a second at most, whatever the
        # poll interval; a device that stays away is tried less often, up to ``backoff_max``.
        retry = Backoff(first=min(1.0, self.config.poll_interval), maximum=self.opts.backoff_max)
        await self.connection.keep_open(lambda: self._poll_forever(emit), retry)

    # ---------------------------------------------------------------- state across restarts
    def state(self) -> dict[str, Any]:
        """The production counts, so that the next run continues them (see :meth:`restore`)."""
        return self.counters.state(simulated=self.config.simulate is not None)

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Continue the production counts of an earlier run (see ``ProductionCounters.restore``)."""
        notes = self.counters.restore(state, simulated=self.config.simulate is not None)
        self.health.extra["counters"] = self.counters.health()
        return notes
