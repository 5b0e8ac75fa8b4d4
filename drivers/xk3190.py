"""Yaohua XK3190 weighing indicators (A9, A12, DS … family), binary continuous output ("tf=0").

Sample configuration::

    [[instruments]]
    name = "platform-2"
    driver = "xk3190"
    port = "/dev/serial/by-id/usb-1a86_USB2.0-Serial-if00-port0"
    [instruments.options]
    unit = "kg"          # the frame carries no unit
    weighing = "part"
    threshold = 2.0
    zero_band = 0.1
    settle_readings = 3  # no stability flag in the frame: three readings within 0.02 kg count as stable
    settle_band = 0.02

Protocol notes (docs/drivers/xk3190.md has more):

* 12-byte frame: ``0x02`` (STX), sign ``+``/``-``, 6 ASCII digits (most significant first), number of
  decimals (``0``–``4``), XOR high nibble, XOR low nibble, ``0x03`` (ETX). The XOR runs over the sign,
  the digits and the decimals byte (bytes 2–9).
* the nibble encoding varies by firmware: ASCII hex (``'A'`` for 10) or ``0x30 + nibble`` (``':'`` for
  10). Both are accepted — UNCONFIRMED which firmware sends which.
* the frame has no stability flag: every frame is reported ``ok``; with ``weighing = "part"`` set
  ``settle_readings``/``settle_band`` so that a weight counts once it stops moving, or prefer the
  indicator's text output (driver ``indicator``) when it offers one.
* bytes before a start byte are counted as one rejected frame (resynchronisation), never glued to a
  good frame; CR, LF and NUL there are dropped silently (some firmware ends each frame with CR LF).
  9600 8N1 is common (UNCONFIRMED as the factory setting).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from floorwatch.drivers.base import DriverSpec, Parser, ParseResult, Rejected, SerialDefaults
from floorwatch.drivers.framing import strip_frame
from floorwatch.drivers.simulate.pty import PtySimulator
from floorwatch.drivers.simulate.scenario import SCENARIOS, Event, Scenario
from floorwatch.drivers.weighing import ScaleDriver, WeighingOptions
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus


class Xk3190Options(WeighingOptions):
    unit: Literal["kg", "g", "t", "lb"] = Field("kg", description="Unit the indicator is set to")


_FRAME = re.compile(rb"\x02([+-])(\d{6})([0-4])([0-9A-Fa-f:;<=>?])([0-9A-Fa-f:;<=>?])\x03")


def _nibble(b: int) -> int:
    # ASCII hex ('A'-'F', 'a'-'f') or 0x30 + nibble ('0'-'?'); both give 0-9 for digits
    if b <= 0x3F:
        return b - 0x30
    return (b | 0x20) - 0x57


def checksum(body: bytes) -> int:
    """XOR of sign, digits and decimals byte (bytes 2–9 of the frame).

    >>> hex(checksum(b"+0012342"))
    '0x1d'
    """
    x = 0
    for b in body:
        x ^= b
    return x


def encode(value: float, decimals: int, *, ascii_hex: bool = True) -> bytes:
    """One frame for ``value`` (used by the simulator and the tests).

    >>> encode(12.34, 2)
    b'\\x02+00123421D\\x03'
    >>> encode(12.34, 2, ascii_hex=False)
    b'\\x02+00123421=\\x03'
    """
    digits = f"{round(abs(value) * 10**decimals):06d}"
    if len(digits) > 6:
        raise ValueError(f"{value} does not fit in six digits with {decimals} decimals")
    body = (b"-" if value < 0 else b"+") + digits.encode() + str(decimals).encode()
    x = checksum(body)
    hi, lo = x >> 4, x & 0xF
    if ascii_hex:
        nib = b"%X%X" % (hi, lo)
    else:
        nib = bytes((0x30 + hi, 0x30 + lo))
    return b"\x02" + body + nib + b"\x03"


def parser(options: Xk3190Options | None) -> Parser:
    """Parser of XK3190 continuous frames.

    >>> p = parser(None)
    >>> p(b"\\x02+00123421D\\x03")
    Measurement(ts_ns=None, instrument='', value=12.34, unit='kg', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"\\x02+00123421=\\x03").value
    12.34
    >>> p(b"\\x02+00123421E\\x03").reason
    'checksum mismatch: frame says 0x1e, bytes give 0x1d (noise on the line, or a different frame format)'
    """
    unit = (options or Xk3190Options()).unit
    match = _FRAME.fullmatch
    scale = (1.0, 10.0, 100.0, 1000.0, 10000.0)

    def parse(frame: bytes) -> ParseResult:
        m = match(strip_frame(frame))
        if m is None:
            return Rejected(f"not an XK3190 frame (expected 12 bytes STX sign 6 digits decimals XOR ETX): {frame[:40]!r}")
        body = m[1] + m[2] + m[3]
        expect = (_nibble(m[4][0]) << 4) | _nibble(m[5][0])
        got = checksum(body)
        if expect != got:
            return Rejected(
                f"checksum mismatch: frame says {expect:#04x}, bytes give {got:#04x} "
                "(noise on the line, or a different frame format)"
            )
        value = int(m[2]) / scale[m[3][0] - 0x30]
        return Measurement(-value if m[1] == b"-" else value, unit, MeasurementStatus.OK)

    return parse


class Xk3190Driver(ScaleDriver):
    terminator = b"\x03"
    start = b"\x02"
    max_frame = 64
    serial_defaults = SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1)
    make_parser = staticmethod(parser)


class Xk3190Simulator(PtySimulator):
    """An XK3190 streaming binary frames (3 decimals, in kg)."""

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        value = round(event.value, 3)
        return encode(value, 3), value


def simulator(scenario: str, options: Xk3190Options | None, clock: Clock) -> Xk3190Simulator:
    return Xk3190Simulator(Scenario(scenario, nominal=25.0, sigma=0.02, tolerance=0.1, kind="scale"), clock=clock)


DRIVER = DriverSpec(
    name="xk3190",
    summary="Yaohua XK3190 weighing indicators, binary continuous frame with XOR check",
    transport="serial",
    driver=Xk3190Driver,
    options=Xk3190Options,
    parser=parser,
    probe_request=None,
    simulator=simulator,
    scenarios=SCENARIOS,
)
