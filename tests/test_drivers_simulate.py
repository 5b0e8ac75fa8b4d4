"""Scenarios and framing: what the simulators generate, and that frames do not depend on how reads chunk."""

from __future__ import annotations

import asyncio
import os
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorwatch.drivers import registry
from floorwatch.drivers.framing import Framer
from floorwatch.drivers.simulate.scenario import SCENARIOS, Scenario
from floorwatch.edge.clock import SYSTEM_CLOCK
from harness.serial_pty import Collector, instrument, wait_until


def values(s: Scenario, n: int) -> list[float]:
    return [e.value for e in s.take(n * 3) if e.kind == "value"][:n]


def test_normal_is_centred_on_nominal_with_sigma():
    v = values(Scenario("normal", nominal=10.0, sigma=0.1, seed=3), 2000)
    assert abs(statistics.fmean(v) - 10.0) < 0.01 and 0.09 < statistics.stdev(v) < 0.11


def test_drift_moves_the_mean_part_by_part():
    v = values(Scenario("drift", nominal=10.0, sigma=0.1, drift_per_part=0.05, seed=3), 400)
    assert statistics.fmean(v[-50:]) - statistics.fmean(v[:50]) > 1.5  # 350 parts x 0.005 = 1.75


def test_shift_jumps_after_the_configured_part():
    v = values(Scenario("shift", nominal=10.0, sigma=0.1, shift_after=200, shift_sigmas=2, seed=3), 400)
    assert abs(statistics.fmean(v[:200]) - 10.0) < 0.03 and abs(statistics.fmean(v[200:]) - 10.2) < 0.03


def test_out_of_tolerance_parts_lie_outside_the_tolerance_on_both_sides():
    s = Scenario("out_of_tolerance", nominal=10.0, sigma=0.01, tolerance=0.05, bad_every=7, seed=3)
    v = values(s, 70)
    bad = [x for x in v if abs(x - 10.0) > 0.05]
    assert len(bad) == 10 and min(bad) < 9.95 and max(bad) > 10.05


def test_noise_and_unplug_events():
    noise = Scenario("noise", nominal=1.0, sigma=0.1, noise_every=4).take(50)
    garbage = [e for e in noise if e.kind == "garbage"]
    assert garbage and all(e.garbage and b"\r" not in e.garbage and b"\n" not in e.garbage for e in garbage)
    unplug = Scenario("unplug", nominal=1.0, sigma=0.1, unplug_every=5, unplug_for=0.5).take(12)
    assert [e.kind for e in unplug].count("unplug") == 2 and unplug[5].seconds == 0.5


def test_scale_scenario_weighs_each_part_with_settling_and_an_empty_pan():
    events = Scenario("normal", nominal=250.0, sigma=0.5, kind="scale", seed=1).take(16)
    stable_parts = [e.value for e in events if e.stable and e.value > 100]
    assert len(stable_parts) == 6 and len(set(stable_parts)) == 2  # two parts, three stable readings each
    assert any(not e.stable for e in events) and any(e.stable and abs(e.value) < 1 for e in events)


def test_unknown_scenario_names_the_known_ones():
    with pytest.raises(ValueError, match="scenarios are: normal, drift"):
        Scenario("wobble", nominal=1, sigma=1)


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.get(n).transport == "serial" and n != "regex"])
def test_every_serial_simulator_offers_every_scenario(name):
    assert registry.get(name).scenarios == SCENARIOS


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"") + b"\r"), max_size=10),
       cuts=st.lists(st.integers(0, 300), max_size=8))
def test_framing_does_not_depend_on_how_reads_are_chunked(frames, cuts):
    data = b"".join(frames)
    whole = Framer(b"\r", max_len=1000).feed(data)
    f = Framer(b"\r", max_len=1000)
    pieces, last = [], 0
    for c in sorted(c for c in cuts if c <= len(data)):
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    chunked = [fr for p in pieces for fr in f.feed(p)]
    assert chunked == whole == frames


async def test_sylvac_dtr_request_on_a_port_without_dtr_is_reported_not_a_disconnect(pty_pair):
    master, path = pty_pair
    spec = registry.get("sylvac")
    opts = spec.options.model_validate({"mode": "request", "request_by": "dtr"})
    driver = spec.driver(instrument("ind-1", "sylvac", path, poll_interval=0.05), opts, SYSTEM_CLOCK)
    task = asyncio.create_task(driver.run(Collector()))
    try:
        await wait_until(lambda: "cannot drive DTR" in driver.health.last_error, 3, "the DTR error")
        await asyncio.sleep(0.2)
        assert driver.health.connected and driver.health.reconnects == 0
        os.write(master, b"+001.000\r")
        await wait_until(lambda: driver.health.frames_ok == 1, 2, "a value sent by the gauge anyway")
    finally:
        task.cancel()


async def test_polled_scale_survives_unplug_and_replug():
    spec = registry.get("mtsics")
    opts = spec.options.model_validate({"mode": "poll"})
    sim = spec.simulator("unplug", opts, SYSTEM_CLOCK)
    sim.scenario.unplug_every, sim.scenario.unplug_for = 30, 0.3
    async with sim:
        driver = spec.driver(instrument("scale-1", "mtsics", sim.endpoint["port"], poll_interval=0.01,
                                        timeout=0.3), opts, SYSTEM_CLOCK)
        got = Collector()
        task = asyncio.create_task(driver.run(got))
        try:
            await wait_until(lambda: driver.health.reconnects >= 1, 10, "a reconnect")
            n = len(got.items)
            await wait_until(lambda: len(got.items) >= n + 5, 5, "weights after the replug")
        finally:
            task.cancel()
    it = iter(sim.sent)
    assert all(v in it for v in got.values)


@pytest.mark.parametrize("between", [b"\r\n", b"\n", b"\x00", b"\r\n\x00"])
def test_line_ends_between_binary_frames_are_not_counted_as_junk(between):
    """Some XK3190 firmware ends each binary frame with CR LF after the ETX: those bytes are not noise, and
    counting them would make every other frame look rejected on the status page."""
    from floorwatch.drivers.xk3190 import encode

    frame = encode(12.34, 2)
    f = Framer(b"\x03", start=b"\x02")
    assert f.feed(frame + between + frame + between) == [frame, frame]
    assert f.feed(frame[:5]) == [] and f.feed(frame[5:] + between[:1]) == [frame]
    assert f.feed(between[1:] + frame) == [frame]
    assert f.feed(b"\xff\r\n" + frame) == [b"\xff\r\n", frame]  # real junk still is
