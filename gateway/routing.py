"""Which characteristic a measurement feeds: the one configured for its instrument and channel.

A measurement no characteristic uses (a Modbus counter's ``rate``, a channel name garbled on the wire) is
counted per (instrument, channel) and not published; ``--log-level debug`` names it. The count is bounded
(:data:`MAX_UNROUTED` distinct pairs), so a stream of odd channel names cannot grow the gateway's memory.
"""

from __future__ import annotations

from floorwatch.edge.model import Measurement
from floorwatch.gateway.characteristic import Characteristic
from floorwatch.gateway.events import EventLog

MAX_UNROUTED = 1000  # distinct unrouted (instrument, channel) pairs counted; bounded against odd channel names


class Routes:
    """(instrument, channel) → characteristic, and the count of measurements that matched none."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self._by_source: dict[tuple[str, str], Characteristic] = {}
        self.unrouted: dict[tuple[str, str], int] = {}  # measurements per (instrument, channel) no one uses

    def add(self, ch: Characteristic) -> None:
        self._by_source[(ch.config.instrument, ch.config.channel)] = ch

    def find(self, m: Measurement) -> Characteristic | None:
        """The characteristic ``m`` feeds, or None (then counted)."""
        key = (m.instrument, m.channel)
        ch = self._by_source.get(key)
        if ch is None:
            if key in self.unrouted or len(self.unrouted) < MAX_UNROUTED:
                self.unrouted[key] = self.unrouted.get(key, 0) + 1
            self.events.debug("measurement_unrouted", instrument=m.instrument, channel=m.channel,
                              fix="add a characteristic with this instrument and channel to use it")
        return ch
