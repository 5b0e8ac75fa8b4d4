"""The serial transport every serial driver shares, and the driver loop built on it.

Why one transport: the failures of a factory floor are the same for every instrument — a USB adapter
pulled out and plugged back, ``/dev/ttyUSB0`` renumbered to ``ttyUSB1``, a wrong baud rate spraying
garbage, a scale that stops answering. They are handled here once:

* the port is opened by path; ``/dev/serial/by-id/…`` names survive replugging and renumbering, and when a
  ``/dev/ttyUSBn`` (or ``ttyACMn``) name is configured the health report suggests the stable name that points
  at it, or where to find it (also in the error when that port is missing);
* port settings are the driver's factory defaults with the instrument's ``[instruments.serial]``
  overrides on top; ``serial.rs485 = true`` switches the port to the kernel's RS-485 mode (direction
  control by RTS) for half-duplex transceivers;
* reading never holds the event loop: the port is opened in a worker thread and read through
  pyserial-asyncio-fast's non-blocking transport;
* when the port vanishes the driver reports ``connected = False`` with the reason, retries with an
  exponential backoff (0.1 s doubling to ``max_backoff``) and resumes by itself when the port returns;
* every frame is counted in :class:`floorwatch.drivers.base.InstrumentHealth` (ok / rejected / ignored, the last raw
  frame and the last rejection reason) so a technician can debug the wiring from the status page;
* a run of rejected frames is named for what it almost always is — a baud rate or parity that does not
  match the instrument's — in ``last_error``, with the port's settings; bytes that never get their frame end
  (a gauge at the wrong baud rate never produces its CR) are counted as rejected once the line goes quiet
  for ``timeout`` seconds instead of waiting for a buffer to fill;
* "permission denied" says which group to join and the command to do it.

A driver module subclasses :class:`SerialDriver` and sets its terminator and parser; polled instruments
override :meth:`SerialDriver.request` and set ``polled``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import grp
import math
import os
import pwd
import re
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import serial
import serial.rs485
from pydantic import BaseModel
from serial_asyncio_fast import SerialTransport, connection_for_serial

from floorwatch.drivers.base import Driver, Ignored, Parser, ParseResult, Rejected, SerialDefaults
from floorwatch.drivers.framing import Framer
from floorwatch.edge.backoff import Backoff
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import InstrumentConfig, SerialSettings
from floorwatch.edge.model import Measurement, MeasurementStatus

BY_ID = Path("/dev/serial/by-id")
_RENUMBERED = re.compile(r"/dev/tty(?:USB|ACM)\d+")
# consecutive rejected frames before the health report names a baud rate / parity mismatch
REJECTS_BEFORE_DIAGNOSIS = 5


class PortLost(Exception):
    """The port went away (adapter unplugged, cable pulled on a USB instrument, pty closed)."""


def effective_settings(overrides: SerialSettings, defaults: SerialDefaults) -> dict[str, Any]:
    """pyserial keyword arguments: the driver's defaults with the instrument's overrides on top.

    >>> from floorwatch.edge.config import SerialSettings
    >>> effective_settings(SerialSettings(baudrate=19200), SerialDefaults(bytesize=7, parity="E"))
    {'baudrate': 19200, 'bytesize': 7, 'parity': 'E', 'stopbits': 1, 'rtscts': False}
    """
    out = defaults.model_dump()
    for key in out:
        value = getattr(overrides, key)
        if value is not None:
            out[key] = value
    return out


def describe_settings(settings: dict[str, Any]) -> str:
    """Settings as a technician writes them on the instrument's label: ``9600 8N1``.

    >>> describe_settings({'baudrate': 4800, 'bytesize': 7, 'parity': 'E', 'stopbits': 2, 'rtscts': False})
    '4800 7E2'
    """
    text = f"{settings['baudrate']} {settings['bytesize']}{settings['parity']}{settings['stopbits']}"
    return text + (" RTS/CTS" if settings.get("rtscts") else "")


def rs485_settings(overrides: SerialSettings) -> serial.rs485.RS485Settings | None:
    """The kernel RS-485 mode for half-duplex transceivers, or None for a plain RS-232/USB port.

    The transmitter is enabled by RTS high while sending and released right after (the usual wiring of
    MAX485-style transceivers; adapters with automatic direction control need no RS-485 mode at all).

    >>> from floorwatch.edge.config import SerialSettings
    >>> rs485_settings(SerialSettings()) is None
    True
    >>> s = rs485_settings(SerialSettings(rs485=True))
    >>> s.rts_level_for_tx, s.rts_level_for_rx, s.loopback
    (True, False, False)
    """
    if not overrides.rs485:
        return None
    return serial.rs485.RS485Settings(rts_level_for_tx=True, rts_level_for_rx=False, loopback=False)


def stable_name(path: str, by_id: Path = BY_ID) -> str | None:
    """The ``/dev/serial/by-id`` name of a port configured as ``/dev/ttyUSBn``, if there is one.

    ``ttyUSB`` numbers follow plug order and change after a replug or a reboot; the by-id name is built
    from the adapter's serial number and does not.
    """
    if path.startswith(str(by_id)):
        return None
    try:
        target = os.path.realpath(path)
        for link in sorted(by_id.iterdir()):
            if os.path.realpath(link) == target:
                return str(link)
    except OSError:
        return None
    return None


def port_hint(path: str, by_id: Path = BY_ID) -> str | None:
    """Advice for a port configured by a name that changes (``/dev/ttyUSBn``, ``/dev/ttyACMn``), else None.

    >>> port_hint("/dev/ttyUSB0", Path("/nonexistent"))
    "/dev/ttyUSB0 is renumbered when adapters are replugged or the gateway restarts; configure the adapter's stable name instead (see `ls -l /dev/serial/by-id/`)"
    >>> port_hint("/dev/serial/by-id/usb-FTDI_A10K1234-if00-port0") is None
    True
    """
    stable = stable_name(path, by_id)
    if stable:
        return f"{path} may be renumbered after a replug; configure {stable} instead"
    if _RENUMBERED.fullmatch(path):
        return (f"{path} is renumbered when adapters are replugged or the gateway restarts; configure the "
                f"adapter's stable name instead (see `ls -l {BY_ID}/`)")
    return None


def open_port(
    path: str, settings: dict[str, Any], rs485: serial.rs485.RS485Settings | None, timeout: float = 0
) -> serial.Serial:
    """Open and configure a port (blocking: call it in a worker thread). ``timeout`` is pyserial's read timeout."""
    port = serial.Serial()
    port.port = path
    port.baudrate = settings["baudrate"]
    port.bytesize = settings["bytesize"]
    port.parity = settings["parity"]
    port.stopbits = settings["stopbits"]
    port.rtscts = settings["rtscts"]
    port.timeout = timeout
    port.exclusive = True
    if rs485 is not None:
        port.rs485_mode = rs485
    port.open()
    return port


