"""How long to wait before trying again: the one retry/reconnect delay every loop in Floorwatch uses.

The first wait is short (a port that blinked is back at once), each failure doubles it up to a ceiling (a
broker or database that is down is not hammered), and a success starts over. ``jitter`` spreads the waits of
many gateways that lost the same broker at the same moment, so they do not all come back in one burst.

>>> b = Backoff(first=0.1, maximum=0.5)
>>> [b.next() for _ in range(5)]
[0.1, 0.2, 0.4, 0.5, 0.5]
>>> b.reset(); b.next()
0.1
>>> j = Backoff(first=1.0, maximum=8.0, jitter=0.2)
>>> 0.8 <= j.next() <= 1.2, 1.6 <= j.next() <= 2.4
(True, True)
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Waits ``first``, then twice as long after each failure up to ``maximum``; ``reset()`` after a success.

    ``jitter`` (0–1) multiplies each wait by a random factor in [1 − jitter, 1 + jitter].
    """

    def __init__(self, first: float = 0.1, maximum: float = 5.0, *, jitter: float = 0.0) -> None:
        if first <= 0 or maximum <= 0:
            raise ValueError(f"backoff waits must be positive (first={first}, maximum={maximum})")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"backoff jitter must be in [0, 1), got {jitter}")
        self.first, self.maximum, self.jitter = first, max(maximum, first), jitter
        self._next = self.first

    def next(self) -> float:
        """The wait before the next attempt (and double the one after it)."""
        wait = self._next
        self._next = min(self.maximum, self._next * 2)
        return wait * random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else wait

    async def sleep(self) -> float:
        """Wait ``next()`` seconds on the event loop; returns the wait."""
        wait = self.next()
        await asyncio.sleep(wait)
        return wait

    def reset(self) -> None:
        """A success: the next wait is ``first`` again."""
        self._next = self.first
