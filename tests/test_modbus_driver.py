"""The modbus driver against a real pymodbus server (TCP on loopback, RTU on a socat pty pair)."""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
from collections import defaultdict

import pytest

from floorwatch.drivers.modbus.codec import ORDERS
from floorwatch.drivers.modbus.driver import ModbusDriver
from floorwatch.drivers.modbus.points import DEFAULT_POINTS, ModbusOptions, Point
from floorwatch.drivers.modbus.transport import RS485Error
from floorwatch.edge.clock import SYSTEM_CLOCK, ManualClock
from floorwatch.edge.model import Measurement, MeasurementStatus
from harness.modbus_server import instrument_for

pytestmark = pytest.mark.service

VALUES = {
    "u16": 54321, "i16": -12345, "u32": 3_000_000_000, "i32": -100_000,
    "u64": 2**63 + 2**11, "i64": -(2**40), "f32": 123.456, "f64": math.pi,
}


def _f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


def _every_type_and_order(function: str) -> list[Point]:
    points, address = [], 0
    for kind in VALUES:
        for order in ORDERS:
            p = Point(name=f"{function}_{kind}_{order}", function=function, address=address, type=kind, order=order)
            points.append(p)
            address += p.register_count
    return points


async def _poll_series(driver: ModbusDriver, clock: ManualClock, seconds: int) -> dict[str, list[Measurement]]:
    """Poll once a (simulated) second for ``seconds`` + 1 polls; measurements by channel."""
    got: dict[str, list[Measurement]] = defaultdict(list)
    await driver.connect()
    try:
        for _ in range(seconds + 1):
            await driver.poll(lambda m: got[m.channel].append(m))
            clock.advance(1.0)
    finally:
        driver.close()
    return got


async def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_every_type_and_word_order_round_trips_through_a_real_server(modbus_sim):
    points = _every_type_and_order("holding") + _every_type_and_order("input") + [
        Point(name="scaled", function="holding", address=100, type="i16", scale=0.1, offset=-5, unit="degC"),
        Point(name="coil", function="coils", address=3),
        Point(name="door_open", function="discrete_inputs", address=17),
    ]
    options = ModbusOptions(points=points)
    clock = ManualClock()
    sim = await modbus_sim("counter", options, clock)
    for p in points[:-3]:
        sim.set_value(p.name, VALUES[p.type])
    sim.set_value("scaled", 20.0)
    sim.set_value("coil", True)
    sim.set_value("door_open", False)

    driver = ModbusDriver(instrument_for(sim), options, clock)
    got: dict[str, Measurement] = {}
    await driver.connect()
    await driver.poll(lambda m: got.__setitem__(m.channel, m))
    driver.close()

    for p in points[:-3]:
        expected = _f32(VALUES["f32"]) if p.type == "f32" else float(VALUES[p.type])
        assert got[p.name].value == expected, p.name
        assert got[p.name].status is MeasurementStatus.OK
    assert (got["scaled"].value, got["scaled"].unit) == (20.0, "degC")
    assert got["coil"].value == 1.0 and got["door_open"].value == 0.0
    # 80 registers of each table fit one request each; the two bits, one request each
    assert driver.health.frames_ok == 5 and driver.health.frames_rejected == 0
    assert driver.health.last_raw  # the last reply, for wiring debugging


async def test_small_max_registers_splits_reads_and_still_decodes(modbus_sim):
    points = _every_type_and_order("holding")
    options = ModbusOptions(points=points, max_registers=7)
    clock = ManualClock()
    sim = await modbus_sim("counter", options, clock)
    for p in points:
        sim.set_value(p.name, VALUES[p.type])
    driver = ModbusDriver(instrument_for(sim), options, clock)
    got: dict[str, float] = {}
    await driver.connect()
    await driver.poll(lambda m: got.__setitem__(m.channel, m.value))
    driver.close()
    assert got["holding_u64_DCBA"] == float(VALUES["u64"]) and got["holding_i16_BADC"] == -12345.0
    assert driver.health.frames_ok >= 80 // 7


