"""A&D balances and scales (FX-i, GX, GF, EK, HR, GP … families), standard A&D format.

Sample configuration::

    [[instruments]]
    name = "balance-2"
    driver = "aandd"
    port = "/dev/serial/by-id/usb-Prolific_PL2303-if00-port0"
    [instruments.serial]
    baudrate = 2400      # common setting 2400 7E1 (check the balance's function table: bPS, btPr)
    [instruments.options]
    mode = "continuous"  # "continuous": stream mode (the balance's prt setting); "poll": send `command`
    command = "Q"        # "Q": immediate; "S": when stable
    weighing = "part"
    threshold = 2.0
    zero_band = 0.2

Protocol notes (docs/drivers/aandd.md has more):

* 17-byte lines: ``HH,`` + 9-char data (sign, digits, point) + 3-char right-justified unit + CR LF,
  e.g. ``ST,+001234.5  g``. Headers ``ST`` stable, ``US`` unstable, ``QT`` stable count (unit ``PC``),
  ``OL`` out of range (overload with ``+``, underload with ``-``; the digits are a placeholder).
* commands: ``Q``/``SI`` immediate, ``S`` when stable, ``SIR`` continuous, ``C`` cancel, ``R``/``Z``
  re-zero, ``T`` tare. Errors ``EC,Exx`` (E00 communication, E01 undefined command, E02 not ready,
  E04 too many characters, E06 format, E07 setting value, E11 unstable) are notices in the health
  report; the acknowledge byte 0x06 is ignored.
* 2400 7E1 is the usual setting but not confirmed as the factory default for every model.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from floorwatch.drivers.base import (
    DriverSpec,
    Ignored,
    Parser,
    ParseResult,
    Rejected,
    SerialDefaults,
)
from floorwatch.drivers.framing import NUMBER, strip_frame
from floorwatch.drivers.serial_port import error_value
from floorwatch.drivers.simulate.pty import PtySimulator
from floorwatch.drivers.simulate.scenario import SCENARIOS, Event, Scenario
from floorwatch.drivers.weighing import ScaleDriver, ScaleOptions
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus

OVERLOAD, UNDERLOAD = MeasurementStatus.OVERLOAD, MeasurementStatus.UNDERLOAD


class AanddOptions(ScaleOptions):
    command: Literal["Q", "SI", "S"] = Field("Q", description="Poll command: Q/SI immediate, S when stable")


UNIT = rb"[A-Za-z%][A-Za-z0-9%/]{0,3}"
# the unit is part of the documented 17-byte line: a line without one was cut short
_VALUE = re.compile(rb"(ST|US|QT)[ ]*,[ ]*([+-]?)[ ]*(" + NUMBER + rb")[ ]*(" + UNIT + rb")[ ]*")
_OL = re.compile(rb"OL[ ]*,[ ]*([+-]?)[ ]*[0-9.E+\-]*[ ]*(" + UNIT + rb")?[ ]*")
_EC = re.compile(rb"EC[ ]*,[ ]*E(\d\d)[ ]*")
_ERRORS = {
    b"00": "communication error — check the port settings (baud rate, parity) and the cable", b"01": "undefined command", b"02": "not ready",
    b"04": "too many characters", b"06": "format error", b"07": "parameter setting error",
    b"11": "unstable (could not weigh stably)",
}
_UNITS = {"PC": "pcs", "pc": "pcs"}
_STATUS = {b"ST": MeasurementStatus.OK, b"QT": MeasurementStatus.OK, b"US": MeasurementStatus.UNSTABLE}


def parser(options: AanddOptions | None) -> Parser:
    """Parser of the A&D standard format.

    >>> p = parser(None)
    >>> p(b"ST,+001234.5  g\\r\\n")
    Measurement(ts_ns=None, instrument='', value=1234.5, unit='g', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"OL,+999999.9  g\\r\\n").status
    <MeasurementStatus.OVERLOAD: 'overload'>
    >>> p(b"QT,+0000125 PC\\r\\n").unit
    'pcs'
    >>> p(b"EC,E11\\r\\n")
    Ignored(what='EC,E11: unstable (could not weigh stably)')
    """
    match_value = _VALUE.fullmatch

    def parse(frame: bytes) -> ParseResult:
        raw = strip_frame(frame)
        body = raw.lstrip(b"\x06")  # an acknowledge may arrive glued to the next line
        m = match_value(body)
        if m is not None:
            value = float(m[3])
            if m[2] == b"-":
                value = -value
            unit = m[4].decode()
            return Measurement(value, _UNITS.get(unit, unit), _STATUS[m[1]])
        m = _OL.fullmatch(body)
        if m is not None:
            unit = m[2].decode() if m[2] else ""
            if m[1] == b"-":
                return error_value("OL: underload (below the zero range)", UNDERLOAD, unit=unit)
            return error_value("OL: overload (above the weighing range)", OVERLOAD, unit=unit)
        m = _EC.fullmatch(body)
        if m is not None:
            return Ignored(f"EC,E{m[1].decode()}: {_ERRORS.get(m[1], 'unknown error code')}")
        if not body:
            return Ignored("acknowledge" if raw else "empty line")
        return Rejected(f"not an A&D line (expected e.g. 'ST,+001234.5  g'): {frame[:40]!r}")

    return parse


class AanddDriver(ScaleDriver):
    terminator = b"\r\n"
    serial_defaults = SerialDefaults(baudrate=2400, bytesize=7, parity="E", stopbits=1)
    make_parser = staticmethod(parser)

    def request_bytes(self) -> bytes:
        return (self.options or AanddOptions()).command.encode() + b"\r\n"

    def is_reply(self, result: ParseResult) -> bool:
        return not isinstance(result, Rejected) and not (isinstance(result, Ignored) and result.what == "acknowledge")


class AanddSimulator(PtySimulator):
    """An A&D balance in stream mode (or answering Q/SI/S, SIR, C; R/Z/T acknowledged; EC,E01 otherwise)."""

    request_terminator = b"\n"

    def __init__(self, scenario: Scenario, options: AanddOptions | None = None, **kw) -> None:
        super().__init__(scenario, **kw)
        self.streaming = (options or AanddOptions()).mode == "continuous"

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{event.value:+09.1f}"
        head = "ST" if event.stable else "US"
        return f"{head},{text}  g\r\n".encode(), float(text)

    def answer(self, request: bytes) -> bytes | None:
        cmd = request.strip().upper()
        if cmd in (b"Q", b"SI", b"S"):
            return self.reply_reading(stable_only=cmd == b"S")
        if cmd == b"SIR":
            self.streaming = True
            return None
        if cmd == b"C":
            self.streaming = False
            return None
        if cmd in (b"R", b"Z", b"T"):
            return b"\x06\r\n"
        return b"EC,E01\r\n"


def simulator(scenario: str, options: AanddOptions | None, clock: Clock) -> AanddSimulator:
    return AanddSimulator(Scenario(scenario, nominal=1234.5, sigma=1.5, tolerance=6.0, kind="scale"), options,
                          clock=clock)


DRIVER = DriverSpec(
    name="aandd",
    summary="A&D balances and scales (standard format ST/US/QT/OL)",
    transport="serial",
    driver=AanddDriver,
    options=AanddOptions,
    parser=parser,
    probe_request=b"Q\r\n",
    simulator=simulator,
    scenarios=SCENARIOS,
)
