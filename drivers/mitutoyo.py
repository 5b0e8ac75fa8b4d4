"""Mitutoyo gauges: the ASCII output of the instrument USB port / USB-ITN / DMX family (``mitutoyo``), and
the U-WAVE wireless receiver (``uwave``).

Sample configuration::

    [[instruments]]
    name = "caliper-1"
    driver = "mitutoyo"
    port = "/dev/serial/by-id/usb-Mitutoyo_USB-ITN_0001-if00"
    [instruments.options]
    unit = "mm"          # the frame carries no unit: say what the gauge is set to (mm or inch)

    [[instruments]]
    name = "uwave-1"
    driver = "uwave"
    port = "/dev/serial/by-id/usb-Mitutoyo_U-WAVE-R_0002-if00"
    # each transmitter is a channel "GGCC" (group, channel), e.g. characteristics[].channel = "0001"

Protocol notes (docs/drivers/mitutoyo.md has more):

* ``mitutoyo`` frame: ``0`` + channel digit + ``A`` + sign + value with a floating decimal point + CR,
  e.g. ``01A+0000.123``. The value is 8 characters in the manual and 9 in the wild: the value is matched
  as sign and number, never by columns. 9600 baud 8N1.
* error frames ``9`` + channel + code (1 no data, 2 format error, 9 system error) — UNCONFIRMED; they
  become error measurements without a number.
* ``uwave`` frame: ``DT1`` + group (2) + channel (2) + value + unit (``M`` mm, ``I`` inch), e.g.
  ``DT10001+00012.345M``; status ``ST1`` + code (00 battery low, 01 no response, 04 transmitter
  disconnected, 05 no data) — UNCONFIRMED. 57600 baud 8N1.
* the instruments send when the data button or foot switch is pressed. ``request`` (e.g. ``"1\\r"``,
  UNCONFIRMED) makes the driver ask every ``poll_interval`` seconds instead.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from floorwatch.drivers.base import (
    DriverSpec,
    Ignored,
    Parser,
    ParseResult,
    Rejected,
    SerialDefaults,
)
from floorwatch.drivers.framing import NUMBER, strip_frame, unescape
from floorwatch.drivers.serial_port import SerialDriver, SerialLink, error_value
from floorwatch.drivers.simulate.pty import PtySimulator
from floorwatch.drivers.simulate.scenario import SCENARIOS, Event, Scenario
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus


class MitutoyoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: Literal["mm", "inch"] = Field("mm", description="Unit the gauge is set to (the frame does not say)")
    multiplexer: bool = Field(
        False, description="Several gauges on a multiplexer: report each frame's channel digit as the channel"
    )
    request: str | None = Field(
        None, description="Request to send every poll_interval (escapes like \\r allowed); unset: gauge sends"
    )

    @field_validator("request")
    @classmethod
    def _escapes(cls, v: str | None) -> str | None:
        if v is not None:
            unescape(v)
        return v


class UwaveOptions(MitutoyoOptions):
    pass


_MITUTOYO = re.compile(rb"0(\d)A[ ]*([+-]?)[ ]*(" + NUMBER + rb")[ ]*")
_MITUTOYO_ERR = re.compile(rb"9(\d)(\d)")
_MITUTOYO_ERRORS = {b"1": "no data", b"2": "format error", b"9": "system error"}


def mitutoyo_parser(options: MitutoyoOptions | None) -> Parser:
    """Parser of the Mitutoyo ASCII frame.

    >>> p = mitutoyo_parser(None)
    >>> p(b"01A+0000.123\\r")
    Measurement(ts_ns=None, instrument='', value=0.123, unit='mm', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"01A-00012.345\\r").value
    -12.345
    >>> p(b"912\\r").detail
    'gauge error 2: format error (channel 1)'
    >>> p(b"01A+12x4\\r")
    Rejected(reason="not a Mitutoyo frame (expected e.g. '01A+0000.123'): b'01A+12x4\\\\r'")
    """
    opts = options or MitutoyoOptions()
    unit, mux = opts.unit, opts.multiplexer
    match_value, match_err = _MITUTOYO.fullmatch, _MITUTOYO_ERR.fullmatch

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_value(body)
        if m is not None:
            value = float(m[3])
            if m[2] == b"-":
                value = -value
            return Measurement(value, unit, MeasurementStatus.OK, m[1].decode() if mux else "")
        m = match_err(body)
        if m is not None:
            what = _MITUTOYO_ERRORS.get(m[2], "unknown error")
            return error_value(f"gauge error {m[2].decode()}: {what} (channel {m[1].decode()})",
                               channel=m[1].decode() if mux else "")
        if not body:
            return Ignored("empty line")
        return Rejected(f"not a Mitutoyo frame (expected e.g. '01A+0000.123'): {frame[:40]!r}")

    return parse


_UWAVE = re.compile(rb"DT(\d)(\d\d)(\d\d)[ ]*([+-]?)[ ]*(" + NUMBER + rb")[ ]*([MI]?)")
_UWAVE_ST = re.compile(rb"ST(\d)(?:(\d\d)(\d\d))?(\d\d)")
_UWAVE_STATUS = {b"00": "battery low", b"01": "no response from transmitter", b"04": "transmitter disconnected",
                 b"05": "no data"}


def uwave_parser(options: UwaveOptions | None) -> Parser:
    """Parser of U-WAVE receiver frames; the channel is group and channel, e.g. ``"0001"``.

    >>> p = uwave_parser(None)
    >>> p(b"DT10001+00012.345M\\r")
    Measurement(ts_ns=None, instrument='', value=12.345, unit='mm', status=<MeasurementStatus.OK: 'ok'>, channel='0001', detail='')
    >>> d = p(b"DT10102-0.5000I\\r"); d.value, d.unit, d.channel
    (-0.5, 'inch', '0102')
    >>> p(b"ST104\\r").detail
    'U-WAVE status 04: transmitter disconnected'
    >>> p(b"ST100\\r")
    Ignored(what='U-WAVE status 00: battery low (replace the transmitter battery)')
    """
    opts = options or UwaveOptions()
    default_unit = opts.unit
    match_value, match_status = _UWAVE.fullmatch, _UWAVE_ST.fullmatch

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_value(body)
        if m is not None:
            value = float(m[5])
            if m[4] == b"-":
                value = -value
            unit = "mm" if m[6] == b"M" else "inch" if m[6] == b"I" else default_unit
            return Measurement(value, unit, MeasurementStatus.OK, (m[2] + m[3]).decode())
        m = match_status(body)
        if m is not None:
            code = m[4]
            channel = (m[2] + m[3]).decode() if m[2] else ""
            what = _UWAVE_STATUS.get(code, "unknown status")
            if code == b"00":
                return Ignored(f"U-WAVE status 00: battery low (replace the transmitter battery){_on(channel)}")
            return error_value(f"U-WAVE status {code.decode()}: {what}{_on(channel)}", channel=channel)
        if not body:
            return Ignored("empty line")
        return Rejected(f"not a U-WAVE frame (expected e.g. 'DT10001+00012.345M'): {frame[:40]!r}")

    return parse


def _on(channel: str) -> str:
    return f" on channel {channel}" if channel else ""


class _GaugeDriver(SerialDriver):
    terminator = b"\r"

    @property
    def polled(self) -> bool:
        return bool(self.options and self.options.request)

    async def request(self, link: SerialLink) -> None:
        link.write(unescape(self.options.request))


class MitutoyoDriver(_GaugeDriver):
    serial_defaults = SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1)
    make_parser = staticmethod(mitutoyo_parser)


class UwaveDriver(_GaugeDriver):
    serial_defaults = SerialDefaults(baudrate=57600, bytesize=8, parity="N", stopbits=1)
    make_parser = staticmethod(uwave_parser)


class MitutoyoSimulator(PtySimulator):
    """A gauge whose data button is pressed every ``interval`` seconds; also answers ``1\\r``."""

    def __init__(self, scenario: Scenario, options: MitutoyoOptions | None = None, **kw) -> None:
        super().__init__(scenario, **kw)
        self.streaming = not (options and options.request)

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{event.value:+09.3f}"
        return b"01A" + text.encode() + b"\r", float(text)

    def answer(self, request: bytes) -> bytes | None:
        if request.strip() == b"1":
            return self.reply_reading()
        return None


class UwaveSimulator(MitutoyoSimulator):
    """A U-WAVE receiver with one transmitter (group 00, channel 01)."""

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{event.value:+010.3f}"
        return b"DT10001" + text.encode() + b"M\r", float(text)


def _scenario(name: str) -> Scenario:
    return Scenario(name, nominal=12.0, sigma=0.004, tolerance=0.05)


def mitutoyo_simulator(scenario: str, options: MitutoyoOptions | None, clock: Clock) -> MitutoyoSimulator:
    return MitutoyoSimulator(_scenario(scenario), options, clock=clock)


def uwave_simulator(scenario: str, options: UwaveOptions | None, clock: Clock) -> UwaveSimulator:
    return UwaveSimulator(_scenario(scenario), options, clock=clock)


DRIVERS = {
    "mitutoyo": DriverSpec(
        name="mitutoyo",
        summary="Mitutoyo gauges, ASCII output (instrument USB port, USB-ITN, DMX/IT-016U)",
        transport="serial",
        driver=MitutoyoDriver,
        options=MitutoyoOptions,
        parser=mitutoyo_parser,
        probe_request=b"1\r",
        simulator=mitutoyo_simulator,
        scenarios=SCENARIOS,
    ),
    "uwave": DriverSpec(
        name="uwave",
        summary="Mitutoyo U-WAVE wireless receiver (U-WAVE-R)",
        transport="serial",
        driver=UwaveDriver,
        options=UwaveOptions,
        parser=uwave_parser,
        probe_request=b"1\r",
        simulator=uwave_simulator,
        scenarios=SCENARIOS,
    ),
}
