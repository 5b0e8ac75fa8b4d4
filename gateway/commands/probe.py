"""``floorwatch probe PORT``: which instrument is on this serial port, at which settings, sending what?

A technician plugs an adapter into an unknown instrument. The probe tries the known serial protocols and
port settings, printing each step as it goes (on standard error), and reports which drivers decode what
the instrument sends, with example frames and the configuration to paste (on standard output).

For each port setting (each driver's factory setting first, then the common ones) it

1. listens for ``--listen`` seconds (instruments in continuous mode, a caliper's data button);
2. sends each matching driver's *read* request — ``SI``, ``Q``, ``IP``, ``ESC P``, ``?``, ``1`` — and
   listens for ``--timeout`` seconds. Nothing that changes the instrument (tare, zero, settings) is ever
   sent. An empty line goes first so a request is not glued to leftovers of the previous one.

Every driver's parser then looks at the bytes; a driver matches when it decodes values from them. The
probe stops at the first setting where a driver matches (``--all`` tries every setting).

``floorwatch probe --modbus HOST|HOST:PORT|/dev/ttyUSB0`` scans Modbus unit ids instead (see
``floorwatch.drivers.modbus.probe``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import serial

from floorwatch.drivers import registry
from floorwatch.drivers.base import DriverSpec, Parser, Rejected, SerialDefaults
from floorwatch.drivers.framing import Framer
from floorwatch.drivers.serial_port import (
    BY_ID,
    describe_settings,
    open_error,
    open_port,
    port_hint,
    stable_name,
)
from floorwatch.edge.model import Measurement

# Settings worth a try beyond the drivers' own defaults, most common first.
COMMON = ("9600 8N1", "19200 8N1", "2400 7E1", "4800 8N1", "1200 7O1", "38400 8N1", "57600 8N1", "115200 8N1")


class PortUnavailable(Exception):
    """The port cannot be opened at any setting (permission, in use): trying the others would only repeat it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", nargs="?", help="serial port, e.g. /dev/serial/by-id/usb-FTDI_…-port0")
    parser.add_argument("--modbus", metavar="HOST|PORT", help="scan Modbus unit ids on a TCP host or an RTU port")
    parser.add_argument("--driver", action="append", default=[], metavar="NAME",
                        help="only try these drivers (repeatable); default: every serial driver")
    parser.add_argument("--settings", action="append", default=[], metavar="'9600 8N1'",
                        help="only try these port settings (repeatable)")
    parser.add_argument("--listen", type=float, default=1.5, help="seconds to listen before sending (default 1.5)")
    parser.add_argument("--timeout", type=float, default=0.6, help="seconds to wait for each reply (default 0.6)")
    parser.add_argument("--all", action="store_true", help="try every setting, not only up to the first match")
    parser.add_argument("--units", default="1-247", help="Modbus unit ids, e.g. '1-10,17' (default 1-247)")


def parse_settings(text: str) -> dict[str, Any]:
    """``'9600 8N1'`` as pyserial settings.

    >>> parse_settings("4800 7E2")
    {'baudrate': 4800, 'bytesize': 7, 'parity': 'E', 'stopbits': 2, 'rtscts': False}
    >>> parse_settings("fast")
    Traceback (most recent call last):
    ...
    ValueError: 'fast' is not a port setting; write e.g. '9600 8N1' (baud, data bits, parity N/E/O, stop bits)
    """
    parts = text.upper().split()
    try:
        baud, frame = parts[0], parts[1]
        if len(parts) != 2 or len(frame) != 3 or frame[0] not in "78" or frame[1] not in "NEO" or frame[2] not in "12":
            raise ValueError
        return SerialDefaults(baudrate=int(baud), bytesize=int(frame[0]), parity=frame[1],
                              stopbits=int(frame[2])).model_dump()
    except (ValueError, IndexError):
        raise ValueError(
            f"{text!r} is not a port setting; write e.g. '9600 8N1' (baud, data bits, parity N/E/O, stop bits)"
        ) from None


