"""Production counting from a device counter that wraps, gets reset and gets replaced.

A line counter (a PLC register, an Autonics counter, an ADAM module) holds a raw number that only means
something as a difference between two readings. Three things break the naive ``new - old``:

* **wrap**: a 16-bit counter goes 65535 -> 0 (32-bit: 4294967295 -> 0, or a preset limit such as 9999);
* **operator reset**: someone presses reset and the counter restarts near 0;
* **device replacement**: a new counter (or a PLC program download) starts from an unrelated number.

Each reading is judged against what the line can physically produce in the time since the previous
reading (``max_rate`` parts per minute). A difference within that is counted, whether it came straight,
across a wrap, or from zero after a reset. Anything else is a replacement: the new value becomes the
baseline and nothing is counted for that step. So the production count never goes negative and never
jumps by millions; at worst the parts made between the last good reading and a replacement are lost.

:class:`ProductionCounter` is pure: it does no I/O and reads no clock; callers pass ``now`` (monotonic
seconds). :class:`ProductionCounters` holds one per counter point of a Modbus instrument, turns each raw
reading into the driver's measurements (count, rate, line stopped) and keeps the counts across restarts.

>>> c = ProductionCounter(modulus=2**16, idle_after=60)
>>> [c.update(raw, t).event for raw, t in [(65530, 0), (65534, 2), (3, 4), (1, 6), (48213, 8)]]
['start', 'count', 'wrap', 'reset', 'replaced']
>>> c.total  # 4 + 5 (across the wrap) + 1 (after the reset); nothing for the replacement
10
>>> c.snapshot(8.0).rate  # parts per minute over the readings so far
75.0
>>> c.snapshot(100.0).stopped  # no new part for 60 s or more
True

The count can continue in another process (a gateway restart): ``state(now)`` says where it stands, and
``restore(state, now)`` on a new counter takes it up again. The caller adds the time it was down to the
saved ``age``; the first reading afterwards is judged against the saved raw value with the usual rules,
over the whole time since the last reading before the restart:

>>> saved = c.state(8.0)
>>> saved["total"], saved["raw"], saved["age"]
(10, 48213, 0.0)
>>> saved["age"] += 30.0  # the gateway was down for 30 s
>>> d = ProductionCounter(modulus=2**16, idle_after=60)
>>> d.restore(saved, now=0.0)
>>> d.update(48263, 1.0).event, d.total  # 50 parts made meanwhile: plausible in 31 s
('count', 60)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from floorwatch.drivers.modbus.plan import BoundPoint
from floorwatch.drivers.modbus.points import ModbusOptions, derived_channel
from floorwatch.edge.clock import Clock
from floorwatch.edge.model import Measurement, MeasurementStatus

Event = Literal["start", "count", "unchanged", "wrap", "reset", "replaced"]

EVENT_TEXT: dict[str, str] = {
    "start": "first reading: counting starts here",
    "count": "",
    "unchanged": "",
    "wrap": "device counter wrapped around",
    "reset": "device counter was reset (operator reset): counting goes on from zero",
    "replaced": "device counter jumped to an unrelated value (device replaced or reprogrammed): "
    "counting goes on from the new value",
}


@dataclass(frozen=True, slots=True)
class CounterState:
    """The count as the line supervisor sees it."""

    total: int  # parts produced since counting started (never negative, never a spike)
    rate: float  # parts per minute over the rate window
    stopped: bool  # no new part for idle_after seconds
    idle_for: float  # seconds since the last new part (or since the first reading)
    raw: int | None  # the device's own counter value, last read


@dataclass(frozen=True, slots=True)
class CounterUpdate:
    """What one raw reading did to the count."""

    event: Event
    delta: int  # parts counted from this reading (>= 0)
    total: int
    raw: int
    detail: str


class ProductionCounter:
    """Turns successive raw counter readings into a production count, a rate and a line-stopped state.

    ``modulus``: the value at which the device counter wraps to 0 (``2**16``, ``2**32``, or a preset limit
    such as 10000 for a counter that counts 0..9999). ``max_rate``: the most parts per minute the line can
    make; any larger increase is not believed. ``min_jump``: an increase always believed regardless of
    elapsed time (so that two readings close together still count a burst). ``rate_window``: seconds over
    which the rate is averaged. ``idle_after``: seconds without a new part before the line is "stopped".
    """

    def __init__(
        self,
        *,
        modulus: int = 2**32,
        max_rate: float = 6000.0,
        min_jump: int = 10,
        rate_window: float = 60.0,
        idle_after: float = 300.0,
    ) -> None:
        if modulus < 2:
            raise ValueError(f"counter modulus must be at least 2, got {modulus}")
        if max_rate <= 0 or rate_window <= 0 or idle_after <= 0:
            raise ValueError("max_rate, rate_window and idle_after must be positive")
        if min_jump < 0:
            raise ValueError("min_jump must not be negative")
        self.modulus = modulus
        self.max_rate = max_rate
        self.min_jump = min_jump
        self.rate_window = rate_window
        self.idle_after = idle_after
        self.total = 0
        self._raw: int | None = None
        self._last_t: float | None = None
        self._first_t: float | None = None
        self._last_part_t: float | None = None
        self._history: deque[tuple[float, int]] = deque()

    STATE_KEYS = ("modulus", "total", "raw", "age", "idle_for")

    def state(self, now: float) -> dict[str, int | float | None]:
        """Where the count stands at ``now``, as plain JSON-ready numbers: the modulus, the total, the last
        raw reading, the seconds since that reading (``age``) and since the last new part (``idle_for``).
        Nothing is saved before the first reading (``raw`` is None): there is nothing to continue."""
        if self._raw is None or self._last_t is None or self._first_t is None:
            return {"modulus": self.modulus, "total": self.total, "raw": None, "age": 0.0, "idle_for": 0.0}
        since = self._last_part_t if self._last_part_t is not None else self._first_t
        return {
            "modulus": self.modulus,
            "total": self.total,
            "raw": self._raw,
            "age": max(0.0, now - self._last_t),
            "idle_for": max(0.0, now - since),
        }

    def restore(self, state: dict[str, object], now: float) -> None:
        """Continue the count from :meth:`state` of an earlier counter, taken ``age`` seconds before ``now``
        (the caller adds the time nothing was running to both ``age`` and ``idle_for``).

        The next reading is then judged against the saved raw value over the whole gap: parts the device
        made meanwhile are counted, a wrap meanwhile too, and a reset or a replacement meanwhile follows
        the usual rules (never negative, never a spike). The rate starts from the saved reading, so the parts
        made meanwhile are spread over the gap instead of making a rate spike. Raises ``ValueError`` (with
        the reason) for a state that does not fit this counter; the counter is then left untouched.
        """
        if not isinstance(state, dict):
            raise ValueError(f"a counter state is a mapping, not {type(state).__name__}")
        missing = [k for k in self.STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"counter state lacks {', '.join(missing)}")
        modulus, total, raw, age, idle_for = (state[k] for k in self.STATE_KEYS)
        if modulus != self.modulus:
            raise ValueError(f"the saved counter wrapped at {modulus}, this one at {self.modulus}")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"saved total {total!r} is not a count of parts")
        if raw is None:
            return  # saved before its first reading: nothing to continue
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < self.modulus:
            raise ValueError(f"saved raw reading {raw!r} is not a value of this counter (0..{self.modulus - 1})")
        times = []
        for name, value in (("age", age), ("idle_for", idle_for)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"saved {name} {value!r} is not a number of seconds")
            times.append(float(value))
        age, idle_for = times
        last_t = now - age
        self.total = total
        self._raw = raw
        self._last_t = self._first_t = last_t
        self._last_part_t = now - idle_for
        self._history = deque([(last_t, total)])

    def _plausible(self, elapsed: float) -> int:
        """Largest increase the line can have made in ``elapsed`` seconds (never half the modulus or more,
        so that a wrap stays distinguishable from a replacement)."""
        limit = max(self.min_jump, int(self.max_rate * max(elapsed, 0.0) / 60.0) + 1)
        return min(limit, (self.modulus - 1) // 2)

    def update(self, raw: int, now: float) -> CounterUpdate:
        """Account for one reading of the device counter taken at ``now`` (monotonic seconds)."""
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise TypeError(f"a counter reading must be an integer, got {raw!r}")
        if not 0 <= raw < self.modulus:
            raise ValueError(f"counter reading {raw} is outside 0..{self.modulus - 1}; check the type and wrap_at")
        if self._last_t is not None and now < self._last_t:
            raise ValueError("readings must come in time order")
        if self._raw is None or self._last_t is None:
            self._raw, self._last_t, self._first_t = raw, now, now
            self._history.append((now, self.total))
            return CounterUpdate("start", 0, self.total, raw, EVENT_TEXT["start"])
        prev, limit = self._raw, self._plausible(now - self._last_t)
        event: Event
        if raw == prev:
            event, delta = "unchanged", 0
        elif raw > prev and raw - prev <= limit:
            event, delta = "count", raw - prev
        elif raw < prev and raw + self.modulus - prev <= limit:
            event, delta = "wrap", raw + self.modulus - prev
        elif raw < prev and raw <= limit:
            event, delta = "reset", raw
        else:
            event, delta = "replaced", 0
        self._raw, self._last_t = raw, now
        self.total += delta
        if delta:
            self._last_part_t = now
        self._history.append((now, self.total))
        while len(self._history) > 2 and self._history[1][0] <= now - self.rate_window:
            self._history.popleft()
        detail = EVENT_TEXT[event]
        if event == "replaced":
            detail = f"counter went from {prev} to {raw}: " + detail
        return CounterUpdate(event, delta, self.total, raw, detail)

    def snapshot(self, now: float) -> CounterState:
        """Count, rate and stopped state at ``now``; the rate decays and the line stops as time passes
        without parts, even when no new reading arrives."""
        if self._first_t is None:
            return CounterState(total=0, rate=0.0, stopped=False, idle_for=0.0, raw=None)
        # total at the start of the window: the latest recorded total at or before it
        start_t = max(self._first_t, now - self.rate_window)
        base = self._history[0][1]
        for t, total in self._history:
            if t <= start_t:
                base = total
            else:
                break
        span = now - start_t
        rate = (self.total - base) / span * 60.0 if span > 0 else 0.0
        since = self._last_part_t if self._last_part_t is not None else self._first_t
        idle_for = max(0.0, now - since)
        return CounterState(
            total=self.total,
            rate=rate,
            stopped=idle_for >= self.idle_after,
            idle_for=idle_for,
            raw=self._raw,
        )


# ------------------------------------------------------------------------- the counters of one instrument
# Format of the counters' saved state (Driver.state); a state of another format is not continued.
COUNTER_STATE_FORMAT = "modbus-counters/1"


@dataclass(frozen=True, slots=True)
class CounterIdentity:
    """What a saved count belongs to: the same register of the same unit, read the same way."""

    unit_id: int
    function: str
    address: int
    type: str
    order: str
    modulus: int

    @classmethod
    def of(cls, b: BoundPoint) -> CounterIdentity:
        p = b.point
        return cls(b.unit_id, p.function, p.address, p.kind, p.order, p.modulus)

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


@dataclass(slots=True)
class CounterHealth:
    """One counter in ``health.extra["counters"]``: its count, the device's raw value, what happened to it."""

    wraps: int = 0
    resets: int = 0
    replacements: int = 0
    total: int | None = None
    raw: int | None = None
    rate: float | None = None
    stopped: bool | None = None
    idle_for: float | None = None
    last_event: str | None = None

    def note(self, event: Event) -> None:
        if event == "wrap":
            self.wraps += 1
        elif event == "reset":
            self.resets += 1
        elif event == "replaced":
            self.replacements += 1
        self.last_event = event

    def as_dict(self) -> dict[str, int | float | bool | str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class CounterReading:
    """What one raw reading of a counter point gives: the count, the rate and the line-stopped flag as
    measurements (not stamped yet: the driver stamps them); or, for a reading the counter refuses, one error
    measurement and the reason."""

    measurements: tuple[Measurement, ...]
    refused: str = ""


class ProductionCounters(Mapping[str, ProductionCounter]):
    """The production counters of one Modbus instrument, by channel (one per counter point and unit)."""

    def __init__(self, bound: Iterable[BoundPoint], options: ModbusOptions, clock: Clock) -> None:
        self.clock = clock
        self._points = {b.channel: b for b in bound if b.point.counter}
        self._counters = {
            channel: ProductionCounter(
                modulus=b.point.modulus,
                max_rate=options.max_rate,
                rate_window=options.rate_window,
                idle_after=options.idle_after,
            )
            for channel, b in self._points.items()
        }
        self._health: dict[str, CounterHealth] = {}

    def __getitem__(self, channel: str) -> ProductionCounter:
        return self._counters[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counters)

    def __len__(self) -> int:
        return len(self._counters)

    def health(self) -> dict[str, dict[str, int | float | bool | str]]:
        """Per counter: totals, wraps, resets, replacements, the raw value and the last event."""
        return {channel: h.as_dict() for channel, h in self._health.items()}

    def read(self, b: BoundPoint, raw: int) -> CounterReading:
        """Account for one raw reading of counter point ``b``, read now."""
        counter, unit = self._counters[b.channel], b.point.unit or "pcs"
        now = self.clock.monotonic()
        try:
            update = counter.update(raw, now)
        except ValueError as exc:
            detail = f"{b.channel or 'counter'}: {exc}"
            error = Measurement(math.nan, unit, MeasurementStatus.ERROR, b.channel, detail)
            return CounterReading((error,), refused=detail)
        state = counter.snapshot(now)
        detail = "" if update.event in ("count", "unchanged") else update.detail
        stopped = f"line stopped: no new part for {state.idle_for:.0f} s" if state.stopped else ""
        health = self._health.setdefault(b.channel, CounterHealth())
        health.note(update.event)
        health.total, health.raw, health.rate = state.total, raw, round(state.rate, 3)
        health.stopped, health.idle_for = state.stopped, round(state.idle_for, 1)
        return CounterReading((
            Measurement(float(state.total), unit, MeasurementStatus.OK, b.channel, detail),
            Measurement(state.rate, "parts/min", MeasurementStatus.OK, derived_channel(b.channel, "rate")),
            Measurement(1.0 if state.stopped else 0.0, "", MeasurementStatus.OK,
                        derived_channel(b.channel, "stopped"), stopped),
        ))

    # ---------------------------------------------------------------- state across restarts
    def state(self, *, simulated: bool) -> dict[str, Any]:
        """The production counts as a JSON-ready mapping, so that the next run continues them."""
        now = self.clock.monotonic()
        return {
            "format": COUNTER_STATE_FORMAT,
            "saved_ns": self.clock.now_ns(),
            "simulated": simulated,
            "counters": {
                channel: {"point": CounterIdentity.of(self._points[channel]).as_dict(), **counter.state(now)}
                for channel, counter in self._counters.items()
            },
        }

    def restore(self, state: dict[str, Any], *, simulated: bool) -> list[str]:
        """Continue the production counts of an earlier run. The time the gateway was down (wall clock,
        never negative) is added to each counter's gap, so the first reading is judged with the usual rules
        over the whole gap: parts made meanwhile are counted, a wrap, reset or replacement meanwhile is
        judged as always (never negative, never a spike). A count whose register, type, word order or wrap
        changed is not continued; nor is any count of a simulated device, which is new with every run.
        Returns one line per count not continued, and why."""
        if not state:
            return []
        if not isinstance(state, dict) or state.get("format") != COUNTER_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            return [f"saved counter state has format {found!r}, this version reads {COUNTER_STATE_FORMAT!r}: "
                    "counting starts from 0"]
        if simulated or state.get("simulated"):
            return ["a simulated device is new with every run: counting starts from 0"]
        saved_ns, counters = state.get("saved_ns"), state.get("counters")
        if isinstance(saved_ns, bool) or not isinstance(saved_ns, int) or not isinstance(counters, dict):
            return ["saved counter state lacks 'saved_ns' or 'counters': counting starts from 0"]
        gap = max(0.0, (self.clock.now_ns() - saved_ns) / 1e9)
        now = self.clock.monotonic()
        notes = []
        for channel, saved in counters.items():
            label = channel or "(main value)"
            if channel not in self._counters:
                notes.append(f"counter {label} is no longer in the register map: its saved count is dropped")
                continue
            if not isinstance(saved, dict) or saved.get("point") != CounterIdentity.of(self._points[channel]).as_dict():
                notes.append(f"counter {label}: the register map changed (unit, address, type, order or wrap): "
                             "counting starts from 0")
                continue
            shifted = dict(saved)
            for key in ("age", "idle_for"):
                value = shifted.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    shifted[key] = value + gap
            counter = self._counters[channel]
            try:
                counter.restore(shifted, now)
            except ValueError as exc:
                notes.append(f"counter {label}: {exc}: counting starts from 0")
                continue
            health = self._health.setdefault(channel, CounterHealth())
            health.total, health.raw, health.last_event = counter.total, saved.get("raw"), "restored"
        return notes
