"""The disk budget, and the account of everything the spool had to drop.

Budget: after each flush the pages in use (``page_count - freelist_count``) are compared with ``max_bytes``;
beyond it the *oldest* rows are deleted in the same transaction, down to 95 % of the budget (so a long
outage drops data in chunks rather than every second). Rows in the broker's hands (in flight, or
acknowledged and waiting to be deleted) and retained rows are never dropped.

Drop account: every drop — by the budget, from the memory buffer while the disk refuses writes, or a record
the broker can never take — is added to the totals (kept in ``meta``, so they survive restarts and
``stats()`` reports them) and reported with a ``dropped`` event naming its reason. Never silently.

>>> from floorwatch.edge.spool.events import SpoolEvents
>>> from floorwatch.edge.spool.records import Drop
>>> account = DropAccount(SpoolEvents())
>>> account.count_unsaved(Drop(records=1, first_seq=7, last_seq=9, count=3), reason="record too large")
>>> account.totals, account.unsaved
(DropTotals(records=1, count=3, first_seq=7, last_seq=9), True)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from floorwatch.edge.spool.database import SpoolDatabase
from floorwatch.edge.spool.events import SpoolEvents
from floorwatch.edge.spool.records import ROW_OVERHEAD, Drop, DropTally, DropTotals

log = logging.getLogger("floorwatch.edge.spool")

# Drops go down to this share of a bound, so that they come in chunks rather than a few rows every second.
DROP_TO = 0.95
DISK_BUDGET_FULL = "disk budget full"


class DropAccount:
    """Drop totals and their reports. Callers hold the spool's state lock."""

    def __init__(self, events: SpoolEvents) -> None:
        self._events = events
        self.totals = DropTotals()
        # Drops counted in memory (not by a flush's transaction) and how many of them the file holds: the
        # next flush writes the totals while the two differ.
        self._counted = 0
        self._saved = 0

    def restore(self, meta: dict[str, object]) -> None:
        """The totals as stored in the file just opened."""
        self.totals = DropTotals.from_meta(meta)

    def count(self, drop: Drop, reason: str = DISK_BUDGET_FULL) -> None:
        """Count a drop that happened and whose totals are on disk already, and queue its report."""
        self.totals = self.totals.plus(drop)
        self._events.dropped(drop, reason)

    def count_unsaved(self, drop: Drop, reason: str) -> None:
        """Count a drop of records that were never written or are deleted later: its totals go to disk with
        the next flush."""
        self.count(drop, reason)
        self._counted += 1

    @property
    def unsaved(self) -> bool:
        return self._counted != self._saved

    def to_save(self) -> tuple[int, dict[str, object] | None]:
        """For a flush: a mark for ``saved()``, and the totals to write when the file lacks some."""
        return self._counted, (self.totals.as_meta() if self.unsaved else None)

    def saved(self, mark: int) -> None:
        """The flush that took ``mark`` from ``to_save()`` committed (drops counted since still wait)."""
        self._saved = mark


class DiskBudget:
    """Keeps the spool's pages in use under ``max_bytes`` by dropping the oldest rows."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 64 * 1024:
            raise ValueError(f"spool max_bytes ({max_bytes}) is too small; give at least 64 KiB (1 MiB or more "
                             "in a configuration)")
        self.max_bytes = int(max_bytes)
        # Ids the budget is deleting in the transaction in progress: pending() must not hand them out, and if
        # the transaction rolls back they are handed out after all.
        self.dropping: set[int] = set()

    def apply(self, database: SpoolDatabase, lock: threading.RLock, in_hands: Callable[[int], bool]) -> Drop | None:
        """Inside the flush transaction: drop the oldest rows while the pages in use exceed the budget.

        ``lock`` is the spool's state lock (taken per chunk, so pending() goes on meanwhile); ``in_hands(id)``
        says whether the broker has the row already (its acknowledgement decides). Returns what was dropped;
        it is counted and reported only once the transaction committed."""
        used = database.used_bytes()
        if used <= self.max_bytes:
            return None
        target = int(self.max_bytes * DROP_TO)
        tally = DropTally()
        after = 0
        while used > target:
            excess = used - target
            freed = 0
            chunk: list[int] = []
            rows = database.droppable_rows(after)
            with lock:  # pending() must neither hand these out now nor have handed them out
                for rid, first_seq, last_seq, size in rows:
                    after = rid
                    if in_hands(rid):
                        continue
                    chunk.append(rid)
                    self.dropping.add(rid)
                    tally.add(first_seq, last_seq)
                    freed += size + ROW_OVERHEAD
                    if freed >= excess:
                        break
            rows.close()
            if not chunk:
                break  # nothing left to drop
            database.delete(chunk)
            used = database.used_bytes()
        return tally.drop() if tally.records else None

    def rolled_back(self) -> int | None:
        """The transaction did not commit: nothing was dropped. Returns the lowest id it was dropping (to be
        handed out again), or None."""
        lowest = min(self.dropping) if self.dropping else None
        self.dropping.clear()
        return lowest

    def settled(self) -> None:
        """The transaction committed (or a new file was opened): nothing is being dropped any more."""
        self.dropping.clear()
