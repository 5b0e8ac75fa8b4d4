"""Sartorius balances and scales, SBI protocol (16- and 22-character print lines).

Sample configuration::

    [[instruments]]
    name = "balance-3"
    driver = "sartorius"
    port = "/dev/serial/by-id/usb-Sartorius_0004-if00-port0"
    poll_interval = 0.5
    [instruments.serial]
    baudrate = 9600      # older models: 1200 7O1 with RTS/CTS (the default); newer ones are often 9600 8N1
    bytesize = 8
    parity = "N"
    rtscts = false
    [instruments.options]
    mode = "poll"        # "poll": send ESC P every poll_interval; "continuous": auto print (balance menu)
    weighing = "stable"  # check-weigher: every stable reading

Protocol notes (docs/drivers/sartorius.md has more):

* commands ``ESC <char>``: ``ESC P`` print, ``ESC T`` tare/zero, ``ESC U`` tare, ``ESC V`` zero.
* 16-character line: sign (``+``, ``-`` or space), space, 8-character value (leading zeros as spaces),
  space, 3-character unit, CR LF — the unit is **blank while the weight is unstable**. The 22-character
  variant prepends a 6-character ID (``N`` net, ``G#`` gross, ``T`` tare, ``Stat`` …).
* special texts ``High`` (overload), ``Low`` (underload), ``Err ###`` are matched on the keyword.
* tare lines (ID ``T``/``PT``) and ``Stat`` lines carry no part weight and are ignored.
* an ID other than the usual ones (``N``, ``G#``, ``T``, ``PT`` …) must fill the 6-character ID column, and a
  line without a unit must end in the blank unit field: a word or a digit of line noise is not a weight.
* older models: 1200 baud, 7 bits, odd parity, hardware handshake.
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


class SartoriusOptions(ScaleOptions):
    mode: Literal["poll", "continuous"] = Field("poll", description="poll: send ESC P every poll_interval; continuous: the balance prints by itself")


ID = rb"(?:([A-Za-z][A-Za-z0-9#.]{0,5})[ ]+)?"
# The value line: an optional ID and its padding, sign, value, then the unit — or, while unstable, the blank
# unit field (at least three spaces; a line that simply ends after the digits is not a Sartorius line).
_VALUE = re.compile(rb"[ ]*(?:([A-Za-z][A-Za-z0-9#.]{0,5})([ ]+))?([+-]?)[ ]*(" + NUMBER
                    + rb")(?:[ ]*([A-Za-z%][A-Za-z0-9%/]{0,4})[ ]*|[ ]{3,})")
_SPECIAL = re.compile(rb"[ ]*" + ID + rb"[+\- ]*(High|Low|Err[ ]*(\d{1,4}))[ ]*")
# IDs seen in the field at any padding; any other ID must fill the documented 6-character ID column, so a
# word of line noise in front of a value is not taken for an ID.
_KNOWN_IDS = {b"N", b"NET", b"G", b"G#", b"T", b"T1", b"T2", b"PT", b"PT1", b"PT2"}
ID_WIDTH = 6
_STAT = re.compile(rb"[ ]*Stat\b.*")
_TARE_IDS = {b"T", b"PT", b"T1", b"T2", b"PT1", b"PT2"}


def parser(options: SartoriusOptions | None) -> Parser:
    """Parser of Sartorius SBI print lines.

    >>> p = parser(None)
    >>> p(b"+   123.56 g  \\r\\n")
    Measurement(ts_ns=None, instrument='', value=123.56, unit='g', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"-    12.30     \\r\\n").status
    <MeasurementStatus.UNSTABLE: 'unstable'>
    >>> p(b"N     +   123.56 g  \\r\\n").detail
    'N'
    >>> p(b"        High      \\r\\n").status
    <MeasurementStatus.OVERLOAD: 'overload'>
    >>> p(b"Err 101\\r\\n").detail
    'Err 101: the balance reports error 101 (see its manual)'
    """
    match_value, match_special = _VALUE.fullmatch, _SPECIAL.fullmatch

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_special(body)
        if m is not None:
            word = m[2]
            if word == b"High":
                return error_value("High: overload (above the weighing range)", MeasurementStatus.OVERLOAD)
            if word == b"Low":
                return error_value("Low: underload (below the zero range; is the pan on?)",
                                   MeasurementStatus.UNDERLOAD)
            code = m[3].decode()
            return error_value(f"Err {code}: the balance reports error {code} (see its manual)")
        if _STAT.fullmatch(body):
            return Ignored(f"status line {body.decode('ascii', 'replace').strip()}")
        m = match_value(body)
        if m is not None and (not m[1] or m[1] in _KNOWN_IDS or len(m[1]) + len(m[2]) == ID_WIDTH):
            ident = m[1] or b""
            if ident in _TARE_IDS:
                return Ignored(f"tare line {body.decode('ascii', 'replace').strip()}")
            value = float(m[4])
            if m[3] == b"-":
                value = -value
            if m[5]:
                return Measurement(value, m[5].decode(), MeasurementStatus.OK, "", ident.decode())
            return Measurement(value, "", MeasurementStatus.UNSTABLE, "", ident.decode())
        if not body:
            return Ignored("empty line")
        return Rejected(f"not a Sartorius print line (expected e.g. '+   123.56 g  '): {frame[:40]!r}")

    return parse


class SartoriusDriver(ScaleDriver):
    terminator = b"\r\n"
    serial_defaults = SerialDefaults(baudrate=1200, bytesize=7, parity="O", stopbits=1, rtscts=True)
    make_parser = staticmethod(parser)
    poll_command = b"\x1bP"


class SartoriusSimulator(PtySimulator):
    """A Sartorius balance printing 16-character lines on ESC P (or by itself in continuous mode)."""


    def __init__(self, scenario: Scenario, options: SartoriusOptions | None = None, **kw) -> None:
        super().__init__(scenario, **kw)
        self.streaming = (options or SartoriusOptions()).mode == "continuous"

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{abs(event.value):8.2f}"
        sign = "-" if event.value < 0 and float(text) != 0 else "+"
        unit = "g  " if event.stable else "   "
        return f"{sign} {text} {unit}\r\n".encode(), float(sign + text.strip())

    def _readable(self) -> None:
        # commands are ESC + one character, with no terminator: answer each as it arrives
        data = self.read_requests()
        for i in range(len(data)):
            if data[i : i + 1] == b"\x1b" and i + 1 < len(data):
                request = data[i : i + 2]
                self.requests.append(request)
                self.respond(request)

    def answer(self, request: bytes) -> bytes | None:
        if request == b"\x1bP":
            return self.reply_reading()
        return None


def simulator(scenario: str, options: SartoriusOptions | None, clock: Clock) -> SartoriusSimulator:
    return SartoriusSimulator(Scenario(scenario, nominal=123.5, sigma=0.3, tolerance=1.5, kind="scale"), options,
                              clock=clock)


DRIVER = DriverSpec(
    name="sartorius",
    summary="Sartorius balances and scales (SBI, 16/22-character lines)",
    transport="serial",
    driver=SartoriusDriver,
    options=SartoriusOptions,
    parser=parser,
    probe_request=b"\x1bP",
    simulator=simulator,
    scenarios=SCENARIOS,
)
