"""Handing committed records out to the publisher, and what became of them: acknowledged, released,
undeliverable. Also the listeners woken when new rows are committed.

Records are handed out in id order, each once, from a *cursor* (the highest id handed out in order);
``release()`` moves the cursor back so that records the broker never acknowledged go out again, oldest
first. An acknowledged record is deleted at the next flush; until that flush commits, ``pending()`` skips it.

>>> from floorwatch.edge.spool.records import Row
>>> delivery = Delivery()
>>> delivery.reset(committed=3)
>>> rows = [Row(i, "t", b"", 1, 0, i, i) for i in (1, 2, 3)]
>>> [r.id for r in delivery.hand_out(rows, skip=set(), limit=10)]
[1, 2, 3]
>>> delivery.ack([2]); delivery.release([1, 3]); delivery.cursor, delivery.skip_above_cursor()
(0, {2})
>>> delivery.backlog(buffered=0)
2
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from floorwatch.edge.spool.records import Row, SpoolRecord

log = logging.getLogger("floorwatch.edge.spool")


class Delivery:
    """Which committed rows are in the broker's hands. Callers hold the spool's state lock (the listeners
    excepted: they are called outside it)."""

    def __init__(self) -> None:
        self._inflight: set[int] = set()  # handed out, not yet acknowledged or released
        self._acked: set[int] = set()  # acknowledged, to be deleted by the next flush
        self._deleting: set[int] = set()  # acknowledged, being deleted by the flush in progress
        self.cursor = 0
        self._committed = 0  # rows in the file, acknowledged ones included until deleted
        self._listeners: list[Callable[[], None]] = []

    def reset(self, committed: int) -> None:
        """A file was opened holding ``committed`` rows: nothing of it is handed out yet."""
        self._committed = committed
        self.cursor = 0
        self._inflight.clear()
        self._acked.clear()
        self._deleting.clear()

    # --- handing out ------------------------------------------------------------------------------------

    def skip_above_cursor(self) -> set[int]:
        """Handed-out and acknowledged ids lie at or below the cursor, except after a release() moved it back:
        only those above it need skipping by the next read."""
        cursor = self.cursor
        return {i for group in (self._inflight, self._acked, self._deleting) for i in group if i > cursor}

    def hand_out(self, rows: Iterable[Row], skip: set[int], limit: int) -> list[SpoolRecord]:
        """Mark the rows read (in id order) as in flight, up to ``limit``, except those in ``skip``."""
        out = []
        for row in rows:
            if row.id in skip:
                continue
            out.append(SpoolRecord(row.id, row.topic, row.payload, row.qos, bool(row.retain), row.first_seq,
                                   row.last_seq))
            self._inflight.add(row.id)
            self.cursor = row.id
            if len(out) == limit:
                break
        return out

    def hand_out_again_from(self, rid: int) -> None:
        """Records from ``rid`` on were skipped by pending() (a drop that did not commit): hand them out."""
        self.cursor = min(self.cursor, rid - 1)

    def in_hands(self, rid: int) -> bool:
        """The broker has this record (its acknowledgement decides), or has acknowledged it."""
        return rid in self._inflight or rid in self._acked or rid in self._deleting

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # --- what became of them ----------------------------------------------------------------------------

    def ack(self, record_ids: Iterable[int]) -> None:
        for rid in record_ids:
            self.give_up(rid)

    def give_up(self, rid: int) -> bool:
        """Delete this record at the next flush (acknowledged, or never deliverable); False if it is already
        acknowledged."""
        self._inflight.discard(rid)
        if rid in self._acked or rid in self._deleting:
            return False
        self._acked.add(rid)
        return True

    def release(self, record_ids: Iterable[int]) -> None:
        ids = [rid for rid in record_ids if rid in self._inflight]
        if ids:
            self._inflight.difference_update(ids)
            self.cursor = min(self.cursor, min(ids) - 1)

    # --- the flush's side -------------------------------------------------------------------------------

    @property
    def has_acked(self) -> bool:
        return bool(self._acked)

    def take_acked(self) -> set[int]:
        """The acknowledged ids for the flush to delete (pending() keeps skipping them until it settles)."""
        self._deleting, self._acked = self._acked, set()
        return self._deleting

    def put_back_acked(self) -> None:
        """The flush failed: its deletions wait for the next one."""
        self._acked |= self._deleting
        self._deleting = set()

    def settled(self, *, written: int, deleted: int, dropped: int) -> None:
        """The flush committed: ``written`` rows added, ``deleted`` acknowledged and ``dropped`` rows gone."""
        self._committed += written - deleted - dropped
        self._deleting = set()

    def backlog(self, buffered: int) -> int:
        """Records stored or ``buffered`` (in memory, or being written) and not yet acknowledged."""
        return self._committed - len(self._acked) - len(self._deleting) + buffered

    @property
    def unacknowledged_committed(self) -> int:
        """Rows in the file the broker has not acknowledged (what a damaged file takes with it)."""
        return self._committed - len(self._acked) - len(self._deleting)

    # --- listeners --------------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def notify(self) -> None:
        """New rows were committed (called from the flushing thread, outside the locks)."""
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener must not break the writer
                log.exception("spool listener failed")

