"""The gateway's sequence numbers as the spool issues them: never reused, never skipped without a report.

``issue(n)`` hands out n consecutive numbers in memory; the spool's flush commits the highest issued number
(``meta.last_seq``) in the same transaction as the rows carrying them, so after a crash or SIGKILL the
numbers resume right after the committed one: no gap, no reuse.

A power cut is the one case where committed-but-not-yet-on-disk numbers could come back (with
``synchronous=NORMAL`` the last commits may not have reached the card, yet their messages may have been
published). The side file ``<spool>.seq`` — a ``floorwatch.edge.sequence.SequenceCounter``, fsynced — holds a
*reservation* above every number ever committed, written only every ``reserve`` numbers. When the previous
run did not close cleanly and the machine has rebooted since, or when the spool file is new (first start,
deleted, or moved aside as corrupt), numbering resumes above the reservation instead: a gap, reported as a
``sequence_skipped`` event, never a reuse.

>>> import tempfile, pathlib
>>> from floorwatch.edge.spool.events import SpoolEvents
>>> numbers = SequenceNumbers(pathlib.Path(tempfile.mkdtemp()) / "spool.sqlite", reserve=1000, events=SpoolEvents())
>>> numbers.load_reservation()
>>> numbers.issue(3), numbers.issue(), numbers.unsaved
(1, 4, True)
>>> numbers.reserve_beyond(4); numbers.committed(4); numbers.unsaved
False
"""

from __future__ import annotations

import logging
from pathlib import Path

from floorwatch.edge.sequence import SequenceCounter
from floorwatch.edge.spool.database import StoredState
from floorwatch.edge.spool.events import SpoolEvents

log = logging.getLogger("floorwatch.edge.spool")


class SequenceNumbers:
    """Issued and committed numbers, and the fsynced reservation above them. Callers hold the state lock for
    ``issue()`` and the settling calls; ``reserve_beyond()`` runs in the flush, before its transaction."""

    def __init__(self, spool_path: Path, *, reserve: int, events: SpoolEvents) -> None:
        if reserve < 1:
            raise ValueError("seq_reserve must be at least 1")
        self.reserve = reserve
        self._reservation_path = spool_path.with_name(spool_path.name + ".seq")
        self._reservation: SequenceCounter | None = None
        self._events = events
        self._path = spool_path
        self.last_issued = 0
        self.last_committed = 0
        self.skipped = 0  # numbers skipped since this spool object was made (reported in stats())

    def load_reservation(self) -> None:
        """Read the side file (raises ``SequenceError`` with advice when it is damaged)."""
        self._reservation = SequenceCounter(self._reservation_path)

    def resume(self, stored: StoredState, *, known_last: int | None = None) -> int:
        """Where numbering goes on in the file just opened; returns the highest number accounted for.

        ``known_last``: the highest number this process issued, when the file was replaced while running
        (every number up to it is accounted for in memory, so nothing is skipped)."""
        reserved = self._held().last_committed
        committed = stored.last_seq or 0
        reason = ""
        if stored.last_seq is None and reserved:
            reason = "new spool file"
        elif not stored.clean and not stored.same_boot:
            reason = "unclean stop and the machine restarted since (commits may have been lost)"
        resume = committed
        if known_last is not None:
            resume = max(committed, known_last)
        elif reason and reserved > committed:
            resume = reserved
            self.skipped += reserved - committed
            self._events.sequence_skipped(committed + 1, reserved, reason)
            log.warning("spool %s: sequence numbers %d..%d skipped: %s", self._path, committed + 1, reserved, reason)
        self.last_issued = self.last_committed = resume
        return resume

    def issue(self, n: int = 1) -> int:
        if n < 1:
            raise ValueError(f"issue at least one sequence number, not {n}")
        first = self.last_issued + 1
        self.last_issued += n
        return first

    @property
    def unsaved(self) -> bool:
        """Numbers were issued since the last commit."""
        return self.last_issued != self.last_committed

    def reserve_beyond(self, last: int) -> None:
        """Before a transaction commits numbers up to ``last``: the fsynced reservation must stay above every
        number that can become visible."""
        reservation = self._held()
        if last <= reservation.last_committed:
            return
        ahead = last + self.reserve - reservation.last_issued
        if ahead > 0:  # (a reservation taken but not fsynced last time, when the fsync failed, is reused)
            reservation.take(ahead)
        reservation.commit()

    def committed(self, last: int) -> None:
        """The transaction that recorded ``last`` committed."""
        self.last_committed = last

    def _held(self) -> SequenceCounter:
        if self._reservation is None:
            raise RuntimeError("the sequence reservation is read when the spool opens")
        return self._reservation