class _FrameProtocol(asyncio.Protocol):
    def __init__(self, framer: Framer) -> None:
        self.framer = framer
        self.last_data = time.monotonic()
        self.frames: collections.deque[bytes] = collections.deque()
        self.lost: BaseException | None = None
        self._wake: asyncio.Event = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        frames = self.framer.feed(data)
        if frames:
            self.frames.extend(frames)
            self._wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or PortLost("port closed")
        self._wake.set()


class SerialLink:
    """One open serial port handing out whole frames. Create with :meth:`open`."""

    def __init__(self, transport: SerialTransport, protocol: _FrameProtocol, path: str) -> None:
        self.transport = transport
        self.protocol = protocol
        self.path = path

    @classmethod
    async def open(
        cls,
        path: str,
        settings: dict[str, Any],
        framer: Framer,
        rs485: serial.rs485.RS485Settings | None = None,
    ) -> SerialLink:
        """Open ``path`` with ``settings``; raises OSError / serial.SerialException when it cannot."""
        loop = asyncio.get_running_loop()
        port = await loop.run_in_executor(None, open_port, path, settings, rs485)
        transport, protocol = await connection_for_serial(loop, lambda: _FrameProtocol(framer), port)
        return cls(transport, protocol, path)  # type: ignore[arg-type]

    @property
    def serial(self) -> serial.Serial | None:
        return self.transport.serial

    async def read_frames(self, timeout: float) -> list[bytes]:
        """Every whole frame received so far, waiting up to ``timeout`` s for one; [] when none came.

        Raises :class:`PortLost` once the port is gone and every frame received before has been handed out.
        """
        proto = self.protocol
        if not proto.frames:
            if proto.lost is not None:
                raise PortLost(_why(proto.lost))
            proto._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that arrives as the
            # wait completes, and the driver would then never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await proto._wake.wait()
            if not proto.frames:
                if proto.lost is not None:
                    raise PortLost(_why(proto.lost))
                return []
        frames = list(proto.frames)
        proto.frames.clear()
        return frames

    def write(self, data: bytes) -> None:
        if self.protocol.lost is not None:
            raise PortLost(_why(self.protocol.lost))
        self.transport.write(data)

    def discard_input(self) -> None:
        """Forget frames not yet read (a late reply to an earlier request must not pass as the next one)."""
        self.protocol.frames.clear()
        self.protocol.framer.clear()

    def pending(self) -> bytes:
        return self.protocol.framer.pending()

    def take_incomplete(self, quiet: float) -> bytes:
        """The bytes of a frame whose end has not come for ``quiet`` seconds (b"" if none): handed out once, as
        junk. Line ends and NULs alone are dropped silently (a CR LF split across the quiet time)."""
        proto = self.protocol
        pending = proto.framer.pending()
        if not pending or time.monotonic() - proto.last_data < quiet:
            return b""
        proto.framer.clear()
        return pending if pending.strip(b"\r\n\x00") else b""

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "returned no data" in text or "Input/output error" in text:
        return "port disconnected (adapter unplugged or instrument switched off)"
    return text


