"""Line counters and PLC values over Modbus TCP and Modbus RTU (RS-485), function codes 1-4.

The register map lives in the instrument's ``options``: a list of points, each a named value at a PDU
address (0-based: register 40001 is holding address 0) with a type, a word order, scale, offset and unit.
A point's ``name`` becomes the measurement's channel. Points with ``counter = true`` are production
counters: the driver turns raw readings into a production count that survives wraps, operator resets and
device replacement (``floorwatch.drivers.modbus.counters``), a rate in parts per minute and a line-stopped flag.

Field failures this driver is built against (see ``shared/reference/instruments.md`` section 3):

* one dead unit stalling a whole RS-485 bus -> per-unit timeouts with exponential backoff; the other
  units keep their poll rate, and each unit's state is in ``health.extra["units"]``;
* no reconnect after a USB adapter is unplugged or a TCP peer restarts -> the connection is re-opened
  with backoff, forever, and the driver resumes by itself;
* devices that need quiet time between requests -> ``[modbus] inter_request_delay``;
* float word-order confusion -> ``order`` per point, and ``floorwatch probe --modbus`` shows raw words.

Documentation: ``docs/drivers/modbus.md``.

>>> p = Point(name="good_parts", address=1002, type="u32", order="CDAB", counter=True)
>>> p.function, p.register_count
('holding', 2)
>>> from pydantic import ValidationError
>>> try:
...     Point(name="x", address=40001)
... except ValidationError as exc:
...     print(exc.errors()[0]["msg"])
Value error, address 40001 looks like a register number (4xxxx), not a PDU address: Modbus addresses here count from 0 (register 40001 is address 0), so write address = 0; if the device manual really gives PDU address 40001, set address_is_pdu = true
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from floorwatch.drivers.base import Driver, DriverSpec, SerialDefaults, Simulator
from floorwatch.drivers.modbus import codec
from floorwatch.drivers.modbus.counters import ProductionCounter
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement, Status

Function = Literal["coils", "discrete_inputs", "holding", "input"]
PointType = Literal["bool", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"]
BIT_FUNCTIONS = frozenset({"coils", "discrete_inputs"})
FUNCTION_CODES = {"coils": 1, "discrete_inputs": 2, "holding": 3, "input": 4}
_READ_METHODS = {
    "coils": "read_coils",
    "discrete_inputs": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}
# Largest read per request the Modbus specification allows: 125 registers, 2000 bits.
MAX_REGISTERS = 125
MAX_BITS = 2000
COUNTER_TYPES = ("u16", "u32", "u64")
# Format of the counters' saved state (Driver.state); a state of another format is not continued.
COUNTER_STATE_FORMAT = "modbus-counters/1"

EXCEPTION_TEXT = {
    0x01: "illegal function (the device does not support this function code; try 'holding' vs 'input')",
    0x02: "illegal data address (the device has no register there; addresses count from 0: "
    "register 40001 is address 0)",
    0x03: "illegal data value (the device refused the request size; lower max_registers)",
    0x04: "device failure",
    0x05: "acknowledge (the device is busy with a long command)",
    0x06: "device busy (retry later)",
    0x0A: "gateway path unavailable (the Modbus gateway has no route to this unit id)",
    0x0B: "gateway target failed to respond (the unit behind the gateway is off or not wired)",
}

# Register-number ranges that people copy from manuals: (function, first register number, 6-digit form)
_REGISTER_NUMBER_RANGES = {
    "holding": (40001, 49999, 400001, 465536, "4xxxx"),
    "input": (30001, 39999, 300001, 365536, "3xxxx"),
    "discrete_inputs": (10001, 19999, 100001, 165536, "1xxxx"),
}


class Point(BaseModel):
    """One value in a device's register map."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{0,64}$", description="Channel name ('' = the main value)")
    unit_id: int | None = Field(None, ge=0, le=247, description="Unit id; default: every id in [modbus].unit_ids")
    function: Function = "holding"
    address: int = Field(ge=0, le=65535, description="PDU address, 0-based (register 40001 is address 0)")
    type: PointType | None = Field(None, description="Default: 'bool' for coils/discrete inputs, else 'u16'")
    order: codec.WordOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    counter: bool = False
    wrap_at: int | None = Field(None, ge=2, description="Counter modulus if it wraps before 2**bits (e.g. 10000)")
    address_is_pdu: bool = Field(False, description="Accept an address that looks like a 4xxxx register number")

    @model_validator(mode="before")
    @classmethod
    def _register_number(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("address_is_pdu"):
            return data
        address, function = data.get("address"), data.get("function", "holding")
        if isinstance(address, int) and function in _REGISTER_NUMBER_RANGES:
            lo, hi, lo6, hi6, label = _REGISTER_NUMBER_RANGES[function]
            base = lo if lo <= address <= hi else lo6 if lo6 <= address <= hi6 else None
            if base is not None:
                raise ValueError(
                    f"address {address} looks like a register number ({label}), not a PDU address: "
                    f"Modbus addresses here count from 0 (register {base} is address 0), so write "
                    f"address = {address - base}; if the device manual really gives PDU address {address}, "
                    "set address_is_pdu = true"
                )
        return data

    @field_validator("scale", "offset")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        bits = self.function in BIT_FUNCTIONS
        kind = self.type or ("bool" if bits else "u16")
        object.__setattr__(self, "type", kind)
        if bits and kind != "bool":
            raise ValueError(f"{self.function} are single bits: type must be 'bool' (or left out), not {kind!r}")
        if not bits and kind == "bool":
            raise ValueError(f"{self.function} registers hold numbers: use a register type such as 'u16', not 'bool'")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError(f"a {kind} at address {self.address} runs past the last address 65535")
        if self.counter:
            if kind not in COUNTER_TYPES:
                raise ValueError(f"a counter must be an unsigned integer ({', '.join(COUNTER_TYPES)}), not {kind!r}")
            if self.scale != 1 or self.offset != 0:
                raise ValueError("a counter counts parts: remove scale and offset from counter points")
            if self.wrap_at is not None and self.wrap_at > 2 ** codec.bit_width(kind):
                raise ValueError(f"wrap_at ({self.wrap_at}) is larger than a {kind} can hold")
        elif self.wrap_at is not None:
            raise ValueError("wrap_at applies only to counter points (counter = true)")
        return self

    @property
    def register_count(self) -> int:
        """Registers (or bits, for coils and discrete inputs) this point occupies."""
        kind = self.type or ("bool" if self.function in BIT_FUNCTIONS else "u16")
        return 1 if kind == "bool" else codec.register_count(kind)

    @property
    def modulus(self) -> int:
        return self.wrap_at or 2 ** codec.bit_width(self.type or "u16")


class ModbusOptions(BaseModel):
    """The modbus driver's ``[instruments.options]``: the register map and polling behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: list[Point] = Field(default_factory=list)
    max_registers: int = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS, description="Registers per read at most")
    max_gap: int = Field(0, ge=0, le=100, description="Unused registers a grouped read may span")
    backoff_max: float = Field(60.0, gt=0, le=3600, description="Longest wait before retrying a silent unit")
    max_rate: float = Field(6000.0, gt=0, description="Most parts per minute the line can make (counters)")
    rate_window: float = Field(60.0, gt=0, le=86400, description="Seconds the parts-per-minute rate averages")
    idle_after: float = Field(300.0, gt=0, description="Seconds without a new part before 'line stopped'")
    local_echo: bool = Field(False, description="The RS-485 adapter echoes what it sends (2-wire, no echo cancel)")
    rs485_rts_for_tx: bool = Field(True, description="Kernel RS-485 mode: RTS level while sending")
    rs485_delay_before_tx: float = Field(0.0, ge=0, le=1)
    rs485_delay_before_rx: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _unique_channels(self) -> ModbusOptions:
        seen: dict[tuple[int | None, str], int] = {}
        for n, p in enumerate(self.points):
            names = [p.name] + ([_derived(p.name, "rate"), _derived(p.name, "stopped")] if p.counter else [])
            for name in names:
                key = (p.unit_id, name)
                if key in seen:
                    raise ValueError(
                        f"points[{n}] ({p.name!r}) would emit channel {name!r}, already used by "
                        f"points[{seen[key]}]; give each point its own name"
                    )
                seen[key] = n
        return self


def _derived(base: str, suffix: str) -> str:
    """Channel of a counter's derived value: ``good_parts_rate``, or ``rate`` for the main counter."""
    return f"{base}_{suffix}" if base else suffix


# The register map the simulator serves when an instrument gives none (and the demo uses).
DEFAULT_POINTS: tuple[Point, ...] = (
    Point(name="", function="holding", address=0, type="u32", order="CDAB", counter=True, unit="pcs"),
    Point(name="count16", function="holding", address=2, type="u16", counter=True, unit="pcs"),
    Point(name="temperature", function="input", address=0, type="f32", order="ABCD", unit="degC"),
    Point(name="pressure", function="input", address=2, type="f32", order="CDAB", unit="bar"),
    Point(name="speed", function="input", address=4, type="i16", scale=0.1, unit="m/min"),
    Point(name="running", function="discrete_inputs", address=0),
)

SCENARIOS = ("counter", "wrap", "reset", "replace", "stopped", "dead_unit")


# ------------------------------------------------------------------------------------ read planning
@dataclass(frozen=True)
class BoundPoint:
    """A point as read from one unit, with the channel it is emitted on."""

    point: Point
    unit_id: int
    channel: str


@dataclass(frozen=True)
class ReadGroup:
    """Adjacent points of one unit and function read by one request."""

    unit_id: int
    function: str
    start: int
    count: int
    members: tuple[BoundPoint, ...]

    def describe(self) -> str:
        return f"unit {self.unit_id} {self.function} {self.start}..{self.start + self.count - 1}"


def plan_reads(bound: list[BoundPoint], max_registers: int = MAX_REGISTERS, max_gap: int = 0) -> list[ReadGroup]:
    """Group points into as few requests as possible: same unit and function, adjacent (or within
    ``max_gap`` unused registers), at most ``max_registers`` registers (2000 bits) a request.

    >>> pts = [BoundPoint(Point(name=n, address=a, type=t), 1, n) for n, a, t in
    ...        [("a", 0, "u32"), ("b", 2, "u16"), ("c", 10, "u16"), ("d", 124, "u16")]]
    >>> [(g.start, g.count, len(g.members)) for g in plan_reads(pts)]
    [(0, 3, 2), (10, 1, 1), (124, 1, 1)]
    >>> [(g.start, g.count) for g in plan_reads(pts, max_gap=10)]
    [(0, 11), (124, 1)]
    """
    groups: list[ReadGroup] = []
    key = lambda b: (b.unit_id, FUNCTION_CODES[b.point.function], b.point.address)  # noqa: E731
    current: list[BoundPoint] = []

    def close() -> None:
        if current:
            start = current[0].point.address
            end = max(b.point.address + b.point.register_count for b in current)
            groups.append(ReadGroup(current[0].unit_id, current[0].point.function, start, end - start, tuple(current)))

    for b in sorted(bound, key=key):
        limit = MAX_BITS if b.point.function in BIT_FUNCTIONS else max_registers
        if current:
            head = current[0]
            end = max(c.point.address + c.point.register_count for c in current)
            same = head.unit_id == b.unit_id and head.point.function == b.point.function
            fits = b.point.address <= end + max_gap and b.point.address + b.point.register_count - head.point.address <= limit
            if same and fits:
                current.append(b)
                continue
            close()
        current = [b]
    close()
    return groups


# ------------------------------------------------------------------------------------------- driver
@dataclass
class UnitStatus:
    """Health of one unit on the bus (shown in ``health.extra["units"]``)."""

    unit_id: int
    state: str = "waiting"  # waiting | ok | no_response | exception
    responses: int = 0
    timeouts: int = 0
    exceptions: int = 0
    consecutive_failures: int = 0
    next_try: float = 0.0
    last_error: str = ""
    last_ok_ns: int = 0
    groups: list[ReadGroup] = field(default_factory=list)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "responses": self.responses,
            "timeouts": self.timeouts,
            "exceptions": self.exceptions,
            "last_error": self.last_error,
            "last_ok_ns": self.last_ok_ns,
            "retry_in": round(max(0.0, self.next_try - now), 3),
        }


