"""Generic weighing indicators with the ``ST,GS,+  4.876kg`` text output (many Chinese and Taiwanese
indicators: Yaohua, Keli, UNI-T, Excell, and scale heads sold under many names).

Sample configuration::

    [[instruments]]
    name = "platform-1"
    driver = "indicator"
    port = "/dev/serial/by-id/usb-1a86_USB2.0-Serial-if00-port0"
    [instruments.options]
    weighing = "part"    # one weight per pallet/part
    threshold = 1.0      # kg
    zero_band = 0.05

Protocol notes (docs/drivers/indicator.md has more):

* line: ``ST|US|OL`` (stable, unstable, overload) ``,`` ``GS|NT`` (gross, net) ``,`` sign, value
  (spaces allowed between sign and digits), unit, CR LF. E.g. ``ST,GS,+  4.876kg``.
* ``TR`` (tare) lines carry no part weight and are ignored; ``OL`` lines become overload measurements.
* these indicators send continuously; there is nothing to request. 9600 8N1 is the usual setting.
"""

from __future__ import annotations

import re

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
from floorwatch.drivers.weighing import ScaleDriver, WeighingOptions
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus

OVERLOAD, UNDERLOAD = MeasurementStatus.OVERLOAD, MeasurementStatus.UNDERLOAD


class IndicatorOptions(WeighingOptions):
    pass


_VALUE = re.compile(
    rb"[ ]*(ST|US)[ ]*,[ ]*(GS|NT|TR|GW|NW)[ ]*,[ ]*([+-]?)[ ]*(" + NUMBER + rb")[ ]*([A-Za-z]{0,3})[ ]*"
)
_OL = re.compile(rb"[ ]*OL[ ]*,[ ]*(GS|NT|TR|GW|NW)?[ ]*,?[ ]*([+-]?)[ ]*[0-9.]*[ ]*([A-Za-z]{0,3})[ ]*")
_KIND = {b"GS": "gross", b"GW": "gross", b"NT": "net", b"NW": "net"}


def parser(options: IndicatorOptions | None) -> Parser:
    """Parser of ``ST,GS,…`` indicator lines.

    >>> p = parser(None)
    >>> p(b"ST,GS,+  4.876kg\\r\\n")
    Measurement(ts_ns=None, instrument='', value=4.876, unit='kg', status=<MeasurementStatus.OK: 'ok'>, channel='', detail='gross')
    >>> p(b"US,NT,-  0.020kg\\r\\n").status
    <MeasurementStatus.UNSTABLE: 'unstable'>
    >>> p(b"OL,GS,+ 99.999kg\\r\\n").status
    <MeasurementStatus.OVERLOAD: 'overload'>
    """
    match_value = _VALUE.fullmatch

    def parse(frame: bytes) -> ParseResult:
        body = strip_frame(frame)
        m = match_value(body)
        if m is not None:
            if m[2] == b"TR":
                return Ignored(f"tare line {body.decode('ascii', 'replace').strip()}")
            value = float(m[4])
            if m[3] == b"-":
                value = -value
            status = MeasurementStatus.OK if m[1] == b"ST" else MeasurementStatus.UNSTABLE
            return Measurement(value, m[5].decode(), status, "", _KIND[m[2]])
        m = _OL.fullmatch(body)
        if m is not None:
            unit = m[3].decode()
            if m[2] == b"-":
                return error_value("OL: underload (below the zero range)", UNDERLOAD, unit=unit)
            return error_value("OL: overload (above the indicator's range)", OVERLOAD, unit=unit)
        if not body:
            return Ignored("empty line")
        return Rejected(f"not an indicator line (expected e.g. 'ST,GS,+  4.876kg'): {frame[:40]!r}")

    return parse


class IndicatorDriver(ScaleDriver):
    terminator = b"\r\n"
    serial_defaults = SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1)
    make_parser = staticmethod(parser)


class IndicatorSimulator(PtySimulator):
    """An indicator streaming ``ST,GS,…`` lines."""

    def frame(self, event: Event) -> tuple[bytes, float | None]:
        text = f"{abs(event.value):7.3f}"
        sign = "-" if event.value < 0 and float(text) != 0 else "+"
        head = "ST" if event.stable else "US"
        return f"{head},GS,{sign}{text}kg\r\n".encode(), float(sign + text.strip())


def simulator(scenario: str, options: IndicatorOptions | None, clock: Clock) -> IndicatorSimulator:
    return IndicatorSimulator(Scenario(scenario, nominal=4.876, sigma=0.004, tolerance=0.02, kind="scale"),
                              clock=clock)


DRIVER = DriverSpec(
    name="indicator",
    summary="Generic weighing indicators, text format ST,GS,+value unit",
    transport="serial",
    driver=IndicatorDriver,
    options=IndicatorOptions,
    parser=parser,
    probe_request=None,
    simulator=simulator,
    scenarios=SCENARIOS,
)
