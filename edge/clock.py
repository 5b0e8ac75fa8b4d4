"""The one clock of the gateway.

Every timestamp (UTC nanoseconds) and every timeout comes from a ``Clock`` so that tests can control time.
Pass a clock explicitly where it matters; ``SYSTEM_CLOCK`` is the default.

>>> c = ManualClock(start_ns=1_000)
>>> c.now_ns(), c.monotonic()
(1000, 0.0)
>>> c.advance(2.5)
>>> c.now_ns(), c.monotonic()
(2500001000, 2.5)
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time, UTC, nanoseconds since the Unix epoch (what gets stamped on data)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for timeouts, rates and idle detection)."""


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: for tests and for replaying recorded data."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._ns = start_ns
        self._mono = 0.0

    def now_ns(self) -> int:
        return self._ns

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._ns += round(seconds * 1e9)
        self._mono += seconds


SYSTEM_CLOCK: Clock = SystemClock()
