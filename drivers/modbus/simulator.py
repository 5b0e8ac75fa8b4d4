"""A Modbus line counter and PLC to test and demonstrate against, served by pymodbus' own server.

The simulator serves the same register map the driver reads (the instrument's ``points``, or
``floorwatch.drivers.modbus.points.DEFAULT_POINTS``), encoding every value with
``floorwatch.drivers.modbus.codec`` in the point's type and word order, so that the driver's decoding is
tested against real Modbus traffic. It takes the map's schema from ``points``, as the driver does; the two
never import each other. Register contents are computed at the moment a request arrives, from the
simulator's clock: with a ``ManualClock`` a test decides exactly what the device holds.

Transports: Modbus TCP on a free loopback port (``endpoint = {"host": "127.0.0.1", "tcp_port": n}``), or
Modbus RTU on a pty pair made by socat (``endpoint = {"port": "/tmp/.../modbus-rtu"}``).

Scenarios (``rate`` parts per minute; events happen ``event_at`` seconds after start):

* ``counter``   steady production from 1000;
* ``wrap``      every counter starts 10 parts below its wrap (16-bit: 65526, 32-bit: 4294967286);
* ``reset``     counts from 5000, then an operator reset: the counter restarts from 0;
* ``replace``   counts from 5000, then the device is replaced: the counter restarts from 48213;
* ``stopped``   counts from 1000, then the line stops: no new parts, ``running`` bits turn off;
* ``dead_unit`` steady production, but unit 2 never answers (configure ``unit_ids = [1, 2]``).

Process values (non-counter points) move slowly around a value of their own; ``set_value`` pins any point
to a value, ``set_registers`` to raw register words.
"""

from __future__ import annotations

import asyncio
import functools
import math
import shutil
import socket
import tempfile
import zlib
from pathlib import Path
from typing import Any, Literal

from pymodbus import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from floorwatch.drivers.base import Simulator
from floorwatch.drivers.modbus import codec
from floorwatch.drivers.modbus.points import DEFAULT_POINTS, ModbusOptions, Point
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock

SCENARIOS = ("counter", "wrap", "reset", "replace", "stopped", "dead_unit")
_BLOCKS = ("coils", "discrete_inputs", "holding", "input")  # pymodbus' tuple order: co, di, hr, ir
_FC_BLOCK = {1: "coils", 5: "coils", 15: "coils", 2: "discrete_inputs", 4: "input", 3: "holding", 6: "holding",
             16: "holding", 22: "holding", 23: "holding"}


