"""Ohaus balances and scales (Navigator, Scout, Adventurer, Defender … print format).

Sample configuration::

    [[instruments]]
    name = "scale-4"
    driver = "ohaus"
    port = "/dev/serial/by-id/usb-Ohaus_0005-if00-port0"
    poll_interval = 0.5
    [instruments.options]
    mode = "poll"        # "poll": send `command` every poll_interval; "continuous": CP (continuous print)
    command = "IP"       # "IP": immediate, "SP": when stable, "P": print
    weighing = "part"
    threshold = 10.0
    zero_band = 1.0

Protocol notes (docs/drivers/ohaus.md has more):

* line: weight right-justified, space, unit (up to 5 characters), space, ``?`` when unstable, CR LF;
  some models add ``G``/``N``/``NET`` (gross/net). Field widths differ between the manual and real
  output: the line is tokenised.
* commands (CR LF): ``P`` print, ``SP`` stable print, ``IP`` immediate print, ``CP`` continuous print,
  ``T`` tare. 9600 8N1 on current models.
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
from floorwatch.drivers.simulate.pty import PtySimulator
from floorwatch.drivers.simulate.scenario import SCENARIOS, Event, Scenario
from floorwatch.drivers.weighing import ScaleDriver, ScaleOptions
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus


class OhausOptions(ScaleOptions):
    mode: Literal["poll", "continuous"] = Field(
        "poll", description="poll: send `command` every poll_interval; continuous: CP is sent on connect"
    )
    command: Literal["IP", "SP", "P"] = Field("IP", description="IP immediate, SP when stable, P print")


_VALUE = re.compile(
    rb"[ ]*([+-]?)[ ]*(" + NUMBER + rb")[ ]+([A-Za-z%][A-Za-z0-9%/:]{0,4})[ ]*(\?)?[ ]*(G|N|NET|GROSS|T)?[ ]*(\?)?[ ]*"
)
_ECHO = re.compile(rb"(?:OK!?|ES|P|SP|IP|CP|T)[ ]*")
_DETAIL = {b"": "", b"G": "gross", b"GROSS": "gross", b"N": "net", b"NET": "net", b"T": "tare"}


def parser(options: OhausOptions | None) -> Parser:
    """Parser of Ohaus print lines.

    >>> p = parser(None)
    >>> p(b"    123.45 g    \\r\\n")
    Measurement(ts_ns=None, instrument='', value=123.45, unit='g', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"   -12.5 kg ?\\r\\n").status
    <MeasurementStatus.UNSTABLE: 'unstable'>
    >>> p(b"  100.00 g   N\\r\\n").detail
    'net'
    """
    match_value = _VALUE.fullmatch

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_value(body)
        if m is not None:
            if m[5] == b"T":
                return Ignored(f"tare line {body.decode('ascii', 'replace').strip()}")
            value = float(m[2])
            if m[1] == b"-":
                value = -value
            unstable = m[4] is not None or m[6] is not None
            status = MeasurementStatus.UNSTABLE if unstable else MeasurementStatus.OK
            return Measurement(value, m[3].decode(), status, "", _DETAIL[m[5] or b""])
        if not body:
            return Ignored("empty line")
        if _ECHO.fullmatch(body):
            return Ignored(f"reply {body.decode('ascii', 'replace').strip()}")
        return Rejected(f"not an Ohaus print line (expected e.g. '    123.45 g    '): {frame[:40]!r}")

    return parse


class OhausDriver(ScaleDriver):
    terminator = b"\r\n"
    serial_defaults = SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1)
    make_parser = staticmethod(parser)
    continuous_command = b"CP\r\n"

    def request_bytes(self) -> bytes:
        return (self.options or OhausOptions()).command.encode() + b"\r\n"


class OhausSimulator(PtySimulator):
    """An Ohaus balance answering IP/SP/P, CP (continuous) and T."""

    request_terminator = b"\n"

    def __init__(self, scenario: Scenario, options: OhausOptions | None = None, **kw) -> None:
        super().__init__(scenario, **kw)
        self.streaming = (options or OhausOptions()).mode == "continuous"

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{event.value:.2f}"
        return f"{text:>10} g     {'' if event.stable else '?'}\r\n".encode(), float(text)

    def answer(self, request: bytes) -> bytes | None:
        cmd = request.strip().upper()
        if cmd in (b"IP", b"SP", b"P"):
            return self.reply_reading(stable_only=cmd == b"SP")
        if cmd == b"CP":
            self.streaming = True
            return None
        if cmd == b"0P":
            self.streaming = False
            return None
        if cmd == b"T":
            return b"OK!\r\n"
        return b"ES\r\n"


def simulator(scenario: str, options: OhausOptions | None, clock: Clock) -> OhausSimulator:
    return OhausSimulator(Scenario(scenario, nominal=500.0, sigma=1.0, tolerance=5.0, kind="scale"), options,
                          clock=clock)


DRIVER = DriverSpec(
    name="ohaus",
    summary="Ohaus balances and scales (print format, IP/SP/CP)",
    transport="serial",
    driver=OhausDriver,
    options=OhausOptions,
    parser=parser,
    probe_request=b"IP\r\n",
    simulator=simulator,
    scenarios=SCENARIOS,
)
