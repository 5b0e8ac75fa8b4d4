"""The link to one Modbus TCP host or one RTU bus: pymodbus' client, opened with clear errors, one read
request at a time, and kept open — reopened with backoff, forever — while the driver polls over it.

Field failures handled here (see ``shared/reference/instruments.md`` section 3):

* no reconnect after a USB adapter is unplugged or a TCP peer restarts -> the connection is re-opened
  with backoff, forever, and polling resumes by itself;
* serial settings the adapter refuses, a port in use, a missing ``dialout`` group -> an OSError that names
  the fix, instead of pymodbus' silence;
* RS-485 adapters that need the kernel's direction control -> ``serial.rs485`` and the ``rs485_*`` options.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException

from floorwatch.drivers.base import InstrumentHealth, SerialDefaults
from floorwatch.drivers.modbus.plan import ReadGroup
from floorwatch.drivers.modbus.points import BIT_FUNCTIONS, ModbusOptions
from floorwatch.edge.backoff import Backoff
from floorwatch.edge.config import InstrumentConfig

# The Modbus serial-line specification's default; many devices ship 8N1 instead: set parity = "N".
SERIAL_DEFAULTS = SerialDefaults(baudrate=9600, bytesize=8, parity="E", stopbits=1)

READ_METHODS = {
    "coils": "read_coils",
    "discrete_inputs": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}

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


class RS485Error(OSError):
    """The serial port refused the kernel's RS-485 mode."""


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Baud rate and character format of an RTU bus."""

    baudrate: int
    bytesize: int
    parity: str
    stopbits: int

    @classmethod
    def of(cls, config: InstrumentConfig, defaults: SerialDefaults = SERIAL_DEFAULTS) -> LineSettings:
        """The instrument's ``[serial]`` settings, each one left out taken from the Modbus default."""
        s = config.serial
        return cls(s.baudrate or defaults.baudrate, s.bytesize or defaults.bytesize, s.parity or defaults.parity,
                   s.stopbits or defaults.stopbits)

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


# What one read request brought back.
@dataclass(frozen=True, slots=True)
class Values:
    """The unit answered with what was asked: register values, or bits for coils and discrete inputs."""

    values: list[int] | list[bool]


@dataclass(frozen=True, slots=True)
class Refused:
    """The unit answered, but not with the values: an exception response or a reply of the wrong size."""

    reason: str


@dataclass(frozen=True, slots=True)
class NoReply:
    """Nothing came back within the timeout (unit off, wrong unit id, wiring or serial settings)."""


Reply = Values | Refused | NoReply


def check_serial_port(port: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int) -> None:
    """Open and close ``port`` with these settings, so that a refusal is a clear OSError (pymodbus would
    only log it and report "not connected")."""
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


async def connect_client(client: ModbusBaseClient, where: str) -> bool:
    """``client.connect()``, with pyserial's refusals (which pymodbus lets through) as a clear OSError."""
    try:
        return bool(await client.connect())
    except (termios.error, ValueError) as exc:
        client.close()
        gc.collect()  # a port pymodbus opened half-way is released only when its object is collected
        raise OSError(f"{where}: the port refused these serial settings ({exc}); check the baud rate, parity, "
                      "data bits and stop bits against what the adapter and device support") from None


