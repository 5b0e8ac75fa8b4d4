"""Process scenarios every simulator shares: what the simulated instrument measures, and how it fails.

Scenarios (the ``simulate = "..."`` value of an instrument):

``normal``
    a capable, centred process: nominal + Gaussian noise of ``sigma``.
``drift``
    the mean drifts slowly (tool wear): ``drift_per_part`` sigma per part, so that run rules fire
    after a few dozen parts.
``shift``
    centred for ``shift_after`` parts, then the mean jumps by ``shift_sigmas`` sigma (a new coil, a knocked
    fixture).
``out_of_tolerance``
    normal, but every ``bad_every``-th part lies outside the tolerance (nominal ± ``tolerance``).
``noise``
    normal values with garbage bytes on the line every ``noise_every`` frames (bad ground, wrong baud
    rate on a neighbour): the driver must count them as rejected and never turn them into numbers.
``unplug``
    normal values; after every ``unplug_every`` frames the port vanishes for ``unplug_for`` seconds and
    comes back (adapter pulled and replugged).

Gauges produce one event per measured part. Scales (``kind="scale"``) produce the readings a scale shows
while a part is weighed: empty pan, the part settling (unstable), the part stable for a few readings, the
pan empty again — so that the per-part weighing stage has something real to work on.

Everything is deterministic for a given ``seed``.

>>> s = Scenario("shift", nominal=10.0, sigma=0.01, shift_after=3, shift_sigmas=100, seed=1)
>>> [round(e.value) for e in s.take(5)]
[10, 10, 10, 11, 11]
>>> [e.kind for e in Scenario("noise", nominal=1, sigma=0.1, noise_every=2).take(4)]
['value', 'value', 'garbage', 'value']
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

SCENARIOS: tuple[str, ...] = ("normal", "drift", "shift", "out_of_tolerance", "noise", "unplug")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing the simulated instrument does next."""

    kind: Literal["value", "garbage", "unplug"]
    value: float = math.nan
    stable: bool = True
    garbage: bytes = b""
    seconds: float = 0.0  # how long the port stays away (unplug)


class Scenario:
    """An endless, deterministic stream of :class:`Event` for one scenario name."""

    def __init__(
        self,
        name: str,
        *,
        nominal: float,
        sigma: float,
        tolerance: float | None = None,
        kind: Literal["gauge", "scale"] = "gauge",
        seed: int = 0,
        drift_per_part: float = 0.05,
        shift_after: int = 30,
        shift_sigmas: float = 2.0,
        bad_every: int = 7,
        noise_every: int = 4,
        unplug_every: int = 20,
        unplug_for: float = 1.0,
    ) -> None:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; scenarios are: {', '.join(SCENARIOS)}")
        self.name, self.nominal, self.sigma, self.kind = name, nominal, sigma, kind
        self.tolerance = tolerance if tolerance is not None else 4 * sigma
        self.drift_per_part, self.shift_after, self.shift_sigmas = drift_per_part, shift_after, shift_sigmas
        self.bad_every, self.noise_every = bad_every, noise_every
        self.unplug_every, self.unplug_for = unplug_every, unplug_for
        self._rng = random.Random(seed)
        self._events = self._generate()

    # -- the process ------------------------------------------------------------------------------------
    def part_value(self, n: int) -> float:
        """The true value of part ``n`` (0-based) under this scenario."""
        rng, mu, sd = self._rng, self.nominal, self.sigma
        if self.name == "drift":
            mu += self.drift_per_part * sd * n
        elif self.name == "shift" and n >= self.shift_after:
            mu += self.shift_sigmas * sd
        elif self.name == "out_of_tolerance" and n % self.bad_every == self.bad_every - 1:
            side = 1 if (n // self.bad_every) % 2 == 0 else -1
            return mu + side * (self.tolerance + 2 * sd + abs(rng.gauss(0, sd)))
        return rng.gauss(mu, sd)

    def _garbage(self) -> bytes:
        n = self._rng.randint(3, 24)
        # line noise: random bytes, never a terminator-free clean number by accident
        return bytes(self._rng.choice(b"\x00\x7f\xff\xa5?~#%&!") for _ in range(n))

    def _generate(self) -> Iterator[Event]:
        frames = 0
        for n in _count():
            value = self.part_value(n)
            readings = [Event("value", value)] if self.kind == "gauge" else self._weigh(value)
            for ev in readings:
                frames += 1
                yield ev
                if self.name == "noise" and frames % self.noise_every == 0:
                    yield Event("garbage", garbage=self._garbage())
                if self.name == "unplug" and frames % self.unplug_every == 0:
                    yield Event("unplug", seconds=self.unplug_for)

    def _weigh(self, weight: float) -> list[Event]:
        rng, sd = self._rng, self.sigma
        zero = [Event("value", round(rng.gauss(0, sd / 20), 6), stable=True) for _ in range(2)]
        settle = [Event("value", weight * f, stable=False) for f in (0.6, 1.08)]
        stable = [Event("value", weight, stable=True) for _ in range(3)]
        off = [Event("value", weight * 0.3, stable=False)]
        return zero + settle + stable + off

    def next(self) -> Event:
        return next(self._events)

    def take(self, n: int) -> list[Event]:
        return [next(self._events) for _ in range(n)]


def _count() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1
