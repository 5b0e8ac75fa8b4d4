"""What the spool reports to the gateway: every report is built here, in one place.

The spool never loses or skips anything silently: a drop (disk budget, memory buffer, a record the broker
cannot take), a damaged file moved aside and a range of sequence numbers skipped after an unclean stop are
each queued as a ``(kind, detail)`` event. The gateway takes them with ``Spool.drain_events()`` and
publishes them as ``events/spool`` records (``docs/spool.md``, ``docs/payloads.md``).

>>> events = SpoolEvents()
>>> events.sequence_skipped(first_seq=22, last_seq=520, reason="new spool file")
>>> events.drain()
[('sequence_skipped', {'first_seq': 22, 'last_seq': 520, 'count': 499, 'reason': 'new spool file'})]
>>> events.drain()
[]
"""

from __future__ import annotations

from pathlib import Path

from floorwatch.edge.spool.records import Drop

# (kind, detail): "dropped", "corrupt" or "sequence_skipped", and what the report says.
SpoolEvent = tuple[str, dict]


class SpoolEvents:
    """The queue of reports not yet taken by the gateway. Callers hold the spool's state lock."""

    def __init__(self) -> None:
        self.queued: list[SpoolEvent] = []

    def dropped(self, drop: Drop, reason: str) -> None:
        self.queued.append(("dropped", {"first_seq": drop.first_seq, "last_seq": drop.last_seq,
                                        "count": drop.count, "records": drop.records, "reason": reason}))

    def corrupt(self, path: Path, moved_to: Path, error: Exception, lost_records: int | None) -> None:
        """``lost_records``: rows the damaged file held, when known (found while running); None on open."""
        self.queued.append(("corrupt", {"path": str(path), "moved_to": str(moved_to), "error": str(error),
                                        "lost_records": lost_records}))

    def sequence_skipped(self, first_seq: int, last_seq: int, reason: str) -> None:
        self.queued.append(("sequence_skipped", {"first_seq": first_seq, "last_seq": last_seq,
                                                 "count": last_seq - first_seq + 1, "reason": reason}))

    def drain(self) -> list[SpoolEvent]:
        out, self.queued = self.queued, []
        return out