async def test_steady_counter_emits_count_rate_and_running(modbus_tcp_server):
    clock = modbus_tcp_server.clock
    driver = ModbusDriver(instrument_for(modbus_tcp_server), ModbusOptions(points=list(DEFAULT_POINTS)), clock)
    got = await _poll_series(driver, clock, 30)
    assert [m.value for m in got[""]][:4] == [0.0, 2.0, 4.0, 6.0]
    assert got[""][-1].value == 60.0 and got[""][-1].unit == "pcs"
    assert got["rate"][-1].value == pytest.approx(120.0) and got["rate"][-1].unit == "parts/min"
    assert {m.value for m in got["stopped"]} == {0.0}
    assert got["temperature"][-1].unit == "degC" and math.isfinite(got["temperature"][-1].value)
    assert driver.health.extra["counters"][""]["total"] == 60


async def test_wrap_of_16_and_32_bit_counters_counts_through(modbus_sim):
    clock = ManualClock()
    sim = await modbus_sim("wrap", None, clock)
    driver = ModbusDriver(instrument_for(sim), ModbusOptions(points=list(DEFAULT_POINTS)), clock)
    got = await _poll_series(driver, clock, 15)
    for channel in ("", "count16"):
        totals = [m.value for m in got[channel]]
        assert totals == [2.0 * t for t in range(16)], channel  # no dip, no spike across the wrap
        assert any("wrapped" in m.detail for m in got[channel])
        assert driver.health.extra["counters"][channel]["wraps"] == 1


@pytest.mark.parametrize("scenario", ["reset", "replace"])
async def test_reset_and_replacement_never_go_negative_nor_spike(modbus_sim, scenario):
    clock = ManualClock()
    sim = await modbus_sim(scenario, None, clock)
    driver = ModbusDriver(instrument_for(sim), ModbusOptions(points=list(DEFAULT_POINTS)), clock)
    got = await _poll_series(driver, clock, 15)
    for channel in ("", "count16"):
        totals = [m.value for m in got[channel]]
        steps = [b - a for a, b in zip(totals, totals[1:], strict=False)]
        assert all(0 <= s <= 2 for s in steps), steps
        # The 2 parts made between the t=9 reading and the event at t=10 were lost on the device itself.
        assert totals[-1] == 28.0
        event = "reset" if scenario == "reset" else "replaced"
        at_event = got[channel][10].detail
        assert (event in at_event) if scenario == "replace" else ("operator reset" in at_event)
        key = "resets" if scenario == "reset" else "replacements"
        assert driver.health.extra["counters"][channel][key] == 1


async def test_line_stopped_after_idle_time(modbus_sim):
    clock = ManualClock()
    sim = await modbus_sim("stopped", None, clock)
    options = ModbusOptions(points=list(DEFAULT_POINTS), idle_after=3)
    driver = ModbusDriver(instrument_for(sim), options, clock)
    got = await _poll_series(driver, clock, 15)
    stopped = [m.value for m in got["stopped"]]
    assert stopped == [0.0] * 13 + [1.0] * 3  # last part at t=10, stopped from t=13
    assert got["stopped"][13].detail == "line stopped: no new part for 3 s"
    assert got[""][-1].value == 20.0
    assert [m.value for m in got["running"]][9:12] == [1.0, 0.0, 0.0]
    assert driver.health.extra["counters"][""]["stopped"] is True


async def test_dead_unit_is_backed_off_while_the_live_unit_is_read_every_poll(modbus_sim):
    clock = ManualClock()
    sim = await modbus_sim("dead_unit", None, clock)
    config = instrument_for(sim, unit_ids=(1, 2), poll_interval=1.0, timeout=0.1)
    driver = ModbusDriver(config, ModbusOptions(points=list(DEFAULT_POINTS)), clock)
    got = await _poll_series(driver, clock, 15)
    units = driver.health.extra["units"]
    # tried at t = 0, 1, 3, 7, 15: waits of 1, 2, 4, 8 s
    assert units["2"]["timeouts"] == 5 and units["2"]["responses"] == 0
    assert units["2"]["state"] == "no_response" and "no reply within 0.1 s" in units["2"]["last_error"]
    assert units["1"]["state"] == "ok" and units["1"]["responses"] == 16 * 3
    assert [m.value for m in got["u1"]] == [2.0 * t for t in range(16)]
    assert not any(c.startswith("u2") for c in got)


