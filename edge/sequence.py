"""Gateway sequence numbers: one counter per gateway, contiguous and monotonic across restarts.

Downstream (the bridge, a buyer's audit) detects lost data by gaps in these numbers, so a number must
never be reused and never skipped. A number is *issued* in memory and becomes durable when
``commit()`` records it — the spool commits in the same step as it stores the data carrying it, so a
crash between the two can neither skip nor repeat a number.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "seq"
>>> counter = SequenceCounter(path)
>>> counter.take(3)
1
>>> counter.commit()
>>> SequenceCounter(path).take()
4
"""

from __future__ import annotations

import os
from pathlib import Path


class SequenceError(RuntimeError):
    pass


class SequenceCounter:
    """Persisted counter. ``take(n)`` issues n consecutive numbers and returns the first."""

    def __init__(self, path: str | os.PathLike[str], *, floor: int = 0) -> None:
        """``floor``: the highest number known to be used elsewhere (e.g. found in the spool)."""
        self.path = Path(path)
        stored = self._read()
        self._last_committed = max(stored, floor)
        self._last_issued = self._last_committed

    def _read(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            value = int(text)
        except ValueError:
            raise SequenceError(
                f"{self.path}: sequence file is corrupt ({text[:40]!r}); restore it from a backup or "
                "delete it only if the spool and downstream data show the last number used"
            ) from None
        if value < 0:
            raise SequenceError(f"{self.path}: negative sequence number {value}")
        return value

    @property
    def last_issued(self) -> int:
        return self._last_issued

    @property
    def last_committed(self) -> int:
        return self._last_committed

    def take(self, n: int = 1) -> int:
        if n < 1:
            raise ValueError("take at least one number")
        first = self._last_issued + 1
        self._last_issued += n
        return first

    def commit(self) -> None:
        """Make every issued number durable (atomic replace + fsync: survives power loss)."""
        if self._last_issued == self._last_committed and self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(f"{self._last_issued}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        # the rename itself must survive a power cut, or the old number could come back and be reused
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._last_committed = self._last_issued
