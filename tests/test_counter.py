"""Production counter semantics: wrap, operator reset, device replacement, rate and line-stopped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floorwatch.drivers.modbus.counters import ProductionCounter


def feed(counter: ProductionCounter, readings: list[tuple[int, float]]) -> list[str]:
    return [counter.update(raw, t).event for raw, t in readings]


def test_steady_production_counts_every_part():
    c = ProductionCounter()
    events = feed(c, [(1000 + 2 * t, float(t)) for t in range(31)])
    assert events[0] == "start" and set(events[1:]) == {"count"}
    assert c.total == 60
    assert c.snapshot(30.0).rate == pytest.approx(120.0)


def test_first_reading_counts_nothing_whatever_the_device_shows():
    c = ProductionCounter()
    assert c.update(4_000_000_000, 0.0).delta == 0
    assert c.total == 0


def test_16_bit_wrap_is_counted_across_the_wrap():
    c = ProductionCounter(modulus=2**16)
    assert feed(c, [(65530, 0.0), (65535, 1.0), (4, 2.0)]) == ["start", "count", "wrap"]
    assert c.total == 5 + 5


def test_32_bit_wrap():
    c = ProductionCounter(modulus=2**32)
    assert feed(c, [(2**32 - 3, 0.0), (7, 1.0)]) == ["start", "wrap"]
    assert c.total == 10


def test_preset_counter_wrapping_at_9999():
    c = ProductionCounter(modulus=10_000)
    assert feed(c, [(9995, 0.0), (3, 1.0)]) == ["start", "wrap"]
    assert c.total == 8


def test_operator_reset_counts_the_parts_made_since_the_reset():
    c = ProductionCounter(modulus=2**32)
    assert feed(c, [(5000, 0.0), (5004, 1.0), (3, 2.0), (9, 3.0)]) == ["start", "count", "reset", "count"]
    assert c.total == 4 + 3 + 6


def test_replacement_with_a_higher_unrelated_value_is_not_a_spike():
    c = ProductionCounter(modulus=2**32)
    upd = [c.update(raw, t) for raw, t in [(5000, 0.0), (5002, 1.0), (3_000_000, 2.0), (3_000_002, 3.0)]]
    assert [u.event for u in upd] == ["start", "count", "replaced", "count"]
    assert c.total == 4
    assert "5002 to 3000000" in upd[2].detail


def test_replacement_with_a_lower_unrelated_value_is_not_negative():
    c = ProductionCounter(modulus=2**16)
    assert feed(c, [(50000, 0.0), (50002, 1.0), (20000, 2.0), (20001, 3.0)]) == ["start", "count", "replaced", "count"]
    assert c.total == 3


def test_a_long_gap_allows_a_proportionally_larger_increase():
    # The device was unreachable for an hour while the line ran at 100 parts/min: those parts count.
    c = ProductionCounter(max_rate=200)
    feed(c, [(1000, 0.0), (7000, 3600.0)])
    assert c.total == 6000


def test_increase_faster_than_the_line_can_run_is_a_replacement():
    c = ProductionCounter(max_rate=60, min_jump=5)  # one part a second at most
    assert feed(c, [(0, 0.0), (4, 1.0), (500, 2.0)]) == ["start", "count", "replaced"]
    assert c.total == 4


def test_unchanged_reading():
    c = ProductionCounter()
    assert feed(c, [(10, 0.0), (10, 1.0)]) == ["start", "unchanged"]


def test_line_stops_after_idle_time_and_restarts_with_the_next_part():
    c = ProductionCounter(idle_after=30)
    feed(c, [(0, 0.0), (5, 10.0), (5, 20.0)])
    assert not c.snapshot(39.9).stopped
    state = c.snapshot(40.0)
    assert state.stopped and state.idle_for == pytest.approx(30.0)
    c.update(6, 41.0)
    assert not c.snapshot(41.0).stopped


def test_line_that_never_produced_is_stopped_after_idle_time():
    c = ProductionCounter(idle_after=5)
    c.update(100, 0.0)
    assert c.snapshot(5.0).stopped


def test_rate_decays_to_zero_when_parts_stop_coming():
    c = ProductionCounter(rate_window=60)
    for t in range(0, 61):
        c.update(2 * t, float(t))
    assert c.snapshot(60.0).rate == pytest.approx(120.0)
    assert c.snapshot(90.0).rate == pytest.approx(60.0)
    assert c.snapshot(121.0).rate == 0.0


def test_snapshot_before_any_reading():
    state = ProductionCounter().snapshot(5.0)
    assert (state.total, state.rate, state.stopped, state.raw) == (0, 0.0, False, None)


@pytest.mark.parametrize(("raw", "error"), [(-1, ValueError), (2**16, ValueError), (True, TypeError), (1.5, TypeError)])
def test_impossible_readings_are_refused(raw, error):
    c = ProductionCounter(modulus=2**16)
    with pytest.raises(error):
        c.update(raw, 0.0)


def test_time_must_not_go_backwards():
    c = ProductionCounter()
    c.update(1, 5.0)
    with pytest.raises(ValueError, match="time order"):
        c.update(2, 4.0)


@pytest.mark.parametrize("kwargs", [{"modulus": 1}, {"max_rate": 0}, {"idle_after": -1}, {"min_jump": -1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        ProductionCounter(**kwargs)


@given(
    modulus=st.sampled_from([2**16, 2**32, 10_000]),
    steps=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.floats(0.0, 30.0)), min_size=1, max_size=60),
)
def test_arbitrary_readings_never_go_negative_nor_spike(modulus, steps):
    c = ProductionCounter(modulus=modulus, max_rate=600, min_jump=10)
    t, previous = 0.0, 0
    for raw, dt in steps:
        t += dt
        update = c.update(raw % modulus, t)
        assert update.delta >= 0
        # never more than the line can make in the elapsed time (or the always-believed burst)
        assert update.delta <= max(10, int(600 * dt / 60) + 1)
        assert c.total == previous + update.delta
        previous = c.total
        state = c.snapshot(t)
        assert state.rate >= 0.0 and state.total == c.total


# ------------------------------------------------------------------ continuing in another process


def restored(counter: ProductionCounter, now: float, down: float, at: float = 0.0, **kwargs) -> ProductionCounter:
    """A new counter continuing ``counter`` after ``down`` seconds without a gateway (as a restart does)."""
    saved = counter.state(now)
    saved["age"] += down
    saved["idle_for"] += down
    other = ProductionCounter(modulus=counter.modulus, **kwargs)
    other.restore(saved, at)
    return other


def test_restored_count_continues_with_the_parts_made_while_down():
    c = ProductionCounter(modulus=2**16)
    feed(c, [(100, 0.0), (160, 30.0)])
    d = restored(c, now=31.0, down=60.0)
    assert d.total == 60 and d.snapshot(0.0).raw == 160
    update = d.update(400, 1.0)  # 240 parts in the 62 s since the last reading: plausible
    assert (update.event, update.delta, d.total) == ("count", 240, 300)


def test_restored_count_judges_wrap_reset_and_replacement_while_down():
    c = ProductionCounter(modulus=2**16, max_rate=600)
    feed(c, [(65000, 0.0), (65500, 60.0)])
    assert feed(restored(c, 60.0, 10.0), [(30, 0.0)]) == ["wrap"]  # 66 parts across the wrap
    d = restored(c, 60.0, 10.0)
    assert (d.update(30, 0.0).delta, d.total) == (66, 566)
    c = ProductionCounter(modulus=2**16, max_rate=600)
    feed(c, [(100, 0.0), (500, 60.0)])
    r = restored(c, 60.0, 30.0)
    assert (r.update(7, 0.0).event, r.total) == ("reset", 407)  # reset meanwhile: the parts since it count
    p = restored(c, 60.0, 30.0)
    assert (p.update(30000, 0.0).event, p.total) == ("replaced", 400)  # never a spike


def test_restored_rate_spreads_the_gap_and_the_line_stays_stopped():
    c = ProductionCounter(modulus=2**16, idle_after=60, rate_window=60)
    feed(c, [(0, 0.0), (10, 5.0)])
    d = restored(c, now=100.0, down=10.0, idle_after=60, rate_window=60)
    assert d.snapshot(0.0).stopped and d.snapshot(0.0).idle_for == pytest.approx(105.0)
    assert d.snapshot(0.0).rate == 0.0
    d.update(20, 1.0)
    state = d.snapshot(1.0)
    assert not state.stopped and state.rate == pytest.approx(10.0)  # 10 parts in the last 60 s


def test_state_before_the_first_reading_continues_nothing():
    saved = ProductionCounter(modulus=2**16).state(5.0)
    d = ProductionCounter(modulus=2**16)
    d.restore(saved, 10.0)
    assert feed(d, [(500, 11.0)]) == ["start"] and d.total == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"modulus": 2**32}, "wrapped at 4294967296"),
    ({"total": -1}, "not a count of parts"),
    ({"total": 1.5}, "not a count of parts"),
    ({"raw": 2**16}, "not a value of this counter"),
    ({"raw": "12"}, "not a value of this counter"),
    ({"age": -3.0}, "not a number of seconds"),
    ({"idle_for": float("nan")}, "not a number of seconds"),
    ({"age": None}, "not a number of seconds"),
])
def test_a_state_that_does_not_fit_is_refused_and_the_counter_left_untouched(change, message):
    c = ProductionCounter(modulus=2**16)
    feed(c, [(1, 0.0), (5, 1.0)])
    d = ProductionCounter(modulus=2**16)
    with pytest.raises(ValueError, match=message):
        d.restore({**c.state(1.0), **change}, 0.0)
    assert d.total == 0 and d.snapshot(0.0).raw is None
    with pytest.raises(ValueError, match="lacks age"):
        d.restore({k: v for k, v in c.state(1.0).items() if k != "age"}, 0.0)


@given(
    before=st.lists(st.tuples(st.integers(0, 2**16 - 1), st.floats(0.0, 30.0)), min_size=1, max_size=20),
    down=st.floats(0.0, 86_400.0),
    after=st.lists(st.tuples(st.integers(0, 2**16 - 1), st.floats(0.0, 30.0)), min_size=1, max_size=20),
)
def test_a_restart_never_makes_the_count_go_back_nor_spike(before, down, after):
    c = ProductionCounter(modulus=2**16, max_rate=600, min_jump=10)
    t = 0.0
    for raw, dt in before:
        t += dt
        c.update(raw, t)
    total = c.total
    d = restored(c, t, down, max_rate=600, min_jump=10)
    assert d.total == total
    now, gap = 0.0, down  # the restored counter's clock starts at 0; its last reading was `down` before
    for raw, dt in after:
        now += dt
        gap += dt
        update = d.update(raw, now)
        assert update.delta >= 0 and d.total == total + update.delta
        # never more than the line can make in the time since the last reading, restart included
        assert update.delta <= max(10, int(600 * gap / 60) + 1)
        total, gap = d.total, 0.0