def parse_units(text: str) -> list[int]:
    """``'1-3,17'`` → [1, 2, 3, 17].

    >>> parse_units("1-3,17")
    [1, 2, 3, 17]
    """
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise ValueError(f"--units {text!r}: write unit ids like '1-10,17'") from None
    if not out or any(not 0 <= u <= 247 for u in out):
        raise ValueError(f"--units {text!r}: unit ids are 0-247")
    return out


@dataclass
class Match:
    """How well one driver's parser fits the bytes seen at one setting."""

    driver: str
    settings: str
    decoded: int = 0  # frames carrying a measured value
    errors: int = 0  # the protocol's own error or status replies (no value): evidence, but weaker
    ignored: int = 0
    rejected: int = 0
    answered_own_request: bool = False
    examples: list[tuple[bytes, Measurement]] = field(default_factory=list)
    error_examples: list[tuple[bytes, Measurement]] = field(default_factory=list)

    @property
    def score(self) -> float:
        return (self.decoded + self.errors * 0.25) * (2 if self.answered_own_request else 1) - self.rejected * 0.5

    @property
    def found(self) -> bool:
        return self.decoded + self.errors > 0 and self.decoded + self.errors >= self.rejected

    def shown(self) -> list[tuple[bytes, Measurement]]:
        """Frames to show the technician: those with a value; error replies only when there is nothing else."""
        return self.examples or self.error_examples

    def summary(self) -> str:
        parts = [f"{self.decoded} value(s)"]
        if self.errors:
            parts.append(f"{self.errors} error reply(ies)")
        parts.append(f"{self.rejected} rejected frame(s)")
        return ", ".join(parts)


def evaluate(spec: DriverSpec, parse: Parser, data: bytes, match: Match) -> None:
    """Cut ``data`` with the driver's framing and count what its parser makes of each frame."""
    if not data:
        return
    framer = Framer(spec.terminator, start=getattr(spec.driver, "start", None), max_len=256)
    frames = framer.feed(data)
    if framer.pending().strip(b"\r\n\x00"):
        frames.append(framer.pending())
    for frame in frames:
        if not frame.endswith(spec.terminator):
            match.rejected += 1  # junk or a cut-off frame: never parsed, as in the running driver
            continue
        result = parse(frame)
        if isinstance(result, Measurement) and math.isfinite(result.value):
            match.decoded += 1
            if len(match.examples) < 3:
                match.examples.append((frame, result))
        elif isinstance(result, Measurement):  # ERR3, S +, OL …: the instrument's own words, but no measurement
            match.errors += 1
            if len(match.error_examples) < 3:
                match.error_examples.append((frame, result))
        elif isinstance(result, Rejected):
            match.rejected += 1
        else:
            match.ignored += 1


def candidates(names: list[str]) -> list[tuple[DriverSpec, Parser]]:
    out = []
    for name in names or registry.names():
        spec = registry.get(name)
        if spec.transport != "serial" or spec.parser is None:
            if names:
                raise ValueError(f"driver {name!r} is not a serial driver the probe can try")
            continue
        try:
            parse = spec.parser(spec.options.model_validate({}) if spec.options else None)
        except ValueError as exc:  # drivers that need options (regex) cannot be guessed
            if names:
                raise ValueError(f"driver {name!r} cannot be probed without its options: {exc}") from None
            continue
        out.append((spec, parse))
    return out


def plan(specs: list[tuple[DriverSpec, Parser]], only: list[str]) -> list[tuple[str, list[DriverSpec]]]:
    """(settings, drivers whose request is sent at them), each driver's factory setting first."""
    order: dict[str, list[DriverSpec]] = {}
    if only:
        for text in only:
            order.setdefault(describe_settings(parse_settings(text)), [s for s, _ in specs])
        return list(order.items())
    for spec, _ in specs:
        order.setdefault(describe_settings(spec.serial_defaults.model_dump()), []).append(spec)
    for text in COMMON:
        key = describe_settings(parse_settings(text))
        bucket = order.setdefault(key, [])
        for spec, _ in specs:
            if spec not in bucket:
                bucket.append(spec)
    return list(order.items())


