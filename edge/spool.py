"""Store-and-forward spool: every message the gateway publishes is on disk before it leaves.

Why: a gateway beside a production line must not lose data when the broker, the network or the gateway
itself goes away. Each outgoing MQTT message (topic, payload, QoS, retain flag and the range of gateway
sequence numbers it carries) is written to a SQLite database in WAL mode before it is published, and
deleted only after the broker acknowledged it (QoS 1 PUBACK). A broker outage of hours therefore
loses nothing: the backlog is handed out again in order when the broker returns.

The spool also OWNS the gateway sequence counter, so that numbers and the data carrying them become
durable in the same transaction (see "Sequence numbers" below).

How it writes (details and SD-card care in ``docs/spool.md``):

* ``add()`` only appends to an in-memory list; ``flush()`` writes all of it in ONE transaction
  (``executemany``) together with the highest issued sequence number and the deletions of acknowledged
  records. The gateway calls ``flush()`` every ``[spool] flush_interval`` seconds: an SD card is never
  written per reading. WAL with ``synchronous=NORMAL`` means a commit is one append to the WAL file and
  no ``fsync``; the kernel writes it back in batches. A process crash (even SIGKILL) loses nothing
  committed; a power cut may lose the last commits, which the sequence reservation below accounts for.
* ``pending()`` hands out the oldest committed records not yet handed out; ``ack()`` marks them
  delivered (deleted at the next flush); ``release()`` hands them out again (connection lost).
* Disk budget: after each flush the pages in use are compared with ``max_bytes``; beyond it the
  oldest records are deleted (down to 95 % of the budget, so drops come in chunks rather than every
  second), counted, and an ``("dropped", {...})`` event is queued for the gateway to report — never silently.
* Corruption: a file SQLite cannot read is moved aside as ``<path>.corrupt-<UTC time>`` (with its WAL),
  a ``("corrupt", {...})`` event is queued, and a new spool starts. The same happens if corruption is
  found while running; records still in memory are written to the new file.

Sequence numbers: ``issue(n)`` hands out n consecutive numbers in memory; ``flush()`` commits the highest
issued number in the same transaction as the rows carrying them. On open the counter resumes from the
committed number, so after a crash or SIGKILL there is neither a gap nor a reuse. Power cuts are the one
case where committed-but-not-yet-on-disk numbers could be reused (they may have been published before the
power went): a side file ``<path>.seq`` (``floorwatch.edge.sequence.SequenceCounter``, fsynced) holds a *reservation*
above every number ever committed, written only every ``seq_reserve`` numbers. When the previous run did
not close cleanly and the machine has rebooted since (Linux boot id differs), or when the database is new
or was corrupt, the counter resumes above the reservation instead: a gap, reported as a
``("sequence_skipped", {...})`` event, never a reuse.

Threads: the gateway runs ``flush()`` in a worker thread while the event loop calls ``issue()``, ``add()``,
``pending()``, ``ack()`` and ``backlog()``. Those never wait for the flush's transaction (a commit, a WAL
checkpoint's fsync on a slow SD card): the flush takes what it writes from memory and settles afterwards
under a short lock, holding a second lock for the database meanwhile; ``pending()`` reads committed rows
through a connection of its own (WAL readers do not wait for the writer).

Additive extras beyond the API agreed with the gateway service:

* ``Spool(..., seq_reserve=1_000_000)`` — how far ahead the fsynced side file reserves numbers.
* ``add_listener(callback)`` — ``callback()`` is called (outside the lock) after a flush committed new
  rows; the MQTT publisher uses it to wake up instead of polling.
* ``last_seq`` (property) — the highest issued sequence number.
* ``stats()`` also reports ``last_seq``, ``buffered``, ``in_flight``, ``max_bytes``, ``file_bytes``
  and ``sequence_skipped``.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "spool.sqlite"
>>> with Spool(path, max_bytes=8 * 1024**2) as spool:
...     first = spool.issue(3)
...     spool.add("fw/readings", b'{"rows":[]}', first_seq=first, last_seq=first + 2)
...     spool.flush()
...     [r.last_seq for r in spool.pending(10)]
1
[3]
>>> with Spool(path, max_bytes=8 * 1024**2) as spool:   # not acknowledged: still there after a restart
...     spool.backlog(), spool.issue()
(1, 4)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.sequence import SequenceCounter

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# A row costs its payload and topic plus SQLite's per-row overhead; used to estimate how many of the
# oldest rows to drop when the budget is exceeded (the budget itself is measured in pages in use).
_ROW_OVERHEAD = 48
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


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


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""  # unknown: an unclean stop is then treated like a reboot (gap, never reuse)


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for errors that mean the file is damaged (not for a locked database or a full disk)."""
    text = str(exc).lower()
    return type(exc) is sqlite3.DatabaseError or any(
        s in text for s in ("malformed", "not a database", "corrupt", "encrypted")
    )


