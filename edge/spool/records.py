"""The records the spool's parts pass between them, and the two the gateway sees.

``SpoolRecord`` (a stored message handed out for publishing) and ``SpoolError`` are the public ones; ``Row``
is one outbox row as SQLite stores it, ``Drop`` what one drop took away, ``DropTally`` adds a drop up row by
row, and ``DropTotals`` are the totals kept in the spool's ``meta`` table across restarts.

>>> tally = DropTally()
>>> tally.add(first_seq=1, last_seq=500); tally.add(first_seq=None, last_seq=None); tally.add(501, 1000)
>>> tally.drop()
Drop(records=3, first_seq=1, last_seq=1000, count=1000)
>>> DropTotals().plus(tally.drop()).as_meta()["dropped_count"]
1000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# A row costs its payload and topic plus SQLite's per-row overhead; used to estimate how many of the oldest
# rows to drop when the budget is exceeded (the budget itself is measured in pages in use) and how much the
# write buffer holds.
ROW_OVERHEAD = 48


class SpoolError(RuntimeError):
    """The spool cannot be used (e.g. its directory is not writable); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One stored MQTT message. ``first_seq``/``last_seq`` are None for unnumbered messages."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    first_seq: int | None
    last_seq: int | None


class Row(NamedTuple):
    """One outbox row, in the table's column order (so a list of them goes to ``executemany`` as it is)."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: int  # 0 or 1, as SQLite stores it
    first_seq: int | None
    last_seq: int | None

    @property
    def size(self) -> int:
        """Bytes this row is reckoned to cost in memory or on disk."""
        return len(self.payload) + len(self.topic) + ROW_OVERHEAD


@dataclass(frozen=True, slots=True)
class Drop:
    """What one drop took away: ``records`` messages carrying ``count`` numbered items, the lowest and highest
    of their sequence numbers (None when none of them was numbered)."""

    records: int
    first_seq: int | None
    last_seq: int | None
    count: int


class DropTally:
    """Adds up a drop one record at a time (oldest first)."""

    def __init__(self) -> None:
        self.records = 0
        self.count = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None

    def add(self, first_seq: int | None, last_seq: int | None) -> None:
        self.records += 1
        if first_seq is None:
            return  # an unnumbered message (a retained state copy): counted as a record, carries no number
        last = last_seq if last_seq is not None else first_seq
        self.first_seq = first_seq if self.first_seq is None else min(self.first_seq, first_seq)
        self.last_seq = last if self.last_seq is None else max(self.last_seq, last)
        self.count += last - first_seq + 1

    def drop(self) -> Drop:
        return Drop(self.records, self.first_seq, self.last_seq, self.count)


@dataclass(frozen=True, slots=True)
class DropTotals:
    """Every drop since the spool file was created; stored in ``meta`` so that ``stats()`` reports them after
    a restart too."""

    records: int = 0
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, object]) -> DropTotals:
        def number(key: str) -> int | None:
            value = meta.get(key)
            return None if value is None else int(value)  # type: ignore[call-overload]

        return cls(number("dropped_records") or 0, number("dropped_count") or 0, number("dropped_first_seq"),
                   number("dropped_last_seq"))

    def plus(self, drop: Drop) -> DropTotals:
        first, last = self.first_seq, self.last_seq
        if drop.first_seq is not None:
            drop_last = drop.last_seq if drop.last_seq is not None else drop.first_seq
            first = drop.first_seq if first is None else min(first, drop.first_seq)
            last = drop_last if last is None else max(last, drop_last)
        return DropTotals(self.records + drop.records, self.count + drop.count, first, last)

    def as_meta(self) -> dict[str, object]:
        return {"dropped_records": self.records, "dropped_count": self.count,
                "dropped_first_seq": self.first_seq, "dropped_last_seq": self.last_seq}
