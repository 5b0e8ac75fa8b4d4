"""Mettler Toledo balances and scales speaking MT-SICS.

Sample configuration::

    [[instruments]]
    name = "scale-1"
    driver = "mtsics"
    port = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"
    poll_interval = 0.2              # seconds between weight requests (poll mode)
    timeout = 1.0                    # seconds to wait for each reply
    [instruments.options]
    mode = "poll"                    # "poll": send `command` every poll_interval; "continuous": SIR stream
    command = "SI"                   # "SI": immediate (stable or dynamic), "S": wait for a stable weight
    weighing = "part"                # "all" | "part" (one weight per part) | "stable" (check-weigher)
    threshold = 5.0                  # a part counts from 5 g up…
    zero_band = 0.5                  # …after the pan was back within ±0.5 g

Protocol notes (docs/drivers/mtsics.md has more):

* ASCII; commands and replies end with CR LF; commands in upper case. Common setting 9600 8N1.
* ``S`` → ``S S <weight> <unit>`` (stable). ``SI`` → ``S S …`` or ``S D …`` (dynamic = unstable).
  ``SIR`` → ``S S``/``S D`` lines until ``@`` or another command.
* failures: ``S I`` command not executable (busy, or not stable within the balance's timeout),
  ``S +`` overload, ``S -`` underload; ``ES`` syntax error, ``ET`` transmission error, ``EL`` logical
  error. ``S +``/``S -`` become overload/underload measurements (no number); ``S I``, ``ES``, ``ET``,
  ``EL`` are notices in the instrument's health.
* the weight field's width varies by model: the line is tokenised, never cut by columns.
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
from floorwatch.drivers.serial_port import SerialLink, error_value
from floorwatch.drivers.simulate.pty import PtySimulator
from floorwatch.drivers.simulate.scenario import SCENARIOS, Event, Scenario
from floorwatch.drivers.weighing import ScaleDriver, ScaleOptions
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus


class MtsicsOptions(ScaleOptions):
    mode: Literal["poll", "continuous"] = Field(
        "poll", description="poll: send `command` every poll_interval; continuous: start the SIR stream"
    )
    command: Literal["S", "SI"] = Field("SI", description="SI: immediate weight; S: wait until stable")


UNIT = rb"[A-Za-z%][A-Za-z0-9%/]{0,5}"
_WEIGHT = re.compile(rb"[ ]*S(?:I|IR)?[ ]+([SD])[ ]+([+-]?)[ ]*(" + NUMBER + rb")[ ]+(" + UNIT + rb")[ ]*")
_STATUS = re.compile(rb"[ ]*S(?:I|IR)?[ ]+([I+\-])[ ]*")
_ERROR = re.compile(rb"[ ]*(ES|ET|EL)[ ]*")
_OTHER = re.compile(rb"[ ]*(Z|T|TA|TAC|@|I\d{1,2}|ZI)[ ]+([A-Z+\-])(?:[ ]+(.*))?")
_NOTICES = {
    b"ES": "ES: syntax error — the balance did not understand the command (check `command`)",
    b"ET": "ET: transmission error — check port settings (baud rate, parity) and cable",
    b"EL": "EL: logical error — the balance cannot execute the command now",
}


def parser(options: MtsicsOptions | None) -> Parser:
    """Parser of MT-SICS replies.

    >>> p = parser(None)
    >>> p(b"S S     100.00 g\\r\\n")
    Measurement(ts_ns=None, instrument='', value=100.0, unit='g', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"S D    -  0.12 kg\\r\\n").status
    <MeasurementStatus.UNSTABLE: 'unstable'>
    >>> p(b"S +\\r\\n").status
    <MeasurementStatus.OVERLOAD: 'overload'>
    >>> p(b"S I\\r\\n")
    Ignored(what='S I: weighing command not executed (balance busy, or not stable in time)')
    >>> p(b"ET\\r\\n").what
    'ET: transmission error — check port settings (baud rate, parity) and cable'
    """
    match_weight, match_status = _WEIGHT.fullmatch, _STATUS.fullmatch
    OK, UNSTABLE = MeasurementStatus.OK, MeasurementStatus.UNSTABLE
    OVERLOAD, UNDERLOAD = MeasurementStatus.OVERLOAD, MeasurementStatus.UNDERLOAD

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_weight(body)
        if m is not None:
            value = float(m[3])
            if m[2] == b"-":
                value = -value
            return Measurement(value, m[4].decode(), OK if m[1] == b"S" else UNSTABLE)
        m = match_status(body)
        if m is not None:
            if m[1] == b"+":
                return error_value("S +: overload (weight above the balance's range)", OVERLOAD)
            if m[1] == b"-":
                return error_value("S -: underload (weight below zero range; is the pan on?)", UNDERLOAD)
            return Ignored("S I: weighing command not executed (balance busy, or not stable in time)")
        m = _ERROR.fullmatch(body)
        if m is not None:
            return Ignored(_NOTICES[m[1]])
        m = _OTHER.fullmatch(body)
        if m is not None:
            if m[1] == b"I4" and m[2] == b"A" and m[3]:  # the reply to '@' (sent on connect) and to I4
                serial_number = m[3].strip(b' "').decode("ascii", "replace")
                return Ignored(f"balance serial number {serial_number} (I4)")
            return Ignored(f"reply {body.decode('ascii', 'replace').strip()}")
        if not body:
            return Ignored("empty line")
        return Rejected(f"not an MT-SICS reply (expected e.g. 'S S     100.00 g'): {frame[:40]!r}")

    return parse


class MtsicsDriver(ScaleDriver):
    terminator = b"\r\n"
    serial_defaults = SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1)
    make_parser = staticmethod(parser)
    continuous_command = b"SIR\r\n"

    def request_bytes(self) -> bytes:
        return (self.options or MtsicsOptions()).command.encode() + b"\r\n"

    def is_reply(self, result: ParseResult) -> bool:
        # the I4 reply to the '@' sent on connect is not the answer to a weight request
        return not isinstance(result, Rejected) and not (
            isinstance(result, Ignored) and result.what.startswith(("reply", "balance serial number")))

    async def on_connect(self, link: SerialLink) -> None:
        if self.polled:
            link.write(b"@\r\n")  # stop a SIR stream left running by a previous session
        else:
            link.write(self.continuous_command)


class MtsicsSimulator(PtySimulator):
    """An MT-SICS balance: S, SI, SIR, @, Z, T, I4; anything else is answered with ES."""

    request_terminator = b"\n"

    def __init__(self, scenario: Scenario, options: MtsicsOptions | None = None, unit: str = "g", **kw) -> None:
        super().__init__(scenario, **kw)
        self.streaming = False
        self.unit = unit

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{event.value:.2f}"
        return f"S {'S' if event.stable else 'D'} {text:>10} {self.unit}\r\n".encode(), float(text)

    def answer(self, request: bytes) -> bytes | None:
        cmd = request.strip().upper()
        if cmd in (b"SI", b"S"):
            return self.reply_reading(stable_only=cmd == b"S")
        if cmd == b"SIR":
            self.streaming = True
            return None
        self.streaming = False
        if cmd == b"@":
            return b'I4 A "0123456789"\r\n'
        if cmd == b"Z":
            return b"Z A\r\n"
        if cmd == b"T":
            return f"T S {0:>10.2f} {self.unit}\r\n".encode()
        if cmd == b"I4":
            return b'I4 A "0123456789"\r\n'
        return b"ES\r\n"


def simulator(scenario: str, options: MtsicsOptions | None, clock: Clock) -> MtsicsSimulator:
    return MtsicsSimulator(Scenario(scenario, nominal=250.0, sigma=0.8, tolerance=4.0, kind="scale"), options,
                           clock=clock)


DRIVER = DriverSpec(
    name="mtsics",
    summary="Mettler Toledo balances and scales (MT-SICS: S, SI, SIR)",
    transport="serial",
    driver=MtsicsDriver,
    options=MtsicsOptions,
    parser=parser,
    probe_request=b"SI\r\n",
    simulator=simulator,
    scenarios=SCENARIOS,
)