class SerialDriver(Driver):
    """Connect, (poll,) read frames, decode, emit — and survive the port going away.

    Subclasses set ``terminator``, ``start`` (binary start byte), ``serial_defaults``, ``make_parser`` and,
    for polled instruments, ``polled = True`` plus :meth:`request`. ``stage`` (e.g. the per-part weighing
    stage) can drop or transform the parser's measurements before they are stamped and emitted.
    """

    terminator: ClassVar[bytes] = b"\r"
    start: ClassVar[bytes | None] = None
    max_frame: ClassVar[int] = 256
    serial_defaults: ClassVar[SerialDefaults] = SerialDefaults()
    make_parser: ClassVar[Callable[[Any], Parser]]
    max_backoff: ClassVar[float] = 5.0

    def __init__(self, config: InstrumentConfig, options: BaseModel | None, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(config, options, clock)
        if not config.port:
            raise ValueError(f"instrument {config.name!r}: a serial driver needs 'port' (e.g. /dev/serial/by-id/…)")
        self.parse: Parser = type(self).make_parser(options)
        self.settings = effective_settings(config.serial, self.serial_defaults)
        self.rs485 = rs485_settings(config.serial)
        self.stage: Callable[[Measurement], Measurement | None] | None = None
        self.link: SerialLink | None = None
        self._terminator = self.framer().terminator
        self.health.extra["port"] = config.port
        self.health.extra["settings"] = describe_settings(self.settings) + (" RS-485" if self.rs485 else "")
        hint = port_hint(config.port)
        if hint:
            self.health.extra["hint"] = hint
        self._rejected_run = 0  # consecutive rejected frames
        self._ok_since_connect = 0
        self._diagnosis = ""

    # -- hooks --------------------------------------------------------------------------------------
    @property
    def polled(self) -> bool:
        return False

    def framer(self) -> Framer:
        return Framer(self.terminator, start=self.start, max_len=self.max_frame)

    async def on_connect(self, link: SerialLink) -> None:
        """Called after every (re)connect, e.g. to start continuous output."""

    async def request(self, link: SerialLink) -> None:
        """Ask a polled instrument for one value."""

    def is_reply(self, result: ParseResult) -> bool:
        """Whether a frame answers the poll (then the driver waits for the next poll interval)."""
        return not isinstance(result, Rejected)

    # -- loop ---------------------------------------------------------------------------------------
    async def run(self, emit: Callable[[Measurement], None]) -> None:
        backoff = Backoff(maximum=self.max_backoff)
        path = self.config.port
        assert path is not None
        ever_connected = False
        while True:
            try:
                link = await SerialLink.open(path, self.settings, self.framer(), self.rs485)
            except (OSError, serial.SerialException, ValueError, termios.error) as exc:
                self.health.connected = False
                error = f"cannot open {path} ({describe_settings(self.settings)}): {open_error(exc, path)}"
                hint = port_hint(path)
                if hint:
                    self.health.extra["hint"] = hint
                    error += f"; {hint}"
                self.health.last_error = error
                await asyncio.sleep(backoff.next())
                continue
            if ever_connected:
                self.health.reconnects += 1
            ever_connected = True
            self.link = link
            self.health.connected = True
            self.health.extra["connected_since_ns"] = self.clock.now_ns()
            self._rejected_run = self._ok_since_connect = 0
            backoff.reset()
            try:
                await self.on_connect(link)
                if self.polled:
                    await self._poll_loop(link, emit)
                else:
                    while True:
                        frames = await link.read_frames(self.config.timeout)
                        if not frames:
                            # a frame end that never comes (wrong baud rate): count the bytes once it is quiet
                            junk = link.take_incomplete(self.config.timeout)
                            frames = [junk] if junk else []
                        if frames:
                            self.handle(frames, emit)
            except PortLost as exc:
                self.health.last_error = f"{path}: {exc}"
            except (OSError, serial.SerialException) as exc:
                self.health.last_error = f"{path}: {exc}"
            finally:
                self.health.connected = False
                self.link = None
                link.close()
            await asyncio.sleep(backoff.next())

    async def _poll_loop(self, link: SerialLink, emit: Callable[[Measurement], None]) -> None:
        loop = asyncio.get_running_loop()
        interval, timeout = self.config.poll_interval, self.config.timeout
        while True:
            started = loop.time()
            await self.request(link)
            answered = False
            deadline = started + timeout
            while not answered:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                frames = await link.read_frames(remaining)
                answered = any(self.is_reply(r) for r in self.handle(frames, emit))
            if not answered:
                junk = link.take_incomplete(0.0)
                if junk:
                    self.handle([junk], emit)
                if self._rejected_run < REJECTS_BEFORE_DIAGNOSIS:  # else the baud rate diagnosis says more
                    self.health.last_error = (f"no reply within {timeout:g} s (check wiring, port settings and "
                                              "address)")
                self.health.extra["unanswered"] = self.health.extra.get("unanswered", 0) + 1
            await asyncio.sleep(max(0.0, started + interval - loop.time()))

    def handle(self, frames: list[bytes], emit: Callable[[Measurement], None]) -> list[ParseResult]:
        """Decode and count frames; emit the values (after ``stage``), stamped. Returns the parse results."""
        results = []
        health, parse, stage = self.health, self.parse, self.stage
        term = self._terminator
        for frame in frames:
            # the framer hands out junk in front of a start byte and over-long runs without a terminator:
            # those are never parsed, whatever digits they contain
            result = parse(frame) if frame.endswith(term) else Rejected(
                f"no frame end within {len(frame)} bytes (wrong baud rate, parity, or noise on the line)")
            health.count(frame, result)
            results.append(result)
            if isinstance(result, Rejected):
                self._rejected_run += 1
                if self._rejected_run >= REJECTS_BEFORE_DIAGNOSIS:
                    self._diagnose(frame)
            elif isinstance(result, Measurement):
                self._ok_since_connect += 1
                if self._rejected_run:
                    self._rejected_run = 0
                    if self._diagnosis and health.last_error == self._diagnosis:
                        health.last_error = ""  # the frames are good again: the advice no longer applies
            if isinstance(result, Measurement):
                if stage is not None:
                    staged = stage(result)
                    if staged is None:
                        continue
                    result = staged
                health.last_value_ns = self.clock.now_ns()
                emit(self.stamp(result))
            elif isinstance(result, Ignored):
                health.extra["last_notice"] = result.what
        return results

    def _diagnose(self, frame: bytes) -> None:
        run, settings = self._rejected_run, self.health.extra["settings"]
        term = self._terminator
        if not frame.endswith(term):
            # readable lines that run together: they end with something else than this driver's line end
            other = next((end for end in (b"\r\n", b"\r", b"\n") if end != term and end in frame), None)
            lines = frame.split(other) if other else []
            if other and all(all(0x20 <= b < 0x7F for b in line) for line in lines[1:-1]) and len(lines) > 2:
                self._diagnosis = self.health.last_error = (
                    f"the last {run} frames were rejected: the instrument's lines end with {_END[other]} (e.g. "
                    f"{lines[1].decode('ascii')!r}) but {self.config.driver!r} expects {_END.get(term, repr(term))}; "
                    "set the instrument's line end (or read it with the regex driver and its terminator option)")
                return
        text = frame.strip(b"\r\n\x00")
        if len(text) >= 3 and all(0x20 <= b < 0x7F for b in text):
            # a wrong baud rate or parity garbles characters; clean text means the settings are right and
            # the instrument speaks another protocol (or another output format) than this driver reads
            question = ("does the configured pattern match them? `floorwatch decode --driver regex --option "
                        "pattern=…` tries one" if self.config.driver == "regex" else
                        f"is {self.config.driver!r} the right driver for this instrument? `floorwatch decode "
                        "--driver NAME` shows what each driver makes of a frame")
            self._diagnosis = self.health.last_error = (
                f"the last {run} frames were rejected but are readable text (e.g. {text.decode('ascii')!r}): the "
                f"port settings look right; {question}")
            return
        if self._ok_since_connect == 0:
            text = (f"all {run} frames since connecting were rejected: check baud rate/parity — the port is at "
                    f"{settings} and the instrument must send at the same setting (`floorwatch probe "
                    f"{self.config.port}` finds it)")
        else:
            text = (f"the last {run} frames were all rejected: check baud rate/parity (the port is at {settings}; "
                    "was the instrument's setting changed?)")
        self._diagnosis = self.health.last_error = text


_END = {b"\r\n": "CR LF", b"\r": "CR", b"\n": "LF", b"\x03": "ETX"}


def open_error(exc: BaseException, path: str = "") -> str:
    """Why a port could not be opened, in the technician's terms, with the fix."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    if isinstance(exc, FileNotFoundError) or code == errno.ENOENT or "No such file" in text:
        return "no such port (adapter unplugged? check `ls /dev/serial/by-id/`)"
    if "RS485" in text:
        return ("this adapter (or its kernel driver) does not support the kernel's RS-485 mode; set "
                "serial.rs485 = false (adapters with automatic direction control need no RS-485 mode) or use an "
                f"adapter whose driver has it ({text})")
    if code in (errno.ENOTTY, errno.EISDIR) or "Inappropriate ioctl" in text or "Is a directory" in text:
        return (f"{path or 'this path'} is not a serial port (a file, a folder or another kind of device); "
                "configure the adapter's name from `ls -l /dev/serial/by-id/`")
    if isinstance(exc, termios.error):
        return f"the port refuses these settings ({text}); check [instruments.serial]"
    if isinstance(exc, PermissionError) or code == errno.EACCES or "Permission denied" in text:
        return "permission denied: " + permission_fix(path)
    if code == errno.EBUSY or "busy" in text.lower() or "exclusive" in text.lower():
        return "port is in use by another program (a terminal program, ModemManager, another gateway?)"
    return text


def permission_fix(path: str) -> str:
    """How to get access to a serial port the gateway's user may not open."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        st = os.stat(path)
        group = grp.getgrgid(st.st_gid)
    except (OSError, KeyError):
        return (f"add the user running floorwatch ({user}) to the port's group: sudo usermod -aG dialout {user}, "
                "then log in again or restart the floorwatch service")
    if group.gr_name == "root":
        return (f"{path} is accessible to root only; add a udev rule giving group 'dialout' access "
                "(see docs/drivers/serial.md)")
    if st.st_gid in os.getgroups() or st.st_gid == os.getegid():
        return (f"{path} (mode {st.st_mode & 0o777:03o}) is not readable and writable by its group "
                f"'{group.gr_name}'; check the udev rule that sets its permissions")
    if user in group.gr_mem:
        return (f"user {user} was added to group '{group.gr_name}' after floorwatch started: restart the "
                "floorwatch service (or log in again)")
    return (f"{path} belongs to group '{group.gr_name}' and user {user} is not in it: "
            f"sudo usermod -aG {group.gr_name} {user}, then log in again or restart the floorwatch service")


def error_value(detail: str, status: MeasurementStatus = MeasurementStatus.ERROR, channel: str = "",
                unit: str = "") -> Measurement:
    """An instrument-reported failure: a measurement with status and reason, and no number (NaN)."""
    return Measurement(value=math.nan, unit=unit, status=status, channel=channel, detail=detail)