def check_serial_port(port: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int) -> None:
    """Open and close ``port`` with these settings, so that a refusal is a clear OSError (pymodbus would
    otherwise leave a half-open, exclusively locked port behind)."""
    import serial

    settings = f"{baudrate} {bytesize}{parity}{stopbits}"
    try:
        with serial.Serial(port, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits,
                           timeout=0, exclusive=True):
            pass
    except (termios.error, ValueError) as exc:
        raise OSError(f"serial port {port} refused {settings} ({exc}); check [instruments.serial] against "
                      "what the adapter supports") from None
    except serial.SerialException as exc:
        raise OSError(f"cannot open serial port {port}: {exc} (in use by another program? the user needs "
                      "the 'dialout' group)") from None


async def connect_client(client: Any, where: str) -> bool:
    """``client.connect()``, with pyserial's refusals (which pymodbus lets through) as a clear OSError."""
    try:
        return bool(await client.connect())
    except (termios.error, ValueError) as exc:
        client.close()
        gc.collect()  # a port pymodbus opened half-way is released only when its object is collected
        raise OSError(f"{where}: the port refused these serial settings ({exc}); check the baud rate, parity, "
                      "data bits and stop bits against what the adapter and device support") from None


class RS485Error(OSError):
    """The serial port refused the kernel's RS-485 mode."""