class SimulatorError(RuntimeError):
    """The simulator could not start (no free port, socat missing)."""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ModbusSimulator(Simulator):
    """A simulated Modbus device (or RS-485 bus of devices) following one scenario."""

    def __init__(
        self,
        scenario: str = "counter",
        options: ModbusOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        *,
        transport: Literal["tcp", "rtu"] = "tcp",
        rate: float = 120.0,
        event_at: float = 10.0,
        dead_units: set[int] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown modbus scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if transport not in ("tcp", "rtu"):
            raise ValueError(f"transport must be 'tcp' or 'rtu', not {transport!r}")
        self.scenario = scenario
        self.points: tuple[Point, ...] = tuple(options.points) if options and options.points else DEFAULT_POINTS
        self.clock = clock
        self.transport = transport
        self.rate = rate
        self.event_at = event_at
        self.dead_units = set(dead_units) if dead_units is not None else ({2} if scenario == "dead_unit" else set())
        self.host = host
        self.endpoint: dict[str, Any] = {}
        self.requests = 0
        self._pinned: dict[str, float | int | bool] = {}
        self._words: dict[str, list[int]] = {}
        self._t0: float | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._socat: asyncio.subprocess.Process | None = None
        self._tmp: str | None = None

    # ------------------------------------------------------------------ values
    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else self.clock.monotonic() - self._t0

    def parts(self, t: float) -> int:
        """Parts made in the first ``t`` seconds at the scenario's rate."""
        return int(t * self.rate / 60.0 + 1e-9)

    def _named(self, name: str) -> list[Point]:
        found = [p for p in self.points if p.name == name]
        if not found:
            raise KeyError(f"no point named {name!r}; points are: {', '.join(repr(p.name) for p in self.points)}")
        return found

    def set_value(self, name: str, value: float | int | bool) -> None:
        """Pin a point (by name) to a fixed value: physical for process values, raw for counters."""
        self._named(name)
        self._words.pop(name, None)
        self._pinned[name] = value

    def set_registers(self, name: str, registers: list[int]) -> None:
        """Pin a point (by name) to raw register words, in wire order: what a device holds whatever the
        register map says about it (a float in another word order, a counter beyond its ``wrap_at``)."""
        for point in self._named(name):
            if point.kind == "bool":
                raise ValueError(f"point {name!r} is a single bit: use set_value(name, True or False)")
            if len(registers) != point.register_count:
                raise ValueError(f"point {name!r} ({point.kind}) takes {point.register_count} registers, "
                                 f"got {len(registers)}")
        if not all(isinstance(r, int) and 0 <= r <= 0xFFFF for r in registers):
            raise ValueError(f"register words are 16-bit unsigned integers, got {registers!r}")
        self._pinned.pop(name, None)
        self._words[name] = list(registers)

    def counter_raw(self, point: Point, t: float) -> int:
        """The device counter's value at ``t`` seconds under the scenario."""
        if point.name in self._pinned:
            return int(self._pinned[point.name]) % point.modulus
        n, mod = self.parts(t), point.modulus
        after = t >= self.event_at
        n_event = self.parts(self.event_at)
        if self.scenario == "wrap":
            return (mod - 10 + n) % mod
        if self.scenario == "reset":
            return (n - n_event if after else 5000 + n) % mod
        if self.scenario == "replace":
            return (48213 + n - n_event if after else 5000 + n) % mod
        if self.scenario == "stopped":
            return (1000 + min(n, n_event)) % mod
        return (1000 + n) % mod

    def running(self, t: float) -> bool:
        return not (self.scenario == "stopped" and t >= self.event_at)

    def process_value(self, point: Point, t: float) -> float | int | bool:
        """A process value that moves slowly around a level of its own (deterministic, no randomness)."""
        if point.name in self._pinned:
            return self._pinned[point.name]
        if point.kind == "bool":
            return self.running(t)
        seed = zlib.crc32(point.name.encode())
        level = 20.0 + seed % 60
        return level + 2.0 * math.sin(2 * math.pi * t / 60.0) + 0.05 * math.sin(t * 7.3 + seed)

    def registers(self, point: Point, t: float) -> list[int] | bool:
        """What the device holds for ``point`` at ``t``: registers in wire order, or a bit."""
        if point.name in self._words:
            return list(self._words[point.name])
        if point.counter:
            return codec.encode(self.counter_raw(point, t), point.kind, point.order)
        value = self.process_value(point, t)
        if point.kind == "bool":
            return bool(value)
        kind = point.kind
        if isinstance(value, int) and point.scale == 1 and point.offset == 0:
            raw: int | float = int(value)  # exact: a 64-bit integer must not pass through a float
        else:
            raw = codec.raw_from_physical(float(value), kind, point.scale, point.offset)
        if kind in codec.INTEGER_TYPES:
            bits = codec.bit_width(kind)
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if kind.startswith("i") else (0, 2**bits - 1)
            raw = min(max(int(raw), lo), hi)
        return codec.encode(raw, kind, point.order)

    # ------------------------------------------------------------------ pymodbus plumbing
    def _points_of(self, unit: int) -> list[Point]:
        """Points served by device ``unit`` (0 = every unit id not listed explicitly)."""
        return [p for p in self.points if p.unit_id == unit or p.unit_id is None]

    def _device(self, unit: int) -> SimDevice:
        points = self._points_of(unit)
        blocks: list[list[SimData]] = []
        for block in _BLOCKS:
            mine = [p for p in points if p.function == block]
            # From the first point to a little past the last: addresses outside are illegal, as on a device.
            start = min((p.address for p in mine), default=0)
            end = min(max((p.address + p.register_count for p in mine), default=0) + 16, 65536)
            if block in ("coils", "discrete_inputs"):
                start -= start % 16
                blocks.append([SimData(address=start, count=end - start, values=False, datatype=DataType.BITS)])
            else:
                blocks.append([SimData(address=start, count=end - start, values=0, datatype=DataType.REGISTERS)])
        return SimDevice(
            id=unit,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=functools.partial(self._refresh, points),
        )

    async def _refresh(
        self,
        points: list[Point],
        function_code: int,
        start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        """Called by pymodbus on each request: write the scenario's current values into the block."""
        self.requests += 1
        if set_values is not None:
            return None
        block = _FC_BLOCK.get(function_code)
        t = self.elapsed()
        for p in points:
            if p.function != block:
                continue
            value = self.registers(p, t)
            if isinstance(value, bool):
                index, bit = p.address // 16 - start_address, p.address % 16
                registers[index] = registers[index] | (1 << bit) if value else registers[index] & ~(1 << bit)
            else:
                at = p.address - start_address
                registers[at : at + len(value)] = value
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        # A dead unit: the request is dropped as if nobody on the bus had that id.
        if not sending and pdu.dev_id in self.dead_units:
            return None
        return pdu

    def _devices(self) -> list[SimDevice]:
        explicit = sorted({p.unit_id for p in self.points if p.unit_id is not None and p.unit_id != 0})
        return [self._device(0)] + [self._device(u) for u in explicit]

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start serving (again, on the same endpoint after ``stop``: a device coming back)."""
        if self._t0 is None:
            self._t0 = self.clock.monotonic()
        if self.transport == "tcp":
            port = self.endpoint.get("tcp_port") or _free_port(self.host)
            server: ModbusTcpServer | ModbusSerialServer = ModbusTcpServer(
                self._devices(), address=(self.host, port), trace_pdu=self._trace_pdu
            )
            await server.serve_forever(background=True)
            self.endpoint = {"host": self.host, "tcp_port": port}
        else:
            device_side = await self._start_socat()
            server = ModbusSerialServer(
                self._devices(), framer=FramerType.RTU, port=device_side, baudrate=9600, bytesize=8,
                parity="N", stopbits=1, trace_pdu=self._trace_pdu, reconnect_delay=0,
            )
            await server.serve_forever(background=True)
        self._server = server

    async def _start_socat(self) -> str:
        socat = shutil.which("socat")
        if socat is None:
            raise SimulatorError("the Modbus RTU simulator needs socat for its pty pair: apt-get install socat")
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="floorwatch-modbus-")
        device_side, gateway_side = Path(self._tmp, "device"), Path(self._tmp, "modbus-rtu")
        self._socat = await asyncio.create_subprocess_exec(
            socat, f"pty,raw,echo=0,link={device_side}", f"pty,raw,echo=0,link={gateway_side}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            if device_side.exists() and gateway_side.exists():
                break
            await asyncio.sleep(0.01)
        else:
            await self._stop_socat()
            raise SimulatorError("socat did not create its pty pair within 2 s")
        self.endpoint = {"port": str(gateway_side)}
        return str(device_side)

    async def _stop_socat(self) -> None:
        if self._socat is not None:
            if self._socat.returncode is None:
                self._socat.terminate()
            await self._socat.wait()
            self._socat = None

    async def stop(self) -> None:
        """Stop serving: for RTU the pty disappears, as when a USB adapter is unplugged."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        await self._stop_socat()

    async def aclose(self) -> None:
        """Stop and remove the pty directory."""
        await self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
