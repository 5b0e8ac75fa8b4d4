"""Damaged spool files: recognising them and moving them aside, so that a new spool can start.

SD cards do corrupt files. A file SQLite cannot read is *moved aside* as ``<path>.corrupt-<UTC time>`` (with
its WAL, for forensics or ``sqlite3 .recover``), reported with a ``corrupt`` event, and counted in
``stats()["corrupt_moved"]``. Nothing is deleted. A locked database or a full disk is not corruption: that
is a ``SpoolError`` with the fix, and the data waits in memory.

>>> import sqlite3
>>> is_corruption(sqlite3.DatabaseError("file is not a database")), is_corruption(sqlite3.OperationalError("disk I/O error"))
(True, False)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from floorwatch.edge.clock import Clock
from floorwatch.edge.spool.events import SpoolEvents

log = logging.getLogger("floorwatch.edge.spool")


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for errors that mean the file is damaged (not for a locked database or a full disk)."""
    text = str(exc).lower()
    return type(exc) is sqlite3.DatabaseError or any(
        s in text for s in ("malformed", "not a database", "corrupt", "encrypted")
    )


class CorruptionRecovery:
    """Moves a damaged spool file aside, reports it, and counts how many were moved (kept in ``meta``)."""

    def __init__(self, path: Path, clock: Clock, events: SpoolEvents) -> None:
        self.path = path
        self.clock = clock
        self._events = events
        self.moved = 0

    def restore(self, meta: dict[str, object]) -> None:
        """The count as stored in the file just opened (a new file after a move keeps the count in memory)."""
        self.moved = max(self.moved, int(meta.get("corrupt_moved", 0)))  # type: ignore[call-overload]

    def move_aside(self, exc: Exception, lost_records: int | None = None) -> Path:
        """Move the file (and its WAL) aside and queue the report; returns where it went.

        ``lost_records``: rows the damaged file held, when known (found while running); None on open."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock.now_ns() / 1e9))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                if suffix == "-shm":
                    src.unlink()  # index of the WAL only; rebuilt from the WAL
                else:
                    os.replace(src, f"{target}{suffix}")
        self.moved += 1
        self._events.corrupt(self.path, target, exc, lost_records)
        log.error("spool %s is damaged (%s); moved to %s and started a new spool", self.path, exc, target)
        return target