async def test_dead_unit_does_not_stall_the_live_units_rate(modbus_sim):
    """Real time: the live unit keeps being polled and its parts-per-minute stays right."""
    sim = await modbus_sim("dead_unit", None, SYSTEM_CLOCK, rate=6000.0)
    config = instrument_for(sim, unit_ids=(1, 2), poll_interval=0.05, timeout=0.15)
    options = ModbusOptions(points=list(DEFAULT_POINTS), backoff_max=0.4)
    driver = ModbusDriver(config, options, SYSTEM_CLOCK)
    rates: list[float] = []
    task = asyncio.create_task(driver.run(lambda m: rates.append(m.value) if m.channel == "u1_rate" else None))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    units = driver.health.extra["units"]
    assert units["2"]["state"] == "no_response" and units["2"]["timeouts"] >= 2
    # Without backoff every pass would wait 0.15 s for unit 2: one live reading per timeout. With it the
    # dead unit is asked only now and then, so the live unit is read several times per timeout (a ratio,
    # not a count per second, so that a slower machine reads it the same way).
    assert len(rates) >= 2 * units["2"]["timeouts"], (len(rates), units["2"])
    assert rates[-1] == pytest.approx(6000.0, rel=0.1)


async def test_exception_response_is_reported_in_health_and_other_reads_go_on(modbus_tcp_server):
    # The simulated device has registers 0..18 only; address 500 does not exist on it.
    options = ModbusOptions(points=[
        Point(name="good", address=0, type="u32", order="CDAB"),
        Point(name="missing", address=500, type="u16"),
    ])
    clock = modbus_tcp_server.clock
    driver = ModbusDriver(instrument_for(modbus_tcp_server), options, clock)
    got: dict[str, float] = {}
    await driver.connect()
    await driver.poll(lambda m: got.__setitem__(m.channel, m.value))
    driver.close()
    assert got == {"good": 1000.0}
    unit = driver.health.extra["units"]["1"]
    assert unit["state"] == "exception" and unit["exceptions"] == 1 and unit["responses"] == 2
    assert "unit 1 holding 500..500: exception 02 illegal data address" in unit["last_error"]
    assert "register 40001 is address 0" in driver.health.last_reject_reason
    assert driver.health.frames_rejected == 1 and driver.health.frames_ok == 1


async def test_nan_from_the_device_is_an_error_reading_not_a_number(modbus_tcp_server):
    modbus_tcp_server.set_value("temperature", math.nan)
    clock = modbus_tcp_server.clock
    driver = ModbusDriver(instrument_for(modbus_tcp_server), ModbusOptions(points=list(DEFAULT_POINTS)), clock)
    got: dict[str, Measurement] = {}
    await driver.connect()
    await driver.poll(lambda m: got.__setitem__(m.channel, m))
    driver.close()
    assert got["temperature"].status is MeasurementStatus.ERROR and math.isnan(got["temperature"].value)
    assert "sensor fault" in got["temperature"].detail
    assert got["pressure"].status is MeasurementStatus.OK


async def test_counter_above_its_configured_wrap_is_an_error_reading(modbus_tcp_server):
    # The device holds 1000 but the map says the counter wraps at 1000 (counts 0..999): misconfigured.
    options = ModbusOptions(points=[Point(name="", address=0, type="u32", order="CDAB", counter=True, wrap_at=1000)])
    clock = modbus_tcp_server.clock
    driver = ModbusDriver(instrument_for(modbus_tcp_server), options, clock)
    got: list[Measurement] = []
    await driver.connect()
    await driver.poll(got.append)
    driver.close()
    assert [m.status for m in got] == [MeasurementStatus.ERROR] and "outside 0..999" in got[0].detail
    assert driver.health.frames_rejected == 1