def _settings_of(text: str) -> dict[str, Any]:
    rtscts = text.endswith("RTS/CTS")
    out = parse_settings(text.removesuffix(" RTS/CTS"))
    out["rtscts"] = rtscts
    return out


def _read(port: serial.Serial, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    data = bytearray()
    while time.monotonic() < deadline:
        data += port.read(4096)  # the port's timeout is 0.05 s
    return bytes(data)


def probe_serial(args: argparse.Namespace, say=None, heard: dict[str, bytes] | None = None) -> list[Match]:
    """Try every planned setting on ``args.port``; returns the matches found (best first).

    ``heard`` (if given) receives, per port setting, the first bytes that arrived there, whatever they were.
    """
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    specs = candidates(args.driver)
    found: list[Match] = []
    steps = plan(specs, args.settings)
    for n, (settings_text, requesters) in enumerate(steps, 1):
        say(f"[{n}/{len(steps)}] {args.port} at {settings_text}")
        try:
            port = open_port(args.port, _settings_of(settings_text), None, timeout=0.05)
        except (OSError, serial.SerialException, ValueError, termios.error) as exc:
            if not os.path.exists(args.port):
                raise FileNotFoundError(args.port) from None
            why = open_error(exc, args.port)
            if why.startswith(("permission denied", "port is in use")) or "is not a serial port" in why:
                # the same at every setting: trying the others would only repeat it
                raise PortUnavailable(f"{args.port}: {why}") from None
            say(f"    cannot open the port at these settings: {why}")
            continue
        matches = {spec.name: Match(spec.name, settings_text) for spec, _ in specs}
        try:
            port.reset_input_buffer()
            data = _read(port, args.listen)
            if data and heard is not None:
                heard.setdefault(settings_text, data[:64])
            say(f"    listened {args.listen:g} s: {len(data)} bytes" + (f", e.g. {data[:48]!r}" if data else ""))
            for spec, parse in specs:
                evaluate(spec, parse, data, matches[spec.name])
            for spec in requesters:
                if spec.probe_request is None:
                    continue
                port.write(b"\r\n")
                _read(port, 0.1)
                port.write(spec.probe_request)
                reply = _read(port, args.timeout)
                if reply and heard is not None:
                    heard.setdefault(settings_text, reply[:64])
                say(f"    sent {spec.probe_request!r} ({spec.name}): "
                    + (f"{len(reply)} bytes, e.g. {reply[:48]!r}" if reply else "no reply"))
                for other, parse in specs:
                    before = matches[other.name].decoded
                    evaluate(other, parse, reply, matches[other.name])
                    if other is spec and matches[other.name].decoded > before:
                        matches[other.name].answered_own_request = True
        except (OSError, serial.SerialException, termios.error) as exc:
            say(f"    port error at these settings: {exc}")
        finally:
            port.close()
        hits = sorted((m for m in matches.values() if m.found), key=lambda m: -m.score)
        for m in hits:
            say(f"    -> {m.driver}: {m.summary()}")
        found.extend(hits)
        if hits and not args.all:
            break
    found.sort(key=lambda m: -m.score)
    return found


def report(port: str, found: list[Match], by_id: Path = BY_ID, heard: dict[str, bytes] | None = None) -> None:
    if not found and heard:
        # something is talking: the cable works; the protocol or the port setting is what is unknown
        print(f"{port}: bytes arrived, but no known instrument protocol matched them:")
        for settings_text, data in heard.items():
            print(f"    bytes arrived at {settings_text}: {data!r}")
        print("Readable text at one setting (and garbage at the others) is the instrument's setting: read it with "
              "the 'regex' driver (docs/drivers/regex.md) at that setting. Garbage everywhere: the instrument "
              "uses a setting not tried here; give the one in its menu with --settings (e.g. --settings '600 8N1').")
        return
    if not found:
        print(f"{port}: no known instrument answered. Check the cable (null-modem?), the instrument's output "
              "setting (print/continuous), and try --settings with the baud rate shown on the instrument; "
              "a device we do not know can be read with the 'regex' driver.")
        return
    best = found[0]
    print(f"{port}: {best.driver} at {best.settings}"
          + (" (answered its own request)" if best.answered_own_request else ""))
    for frame, d in best.shown():
        value = "no value" if d.value != d.value else f"{d.value:g} {d.unit}".strip()
        print(f"    {frame!r} -> {value} {d.status.value}" + (f" ({d.detail})" if d.detail else ""))
    others = [m.driver for m in found[1:] if m.settings == best.settings and m.score == best.score]
    if others:
        print(f"    the frames fit {', '.join(others)} equally well; pick by the instrument's make")
    spec = registry.get(best.driver)
    defaults = describe_settings(spec.serial_defaults.model_dump())
    # the configuration names the port by its stable name: /dev/ttyUSB0 is another adapter after a replug
    stable = stable_name(port, by_id)
    if stable:
        print(f"    {port} is {stable}: the configuration below uses that name, which survives replugging")
    else:
        hint = port_hint(port, by_id)
        if hint:
            print(f"    note: {hint}")
    print("\nconfiguration:\n\n[[instruments]]\nname = \"instrument-1\"\n"
          f"driver = \"{best.driver}\"\nport = \"{stable or port}\"")
    if best.settings != defaults:
        s = _settings_of(best.settings)
        print(f"[instruments.serial]\nbaudrate = {s['baudrate']}\nbytesize = {s['bytesize']}\n"
              f"parity = \"{s['parity']}\"\nstopbits = {s['stopbits']}" + ("\nrtscts = true" if s["rtscts"] else ""))


def probe_modbus(args: argparse.Namespace) -> int:
    """Modbus unit-id scan: delegated to floorwatch.drivers.modbus.probe."""
    from pymodbus.exceptions import ModbusException

    from floorwatch.drivers.modbus import probe as modbus_probe

    units = parse_units(args.units)
    # Without --settings, modbus_probe searches the common RTU settings itself (9600/19200, even/no parity).
    settings = _settings_of(args.settings[0]) if args.settings else {"baudrate": None, "bytesize": 8,
                                                                    "parity": None, "stopbits": 1}
    try:
        found = asyncio.run(modbus_probe.probe(
            args.modbus, unit_ids=units, timeout=args.timeout,
            out=lambda text: print(text, file=sys.stderr, flush=True),
            baudrate=settings["baudrate"], parity=settings["parity"], bytesize=settings["bytesize"],
            stopbits=settings["stopbits"],
        ))
    except ModbusException as exc:  # includes ConnectionException: one readable line, not a traceback
        print(f"floorwatch probe: {exc}", file=sys.stderr)
        return 2
    if not found:
        print(f"{args.modbus}: no Modbus unit answered among ids {args.units}")
        return 1
    for unit in found:
        print(f"{args.modbus}: unit {unit.get('unit_id')} answers: "
              + ", ".join(f"{k}={v}" for k, v in unit.items() if k != "unit_id"))
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.modbus:
            if args.port:
                raise ValueError("give either a serial PORT or --modbus HOST|PORT, not both")
            return probe_modbus(args)
        if not args.port:
            raise ValueError("give the serial port to probe, e.g. floorwatch probe /dev/serial/by-id/usb-…")
        if not os.path.exists(args.port):
            raise FileNotFoundError(args.port)
        heard: dict[str, bytes] = {}
        found = probe_serial(args, heard=heard)
    except FileNotFoundError:
        print(f"floorwatch probe: {args.port}: no such port (plugged in? see `ls /dev/serial/by-id/`)",
              file=sys.stderr)
        return 2
    except PortUnavailable as exc:
        print(f"floorwatch probe: {exc}", file=sys.stderr)
        return 2
    except (ValueError, serial.SerialException, OSError) as exc:
        print(f"floorwatch probe: {exc}", file=sys.stderr)
        return 2
    report(args.port, found, heard=heard)
    return 0 if found else 1
