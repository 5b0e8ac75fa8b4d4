"""The ``Spool`` facade: the one object the gateway and the publisher use, composed of the spool's parts.

Each part keeps its own state (see the package docstring for the list); the facade holds the two locks and
runs the flush, the one step that touches every part. Threads: the gateway runs ``flush()`` in a worker
thread while the event loop calls ``issue()``, ``add()``, ``pending()``, ``ack()`` and ``backlog()``. Those
never wait for the flush's transaction (a commit, a WAL checkpoint's fsync on a slow SD card): the flush
takes what it writes from memory and settles afterwards under a short lock, holding a second lock for the
database meanwhile; ``pending()`` reads committed rows through a connection of its own (WAL readers do not
wait for the writer).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.spool.budget import DiskBudget, DropAccount
from floorwatch.edge.spool.buffer import WriteBuffer
from floorwatch.edge.spool.database import SpoolDatabase
from floorwatch.edge.spool.delivery import Delivery
from floorwatch.edge.spool.events import SpoolEvent, SpoolEvents
from floorwatch.edge.spool.records import DropTally, SpoolError, SpoolRecord
from floorwatch.edge.spool.recovery import CorruptionRecovery, is_corruption
from floorwatch.edge.spool.sequence import SequenceNumbers

log = logging.getLogger("floorwatch.edge.spool")

MEMORY_FULL = "the disk refuses writes and the memory buffer is full"


class Spool:
    """Store-and-forward spool (see the package docstring). Use as a context manager, or call ``open()``
    and ``close()``.

    ``max_bytes``: the disk budget; ``seq_reserve``: how far ahead the fsynced side file reserves sequence
    numbers; ``max_buffer_bytes``: how much may wait in memory while the disk refuses writes (64 MiB, or
    ``max_bytes`` if smaller).
    """

    def __init__(self, path: Path, *, max_bytes: int, clock: Clock = SYSTEM_CLOCK,
                 seq_reserve: int = 1_000_000, max_buffer_bytes: int | None = None) -> None:
        self.path = Path(path)
        self._budget = DiskBudget(max_bytes)
        # While the disk refuses writes, records wait in memory: at most this much (then the oldest go).
        self._buffer = WriteBuffer(max_buffer_bytes if max_buffer_bytes is not None
                                   else min(self._budget.max_bytes, 64 * 1024**2))
        self._events = SpoolEvents()
        self._numbers = SequenceNumbers(self.path, reserve=seq_reserve, events=self._events)
        self._drops = DropAccount(self._events)
        self._database = SpoolDatabase(self.path)
        self._recovery = CorruptionRecovery(self.path, clock, self._events)
        self._delivery = Delivery()
        # Two locks, always taken in this order: ``_db_lock`` for the writing connection (a flush holds it for
        # its whole transaction, fsyncs included), ``_lock`` for the state in memory (held only briefly), so
        # that add(), issue(), ack() and pending() on the event loop never wait for a flush in progress.
        self._db_lock = threading.RLock()
        self._lock = threading.RLock()

    @property
    def max_bytes(self) -> int:
        return self._budget.max_bytes

    @property
    def max_buffer_bytes(self) -> int:
        return self._buffer.max_bytes

    @property
    def seq_reserve(self) -> int:
        return self._numbers.reserve

    @property
    def clock(self) -> Clock:
        return self._recovery.clock

    @property
    def events(self) -> list[SpoolEvent]:
        """The reports not yet drained (``drain_events()`` takes them)."""
        return self._events.queued

    # --- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open (or create) the spool; a damaged file is moved aside and reported, and a new one started."""
        with self._db_lock, self._lock:
            if self._database.is_open:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SpoolError(f"spool directory {self.path.parent}: {exc.strerror}; check gateway.data_dir "
                                 "exists and is writable by the gateway's user") from None
            self._numbers.load_reservation()
            try:
                self._open_file(check=True)
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise SpoolError(f"spool {self.path}: {exc}; check the disk and the file's permissions") \
                        from None
                self._recovery.move_aside(exc)
                self._open_file(check=False)

    def close(self) -> None:
        """Flush what is buffered, mark the spool cleanly closed and close the file."""
        with self._db_lock, self._lock:
            if not self._database.is_open:
                return
            self._flush_db()
            self._database.close()

    def _open_file(self, *, check: bool, known_last: int | None = None) -> None:
        """With both locks held. ``known_last``: the highest number issued by this process (the file was
        replaced while running)."""
        with self._database.opening(check=check) as stored:
            last_seq = self._numbers.resume(stored, known_last=known_last)
            self._drops.restore(stored.meta)
            self._recovery.restore(stored.meta)
            self._buffer.follow(stored.max_id)
            self._delivery.reset(committed=stored.rows)
            self._budget.settled()
            self._database.set_meta({"last_seq": last_seq, "corrupt_moved": self._recovery.moved})

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """With both locks held: corruption found while running. Keep what is in memory, move the file aside,
        start afresh; numbering goes on where it was (this process knows every number it issued)."""
        self._database.abandon()
        self._recovery.move_aside(exc, lost_records=self._delivery.unacknowledged_committed)
        self._open_file(check=False, known_last=self._numbers.last_issued)

    # --- sequence numbers -----------------------------------------------------------------------------

    def issue(self, n: int = 1) -> int:
        """Issue ``n`` consecutive gateway sequence numbers and return the first.

        Add the records carrying them before the next ``flush()`` (the flush commits the numbers).
        """
        with self._lock:
            return self._numbers.issue(n)

    @property
    def last_seq(self) -> int:
        """The highest issued sequence number."""
        return self._numbers.last_issued

    # --- writing ----------------------------------------------------------------------------------------

    def add(self, topic: str, payload: bytes, *, first_seq: int | None, last_seq: int | None,
            qos: int = 1, retain: bool = False) -> None:
        """Buffer one outgoing message in memory; it reaches the disk at the next ``flush()``."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"spool payload must be bytes, not {type(payload).__name__} (encode it first)")
        with self._lock:
            self._buffer.add(topic, bytes(payload), qos=qos, retain=retain, first_seq=first_seq,
                             last_seq=last_seq)

    def flush(self) -> int:
        """Write buffered rows, acknowledged deletions and the sequence number in one transaction.

        Returns the number of rows written. Applies the disk budget in the same transaction.
        """
        with self._db_lock:
            written = self._flush_db()
        if written:
            self._delivery.notify()
        return written

    def _flush_db(self) -> int:
        """With ``_db_lock`` held: write what waits (``_lock`` is taken only to take it and to settle)."""
        with self._lock:
            if not self._database.is_open:
                raise SpoolError("spool is not open; call open() or use it as a context manager")
            if not (self._buffer or self._delivery.has_acked or self._numbers.unsaved or self._drops.unsaved):
                return 0
        try:
            return self._write()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                with self._lock:
                    self._bound_buffer()
                raise SpoolError(f"spool {self.path}: cannot write: {exc}; check free space and the disk") \
                    from None
            with self._lock:
                self._recover(exc)
            return self._write()

    def _bound_buffer(self) -> None:
        """With ``_lock`` held: the disk refused the flush. Keep what waits in memory under
        ``max_buffer_bytes``; what had to go is counted and reported like a disk-budget drop."""
        drop = self._buffer.shed_oldest()
        if drop is None:
            return
        self._drops.count_unsaved(drop, MEMORY_FULL)
        log.warning("spool %s: the disk refuses writes and %d bytes wait in memory: dropped the %d oldest "
                    "records not yet on disk (seq %s..%s)", self.path, self._buffer.max_bytes, drop.records,
                    drop.first_seq, drop.last_seq)

    def _write(self) -> int:
        """One transaction, with ``_db_lock`` held. What it writes is taken from memory under ``_lock`` first
        and settled under ``_lock`` after COMMIT; in between, add()/ack()/pending() go on. Until the commit,
        the acknowledged ids it deletes are skipped by pending() and its rows, in neither the buffer nor the
        file, are counted by backlog() as being written."""
        database = self._database
        with self._lock:
            rows = self._buffer.take()
            acked = self._delivery.take_acked()
            last = self._numbers.last_issued
            drops_mark, drop_totals = self._drops.to_save()
        try:
            self._numbers.reserve_beyond(last)
            with database.transaction():
                if rows:
                    database.insert(rows)
                deleted = database.delete(acked) if acked else 0
                if last != self._numbers.last_committed:
                    database.set_meta({"last_seq": last})
                if drop_totals is not None:  # records dropped from memory (disk refusing writes, undeliverable)
                    database.set_meta(drop_totals)
                drop = self._budget.apply(database, self._lock, self._delivery.in_hands)
                if drop is not None:  # the totals go to disk in this transaction, counted once it committed
                    database.set_meta(self._drops.totals.plus(drop).as_meta())
        except BaseException:
            with self._lock:  # nothing happened: everything waits for the next try
                self._buffer.put_back()
                self._delivery.put_back_acked()
                skipped = self._budget.rolled_back()
                if skipped is not None:  # pending() skipped them meanwhile: hand them out after all
                    self._delivery.hand_out_again_from(skipped)
            raise
        with self._lock:
            if drop is not None:
                self._drops.count(drop)
                log.warning("spool %s over its budget of %d bytes: dropped the %d oldest records (seq %s..%s)",
                            self.path, self._budget.max_bytes, drop.records, drop.first_seq, drop.last_seq)
            self._delivery.settled(written=len(rows), deleted=deleted, dropped=drop.records if drop else 0)
            self._numbers.committed(last)
            self._buffer.written()
            self._budget.settled()
            self._drops.saved(drops_mark)
        return len(rows)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each flush that committed new rows (from the flushing thread)."""
        self._delivery.add_listener(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._delivery.remove_listener(callback)

    # --- handing out ------------------------------------------------------------------------------------

    def pending(self, limit: int) -> list[SpoolRecord]:
        """The oldest committed records not acknowledged and not already handed out, in order."""
        if limit <= 0:
            return []
        with self._lock:
            reader = self._database.reader
            if reader is None:
                raise SpoolError("spool is not open; call open() or use it as a context manager")
            # The reader sees committed rows only, without waiting for a flush in progress; rows that flush
            # deletes (acknowledged, or dropped by the budget) are skipped, and widen the LIMIT.
            cursor = self._delivery.cursor
            skip = self._delivery.skip_above_cursor() | {i for i in self._budget.dropping if i > cursor}
            try:
                rows = self._database.rows_after(cursor, limit + len(skip))
                damage = None
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                damage = exc
            if damage is None:
                return self._delivery.hand_out(rows, skip, limit)
        with self._db_lock, self._lock:  # (in lock order)
            if self._database.reader is reader:  # not recovered meanwhile by a flush
                self._recover(damage)
        return []

    def ack(self, record_ids: Iterable[int]) -> None:
        """The broker acknowledged these records: they are deleted at the next flush (batched)."""
        with self._lock:
            self._delivery.ack(record_ids)

    def undeliverable(self, record: SpoolRecord, reason: str) -> None:
        """This record can never be delivered (e.g. larger than the broker accepts): delete it at the next
        flush and count and report it as dropped, with ``reason`` — rather than block every record behind it."""
        with self._lock:
            if not self._delivery.give_up(record.id):
                return
            tally = DropTally()
            tally.add(record.first_seq, record.last_seq)
            self._drops.count_unsaved(tally.drop(), reason)  # the totals go to disk with the deletion
        log.error("spool %s: record %d (seq %s..%s, topic %s) dropped: %s", self.path, record.id, record.first_seq,
                  record.last_seq, record.topic, reason)

    def release(self, record_ids: Iterable[int]) -> None:
        """Publishing failed or the connection was lost: hand these records out again, in order."""
        with self._lock:
            self._delivery.release(record_ids)

    # --- reporting --------------------------------------------------------------------------------------

    def backlog(self) -> int:
        """Records stored or buffered and not yet acknowledged by the broker."""
        with self._lock:
            return self._backlog()

    def _backlog(self) -> int:
        return self._delivery.backlog(buffered=len(self._buffer) + self._buffer.writing)

    def drain_events(self) -> list[SpoolEvent]:
        """Take the queued reports: ``SpoolDropped``, ``SpoolCorrupt`` or ``SequenceSkipped`` records
        (``floorwatch.edge.spool.events``)."""
        with self._lock:
            return self._events.drain()

    def stats(self) -> dict:
        with self._lock:
            totals = self._drops.totals
            return {
                "backlog": self._backlog(),
                "bytes": self._database.committed_bytes(),
                "file_bytes": self._database.file_bytes(),
                "max_bytes": self._budget.max_bytes,
                "buffered": len(self._buffer),
                "buffered_bytes": self._buffer.bytes,
                "in_flight": self._delivery.in_flight,
                "last_seq": self._numbers.last_issued,
                "dropped_records": totals.records,
                "dropped_count": totals.count,
                "dropped_first_seq": totals.first_seq,
                "dropped_last_seq": totals.last_seq,
                "corrupt_moved": self._recovery.moved,
                "sequence_skipped": self._numbers.skipped,
            }
