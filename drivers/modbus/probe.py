"""Find which Modbus units answer on a TCP host or an RTU bus, and show what their first registers hold.

``floorwatch probe --modbus HOST|HOST:PORT|SERIALPORT`` calls :func:`probe`. Each unit id is asked for
holding registers 0..9 (then input registers 0..9); a unit that answers at all — even with an exception
response such as "illegal data address" — is present. Raw words are shown in hex with their u16, u32
(ABCD and CDAB) and f32 readings, so a technician can pick the type and word order that make sense.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException

from floorwatch.drivers.modbus import codec
from floorwatch.drivers.modbus.transport import (
    EXCEPTION_TEXT,
    check_serial_port,
    connect_client,
    quiet_pymodbus,
)

SAMPLE = 10  # registers read per table


class ProbeError(ConnectionError):
    """The target cannot be reached or opened; the message says what to check."""


def parse_target(target: str) -> dict[str, Any]:
    """``host``, ``host:port``, ``[v6]:port`` or a serial device path.

    >>> parse_target("192.0.2.10"), parse_target("plc.local:1502")
    ({'host': '192.0.2.10', 'tcp_port': 502}, {'host': 'plc.local', 'tcp_port': 1502})
    >>> parse_target("/dev/ttyUSB0"), parse_target("[fd00::5]:503")
    ({'port': '/dev/ttyUSB0'}, {'host': 'fd00::5', 'tcp_port': 503})
    >>> parse_target("plc:99999")
    Traceback (most recent call last):
    ...
    ValueError: 'plc:99999': TCP port must be 1-65535
    """
    target = target.strip()
    if not target:
        raise ValueError("give a Modbus TCP host (host or host:port) or a serial port such as /dev/ttyUSB0")
    if target.startswith("/") or target.upper().startswith("COM") and target[3:].isdigit():
        return {"port": target}
    host, port = target, "502"
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":") or "502"
    elif target.count(":") == 1:
        host, port = target.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{target!r}: TCP port must be 1-65535")
    return {"host": host, "tcp_port": int(port)}


def readings(registers: list[int]) -> dict[str, Any]:
    """The first registers shown the ways a technician needs to recognise a value.

    >>> r = readings([0x42F6, 0xE979, 0x0001])
    >>> r["hex"], r["u16"][:2], round(r["f32_ABCD"], 3), r["u32_CDAB"]
    ('42F6 E979 0001', [17142, 59769], 123.456, 3917038326)
    """
    out: dict[str, Any] = {"hex": codec.hexwords(registers), "u16": list(registers)}
    if len(registers) >= 2:
        pair = registers[:2]
        out["u32_ABCD"] = codec.decode(pair, "u32", "ABCD")
        out["u32_CDAB"] = codec.decode(pair, "u32", "CDAB")
        out["f32_ABCD"] = codec.decode(pair, "f32", "ABCD")
        out["f32_CDAB"] = codec.decode(pair, "f32", "CDAB")
    return out


@dataclass(frozen=True, slots=True)
class TableRead:
    """What one unit gave when asked for the first registers of one table."""

    answered: bool  # any reply at all, even an exception response: the unit is there
    registers: list[int] | None = None
    error: str | None = None  # the exception response, explained

    def shown(self) -> dict[str, Any] | str | None:
        """As the scan reports it: the readings, the exception text, or None (no reply)."""
        return readings(self.registers) if self.registers is not None else self.error


async def _read_table(client: ModbusBaseClient, method: str, unit: int) -> TableRead:
    """Tries 10 registers, then 1 if the device refuses."""
    answered = False
    error: str | None = None
    for count in (SAMPLE, 1):
        try:
            response = await getattr(client, method)(0, count=count, device_id=unit)
        except ConnectionException as exc:
            raise ProbeError(f"connection lost during the scan: {exc}".replace("Modbus Error: [Connection] ", "")) from None
        except ModbusException:
            return TableRead(answered, error=error)
        answered = True
        if not response.isError():
            return TableRead(True, registers=list(response.registers))
        code = getattr(response, "exception_code", 0)
        error = f"exception {code:02X} {EXCEPTION_TEXT.get(code, 'unknown exception code')}"
    return TableRead(answered, error=error)


# Serial settings tried, in this order, when the caller does not know them: the Modbus default first.
COMMON_SETTINGS: tuple[tuple[int, str], ...] = ((9600, "E"), (9600, "N"), (19200, "E"), (19200, "N"))
QUICK_UNITS = 10  # unit ids tried per setting while looking for the port settings


async def _scan(client: ModbusBaseClient, label: str, units: list[int], out: Callable[[str], Any],
                settings: str | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for n, unit in enumerate(units, 1):
        holding = await _read_table(client, "read_holding_registers", unit)
        # A unit that ignored the first request is absent: do not spend a second timeout on it.
        inputs = await _read_table(client, "read_input_registers", unit) if holding.answered else TableRead(False)
        if holding.answered or inputs.answered:
            entry: dict[str, Any] = {"unit_id": unit, "holding": holding.shown(), "input": inputs.shown()}
            if settings:
                entry["settings"] = settings
            found.append(entry)
            out(f"unit {unit}: answers")
            for table in ("holding", "input"):
                value = entry[table]
                text = f"registers 0..: {value['hex']}" if isinstance(value, dict) else (value or "no reply")
                out(f"  {table}: {text}")
        if n % 10 == 0 or n == len(units):
            out(f"scanned {n}/{len(units)} unit ids, {len(found)} answering")
        if not client.connected:
            raise ProbeError(f"{label}: connection lost during the scan")
    return found


async def _open(client: ModbusBaseClient, label: str) -> None:
    if not await connect_client(client, label):
        client.close()
        raise ProbeError(f"cannot connect to {label}: check the address, cable and power")
    client.set_max_no_responses(1_000_000)


async def probe(
    target: str,
    *,
    unit_ids: Iterable[int] = range(1, 248),
    timeout: float = 0.3,
    out: Callable[[str], Any] = print,
    baudrate: int | None = None,
    parity: str | None = None,
    bytesize: int = 8,
    stopbits: int = 1,
) -> list[dict[str, Any]]:
    """Scan ``unit_ids`` on ``target``; print progress through ``out``; return one dict per answering unit:
    ``{"unit_id", "holding": {...} | "exception …", "input": {...} | "exception …"}`` (RTU adds
    ``"settings": "9600 8E1"``).

    On an RTU port without ``baudrate``/``parity``, the common settings (9600 and 19200 baud, even and no
    parity) are tried on the first unit ids; the first setting that gets an answer is used for the scan.
    Raises :class:`ProbeError` (an OSError) when the target cannot be reached, ValueError for bad input.
    """
    where = parse_target(target)
    units = [u for u in unit_ids]
    if not units:
        raise ValueError("no unit ids to scan")
    bad = [u for u in units if not 0 <= u <= 247]
    if bad:
        raise ValueError(f"unit ids must be 0-247, got {bad[:5]}")
    quiet_pymodbus()
    span = f"unit ids {units[0]}..{units[-1]} ({len(units)}), {timeout:g} s each"
    if "host" in where:
        label = f"Modbus TCP {where['host']}:{where['tcp_port']}"
        client: ModbusBaseClient = AsyncModbusTcpClient(where["host"], port=where["tcp_port"], timeout=timeout, retries=0,
                                           reconnect_delay=0)
        out(f"probing {label}: {span}")
        await _open(client, label)
        try:
            found = await _scan(client, label, units, out, None)
        finally:
            client.close()
        if not found:
            out("no unit answered: check the unit ids, and that this host speaks Modbus TCP on this port")
        elif len(found) == len(units) > 1:
            out("every unit id answered: this is probably a single Modbus TCP device that ignores the unit id")
        return found

    port = where["port"]
    if not os.path.exists(port):
        raise ProbeError(f"serial port {port} does not exist (adapter plugged in? "
                                  "see ls /dev/serial/by-id/)")
    known = baudrate is not None and parity is not None
    candidates = [(baudrate or 9600, parity or "E")] if known else [
        (b, p) for b, p in COMMON_SETTINGS if (baudrate is None or b == baudrate) and (parity is None or p == parity)
    ] or [(baudrate or 9600, parity or "E")]

    def serial_client(b: int, p: str) -> AsyncModbusSerialClient:
        return AsyncModbusSerialClient(port, framer=FramerType.RTU, baudrate=b, bytesize=bytesize, parity=p,
                                       stopbits=stopbits, timeout=timeout, retries=0, reconnect_delay=0)

    chosen = candidates[0]
    if len(candidates) > 1:
        quick = units[:QUICK_UNITS]
        out(f"looking for the port settings of {port} on unit ids {quick[0]}..{quick[-1]}")
        for b, p in candidates:
            settings = f"{b} {bytesize}{p}{stopbits}"
            out(f"trying {settings}")
            client = serial_client(b, p)
            try:
                await asyncio.to_thread(check_serial_port, port, baudrate=b, bytesize=bytesize, parity=p,
                                        stopbits=stopbits)
                await _open(client, f"Modbus RTU {port} {settings}")
            except OSError as exc:
                out(f"  {exc}")
                continue
            try:
                answering = await _first_answer(client, quick)
            finally:
                client.close()
            if answering is not None:
                out(f"unit {answering} answers at {settings}")
                chosen = (b, p)
                break
        else:
            out(f"no unit among ids {quick[0]}..{quick[-1]} answered at any common setting; give the baud rate "
                "and parity to scan every id, and check wiring (A/B swapped?), termination and GND")
            return []
    settings = f"{chosen[0]} {bytesize}{chosen[1]}{stopbits}"
    label = f"Modbus RTU {port} {settings}"
    out(f"probing {label}: {span}")
    await asyncio.to_thread(check_serial_port, port, baudrate=chosen[0], bytesize=bytesize, parity=chosen[1],
                            stopbits=stopbits)
    client = serial_client(*chosen)
    await _open(client, label)
    try:
        found = await _scan(client, label, units, out, settings)
    finally:
        client.close()
    if not found:
        out("no unit answered: check wiring (A/B swapped?), termination, baud rate and parity, and unit ids")
    return found


async def _first_answer(client: ModbusBaseClient, units: list[int]) -> int | None:
    for unit in units:
        if (await _read_table(client, "read_holding_registers", unit)).answered:
            return unit
    return None


async def _main(target: str) -> int:  # pragma: no cover - manual use: python -m floorwatch.drivers.modbus.probe HOST
    found = await probe(target, unit_ids=range(1, 248))
    return 0 if found else 1


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(asyncio.run(_main(sys.argv[1])))
