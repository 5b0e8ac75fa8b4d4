"""The spool's SQLite file: connections, schema, WAL settings, the ``meta`` table and the SQL itself.

Two connections: the *writer* (the flush's transactions, one at a time) and the *reader* (``pending()``:
WAL readers see committed rows only and never wait for the writer). Settings chosen for SD cards
(``docs/spool.md``): WAL with ``synchronous=NORMAL`` — a commit appends to the WAL file without an
``fsync`` — and the WAL truncated back to 4 MiB after checkpoints.

``meta`` holds ``schema``, ``clean`` (0 while a process has the file open, 1 after a clean close),
``boot_id`` (the Linux boot the file was opened in), ``last_seq`` (highest committed sequence number), the
drop totals and ``corrupt_moved``.

>>> import tempfile, pathlib
>>> db = SpoolDatabase(pathlib.Path(tempfile.mkdtemp()) / "spool.sqlite")
>>> with db.opening(check=True) as stored:
...     stored.existed, stored.rows, stored.clean
(False, 0, True)
>>> db.writer.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()   # in use
(0,)
>>> db.close()
>>> with db.opening(check=True) as stored:
...     stored.existed, stored.clean
(True, True)
>>> db.close()
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from floorwatch.edge.spool.records import Row, SpoolError

log = logging.getLogger("floorwatch.edge.spool")  # one logger for every part: the log names the spool

SCHEMA_VERSION = 1
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot of the machine (Linux); "" when unknown — an unclean stop is then treated like a reboot."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class StoredState:
    """What an opened spool file holds, read in the transaction that opens it."""

    existed: bool  # the file was there (and not empty) before it was opened
    meta: dict[str, object]
    rows: int
    max_id: int

    @property
    def clean(self) -> bool:
        """The last process to have the file closed it cleanly (a new file counts as clean)."""
        return bool(int(self.meta.get("clean", 1)))  # type: ignore[call-overload]

    @property
    def same_boot(self) -> bool:
        return self.meta.get("boot_id") == boot_id()

    @property
    def last_seq(self) -> int | None:
        """The highest committed sequence number; None when the file never recorded one (a new file)."""
        value = self.meta.get("last_seq")
        return None if value is None else int(value)  # type: ignore[call-overload]


class SpoolDatabase:
    """The file and its two connections. The spool holds its database lock around every call that uses the
    writer, and its state lock around calls that use the reader."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: sqlite3.Connection | None = None
        self.reader: sqlite3.Connection | None = None  # pending()'s reads: committed rows only, never blocked
        self._page_size = 4096

    @property
    def is_open(self) -> bool:
        return self.writer is not None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: commits append to the WAL, fsync only at checkpoints
        db.execute("PRAGMA journal_size_limit=4194304")  # the WAL file is truncated back to 4 MiB
        db.execute("PRAGMA temp_store=MEMORY")
        return db

    @contextlib.contextmanager
    def opening(self, *, check: bool) -> Iterator[StoredState]:
        """Open (or create) the file in one transaction: the caller reads what it holds and writes its own
        ``meta`` values inside the ``with`` block; leaving it marks the file in use by this boot and commits.

        ``check``: after an unclean stop, make sure the file is sound (``quick_check``, whose cost grows with
        the backlog) before trusting it. Raises ``sqlite3.DatabaseError`` for a damaged file and
        ``SpoolError`` for a schema this version does not read.
        """
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
                problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    db.execute("ROLLBACK")
                    raise sqlite3.DatabaseError(f"quick_check: {problem}")
            count, max_id = db.execute("SELECT COUNT(*), MAX(id) FROM outbox").fetchone()
            self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
            self.writer = db
            yield StoredState(existed=existed, meta=meta, rows=count, max_id=max_id or 0)
            self.set_meta({"schema": SCHEMA_VERSION, "clean": 0, "boot_id": boot_id()})
            db.execute("COMMIT")
            self.reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except BaseException:
            self.writer = None
            if db is not None:
                db.close()
            raise

    def close(self) -> None:
        """Mark the file cleanly closed, truncate the WAL and close both connections."""
        self.close_reader()
        if self.writer is None:
            return
        try:
            self.set_meta({"clean": 1})
            self.writer.commit()
            self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError as exc:  # everything is written already; a failing marker only costs a check
            log.warning("spool %s: could not mark a clean close: %s", self.path, exc)
        self.writer.close()
        self.writer = None

    def abandon(self) -> None:
        """Close both connections without writing anything (the file is damaged)."""
        self.close_reader()
        if self.writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self.writer.close()
            self.writer = None

    def close_reader(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self.reader.close()
            self.reader = None

    # --- the writer's statements (with the database lock held) -------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back if anything in it fails (then nothing of it happened)."""
        db = self._writer()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def insert(self, rows: list[Row]) -> None:
        self._writer().executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def delete(self, ids: Collection[int]) -> int:
        """Delete these rows; returns how many there were."""
        return self._writer().executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in ids)).rowcount

    def set_meta(self, values: dict[str, object]) -> None:
        self._writer().executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def droppable_rows(self, after: int) -> sqlite3.Cursor:
        """(id, first_seq, last_seq, bytes) of the rows above ``after`` the disk budget may drop, oldest first.

        Retained rows (the "active alert" copies: the broker's picture of the current state) are tiny and never
        dropped: without its emptying copy, a cleared alert would stay raised at the broker for ever."""
        return self._writer().execute("SELECT id, first_seq, last_seq, length(payload) + length(topic) FROM outbox "
                                      "WHERE id > ? AND retain = 0 ORDER BY id", (after,))

    def used_bytes(self, db: sqlite3.Connection | None = None) -> int:
        """Bytes of the pages in use (free pages not counted), as the writer (default) or ``db`` sees them."""
        if db is None:
            db = self._writer()
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self._page_size

    def _writer(self) -> sqlite3.Connection:
        if self.writer is None:
            raise SpoolError("spool is not open; call open() or use it as a context manager")
        return self.writer

    # --- the reader's (with the state lock held) ------------------------------------------------------

    def rows_after(self, after: int, limit: int) -> list[Row]:
        """Committed rows above id ``after``, oldest first."""
        if self.reader is None:
            raise SpoolError("spool is not open; call open() or use it as a context manager")
        return list(map(Row._make, self.reader.execute(
            "SELECT id, topic, payload, qos, retain, first_seq, last_seq FROM outbox WHERE id > ? "
            "ORDER BY id LIMIT ?", (after, limit))))

    def committed_bytes(self) -> int:
        """Pages in use as committed (for ``stats()``); 0 when closed or unreadable."""
        if self.reader is None:
            return 0
        try:
            return self.used_bytes(self.reader)
        except sqlite3.Error:
            return 0

    def file_bytes(self) -> int:
        """Bytes of the file and its WAL on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total
