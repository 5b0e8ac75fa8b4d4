"""Sylvac gauges (calipers, indicators, micrometers) through the OPTO-RS / RS-232 cable.

Sample configuration::

    [[instruments]]
    name = "indicator-2"
    driver = "sylvac"
    port = "/dev/serial/by-id/usb-Sylvac_Opto-RS_0003-if00-port0"
    poll_interval = 0.5
    [instruments.serial]
    baudrate = 4800      # factory setting 4800 7E2; leave out to use it
    [instruments.options]
    mode = "request"     # "request": ask for each value; "continuous": the gauge sends on every change
    unit = "mm"

Protocol notes (docs/drivers/sylvac.md has more):

* 4800 baud, 7 data bits, even parity, 2 stop bits.
* data frame ``[sign][digits].[digits] CR``; the sign is ``+``, ``-`` or a space; in tolerance mode one of
  ``<`` (below), ``=`` (within), ``>`` (above) follows the value: kept in the measurement's detail.
* ``ERR<n>``: 0 sensor, 1 bad command, 2 parity, 3 range exceeded — error measurements without a number.
* power-on identification ``SY<instr>.<opt>`` and battery replies ``B1``/``B0`` carry no value.
* commands end with CR: ``?`` (or ``PRI``) send the value, ``OUT1``/``OUT0`` continuous output on/off,
  ``MM``/``IN`` unit. Simplex cables have no data line towards the gauge: ``request_by = "dtr"`` asks by
  dropping DTR for 120 ms.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import serial
from pydantic import BaseModel, ConfigDict, Field

from floorwatch.drivers.base import (
    DriverSpec,
    Ignored,
    Parser,
    ParseResult,
    Rejected,
    SerialDefaults,
)
from floorwatch.drivers.framing import strip_frame
from floorwatch.drivers.serial_port import SerialDriver, SerialLink, error_value
from floorwatch.drivers.simulate.pty import PtySimulator
from floorwatch.drivers.simulate.scenario import SCENARIOS, Event, Scenario
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus


class SylvacOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["request", "continuous"] = Field(
        "request", description="request: ask every poll_interval; continuous: the gauge sends (OUT1 is sent)"
    )
    command: Literal["?", "PRI"] = Field("?", description="Request command (both work on current gauges)")
    request_by: Literal["command", "dtr"] = Field(
        "command", description="dtr: for simplex cables, request by dropping DTR for 120 ms"
    )
    unit: Literal["mm", "inch"] = Field("mm", description="Unit the gauge is set to (the frame does not say)")


# the value always has its decimal point: a lone digit from a noisy line (no header to check) is not a value
_VALUE = re.compile(rb"([+\- ]?)[ ]*(\d+\.\d*|\.\d+)[ ]*([<=>]?)[ ]*")
_ERR = re.compile(rb"[ ]*ERR[ ]*(\d)[ ]*")
_ID = re.compile(rb"SY[ ]*[0-9A-Za-z]+(?:[.\-/][0-9A-Za-z]+)*[ ]*")
_BAT = re.compile(rb"B([01])")
_ECHO = re.compile(rb"\?|PRI|OUT[01]|MM|IN|ID\?|SET\?|BAT\?")
_ERRORS = {b"0": "sensor error", b"1": "bad command", b"3": "range exceeded",
           b"2": "parity error — the gauge received a command with wrong parity: check the port's parity and data "
                 "bits (Sylvac: 4800 7E2)"}
_TOLERANCE = {b"<": "below tolerance", b"=": "within tolerance", b">": "above tolerance", b"": ""}


def parser(options: SylvacOptions | None) -> Parser:
    """Parser of Sylvac frames.

    >>> p = parser(None)
    >>> p(b"+012.345\\r")
    Measurement(ts_ns=None, instrument='', value=12.345, unit='mm', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b" 001.200>\\r").detail
    'above tolerance'
    >>> p(b"ERR3\\r").detail
    'ERR3: range exceeded'
    >>> p(b"SY290.01\\r")
    Ignored(what='identification SY290.01')
    """
    unit = (options or SylvacOptions()).unit
    match_value, match_err = _VALUE.fullmatch, _ERR.fullmatch

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_value(body)
        if m is not None:
            value = float(m[2])
            if m[1] == b"-":
                value = -value
            return Measurement(value, unit, MeasurementStatus.OK, "", _TOLERANCE[m[3]])
        m = match_err(body)
        if m is not None:
            return error_value(f"ERR{m[1].decode()}: {_ERRORS.get(m[1], 'unknown error')}")
        if _ID.fullmatch(body):
            return Ignored(f"identification {body.decode('ascii', 'replace')}")
        m = _BAT.fullmatch(body)
        if m is not None:
            return Ignored("battery ok" if m[1] == b"1" else "battery low: replace the gauge battery")
        if _ECHO.fullmatch(body) or not body:
            return Ignored(f"echo of command {body!r}" if body else "empty line")
        return Rejected(f"not a Sylvac frame (expected e.g. '+012.345' or 'ERR3'): {frame[:40]!r}")

    return parse


class SylvacDriver(SerialDriver):
    terminator = b"\r"
    serial_defaults = SerialDefaults(baudrate=4800, bytesize=7, parity="E", stopbits=2)
    make_parser = staticmethod(parser)

    @property
    def polled(self) -> bool:
        return (self.options or SylvacOptions()).mode == "request"

    async def on_connect(self, link: SerialLink) -> None:
        opts = self.options or SylvacOptions()
        if opts.mode == "continuous" and opts.request_by == "command":
            link.write(b"OUT1\r")

    async def request(self, link: SerialLink) -> None:
        opts = self.options or SylvacOptions()
        if opts.request_by == "dtr":
            port = link.serial
            if port is None:
                return
            try:
                port.dtr = False
                await asyncio.sleep(0.12)
                port.dtr = True
            except (OSError, serial.SerialException) as exc:
                # not a lost port: this adapter (or a pty) has no DTR line to drive
                self.health.last_error = (f"cannot drive DTR on {self.config.port} ({exc}); use an adapter with "
                                          "DTR, or request_by = \"command\" with a duplex cable")
        else:
            link.write(opts.command.encode() + b"\r")

    def is_reply(self, result: ParseResult) -> bool:
        return isinstance(result, Measurement) or (isinstance(result, Ignored) and not result.what.startswith("echo"))


class SylvacSimulator(PtySimulator):
    """A Sylvac gauge: answers ``?``/``PRI``, ``OUT1``/``OUT0``, ``ID?``, ``BAT?``; ``ERR1`` otherwise."""

    def __init__(self, scenario: Scenario, options: SylvacOptions | None = None, **kw) -> None:
        super().__init__(scenario, **kw)
        self.streaming = (options or SylvacOptions()).mode == "continuous"
        self.tolerance_mode = False

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{event.value:+08.3f}"
        return text.encode() + b"\r", float(text)

    def answer(self, request: bytes) -> bytes | None:
        cmd = request.strip()
        if cmd in (b"?", b"PRI"):
            return self.reply_reading()
        if cmd in (b"OUT1", b"OUT0"):
            self.streaming = cmd == b"OUT1"
            return None
        if cmd == b"ID?":
            return b"SY290.01\r"
        if cmd == b"BAT?":
            return b"B1\r"
        if cmd in (b"MM", b"IN"):
            return None
        return b"ERR1\r"


def simulator(scenario: str, options: SylvacOptions | None, clock: Clock) -> SylvacSimulator:
    return SylvacSimulator(Scenario(scenario, nominal=5.0, sigma=0.002, tolerance=0.02), options, clock=clock)


DRIVER = DriverSpec(
    name="sylvac",
    summary="Sylvac gauges over the OPTO-RS / RS-232 cable (request or continuous output)",
    transport="serial",
    driver=SylvacDriver,
    options=SylvacOptions,
    parser=parser,
    probe_request=b"?\r",
    simulator=simulator,
    scenarios=SCENARIOS,
)
