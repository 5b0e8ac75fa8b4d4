"""What the spool reports to the gateway: typed records, each built here, in one place.

The spool never loses or skips anything silently: a drop (disk budget, memory buffer, a record the broker
cannot take), a damaged file moved aside and a range of sequence numbers skipped after an unclean stop are
each queued as a record. The gateway takes them with ``Spool.drain_events()`` and publishes them as
``events/spool`` records (``docs/spool.md``, ``docs/payloads.md``): ``kind`` is the event's state,
``message`` its text, ``detail()`` its figures, ``log_name``, ``log_level`` and ``fix`` what the gateway's
log says.

>>> events = SpoolEvents()
>>> events.sequence_skipped(first_seq=22, last_seq=520, reason="new spool file")
>>> [skipped] = events.drain()
>>> skipped.kind, skipped.count, skipped.detail()
('sequence_skipped', 499, {'first_seq': 22, 'last_seq': 520, 'count': 499, 'reason': 'new spool file'})
>>> skipped.message
'sequence numbers 22..520 were never used (new spool file): a gap downstream, explained'
>>> events.drain()
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from floorwatch.edge.spool.records import Drop


@dataclass(frozen=True, slots=True)
class SpoolDropped:
    """Records removed before delivery (the disk budget, the memory buffer, a record the broker refuses)."""

    first_seq: int | None
    last_seq: int | None
    count: int  # numbered items (readings, snapshots, …) the dropped records carried
    records: int  # spool rows
    reason: str

    kind: ClassVar[str] = "dropped"
    log_name: ClassVar[str] = "spool_dropped"
    log_level: ClassVar[Literal["error", "warning"]] = "error"
    fix: ClassVar[str] = "raise spool.max_bytes or restore the broker connection"

    @property
    def message(self) -> str:
        return (f"{self.reason or 'disk budget full'}: dropped {self.records} record(s) carrying {self.count} "
                f"numbered item(s) (seq {self.first_seq}..{self.last_seq})")

    def detail(self) -> dict[str, object]:
        return {"first_seq": self.first_seq, "last_seq": self.last_seq, "count": self.count,
                "records": self.records, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class SpoolCorrupt:
    """The spool file was damaged: moved aside for inspection, a new one started."""

    path: str
    moved_to: str
    error: str
    lost_records: int | None  # rows the damaged file held, when known (found while running); None on open

    kind: ClassVar[str] = "corrupt"
    log_name: ClassVar[str] = "spool_corrupt"
    log_level: ClassVar[Literal["error", "warning"]] = "error"
    fix: ClassVar[str] = "check the SD card (dmesg, fsck); the damaged file is kept at moved_to"

    @property
    def message(self) -> str:
        return "spool file was corrupt; moved aside, a new one started"

    def detail(self) -> dict[str, object]:
        return {"path": self.path, "moved_to": self.moved_to, "error": self.error,
                "lost_records": self.lost_records}


@dataclass(frozen=True, slots=True)
class SequenceSkipped:
    """Sequence numbers reserved but never used (an unclean stop, a new spool file): an explained gap."""

    first_seq: int
    last_seq: int
    reason: str

    kind: ClassVar[str] = "sequence_skipped"
    log_name: ClassVar[str] = "sequence_skipped"
    log_level: ClassVar[Literal["error", "warning"]] = "warning"
    fix: ClassVar[str] = ""

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def message(self) -> str:
        return (f"sequence numbers {self.first_seq}..{self.last_seq} were never used "
                f"({self.reason or 'unclean stop'}): a gap downstream, explained")

    def detail(self) -> dict[str, object]:
        return {"first_seq": self.first_seq, "last_seq": self.last_seq, "count": self.count,
                "reason": self.reason}


SpoolEvent = SpoolDropped | SpoolCorrupt | SequenceSkipped


class SpoolEvents:
    """The queue of reports not yet taken by the gateway. Callers hold the spool's state lock."""

    def __init__(self) -> None:
        self.queued: list[SpoolEvent] = []

    def dropped(self, drop: Drop, reason: str) -> None:
        self.queued.append(SpoolDropped(drop.first_seq, drop.last_seq, drop.count, drop.records, reason))

    def corrupt(self, path: Path, moved_to: Path, error: Exception, lost_records: int | None) -> None:
        """``lost_records``: rows the damaged file held, when known (found while running); None on open."""
        self.queued.append(SpoolCorrupt(str(path), str(moved_to), str(error), lost_records))

    def sequence_skipped(self, first_seq: int, last_seq: int, reason: str) -> None:
        self.queued.append(SequenceSkipped(first_seq, last_seq, reason))

    def drain(self) -> list[SpoolEvent]:
        out, self.queued = self.queued, []
        return out
