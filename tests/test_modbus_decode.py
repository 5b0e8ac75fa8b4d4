"""Whatever a device puts in its registers, the driver emits finite numbers or error readings, never garbage
numbers and never an exception."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from floorwatch.drivers.modbus.codec import ORDERS
from floorwatch.drivers.modbus.driver import ModbusDriver
from floorwatch.drivers.modbus.plan import plan_reads
from floorwatch.drivers.modbus.points import ModbusOptions, Point
from floorwatch.edge.clock import ManualClock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement, MeasurementStatus

POINTS = [Point(name=f"{kind}_{order}", address=i * 4, type=kind, order=order)
          for i, (kind, order) in enumerate((k, o) for k in ("u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64")
                                            for o in ORDERS)]
POINTS += [
    Point(name="scaled", address=200, type="f32", scale=1e30, offset=-5),
    Point(name="huge", address=202, type="f64", scale=1e300),
    Point(name="count16", address=210, type="u16", counter=True, wrap_at=1000),
    Point(name="count32", address=212, type="u32", counter=True),
]


def _driver() -> ModbusDriver:
    config = InstrumentConfig(name="fuzz", driver="modbus", host="127.0.0.1")
    return ModbusDriver(config, ModbusOptions(points=POINTS), ManualClock())


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_arbitrary_register_contents_never_become_garbage(data):
    driver = _driver()
    clock: ManualClock = driver.clock  # type: ignore[assignment]
    for _ in range(3):
        out: list[Measurement] = []
        for group in driver.units[1].groups:
            registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=group.count, max_size=group.count))
            driver.decode_group(group, registers, out.append)
        for m in out:
            if m.status is MeasurementStatus.OK:
                assert math.isfinite(m.value), m
            else:
                assert m.status is MeasurementStatus.ERROR and math.isnan(m.value) and m.detail, m
        totals = [m.value for m in out if m.channel in ("count16", "count32") and m.status is MeasurementStatus.OK]
        assert all(t >= 0 for t in totals)
        clock.advance(1.0)


def test_every_value_of_one_request_is_stamped_with_the_instrument_and_one_time():
    driver = _driver()
    clock: ManualClock = driver.clock  # type: ignore[assignment]
    out: list[Measurement] = []
    for group in driver.units[1].groups:
        driver.decode_group(group, [1] * group.count, out.append)
    assert out and {(m.instrument, m.ts_ns) for m in out} == {("fuzz", clock.now_ns())}  # counters' too


def test_groups_cover_every_point_exactly_once():
    groups = plan_reads([b for g in _driver().units[1].groups for b in g.members])
    names = sorted(m.point.name for g in groups for m in g.members)
    assert names == sorted(p.name for p in POINTS)


def test_a_scale_that_overflows_is_an_error_reading():
    from floorwatch.drivers.modbus.codec import encode

    driver = _driver()
    group = next(g for g in driver.units[1].groups if any(m.point.name == "huge" for m in g.members))
    registers = [0] * group.count
    at = 202 - group.start
    registers[at : at + 4] = encode(1e300, "f64")
    out: list[Measurement] = []
    driver.decode_group(group, registers, out.append)
    huge = next(m for m in out if m.channel == "huge")
    assert huge.status is MeasurementStatus.ERROR and math.isnan(huge.value) and "overflows" in huge.detail
