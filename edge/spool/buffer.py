"""The write buffer: messages added since the last flush, in memory, bounded.

``add()`` only appends here (an SD card is never written per reading); the flush takes everything at once
and writes it in one transaction. While the disk refuses writes, records wait here — at most
``max_bytes``; beyond it the oldest are shed (down to 95 %), to be counted and reported like a disk-budget
drop: a disk that stays unwritable costs the oldest data, not the gateway (which would otherwise grow until
the kernel kills it and loses everything in memory).

>>> buffer = WriteBuffer(max_bytes=64 * 1024)
>>> buffer.add("fw/readings", b"x" * 40_000, qos=1, retain=False, first_seq=1, last_seq=500)
>>> buffer.add("fw/readings", b"x" * 40_000, qos=1, retain=False, first_seq=501, last_seq=1000)
>>> len(buffer), buffer.shed_oldest()
(2, Drop(records=1, first_seq=1, last_seq=500, count=500))
"""

from __future__ import annotations

from floorwatch.edge.spool.budget import DROP_TO
from floorwatch.edge.spool.records import Drop, DropTally, Row


class WriteBuffer:
    """Rows waiting for the next flush, and the ones the flush in progress is writing. Callers hold the
    spool's state lock."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 64 * 1024:
            raise ValueError(f"spool max_buffer_bytes ({max_bytes}) is too small; give at least 64 KiB")
        self.max_bytes = max_bytes
        self._rows: list[Row] = []
        self.bytes = 0  # of the rows waiting (kept as they come: stats() asks often)
        self._writing: list[Row] = []  # taken by the flush in progress: in neither the buffer nor the file
        self._next_id = 1

    def __len__(self) -> int:
        """Rows waiting (not counting those the flush in progress is writing)."""
        return len(self._rows)

    @property
    def writing(self) -> int:
        """Rows the flush in progress is writing."""
        return len(self._writing)

    def add(self, topic: str, payload: bytes, *, qos: int, retain: bool, first_seq: int | None,
            last_seq: int | None) -> None:
        row = Row(self._next_id, topic, payload, qos, 1 if retain else 0, first_seq, last_seq)
        self._next_id += 1
        self._rows.append(row)
        self.bytes += row.size

    def follow(self, max_id: int) -> None:
        """Ids go on above the highest in the file just opened (and above every id this process gave)."""
        self._next_id = max(self._next_id, max_id + 1)

    def take(self) -> list[Row]:
        """Everything waiting, for the flush."""
        self._writing, self._rows = self._rows, []
        self.bytes = 0
        return self._writing

    def put_back(self) -> None:
        """The flush failed: what it took waits again, ahead of what came meanwhile."""
        self._rows[:0] = self._writing
        self.bytes += sum(row.size for row in self._writing)
        self._writing = []

    def written(self) -> None:
        self._writing = []

    def shed_oldest(self) -> Drop | None:
        """Beyond ``max_bytes``: remove the oldest rows (down to 95 %) and return what was removed."""
        if self.bytes <= self.max_bytes:
            return None
        target = int(self.max_bytes * DROP_TO)
        tally = DropTally()
        n = 0
        while n < len(self._rows) and self.bytes > target:
            row = self._rows[n]
            self.bytes -= row.size
            tally.add(row.first_seq, row.last_seq)
            n += 1
        del self._rows[:n]
        return tally.drop()