class ModbusDriver(Driver):
    """Polls a register map from one Modbus TCP host or one RTU bus (several units)."""

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
        bound: list[BoundPoint] = []
        for p in points:
            for unit in [p.unit_id] if p.unit_id is not None else unit_ids:
                prefix = f"u{unit}" if p.unit_id is None and len(unit_ids) > 1 else ""
                channel = f"{prefix}.{p.name}" if prefix and p.name else prefix or p.name
                bound.append(BoundPoint(p, unit, channel))
        channels = [b.channel for b in bound]
        if len(set(channels)) != len(channels):
            dup = next(c for c in channels if channels.count(c) > 1)
            raise ValueError(f"instrument {config.name!r}: two points emit channel {dup!r}; rename one")
        self.units: dict[int, UnitStatus] = {}
        for group in plan_reads(bound, options.max_registers, options.max_gap):
            self.units.setdefault(group.unit_id, UnitStatus(group.unit_id)).groups.append(group)
        self.counters: dict[str, ProductionCounter] = {
            b.channel: ProductionCounter(
                modulus=b.point.modulus,
                max_rate=options.max_rate,
                rate_window=options.rate_window,
                idle_after=options.idle_after,
            )
            for b in bound
            if b.point.counter
        }
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self.health.extra["units"] = {}
        self.health.extra["counters"] = {}
        self.health.extra["endpoint"] = self.where

    # ---------------------------------------------------------------- connection
    @property
    def where(self) -> str:
        c = self.config
        return f"{c.host}:{c.tcp_port}" if c.host else str(c.port)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self.health.last_raw = bytes(data[-256:])
        return data

    def _serial_settings(self) -> dict[str, Any]:
        d, s = DRIVER.serial_defaults, self.config.serial
        return {
            "baudrate": s.baudrate or d.baudrate,
            "bytesize": s.bytesize or d.bytesize,
            "parity": s.parity or d.parity,
            "stopbits": s.stopbits or d.stopbits,
        }

    async def connect(self) -> None:
        """Open the TCP connection or the serial port; raises ConnectionException/OSError with a clear text."""
        self.close()
        c = self.config
        if logging.getLogger("pymodbus").level == logging.NOTSET:
            # pymodbus logs every timeout as an error; unit health already says it, once and clearly.
            logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        if c.host:
            client: AsyncModbusTcpClient | AsyncModbusSerialClient = AsyncModbusTcpClient(
                c.host, port=c.tcp_port, timeout=c.timeout, retries=0, reconnect_delay=0,
                trace_packet=self._trace,
            )
            hint = (f"no Modbus TCP device answers at {self.where}: check host and tcp_port (502 unless the "
                    "device says otherwise), the cable and that the device is powered")
        else:
            if not c.port:
                raise ConnectionException(f"instrument {c.name!r} has neither host nor port")
            if not os.path.exists(c.port):
                raise OSError(f"serial port {c.port} does not exist (adapter unplugged? prefer the stable name "
                              "under /dev/serial/by-id/)")
            client = AsyncModbusSerialClient(
                c.port, framer=FramerType.RTU, timeout=c.timeout, retries=0, reconnect_delay=0,
                handle_local_echo=self.opts.local_echo, trace_packet=self._trace, **self._serial_settings(),
            )
            hint = (f"cannot open serial port {c.port}: it is missing, in use by another program, "
                    "or this user lacks permission (add it to the 'dialout' group)")
        if not c.host:
            await asyncio.to_thread(check_serial_port, str(c.port), **self._serial_settings())
        self.client = client
        if not await connect_client(client, self.where):
            self.close()
            raise ConnectionException(hint)
        # A unit that never answers must not make pymodbus drop a link the other units still use.
        client.set_max_no_responses(1_000_000)
        if not c.host and c.serial.rs485:
            self._enable_rs485(client)

    def _enable_rs485(self, client: AsyncModbusSerialClient) -> None:
        import serial.rs485

        port = getattr(client.ctx.transport, "sync_serial", None)
        if port is None:
            raise RS485Error("serial port closed while enabling RS-485 mode")
        try:
            port.rs485_mode = serial.rs485.RS485Settings(
                rts_level_for_tx=self.opts.rs485_rts_for_tx,
                rts_level_for_rx=not self.opts.rs485_rts_for_tx,
                delay_before_tx=self.opts.rs485_delay_before_tx or None,
                delay_before_rx=self.opts.rs485_delay_before_rx or None,
            )
        except (ValueError, OSError, AttributeError) as exc:
            self.close()
            raise RS485Error(
                f"{self.config.port} refused the kernel RS-485 mode ({exc}); this adapter switches direction "
                "by itself or its driver lacks TIOCSRS485: set serial.rs485 = false"
            ) from None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    # ---------------------------------------------------------------- polling
    async def _request(self, group: ReadGroup) -> list[int] | list[bool] | str | None:
        """Values, an exception text (the unit answered with an error), or None (no answer in time)."""
        assert self.client is not None
        read = getattr(self.client, _READ_METHODS[group.function])
        try:
            async with asyncio.timeout(self.config.timeout + 1.0):
                response = await read(group.start, count=group.count, device_id=group.unit_id)
        except ConnectionException:
            raise
        except (ModbusException, TimeoutError):
            if self.client is None or not self.client.connected:
                raise ConnectionException(f"connection to {self.where} lost") from None
            return None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            text = EXCEPTION_TEXT.get(code, "unknown exception code")
            return f"{group.describe()}: exception {code:02X} {text}"
        if group.function in BIT_FUNCTIONS:
            bits = list(response.bits[: group.count])
            if len(bits) != group.count:
                return f"{group.describe()}: reply carried {len(bits)} bits, asked for {group.count}"
            return bits
        registers = list(response.registers)
        if len(registers) != group.count:
            return f"{group.describe()}: reply carried {len(registers)} registers, asked for {group.count}"
        return registers

    async def poll(self, emit: Callable[[Measurement], None]) -> None:
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
                result = await self._request(group)
                if result is None:
                    self._no_response(unit, group)
                    break
                unit.responses += 1
                unit.consecutive_failures = 0
                unit.next_try = 0.0
                if isinstance(result, str):
                    errors.append(result)
                    unit.exceptions += 1
                    self.health.frames_rejected += 1
                    self.health.last_reject_reason = result
                    self.health.last_error = result
                    continue
                unit.last_ok_ns = self.clock.now_ns()
                self.health.frames_ok += 1
                self._decode_group(group, result, emit)
            else:
                unit.state = "exception" if errors else "ok"
                unit.last_error = "; ".join(errors)
        self._publish_health()

    def _no_response(self, unit: UnitStatus, group: ReadGroup) -> None:
        unit.timeouts += 1
        unit.consecutive_failures += 1
        unit.state = "no_response"
        delay = min(self.opts.backoff_max, self.config.poll_interval * 2 ** (unit.consecutive_failures - 1))
        unit.next_try = self.clock.monotonic() + delay
        unit.last_error = (f"{group.describe()}: no reply within {self.config.timeout:g} s (unit off, wrong unit "
                           f"id, wiring or serial settings); retrying in {delay:g} s")
        self.health.last_error = unit.last_error

    def _decode_group(self, group: ReadGroup, values: list[int] | list[bool], emit: Callable[[Measurement], None]) -> None:
        ts = self.clock.now_ns()
        for b in group.members:
            p, i = b.point, b.point.address - group.start
            if p.type == "bool":
                emit(Measurement(ts, self.config.name, 1.0 if values[i] else 0.0, p.unit, Status.OK, b.channel))
                continue
            raw = codec.decode([int(v) for v in values[i : i + p.register_count]], p.type or "u16", p.order)
            if p.counter:
                self._count(b, int(raw), ts, emit)
                continue
            if isinstance(raw, float) and not math.isfinite(raw):
                detail = (f"device sent {raw} at {p.function} {p.address}: sensor fault, or the type/order "
                          f"({p.type}, {p.order}) does not match the device")
                emit(Measurement(ts, self.config.name, math.nan, p.unit, Status.ERROR, b.channel, detail))
                continue
            value = codec.physical(raw, p.scale, p.offset)
            if not math.isfinite(value):
                detail = f"{raw} x scale {p.scale:g} overflows: check scale and type of {p.function} {p.address}"
                emit(Measurement(ts, self.config.name, math.nan, p.unit, Status.ERROR, b.channel, detail))
                continue
            emit(Measurement(ts, self.config.name, value, p.unit, Status.OK, b.channel))

    def _count(self, b: BoundPoint, raw: int, ts: int, emit: Callable[[Measurement], None]) -> None:
        counter = self.counters[b.channel]
        now = self.clock.monotonic()
        try:
            update = counter.update(raw, now)
        except ValueError as exc:
            detail = f"{b.channel or 'counter'}: {exc}"
            self.health.frames_rejected += 1
            self.health.last_reject_reason = detail
            emit(Measurement(ts, self.config.name, math.nan, b.point.unit or "pcs", Status.ERROR, b.channel, detail))
            return
        state = counter.snapshot(now)
        detail = "" if update.event in ("count", "unchanged") else update.detail
        name = self.config.name
        stopped = f"line stopped: no new part for {state.idle_for:.0f} s" if state.stopped else ""
        emit(Measurement(ts, name, float(state.total), b.point.unit or "pcs", Status.OK, b.channel, detail))
        emit(Measurement(ts, name, state.rate, "parts/min", Status.OK, _derived(b.channel, "rate")))
        emit(Measurement(ts, name, 1.0 if state.stopped else 0.0, "", Status.OK, _derived(b.channel, "stopped"), stopped))
        info = self.health.extra["counters"].setdefault(b.channel, {"wraps": 0, "resets": 0, "replacements": 0})
        info.update(total=state.total, raw=raw, rate=round(state.rate, 3), stopped=state.stopped,
                    idle_for=round(state.idle_for, 1), last_event=update.event)
        for event, key in (("wrap", "wraps"), ("reset", "resets"), ("replaced", "replacements")):
            if update.event == event:
                info[key] += 1

    # ---------------------------------------------------------------- state across restarts
    def _identity(self, b: BoundPoint) -> dict[str, Any]:
        """What a saved count belongs to: the same register of the same unit, read the same way."""
        p = b.point
        return {"unit_id": b.unit_id, "function": p.function, "address": p.address, "type": p.type,
                "order": p.order, "modulus": p.modulus}

    def state(self) -> dict[str, Any]:
        """The production counts, so that the next run continues them (see :meth:`restore`)."""
        now = self.clock.monotonic()
        bound = {b.channel: b for g in self._groups() for b in g.members if b.point.counter}
        return {
            "format": COUNTER_STATE_FORMAT,
            "saved_ns": self.clock.now_ns(),
            "simulated": self.config.simulate is not None,
            "counters": {ch: {"point": self._identity(bound[ch]), **c.state(now)} for ch, c in self.counters.items()},
        }

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Continue the production counts of an earlier run. The time the gateway was down (wall clock,
        never negative) is added to each counter's gap, so the first reading is judged with the usual rules
        over the whole gap: parts made meanwhile are counted, a wrap, reset or replacement meanwhile is
        judged as always (never negative, never a spike). A count whose register, type, word order or wrap
        changed is not continued; nor is any count of a simulated device, which is new with every run."""
        if not state:
            return []
        if not isinstance(state, dict) or state.get("format") != COUNTER_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            return [f"saved counter state has format {found!r}, this version reads {COUNTER_STATE_FORMAT!r}: "
                    "counting starts from 0"]
        if self.config.simulate is not None or state.get("simulated"):
            return ["a simulated device is new with every run: counting starts from 0"]
        saved_ns, counters = state.get("saved_ns"), state.get("counters")
        if isinstance(saved_ns, bool) or not isinstance(saved_ns, int) or not isinstance(counters, dict):
            return ["saved counter state lacks 'saved_ns' or 'counters': counting starts from 0"]
        gap = max(0.0, (self.clock.now_ns() - saved_ns) / 1e9)
        now = self.clock.monotonic()
        bound = {b.channel: b for g in self._groups() for b in g.members if b.point.counter}
        notes = []
        for channel, saved in counters.items():
            label = channel or "(main value)"
            if channel not in self.counters:
                notes.append(f"counter {label} is no longer in the register map: its saved count is dropped")
                continue
            if not isinstance(saved, dict) or saved.get("point") != self._identity(bound[channel]):
                notes.append(f"counter {label}: the register map changed (unit, address, type, order or wrap): "
                             "counting starts from 0")
                continue
            try:
                shifted = dict(saved)
                for key in ("age", "idle_for"):
                    value = shifted.get(key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        shifted[key] = value + gap
                self.counters[channel].restore(shifted, now)
            except ValueError as exc:
                notes.append(f"counter {label}: {exc}: counting starts from 0")
                continue
            counter = self.counters[channel]
            info = self.health.extra["counters"].setdefault(channel, {"wraps": 0, "resets": 0, "replacements": 0})
            info.update(total=counter.total, raw=saved.get("raw"), last_event="restored")
        return notes

    def _groups(self) -> list[ReadGroup]:
        return [g for u in self.units.values() for g in u.groups]

    def _publish_health(self) -> None:
        now = self.clock.monotonic()
        self.health.extra["units"] = {str(u.unit_id): u.as_dict(now) for u in self.units.values()}
        if any(u.state in ("ok", "exception") for u in self.units.values()):
            self.health.last_value_ns = max(u.last_ok_ns for u in self.units.values())

    async def run(self, emit: Callable[[Measurement], None]) -> None:
        """Connect, poll every ``poll_interval`` seconds, reconnect with backoff; returns only when cancelled."""
        backoff = first_backoff = min(1.0, self.config.poll_interval)
        ever_connected = False
        try:
            while True:
                try:
                    await self.connect()
                    _raise_if_cancelled()
                    self.health.connected = True
                    if ever_connected:
                        self.health.reconnects += 1
                    ever_connected = True
                    backoff = first_backoff
                    while True:
                        started = time.monotonic()
                        await self.poll(emit)
                        _raise_if_cancelled()
                        if not self.connected:
                            raise ConnectionException(f"connection to {self.where} lost")
                        await asyncio.sleep(max(0.0, self.config.poll_interval - (time.monotonic() - started)))
                except (ConnectionException, OSError) as exc:
                    self.health.last_error = f"{exc}".removeprefix("Modbus Error: [Connection] ")
                except Exception as exc:  # a bug must not end data collection; it is reported and retried
                    self.health.last_error = f"internal error: {type(exc).__name__}: {exc}"
                self.health.connected = False
                self.close()
                _raise_if_cancelled()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.opts.backoff_max)
        finally:
            self.close()
            self.health.connected = False


def _raise_if_cancelled() -> None:
    """Honour a cancellation that a library swallowed. On Python 3.11, ``asyncio.wait_for`` (which pymodbus
    uses for connects and replies) returns the result instead of raising when the reply and the cancel
    arrive together; the task is then marked as cancelling but runs on, and a gateway stopping on SIGTERM
    would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


def _simulator(scenario: str, options: BaseModel | None, clock: Clock) -> Simulator:
    from floorwatch.drivers.modbus.simulator import ModbusSimulator

    return ModbusSimulator(scenario, options if isinstance(options, ModbusOptions) else None, clock)


DRIVER = DriverSpec(
    name="modbus",
    summary="Line counters and PLC values over Modbus TCP and RTU (function codes 1-4)",
    transport="modbus",
    driver=ModbusDriver,
    options=ModbusOptions,
    # The Modbus serial-line specification's default; many devices ship 8N1 instead: set parity = "N".
    serial_defaults=SerialDefaults(baudrate=9600, bytesize=8, parity="E", stopbits=1),
    parser=None,
    terminator=b"",
    probe_request=None,
    simulator=_simulator,
    scenarios=SCENARIOS,
)