async def test_inter_request_delay_spaces_requests(modbus_tcp_server):
    # A lower bound only (the two pauses between three requests): how fast a pass runs without the delay
    # depends on the machine and is not asserted.
    clock = modbus_tcp_server.clock
    options = ModbusOptions(points=list(DEFAULT_POINTS))  # three requests a pass
    driver = ModbusDriver(instrument_for(modbus_tcp_server, inter_request_delay=0.1), options, clock)
    await driver.connect()
    started = time.monotonic()
    got: list[Measurement] = []
    await driver.poll(got.append)
    elapsed = time.monotonic() - started
    driver.close()
    assert got and elapsed >= 0.2


async def test_reconnects_after_the_tcp_server_restarts(modbus_sim):
    sim = await modbus_sim("counter", None, SYSTEM_CLOCK)
    options = ModbusOptions(points=list(DEFAULT_POINTS), backoff_max=0.2)
    driver = ModbusDriver(instrument_for(sim), options, SYSTEM_CLOCK)
    seen: list[Measurement] = []
    task = asyncio.create_task(driver.run(seen.append))
    try:
        await _wait_until(lambda: driver.health.connected and len(seen) > 10)
        await sim.stop()
        await _wait_until(lambda: not driver.health.connected)
        assert driver.health.last_error
        await asyncio.sleep(0.3)  # a few refused reconnects
        before = len(seen)
        await sim.start()
        await _wait_until(lambda: driver.health.connected and len(seen) > before + 10)
        assert driver.health.reconnects >= 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not driver.health.connected


async def test_rtu_over_a_pty_pair_8n1(modbus_sim):
    clock = ManualClock()
    sim = await modbus_sim("dead_unit", None, clock, transport="rtu")
    config = instrument_for(sim, unit_ids=(1, 2))
    assert (config.serial.baudrate, config.serial.parity, config.port) == (9600, "N", sim.endpoint["port"])
    driver = ModbusDriver(config, ModbusOptions(points=list(DEFAULT_POINTS)), clock)
    got = await _poll_series(driver, clock, 3)
    assert [m.value for m in got["u1"]] == [0.0, 2.0, 4.0, 6.0]
    assert got["u1.speed"][0].unit == "m/min"
    assert driver.health.extra["units"]["2"]["state"] == "no_response"
    assert driver.health.last_raw  # raw RTU reply bytes kept for wiring debugging


async def test_rtu_adapter_unplugged_and_plugged_back(modbus_sim):
    sim = await modbus_sim("counter", None, SYSTEM_CLOCK, transport="rtu")
    options = ModbusOptions(points=list(DEFAULT_POINTS), backoff_max=0.2)
    driver = ModbusDriver(instrument_for(sim), options, SYSTEM_CLOCK)
    seen: list[Measurement] = []
    task = asyncio.create_task(driver.run(seen.append))
    try:
        await _wait_until(lambda: driver.health.connected and len(seen) > 10)
        await sim.stop()  # the pty disappears, as a USB adapter does when unplugged
        await _wait_until(lambda: not driver.health.connected)
        await _wait_until(lambda: "does not exist" in driver.health.last_error)
        before = len(seen)
        await sim.start()
        await _wait_until(lambda: driver.health.connected and len(seen) > before + 10)
        assert driver.health.reconnects >= 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_rs485_mode_refused_by_the_port_is_a_clear_error(modbus_rtu_server):
    config = instrument_for(modbus_rtu_server, serial={"rs485": True})
    driver = ModbusDriver(config, ModbusOptions(points=list(DEFAULT_POINTS)), modbus_rtu_server.clock)
    with pytest.raises(RS485Error, match="refused the kernel RS-485 mode .* set serial.rs485 = false"):
        await driver.connect()
    assert not driver.connected