class Spool:
    """See the module docstring. Use as a context manager, or call ``open()`` and ``close()``."""

    def __init__(self, path: Path, *, max_bytes: int, clock: Clock = SYSTEM_CLOCK,
                 seq_reserve: int = 1_000_000, max_buffer_bytes: int | None = None) -> None:
        if max_bytes < 64 * 1024:
            raise ValueError(f"spool max_bytes ({max_bytes}) is too small; give at least 64 KiB (1 MiB or more "
                             "in a configuration)")
        if max_buffer_bytes is not None and max_buffer_bytes < 64 * 1024:
            raise ValueError(f"spool max_buffer_bytes ({max_buffer_bytes}) is too small; give at least 64 KiB")
        if seq_reserve < 1:
            raise ValueError("seq_reserve must be at least 1")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.clock = clock
        self.seq_reserve = seq_reserve
        # While the disk refuses writes, records wait in memory: at most this much (then the oldest go).
        self.max_buffer_bytes = max_buffer_bytes or min(self.max_bytes, 64 * 1024**2)
        self._buffered_bytes = 0
        self.events: list[tuple[str, dict]] = []
        # Two locks, always taken in this order: ``_db_lock`` for the writing connection (a flush holds it for
        # its whole transaction, fsyncs included), ``_lock`` for the state in memory (held only briefly), so
        # that add(), issue(), ack() and pending() on the event loop never wait for a flush in progress.
        self._db_lock = threading.RLock()
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # pending()'s reads: committed rows only, never blocked
        self._dropping: set[int] = set()  # ids the budget is deleting in the transaction in progress
        self._flushing_rows = 0  # rows and acknowledged ids taken by the transaction in progress
        self._flushing_acked = 0
        self._drops_version = 0  # drops counted in memory; the flush saves their totals
        self._buffer: list[tuple[int, str, bytes, int, int, int | None, int | None]] = []
        self._acked: list[int] = []
        self._acked_set: set[int] = set()
        self._inflight: set[int] = set()
        self._cursor = 0  # highest id handed out in order (release() moves it back)
        self._next_id = 1
        self._committed = 0  # rows in the database, acknowledged ones included until deleted
        self._last_issued = 0
        self._last_committed_seq = 0
        self._reservation: SequenceCounter | None = None
        self._listeners: list[Callable[[], None]] = []
        self._page_size = 4096
        self._dropped_records = 0
        self._dropped_count = 0
        self._dropped_first: int | None = None
        self._dropped_last: int | None = None
        self._corrupt_moved = 0
        self._seq_skipped = 0
        self._drops_unsaved = False
        self._drops_saved_version = 0

    # --- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open (or create) the spool; a damaged file is moved aside and reported, and a new one started."""
        with self._db_lock, self._lock:
            if self._db is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SpoolError(f"spool directory {self.path.parent}: {exc.strerror}; check gateway.data_dir "
                                 "exists and is writable by the gateway's user") from None
            self._reservation = SequenceCounter(self.path.with_name(self.path.name + ".seq"))
            try:
                self._open_db(check=True)
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise SpoolError(f"spool {self.path}: {exc}; check the disk and the file's permissions") \
                        from None
                self._move_aside(exc)
                self._open_db(check=False)

    def close(self) -> None:
        """Flush what is buffered, mark the spool cleanly closed and close the file."""
        with self._db_lock, self._lock:
            if self._db is None:
                return
            self._flush_db()
            self._close_reader()
            try:
                self._set_meta({"clean": 1})
                self._db.commit()
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError as exc:  # already flushed; a failing marker only costs a check
                log.warning("spool %s: could not mark a clean close: %s", self.path, exc)
            self._db.close()
            self._db = None

    def _close_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.close()
            self._reader = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: commits append to the WAL, fsync only at checkpoints
        db.execute("PRAGMA journal_size_limit=4194304")  # the WAL file is truncated back to 4 MiB
        db.execute("PRAGMA temp_store=MEMORY")
        return db

    def _open_db(self, *, check: bool, known_last: int | None = None) -> None:
        """Open the file; ``known_last``: the highest number issued by this process (runtime recovery)."""
        assert self._reservation is not None
        existed = self.path.exists() and self.path.stat().st_size > 0
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
                "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, "
                "first_seq INTEGER, last_seq INTEGER)"
            )
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if int(meta.get("schema", SCHEMA_VERSION)) != SCHEMA_VERSION:
                db.execute("ROLLBACK")
                raise SpoolError(f"spool {self.path} has schema {meta['schema']}, this version reads "
                                 f"{SCHEMA_VERSION}; run the matching Floorwatch version to drain it, or move it away")
            if check and existed and not int(meta.get("clean", 1)):
                # Unclean stop: make sure the file is sound before trusting it (cost grows with the backlog).
                problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    db.execute("ROLLBACK")
                    raise sqlite3.DatabaseError(f"quick_check: {problem}")
            count, max_id = db.execute("SELECT COUNT(*), MAX(id) FROM outbox").fetchone()
            self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
            committed_seq = int(meta.get("last_seq", 0))
            reserved = self._reservation.last_committed
            resume = committed_seq
            reason = ""
            if "last_seq" not in meta and reserved:
                reason = "new spool file"
            elif not int(meta.get("clean", 1)) and meta.get("boot_id") != _boot_id():
                reason = "unclean stop and the machine restarted since (commits may have been lost)"
            if known_last is not None:
                resume = max(committed_seq, known_last)  # every number up to it is accounted for in memory
            elif reason and reserved > committed_seq:
                resume = reserved
                self._seq_skipped += reserved - committed_seq
                self.events.append(("sequence_skipped", {
                    "first_seq": committed_seq + 1, "last_seq": reserved, "count": reserved - committed_seq,
                    "reason": reason}))
                log.warning("spool %s: sequence numbers %d..%d skipped: %s", self.path, committed_seq + 1,
                            reserved, reason)
            self._dropped_records = int(meta.get("dropped_records", 0))
            self._dropped_count = int(meta.get("dropped_count", 0))
            self._dropped_first = meta.get("dropped_first_seq")
            self._dropped_last = meta.get("dropped_last_seq")
            self._corrupt_moved = max(self._corrupt_moved, int(meta.get("corrupt_moved", 0)))
            self._last_issued = self._last_committed_seq = resume
            self._next_id = max(self._next_id, (max_id or 0) + 1)
            self._committed = count
            self._cursor = 0
            self._inflight.clear()
            self._acked.clear()
            self._acked_set.clear()
            self._db = db
            self._set_meta({"schema": SCHEMA_VERSION, "clean": 0, "boot_id": _boot_id(), "last_seq": resume,
                            "corrupt_moved": self._corrupt_moved})
            db.execute("COMMIT")
            self._dropping.clear()
            self._flushing_rows = self._flushing_acked = 0
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except BaseException:
            self._db = None
            if db is not None:
                db.close()
            raise

    def _move_aside(self, exc: Exception, lost_records: int | None = None) -> None:
        """``lost_records``: rows the damaged file held, when known (found while running); None on open."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock.now_ns() / 1e9))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        moved = []
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                if suffix == "-shm":
                    src.unlink()  # index of the WAL only; rebuilt from the WAL
                else:
                    os.replace(src, f"{target}{suffix}")
                    moved.append(f"{target}{suffix}")
        self._corrupt_moved += 1
        detail = {"path": str(self.path), "moved_to": str(target), "error": str(exc),
                  "lost_records": lost_records}
        self.events.append(("corrupt", detail))
        log.error("spool %s is damaged (%s); moved to %s and started a new spool", self.path, exc, target)

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Corruption found while running: keep what is in memory, move the file aside, start afresh."""
        self._close_reader()
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        self._move_aside(exc, lost_records=self._committed - len(self._acked))
        self._open_db(check=False, known_last=self._last_issued)

    # --- sequence numbers -----------------------------------------------------------------------------

    def issue(self, n: int = 1) -> int:
        """Issue ``n`` consecutive gateway sequence numbers and return the first.

        Add the records carrying them before the next ``flush()`` (the flush commits the numbers).
        """
        if n < 1:
            raise ValueError(f"issue at least one sequence number, not {n}")
        with self._lock:
            first = self._last_issued + 1
            self._last_issued += n
            return first

    @property
    def last_seq(self) -> int:
        return self._last_issued

    # --- writing ----------------------------------------------------------------------------------------

    def add(self, topic: str, payload: bytes, *, first_seq: int | None, last_seq: int | None,
            qos: int = 1, retain: bool = False) -> None:
        """Buffer one outgoing message in memory; it reaches the disk at the next ``flush()``."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"spool payload must be bytes, not {type(payload).__name__} (encode it first)")
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            data = bytes(payload)
            self._buffer.append((rid, topic, data, qos, 1 if retain else 0, first_seq, last_seq))
            self._buffered_bytes += len(data) + len(topic) + _ROW_OVERHEAD

    def flush(self) -> int:
        """Write buffered rows, acknowledged deletions and the sequence number in one transaction.

        Returns the number of rows written. Applies the disk budget afterwards.
        """
        with self._db_lock:
            written = self._flush_db()
        if written:
            for callback in list(self._listeners):
                try:
                    callback()
                except Exception:  # a listener must not break the writer
                    log.exception("spool listener failed")
        return written

    def _flush_db(self) -> int:
        """With ``_db_lock`` held: write what waits (``_lock`` is taken only to take it and to settle)."""
        with self._lock:
            if self._db is None:
                raise SpoolError("spool is not open; call open() or use it as a context manager")
            if (not self._buffer and not self._acked and self._last_issued == self._last_committed_seq
                    and not self._drops_unsaved):
                return 0
        try:
            return self._write()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                with self._lock:
                    self._bound_buffer()
                raise SpoolError(f"spool {self.path}: cannot write: {exc}; check free space and the disk") \
                    from None
            with self._lock:
                self._recover(exc)
            return self._write()

    def _bound_buffer(self) -> None:
        """The disk refused the flush: keep what waits in memory under ``max_buffer_bytes`` by dropping the
        oldest buffered records (down to 95 %, so drops come in chunks), counted and reported like a
        disk-budget drop. Without it a disk that stays full would grow the gateway until it is killed."""
        if self._buffered_bytes <= self.max_buffer_bytes:
            return
        target = int(self.max_buffer_bytes * 0.95)
        n = 0
        first_seq: int | None = None
        last_seq: int | None = None
        count = 0
        while n < len(self._buffer) and self._buffered_bytes > target:
            _, topic, payload, _, _, fs, ls = self._buffer[n]
            self._buffered_bytes -= len(payload) + len(topic) + _ROW_OVERHEAD
            if fs is not None:
                first_seq = fs if first_seq is None else min(first_seq, fs)
                last_seq = (ls if ls is not None else fs) if last_seq is None else max(last_seq, ls or fs)
                count += (ls if ls is not None else fs) - fs + 1
            n += 1
        del self._buffer[:n]
        self._count_drop(n, first_seq, last_seq, count,
                         reason="the disk refuses writes and the memory buffer is full")
        self._drops_unsaved = True
        self._drops_version += 1
        log.warning("spool %s: the disk refuses writes and %d bytes wait in memory: dropped the %d oldest "
                    "records not yet on disk (seq %s..%s)", self.path, self.max_buffer_bytes, n, first_seq, last_seq)

    def _count_drop(self, records: int, first_seq: int | None, last_seq: int | None, count: int,
                    reason: str = "disk budget full") -> None:
        """Count a drop that happened (committed, or records gone from memory) and queue its report."""
        totals = self._drop_meta(records, first_seq, last_seq, count)
        self._dropped_records, self._dropped_count = totals["dropped_records"], totals["dropped_count"]
        self._dropped_first, self._dropped_last = totals["dropped_first_seq"], totals["dropped_last_seq"]
        self.events.append(("dropped", {"first_seq": first_seq, "last_seq": last_seq, "count": count,
                                        "records": records, "reason": reason}))

    def _drop_meta(self, records: int = 0, first_seq: int | None = None, last_seq: int | None = None,
                   count: int = 0) -> dict[str, Any]:
        """The drop totals (as stored in ``meta``), with a drop of ``records`` records added."""
        first, last = self._dropped_first, self._dropped_last
        if first_seq is not None:
            first = first_seq if first is None else min(first, first_seq)
            last = last_seq if last is None else max(last, last_seq or first_seq)
        return {"dropped_records": self._dropped_records + records, "dropped_count": self._dropped_count + count,
                "dropped_first_seq": first, "dropped_last_seq": last}

    def _write(self) -> int:
        """One transaction, with ``_db_lock`` held. What it writes is taken from memory under ``_lock`` first
        and settled under ``_lock`` after COMMIT; in between, add()/ack()/pending() go on. Until the commit,
        the acknowledged ids it deletes stay in ``_acked_set`` (pending() skips them) and its rows are in
        neither the buffer nor the database (backlog() counts them with ``_flushing_rows``)."""
        db = self._db
        assert db is not None and self._reservation is not None
        with self._lock:
            rows, self._buffer = self._buffer, []
            rows_bytes, self._buffered_bytes = self._buffered_bytes, 0
            acked, self._acked = self._acked, []
            self._flushing_rows, self._flushing_acked = len(rows), len(acked)
            last = self._last_issued
            drops_version = self._drops_version
            drop_meta = self._drop_meta() if self._drops_unsaved else None
        try:
            if last > self._reservation.last_committed:
                # The fsynced reservation must stay above every number that can become visible.
                self._reservation.take(last + self.seq_reserve - self._reservation.last_issued)
                self._reservation.commit()
            db.execute("BEGIN IMMEDIATE")
            if rows:
                db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            deleted = 0
            if acked:
                deleted = db.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in acked)).rowcount
            if last != self._last_committed_seq:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (last,))
            if drop_meta is not None:  # records dropped from memory (disk refusing writes, undeliverable)
                self._set_meta(drop_meta)
            drop = self._apply_budget(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            with self._lock:  # nothing happened: everything waits for the next try
                self._buffer[:0] = rows
                self._buffered_bytes += rows_bytes
                self._acked[:0] = acked
                if self._dropping:  # pending() skipped them meanwhile: hand them out after all
                    self._cursor = min(self._cursor, min(self._dropping) - 1)
                self._dropping.clear()
                self._flushing_rows = self._flushing_acked = 0
            raise
        with self._lock:
            dropped = 0
            if drop is not None:
                dropped, first_seq, last_seq, _ = drop
                self._count_drop(*drop)
                log.warning("spool %s over its budget of %d bytes: dropped the %d oldest records (seq %s..%s)",
                            self.path, self.max_bytes, dropped, first_seq, last_seq)
            self._committed += len(rows) - deleted - dropped
            self._last_committed_seq = last
            self._flushing_rows = self._flushing_acked = 0
            self._acked_set.difference_update(acked)
            self._dropping.clear()
            if self._drops_version == drops_version:
                self._drops_unsaved = False
        return len(rows)

    def _used_bytes(self, db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self._page_size

    def _apply_budget(self, db: sqlite3.Connection) -> tuple[int, int | None, int | None, int] | None:
        """Inside the flush transaction: drop the oldest records while the pages in use exceed the budget.
        Returns what it dropped (records, first_seq, last_seq, count), or None."""
        used = self._used_bytes(db)
        if used <= self.max_bytes:
            return None
        target = int(self.max_bytes * 0.95)
        dropped_ids: list[int] = []
        first_seq: int | None = None
        last_seq: int | None = None
        count = 0
        after = 0
        while used > target:
            excess = used - target
            freed = 0
            chunk: list[int] = []
            # Retained rows (the "active alert" copies: the broker's picture of the current state) are tiny
            # and never dropped: without its emptying copy, a cleared alert would stay raised for ever.
            cur = db.execute("SELECT id, first_seq, last_seq, length(payload) + length(topic) FROM outbox "
                             "WHERE id > ? AND retain = 0 ORDER BY id", (after,))
            with self._lock:  # pending() must neither hand these out now nor have handed them out
                for rid, fs, ls, size in cur:
                    after = rid
                    if rid in self._inflight or rid in self._acked_set:
                        continue  # in the broker's hands already (its acknowledgement decides), or delivered
                    chunk.append(rid)
                    self._dropping.add(rid)
                    if fs is not None:
                        first_seq = fs if first_seq is None else min(first_seq, fs)
                        last_seq = ls if last_seq is None else max(last_seq, ls)
                        count += (ls if ls is not None else fs) - fs + 1
                    freed += size + _ROW_OVERHEAD
                    if freed >= excess:
                        break
            cur.close()
            if not chunk:
                break  # nothing left to drop
            db.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in chunk))
            dropped_ids.extend(chunk)
            used = self._used_bytes(db)
        if not dropped_ids:
            return None
        drop = (len(dropped_ids), first_seq, last_seq, count)
        # The totals go to disk in this transaction; they are counted and reported only once it committed.
        self._set_meta(self._drop_meta(*drop))
        return drop

    def _set_meta(self, values: dict[str, object]) -> None:
        assert self._db is not None
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each flush that committed new rows (from the flushing thread)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # --- handing out ------------------------------------------------------------------------------------

    def pending(self, limit: int) -> list[SpoolRecord]:
        """The oldest committed records not acknowledged and not already handed out, in order."""
        if limit <= 0:
            return []
        with self._lock:
            reader = self._reader
            if reader is None:
                raise SpoolError("spool is not open; call open() or use it as a context manager")
            # Handed-out and acknowledged ids lie at or below the cursor, except after a release() moved the
            # cursor back: only those above it need skipping (and widen the LIMIT). The reader sees committed
            # rows only, without waiting for a flush in progress; rows that flush deletes are skipped.
            cursor = self._cursor
            skip = ({i for i in self._inflight if i > cursor} | {i for i in self._acked_set if i > cursor}
                    | {i for i in self._dropping if i > cursor})
            try:
                rows = reader.execute(
                    "SELECT id, topic, payload, qos, retain, first_seq, last_seq FROM outbox WHERE id > ? "
                    "ORDER BY id LIMIT ?", (cursor, limit + len(skip))).fetchall()
                damage = None
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                damage = exc
            if damage is None:
                return self._hand_out(rows, skip, limit)
        with self._db_lock, self._lock:  # (in lock order)
            if self._reader is reader:  # not recovered meanwhile by a flush
                self._recover(damage)
        return []

    def _hand_out(self, rows: list[tuple], skip: set[int], limit: int) -> list[SpoolRecord]:
        """With ``_lock`` held: mark the rows read as in flight, in order."""
        out = []
        for rid, topic, payload, qos, retain, fs, ls in rows:
            if rid in skip:
                continue
            out.append(SpoolRecord(rid, topic, payload, qos, bool(retain), fs, ls))
            self._inflight.add(rid)
            self._cursor = rid
            if len(out) == limit:
                break
        return out

    def ack(self, record_ids: Iterable[int]) -> None:
        """The broker acknowledged these records: they are deleted at the next flush (batched)."""
        with self._lock:
            for rid in record_ids:
                self._inflight.discard(rid)
                if rid not in self._acked_set:
                    self._acked_set.add(rid)
                    self._acked.append(rid)

    def undeliverable(self, record: SpoolRecord, reason: str) -> None:
        """This record can never be delivered (e.g. larger than the broker accepts): delete it at the next
        flush and count and report it as dropped, with ``reason`` — rather than block every record behind it."""
        with self._lock:
            self._inflight.discard(record.id)
            if record.id in self._acked_set:
                return
            self._acked_set.add(record.id)
            self._acked.append(record.id)
            fs, ls = record.first_seq, record.last_seq
            count = 0 if fs is None else (ls if ls is not None else fs) - fs + 1
            self._count_drop(1, fs, ls if fs is not None else None, count, reason=reason)
            self._drops_unsaved = True  # the totals go to disk with the deletion
            self._drops_version += 1
        log.error("spool %s: record %d (seq %s..%s, topic %s) dropped: %s", self.path, record.id, fs, ls,
                  record.topic, reason)

    def release(self, record_ids: Iterable[int]) -> None:
        """Publishing failed or the connection was lost: hand these records out again, in order."""
        with self._lock:
            ids = [rid for rid in record_ids if rid in self._inflight]
            if not ids:
                return
            self._inflight.difference_update(ids)
            self._cursor = min(self._cursor, min(ids) - 1)

    # --- reporting --------------------------------------------------------------------------------------

    def backlog(self) -> int:
        """Records stored or buffered and not yet acknowledged by the broker."""
        with self._lock:
            return self._backlog()

    def _backlog(self) -> int:
        return (self._committed - len(self._acked) - self._flushing_acked + len(self._buffer)
                + self._flushing_rows)

    def drain_events(self) -> list[tuple[str, dict]]:
        """Take the queued events (also available as the ``events`` list)."""
        with self._lock:
            out, self.events = self.events, []
            return out

    def stats(self) -> dict:
        with self._lock:
            file_bytes = 0
            for suffix in ("", "-wal"):
                try:
                    file_bytes += os.stat(f"{self.path}{suffix}").st_size
                except OSError:
                    pass
            used = 0
            if self._reader is not None:
                try:
                    used = self._used_bytes(self._reader)
                except sqlite3.Error:
                    used = 0
            return {
                "backlog": self._backlog(),
                "bytes": used,
                "file_bytes": file_bytes,
                "max_bytes": self.max_bytes,
                "buffered": len(self._buffer),
                "buffered_bytes": self._buffered_bytes,
                "in_flight": len(self._inflight),
                "last_seq": self._last_issued,
                "dropped_records": self._dropped_records,
                "dropped_count": self._dropped_count,
                "dropped_first_seq": self._dropped_first,
                "dropped_last_seq": self._dropped_last,
                "corrupt_moved": self._corrupt_moved,
                "sequence_skipped": self._seq_skipped,
            }
