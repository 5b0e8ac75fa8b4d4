"""A configurable driver for serial devices Floorwatch does not know yet: a regular expression with named
groups picks the value (and optionally unit, status and channel) out of each line.

Sample configuration (a thickness gauge printing ``T=+0.512mm OK``)::

    [[instruments]]
    name = "thickness-1"
    driver = "regex"
    port = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"
    poll_interval = 1.0
    [instruments.serial]
    baudrate = 19200
    [instruments.options]
    pattern = 'T=(?P<value>[+-]?\\d+\\.\\d+)(?P<unit>mm|in) (?P<status>OK|BUSY|OVER)'
    terminator = "\\r\\n"            # escapes: \\r \\n \\t \\xHH
    request = "READ\\r\\n"           # optional: sent every poll_interval; leave out for continuous devices
    unit = "mm"                    # used when the pattern has no unit group
    status_map = { OK = "ok", BUSY = "unstable", OVER = "overload" }

Rules:

* the pattern must match the **whole** line (without its terminator); anything else is rejected, so a
  half-received line never becomes a number;
* group ``value`` is required and must be a plain decimal number (sign, digits, point; spaces between
  sign and digits allowed) — ``nan``, ``inf`` or ``1e5`` are rejected;
* groups ``unit``, ``status`` and ``channel`` are optional. A status text not in ``status_map`` is
  rejected with the text in the reason (add it to the map). Without a status group every value is ``ok``.
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
from floorwatch.drivers.framing import NUMBER, Framer, strip_frame, unescape
from floorwatch.drivers.serial_port import SerialDriver, SerialLink
from floorwatch.edge.model import Measurement, MeasurementStatus

_NUMBER = re.compile(rb"([+-]?)[ ]*(" + NUMBER + rb")")
_GROUPS = {"value", "unit", "status", "channel"}


class RegexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(description="Regular expression matching a whole line; named group 'value' required")
    terminator: str = Field("\\r\\n", description="Line terminator, with escapes (\\r \\n \\xHH)")
    request: str | None = Field(None, description="Sent every poll_interval (escapes allowed); unset: device sends")
    unit: str = Field("", description="Unit when the pattern has no 'unit' group")
    status_map: dict[str, Literal["ok", "unstable", "overload", "underload", "error"]] = Field(
        default_factory=dict, description="Text of the 'status' group -> status"
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            compiled = re.compile(v.encode())
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        except UnicodeEncodeError:
            raise ValueError("pattern must be ASCII (instrument lines are bytes)") from None
        if "value" not in compiled.groupindex:
            raise ValueError("pattern needs a named group for the number, e.g. (?P<value>[+-]?\\d+\\.\\d+)")
        unknown = set(compiled.groupindex) - _GROUPS
        if unknown:
            raise ValueError(f"unknown named group(s) {sorted(unknown)}; use value, unit, status, channel")
        return v

    @field_validator("terminator", "request")
    @classmethod
    def _escapes(cls, v: str | None) -> str | None:
        if v is not None:
            if not unescape(v):
                raise ValueError("must not be empty")
        return v


def parser(options: RegexOptions | None) -> Parser:
    r"""Parser built from the options.

    >>> p = parser(RegexOptions(pattern=r"T=(?P<value>[+-]?\d+\.\d+)(?P<unit>mm|in) (?P<status>OK|OVER)",
    ...                         status_map={"OK": "ok", "OVER": "overload"}))
    >>> p(b"T=+0.512mm OK\r\n")
    Measurement(ts_ns=None, instrument='', value=0.512, unit='mm', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='')
    >>> p(b"T=+0.512mm OKAY\r\n").reason
    "line does not match the configured pattern: b'T=+0.512mm OKAY\\r\\n'"
    >>> parser(RegexOptions(pattern=r"(?P<value>\S+)"))(b"nan\r\n").reason
    "value 'nan' is not a decimal number"
    """
    if options is None:
        raise ValueError("the regex driver needs options: at least 'pattern' (see docs/drivers/regex.md)")
    rx = re.compile(options.pattern.encode())
    match = rx.fullmatch
    has_unit, has_status, has_channel = (g in rx.groupindex for g in ("unit", "status", "channel"))
    default_unit = options.unit
    status_map = {k.encode(): MeasurementStatus(v) for k, v in options.status_map.items()}
    number = _NUMBER.fullmatch
    term = unescape(options.terminator)
    tlen = len(term)

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame[:-tlen] if frame.endswith(term) else frame)
        m = match(body)
        if m is None:
            if not body:
                return Ignored("empty line")
            return Rejected(f"line does not match the configured pattern: {frame[:60]!r}")
        raw = (m["value"] or b"").strip()
        n = number(raw)
        if n is None:
            return Rejected(f"value {raw.decode('latin-1')!r} is not a decimal number")
        value = float(n[2])
        if n[1] == b"-":
            value = -value
        status = MeasurementStatus.OK
        if has_status and m["status"] is not None:  # an optional status group that did not take part: ok
            text = m["status"]
            status = status_map.get(text)  # type: ignore[assignment]
            if status is None:
                return Rejected(f"status {text.decode('latin-1')!r} is not in status_map; add it to the options")
        unit = m["unit"].decode("latin-1") if has_unit and m["unit"] else default_unit
        channel = m["channel"].decode("latin-1") if has_channel and m["channel"] else ""
        return Measurement(value, unit, status, channel)

    return parse


class RegexDriver(SerialDriver):
    serial_defaults = SerialDefaults()
    make_parser = staticmethod(parser)

    def framer(self) -> Framer:
        return Framer(unescape(self.options.terminator), max_len=self.max_frame)  # type: ignore[union-attr]

    @property
    def polled(self) -> bool:
        return bool(self.options and self.options.request)

    async def request(self, link: SerialLink) -> None:
        link.write(unescape(self.options.request))  # type: ignore[union-attr, arg-type]


DRIVER = DriverSpec(
    name="regex",
    summary="Configurable driver: a regular expression with named groups value/unit/status/channel",
    transport="serial",
    driver=RegexDriver,
    options=RegexOptions,
    serial_defaults=RegexDriver.serial_defaults,
    parser=parser,
    terminator=b"\r\n",
    probe_request=None,
    simulator=None,
    scenarios=(),
)