async def test_serial_settings_the_port_refuses_are_a_clear_error(modbus_rtu_server):
    # A pty cannot do even parity: the kind of refusal a USB adapter gives for settings it lacks.
    config = instrument_for(modbus_rtu_server, serial={"parity": "E"})
    driver = ModbusDriver(config, ModbusOptions(points=list(DEFAULT_POINTS)), modbus_rtu_server.clock)
    with pytest.raises(OSError, match=r"refused .*(9600 8E1|serial settings)"):
        await driver.connect()
    assert not driver.connected
    # and the port is left free for the next attempt at the right settings
    good = ModbusDriver(instrument_for(modbus_rtu_server), ModbusOptions(points=list(DEFAULT_POINTS)),
                        modbus_rtu_server.clock)
    await good.connect()
    got: list[Measurement] = []
    await good.poll(got.append)
    good.close()
    assert got


async def test_nothing_listening_is_reported_and_retried(modbus_sim):
    sim = await modbus_sim("counter", None, SYSTEM_CLOCK)
    await sim.stop()
    driver = ModbusDriver(instrument_for(sim), ModbusOptions(points=list(DEFAULT_POINTS), backoff_max=0.1),
                          SYSTEM_CLOCK)
    task = asyncio.create_task(driver.run(lambda m: None))
    try:
        await _wait_until(lambda: "no Modbus TCP device answers at 127.0.0.1" in driver.health.last_error)
        assert not driver.health.connected
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_gateways_way_of_running_a_simulated_instrument():
    """registry spec -> simulator -> endpoint merged into the configuration -> driver, as the service does."""
    from floorwatch.drivers import registry
    from floorwatch.edge.config import InstrumentConfig

    spec = registry.get("modbus")
    config = InstrumentConfig(name="counter-1", driver="modbus", simulate="counter", poll_interval=0.05, timeout=0.2)
    options = registry.parse_options(spec, config)
    sim = spec.simulator(config.simulate, options, SYSTEM_CLOCK)
    await sim.start()
    try:
        config = config.model_copy(update=dict(sim.endpoint))
        driver = spec.driver(config, options, SYSTEM_CLOCK)
        seen: list[Measurement] = []
        task = asyncio.create_task(driver.run(seen.append))
        await _wait_until(lambda: sum(m.channel == "" for m in seen) >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await sim.stop()
    assert {"", "rate", "stopped", "count16", "temperature", "pressure", "speed", "running"} <= {m.channel for m in seen}
    assert all(m.instrument == "counter-1" for m in seen)


# ------------------------------------------------------------------ production counts across a restart


async def _one_poll(driver: ModbusDriver) -> dict[str, Measurement]:
    got: dict[str, Measurement] = {}
    await driver.connect()
    try:
        await driver.poll(lambda m: got.__setitem__(m.channel, m))
    finally:
        driver.close()
    return got


async def test_saved_counts_continue_in_a_new_driver_across_count_and_wrap(modbus_sim):
    """The next run's driver continues the count; parts made and a 16-bit wrap while it was down count."""
    clock = ManualClock()
    sim = await modbus_sim("counter", None, clock)
    options = ModbusOptions(points=list(DEFAULT_POINTS))
    sim.set_value("", 5000)
    sim.set_value("count16", 65530)
    first = ModbusDriver(instrument_for(sim), options, clock)
    await _one_poll(first)
    clock.advance(10.0)
    sim.set_value("", 5040)
    sim.set_value("count16", 65534)
    got = await _one_poll(first)
    assert (got[""].value, got["count16"].value) == (40.0, 4.0)
    saved = json.loads(json.dumps(first.state()))  # what the gateway writes and reads back

    clock.advance(20.0)  # down for 20 s: the device counted 60 more parts, the 16-bit counter wrapped
    sim.set_value("", 5100)
    sim.set_value("count16", 8)
    second = ModbusDriver(instrument_for(sim), options, clock)
    assert second.restore(saved) == []
    assert second.health.extra["counters"][""]["last_event"] == "restored"
    got = await _one_poll(second)
    assert (got[""].value, got["count16"].value) == (100.0, 14.0)
    # the 60 parts are spread over the 20 s gap, not a rate spike: 60 parts in 20 s = 180 parts/min
    assert got["rate"].value == pytest.approx(180.0)
    assert got["stopped"].value == 0.0


async def test_a_reset_while_down_is_judged_by_the_usual_rules(modbus_sim):
    clock = ManualClock()
    sim = await modbus_sim("counter", None, clock)
    options = ModbusOptions(points=list(DEFAULT_POINTS[:1]))
    sim.set_value("", 5000)
    first = ModbusDriver(instrument_for(sim), options, clock)
    await _one_poll(first)
    clock.advance(5.0)
    sim.set_value("", 5030)
    await _one_poll(first)
    saved = first.state()
    clock.advance(30.0)
    sim.set_value("", 12)  # operator reset while the gateway was down, then 12 parts
    second = ModbusDriver(instrument_for(sim), options, clock)
    assert second.restore(saved) == []
    got = await _one_poll(second)
    assert got[""].value == 42.0 and "operator reset" in got[""].detail


async def test_saved_counts_of_a_changed_map_an_older_format_or_a_simulator_are_not_continued(modbus_sim):
    clock = ManualClock()
    sim = await modbus_sim("counter", None, clock)
    options = ModbusOptions(points=list(DEFAULT_POINTS))
    driver = ModbusDriver(instrument_for(sim), options, clock)
    await _one_poll(driver)
    clock.advance(1.0)
    await _one_poll(driver)
    saved = driver.state()
    assert set(saved["counters"]) == {"", "count16"}

    moved = ModbusOptions(points=[p.model_copy(update={"address": 10}) if p.name == "count16" else p
                                  for p in DEFAULT_POINTS])
    fresh = ModbusDriver(instrument_for(sim), moved, clock)
    notes = fresh.restore(saved)
    assert len(notes) == 1 and "count16" in notes[0] and "register map changed" in notes[0]
    assert fresh.counters[""].total == 2 and fresh.counters["count16"].total == 0

    older = ModbusDriver(instrument_for(sim), options, clock)
    notes = older.restore({**saved, "format": "modbus-counters/0"})
    assert len(notes) == 1 and "format 'modbus-counters/0'" in notes[0] and "starts from 0" in notes[0]
    assert older.counters[""].state(clock.monotonic())["raw"] is None

    simulated = ModbusDriver(instrument_for(sim, simulate="counter"), options, clock)
    assert simulated.restore(saved) == ["a simulated device is new with every run: counting starts from 0"]

    damaged = ModbusDriver(instrument_for(sim), options, clock)
    broken = json.loads(json.dumps(saved))
    broken["counters"][""]["total"] = -5
    notes = damaged.restore(broken)
    assert len(notes) == 1 and "not a count of parts" in notes[0]
    assert damaged.counters["count16"].total == 2  # the good one is continued


async def test_cancel_always_stops_the_driver(modbus_sim):
    """A cancel that arrives with a reply must stop the driver (Python 3.11's wait_for, used by pymodbus,
    may swallow it; the gateway would then never stop on SIGTERM)."""
    sim = await modbus_sim("counter", None, SYSTEM_CLOCK)
    options = ModbusOptions(points=list(DEFAULT_POINTS))
    for attempt in range(40):
        driver = ModbusDriver(instrument_for(sim, poll_interval=0.001), options, SYSTEM_CLOCK)
        seen: list[Measurement] = []
        task = asyncio.create_task(driver.run(seen.append))
        await _wait_until(lambda seen=seen: len(seen) > 5)
        await asyncio.sleep(0.001 * (attempt % 7))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2.0)
        assert done, f"attempt {attempt}: the driver ran on after being cancelled"
        assert not driver.health.connected
