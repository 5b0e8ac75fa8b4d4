"""Every serial driver against its simulator on a real pty: values arrive in order, polling is answered,
garbage is counted and never becomes a number, and a pulled adapter is survived."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os

import pytest

from floorwatch.drivers import registry
from floorwatch.drivers.mitutoyo import MitutoyoSimulator
from floorwatch.drivers.simulate.scenario import Scenario
from floorwatch.edge.clock import SYSTEM_CLOCK
from floorwatch.edge.model import MeasurementStatus
from harness.serial_pty import Collector, contiguous_in, instrument, wait_until

CASES = [
    ("mitutoyo", {}),
    ("uwave", {}),
    ("sylvac", {"mode": "request"}),
    ("sylvac", {"mode": "continuous"}),
    ("mtsics", {"mode": "poll", "command": "SI"}),
    ("mtsics", {"mode": "poll", "command": "S"}),
    ("mtsics", {"mode": "continuous"}),
    ("aandd", {"mode": "continuous"}),
    ("aandd", {"mode": "poll"}),
    ("sartorius", {"mode": "poll"}),
    ("sartorius", {"mode": "continuous"}),
    ("ohaus", {"mode": "poll"}),
    ("ohaus", {"mode": "continuous"}),
    ("indicator", {}),
    ("xk3190", {}),
]


@contextlib.asynccontextmanager
async def running(driver, collector):
    task = asyncio.create_task(driver.run(collector))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(name: str, options: dict, scenario: str = "normal", interval: float = 0.01):
    spec = registry.get(name)
    opts = spec.options.model_validate(options) if spec.options else None
    sim = spec.simulator(scenario, opts, SYSTEM_CLOCK)
    sim.interval = interval
    return spec, opts, sim


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}"
                                                          for n, o in CASES])
async def test_driver_reads_what_the_simulator_sent_in_order(name, options):
    spec, opts, sim = make(name, options)
    async with sim:
        cfg = instrument(f"{name}-1", name, sim.endpoint["port"], poll_interval=0.01, timeout=0.5)
        driver = spec.driver(cfg, opts, SYSTEM_CLOCK)
        got = Collector()
        async with running(driver, got):
            await wait_until(lambda: len(got.items) >= 20, 10, f"20 measurements from {name}")
    assert driver.health.frames_rejected == 0, driver.health.last_reject_reason
    assert all(m.instrument == f"{name}-1" and math.isfinite(m.value) for m in got.items)
    # the values arrive exactly as sent: in order, none lost or invented in between
    assert contiguous_in(got.values, sim.sent), (got.values[:5], sim.sent[:10])
    assert driver.health.connected is False  # cancelled: the port is closed
    if spec.name in ("mtsics", "aandd", "sartorius", "ohaus", "indicator"):
        statuses = {m.status for m in got.items}
        assert MeasurementStatus.OK in statuses
    if options.get("command") == "S":
        assert {m.status for m in got.items} == {MeasurementStatus.OK}  # S waits for a stable weight


async def test_polled_driver_sends_its_request_at_the_poll_interval():
    spec, opts, sim = make("mtsics", {"mode": "poll", "command": "SI"})
    async with sim:
        cfg = instrument("scale-1", "mtsics", sim.endpoint["port"], poll_interval=0.05, timeout=0.5)
        driver = spec.driver(cfg, opts, SYSTEM_CLOCK)
        got = Collector()
        async with running(driver, got):
            await wait_until(lambda: len(got.items) >= 6, 5, "six polled weights")
    assert sim.requests[0] == b"@\r\n"  # a stream left running by an earlier session is stopped first
    polls = [r for r in sim.requests if r == b"SI\r\n"]
    assert len(polls) >= 6 and len(got.items) in (len(polls), len(polls) - 1)


async def test_unplug_and_replug_disconnects_then_resumes():
    sim = MitutoyoSimulator(Scenario("unplug", nominal=12.0, sigma=0.004, unplug_every=40, unplug_for=0.3),
                            interval=0.01)
    async with sim:
        cfg = instrument("caliper-1", "mitutoyo", sim.endpoint["port"])
        spec = registry.get("mitutoyo")
        driver = spec.driver(cfg, None, SYSTEM_CLOCK)
        got = Collector()
        states: list[bool] = []

        async def watch():
            while True:
                if not states or states[-1] != driver.health.connected:
                    states.append(driver.health.connected)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        async with running(driver, got):
            await wait_until(lambda: driver.health.reconnects >= 2, 10, "two reconnects")
            after = len(got.items)
            await wait_until(lambda: len(got.items) >= after + 5, 5, "values after the replug")
        watcher.cancel()
    assert states[:4] == [False, True, False, True]
    assert "disconnected" in driver.health.last_error or "no such port" in driver.health.last_error
    assert driver.health.frames_rejected == 0
    # every value read was sent, in order (frames sent while unplugged are lost, as on a real cable)
    it = iter(sim.sent)
    assert all(v in it for v in got.values)


async def test_driver_waits_for_a_port_that_is_not_there_yet(tmp_path):
    path = tmp_path / "by-id-usb-caliper"
    sim = MitutoyoSimulator(Scenario("normal", nominal=1.0, sigma=0.01), interval=0.01, path=path)
    driver = registry.get("mitutoyo").driver(instrument("caliper-1", "mitutoyo", str(path)), None, SYSTEM_CLOCK)
    got = Collector()
    async with running(driver, got):
        await wait_until(lambda: "no such port" in driver.health.last_error, 3, "the missing-port error")
        assert not driver.health.connected and got.items == []
        async with sim:  # the adapter is plugged in
            await wait_until(lambda: len(got.items) >= 3, 5, "values once the port appears")
            assert driver.health.connected


@pytest.mark.parametrize("name", ["mitutoyo", "sylvac", "indicator", "xk3190", "aandd"])
async def test_noise_on_the_line_is_counted_as_rejected_never_a_number(name):
    options = {"mode": "continuous"} if name in ("sylvac", "aandd") else {}
    spec, opts, sim = make(name, options, scenario="noise")
    sim.scenario.noise_every = 3
    async with sim:
        driver = spec.driver(instrument("i-1", name, sim.endpoint["port"]), opts, SYSTEM_CLOCK)
        got = Collector()
        async with running(driver, got):
            await wait_until(lambda: driver.health.frames_rejected >= 3 and len(got.items) >= 10, 10,
                             "rejected garbage and good values")
    assert driver.health.last_reject_reason
    # garbage glued to the front of a frame costs that frame, but nothing else: every value was sent, in order
    it = iter(sim.sent)
    assert all(v in it for v in got.values)


async def test_part_weighing_emits_one_weight_per_part_from_a_streaming_scale():
    spec, opts, sim = make("indicator", {"weighing": "part", "threshold": 1.0, "zero_band": 0.05})
    async with sim:
        driver = spec.driver(instrument("platform-1", "indicator", sim.endpoint["port"]), opts, SYSTEM_CLOCK)
        got = Collector()
        async with running(driver, got):
            await wait_until(lambda: len(got.items) >= 4, 10, "four parts")
    # the simulator sends eight readings per part (empty pan, settling, three stable, lifting off) …
    assert driver.health.frames_ok >= 6 * len(got.items)
    # … and the driver emits one stable weight per part
    assert all(m.status is MeasurementStatus.OK and abs(m.value - 4.876) < 0.05 for m in got.items)


async def test_check_weigher_mode_emits_every_stable_reading():
    spec, opts, sim = make("aandd", {"mode": "continuous", "weighing": "stable", "threshold": 100})
    async with sim:
        driver = spec.driver(instrument("check-1", "aandd", sim.endpoint["port"]), opts, SYSTEM_CLOCK)
        got = Collector()
        async with running(driver, got):
            await wait_until(lambda: len(got.items) >= 9, 10, "nine stable readings")
    assert all(m.status is MeasurementStatus.OK and m.value >= 100 for m in got.items)
    # the simulator holds each part stable for three readings: they all come through
    values = got.values
    assert any(values[i] == values[i + 1] == values[i + 2] for i in range(len(values) - 2))


async def test_a_long_run_without_frame_end_is_rejected_not_read_as_digits(pty_pair):
    master, path = pty_pair
    driver = registry.get("sylvac").driver(instrument("ind-1", "sylvac", path),
                                           registry.get("sylvac").options.model_validate({"mode": "continuous"}),
                                           SYSTEM_CLOCK)
    got = Collector()
    async with running(driver, got):
        await wait_until(lambda: driver.health.connected, 3, "connection")
        os.write(master, b"1" * 600 + b"\r+001.500\r")  # a wrong baud rate can look like this
        await wait_until(lambda: len(got.items) >= 1 and driver.health.frames_rejected >= 2, 3, "the good frame")
    assert got.values == [1.5]
    assert "no frame end" in driver.health.last_reject_reason


async def test_a_fast_stream_is_read_completely_and_in_order(pty_pair):
    """Twenty thousand frames as fast as the pty takes them: none lost, none reordered, loop not held."""
    master, path = pty_pair
    spec = registry.get("aandd")
    driver = spec.driver(instrument("fast-1", "aandd", path), spec.options.model_validate({}), SYSTEM_CLOCK)
    got = Collector()
    n = 20_000
    data = b"".join(f"ST,{i / 10:+09.1f}  g\r\n".encode() for i in range(n))

    def write_all() -> None:
        os.set_blocking(master, True)
        view = memoryview(data)
        while view:
            view = view[os.write(master, view[:4096]):]

    ticks = 0

    async def heartbeat():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    async with running(driver, got):
        await wait_until(lambda: driver.health.connected, 3, "connection")
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(write_all)
        await wait_until(lambda: len(got.items) >= n, 20, f"{n} frames")
        elapsed = asyncio.get_running_loop().time() - started
    beat.cancel()
    assert got.values == [i / 10 for i in range(n)]
    assert driver.health.frames_rejected == 0
    # The event loop kept running while frames poured in: the heartbeat got turns throughout. (How many
    # depends on the machine's load; a loop held by a blocking read would give it none until the end.)
    assert ticks >= 3, f"heartbeat ran {ticks} times in {elapsed:.2f} s"


async def test_part_weighing_on_a_scale_without_stability_flag_waits_for_settling():
    spec, opts, sim = make("xk3190", {"weighing": "part", "threshold": 5.0, "zero_band": 0.5,
                                      "settle_readings": 3, "settle_band": 0.001})
    async with sim:
        driver = spec.driver(instrument("platform-2", "xk3190", sim.endpoint["port"]), opts, SYSTEM_CLOCK)
        got = Collector()
        async with running(driver, got):
            await wait_until(lambda: len(got.items) >= 4, 10, "four parts")
    # the settling readings (60 % and 108 % of the part) are never taken for the part's weight
    assert all(abs(v - 25.0) < 0.2 for v in got.values), got.values


async def test_regex_driver_polls_with_its_request_and_reads_its_own_line_end(pty_pair):
    master, path = pty_pair
    spec = registry.get("regex")
    opts = spec.options.model_validate({"pattern": r"T=(?P<value>[+-]?\d+\.\d+)(?P<unit>mm) (?P<status>OK|OVER)",
                                        "terminator": ";", "request": r"READ\r\n",
                                        "status_map": {"OK": "ok", "OVER": "overload"}})
    driver = spec.driver(instrument("thick-1", "regex", path, poll_interval=0.05), opts, SYSTEM_CLOCK)
    got = Collector()
    async with running(driver, got):
        loop = asyncio.get_running_loop()
        answers = iter([b"T=+0.512mm OK;", b"T=0.600mm OVER;", b"garbage;", b"T=-0.010mm OK;"])
        requests = 0

        def answer():
            nonlocal requests
            data = os.read(master, 100)
            for _ in range(data.count(b"READ\r\n")):
                requests += 1
                os.write(master, next(answers, b""))

        loop.add_reader(master, answer)
        try:
            await wait_until(lambda: len(got.items) >= 3, 5, "three values")
        finally:
            loop.remove_reader(master)
    assert [(m.value, m.unit, m.status) for m in got.items[:3]] == [
        (0.512, "mm", MeasurementStatus.OK), (0.6, "mm", MeasurementStatus.OVERLOAD), (-0.01, "mm", MeasurementStatus.OK)]
    assert driver.health.frames_rejected == 1 and requests >= 4