def quiet_pymodbus() -> None:
    """pymodbus logs every timeout as an error; unit health already says it, once and clearly. A level the
    user set for the ``pymodbus`` logger is left alone."""
    if logging.getLogger("pymodbus").level == logging.NOTSET:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def raise_if_cancelled() -> None:
    """Honour a cancellation that a library swallowed. On Python 3.11, ``asyncio.wait_for`` (which pymodbus
    uses for connects and replies) returns the result instead of raising when the reply and the cancel
    arrive together; the task is then marked as cancelling but runs on, and a gateway stopping on SIGTERM
    would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class ModbusConnection:
    """The pymodbus client of one instrument: a Modbus TCP host (``host``) or an RTU bus (``port``).

    ``health`` is the instrument's: the connection keeps ``connected``, ``reconnects``, ``last_error`` (why
    the link is down) and ``last_raw`` (the last reply as received, for wiring debugging) up to date.
    """

    def __init__(self, config: InstrumentConfig, options: ModbusOptions, health: InstrumentHealth) -> None:
        self.config = config
        self.options = options
        self.health = health
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None

    @property
    def where(self) -> str:
        c = self.config
        return f"{c.host}:{c.tcp_port}" if c.host else str(c.port)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self.health.last_raw = bytes(data[-256:])
        return data

    async def connect(self) -> None:
        """Open the TCP connection or the serial port; raises ConnectionException/OSError with a clear text."""
        self.close()
        c = self.config
        quiet_pymodbus()
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if c.host:
            client = AsyncModbusTcpClient(
                c.host, port=c.tcp_port, timeout=c.timeout, retries=0, reconnect_delay=0, trace_packet=self._trace,
            )
            hint = (f"no Modbus TCP device answers at {self.where}: check host and tcp_port (502 unless the "
                    "device says otherwise), the cable and that the device is powered")
        else:
            if not c.port:
                raise ConnectionException(f"instrument {c.name!r} has neither host nor port")
            if not os.path.exists(c.port):
                raise OSError(f"serial port {c.port} does not exist (adapter unplugged? prefer the stable name "
                              "under /dev/serial/by-id/)")
            line = LineSettings.of(c)
            client = AsyncModbusSerialClient(
                c.port, framer=FramerType.RTU, timeout=c.timeout, retries=0, reconnect_delay=0,
                handle_local_echo=self.options.local_echo, trace_packet=self._trace, baudrate=line.baudrate,
                bytesize=line.bytesize, parity=line.parity, stopbits=line.stopbits,
            )
            hint = (f"cannot open serial port {c.port}: it is missing, in use by another program, "
                    "or this user lacks permission (add it to the 'dialout' group)")
            await asyncio.to_thread(check_serial_port, str(c.port), baudrate=line.baudrate,
                                    bytesize=line.bytesize, parity=line.parity, stopbits=line.stopbits)
        self.client = client
        if not await connect_client(client, self.where):
            self.close()
            raise ConnectionException(hint)
        # A unit that never answers must not make pymodbus drop a link the other units still use.
        client.set_max_no_responses(1_000_000)
        if isinstance(client, AsyncModbusSerialClient) and c.serial.rs485:
            self._enable_rs485(client)

    def _enable_rs485(self, client: AsyncModbusSerialClient) -> None:
        import serial.rs485

        port = getattr(client.ctx.transport, "sync_serial", None)
        if port is None:
            raise RS485Error("serial port closed while enabling RS-485 mode")
        try:
            port.rs485_mode = serial.rs485.RS485Settings(
                rts_level_for_tx=self.options.rs485_rts_for_tx,
                rts_level_for_rx=not self.options.rs485_rts_for_tx,
                delay_before_tx=self.options.rs485_delay_before_tx or None,
                delay_before_rx=self.options.rs485_delay_before_rx or None,
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

    async def read(self, group: ReadGroup) -> Reply:
        """One read request. Raises ConnectionException when the link itself is gone."""
        if self.client is None:
            raise ConnectionException(f"connection to {self.where} is not open")
        read = getattr(self.client, READ_METHODS[group.function])
        try:
            async with asyncio.timeout(self.config.timeout + 1.0):
                response = await read(group.start, count=group.count, device_id=group.unit_id)
        except ConnectionException:
            raise
        except (ModbusException, TimeoutError):
            if not self.connected:
                raise ConnectionException(f"connection to {self.where} lost") from None
            return NoReply()
        if response.isError():
            code = getattr(response, "exception_code", 0)
            text = EXCEPTION_TEXT.get(code, "unknown exception code")
            return Refused(f"{group.describe()}: exception {code:02X} {text}")
        if group.function in BIT_FUNCTIONS:
            bits = list(response.bits[: group.count])
            if len(bits) != group.count:
                return Refused(f"{group.describe()}: reply carried {len(bits)} bits, asked for {group.count}")
            return Values(bits)
        registers = list(response.registers)
        if len(registers) != group.count:
            return Refused(f"{group.describe()}: reply carried {len(registers)} registers, asked for {group.count}")
        return Values(registers)

    async def keep_open(self, session: Callable[[], Awaitable[None]], retry: Backoff) -> None:
        """Open the connection and run ``session`` over it; when the link fails (or ``session`` has a bug),
        say why in ``health``, wait as ``retry`` says and open it again — until cancelled."""
        ever_connected = False
        try:
            while True:
                try:
                    await self.connect()
                    raise_if_cancelled()
                    self.health.connected = True
                    if ever_connected:
                        self.health.reconnects += 1
                    ever_connected = True
                    retry.reset()
                    await session()
                except (ConnectionException, OSError) as exc:
                    self.health.last_error = f"{exc}".removeprefix("Modbus Error: [Connection] ")
                except Exception as exc:  # a bug must not end data collection; it is reported and retried
                    self.health.last_error = f"internal error: {type(exc).__name__}: {exc}"
                self.health.connected = False
                self.close()
                raise_if_cancelled()
                await retry.sleep()
        finally:
            self.close()
            self.health.connected = False
