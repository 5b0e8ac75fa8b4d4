"""Per-gateway sequence tracking: which records are new, which are duplicates, which never arrived.

Every record a gateway publishes carries the next number of its one sequence counter
(``floorwatch.edge.sequence``). Downstream that makes loss visible and redelivery harmless:

- a number seen before is a **duplicate** (QoS 1 delivers at least once) and is dropped;
- numbers still missing ``gap_grace`` seconds after a higher one arrived are a **gap**: written as an
  ``integrity`` point of kind ``gap``, rewritten with the count still missing as numbers arrive late;
- ranges the gateway itself reported (``events/spool``: ``dropped`` by a full spool, or ``sequence_skipped``
  after a lost spool file) are **explained** (kinds ``dropped`` / ``skipped``, ``explained=true``);
- numbering that starts again (a reinstalled gateway) is a **reset**, not a flood of duplicates.

>>> t = SequenceTracker(gap_grace=0)
>>> o = Origin("s", "l", "g")
>>> [t.observe(o, n, n).value for n in (1, 2, 5, 2, 3)]
['new', 'new', 'new', 'duplicate', 'new']
>>> [(p._fields["first_seq"], p._fields["last_seq"], p._fields["count"]) for p in t.due(now=1e12)]
[(4, 4, 1)]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from influxdb_client import Point

from floorwatch.bridge.points import IntegrityKind, Origin, integrity_point

log = logging.getLogger(__name__)


class Arrival(StrEnum):
    NEW = "new"  # write it
    DUPLICATE = "duplicate"  # already written: drop it


@dataclass(frozen=True, order=True, slots=True)
class Seen:
    """A sequence number marked as seen, with the time of its record."""

    seq: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class GapId:
    """What identifies a gap's integrity point: the time of the record that revealed it (the point's
    timestamp, so the point is rewritten in place) and the range ``first..last`` as it was found."""

    ts_ns: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass
class _Missing:
    """Numbers ``first..last`` not received: a piece of the gap ``gap``. Late arrivals and explanations cut
    a gap into pieces that keep its id, and its point is rewritten with the count still missing."""

    first: int
    last: int
    detected: float  # monotonic time the gap was seen
    gap: GapId
    reported: bool = False
    note: str = ""  # why they are missing when the bridge knows (e.g. refused by the database)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def piece(self, first: int, last: int) -> _Missing:
        return dataclasses.replace(self, first=first, last=last)


@dataclass
class _Gateway:
    high: int
    missing: list[_Missing] = field(default_factory=list)
    newest_ns: int = -1  # the latest record time seen: a record seen before cannot be newer than it

    def copy(self) -> _Gateway:
        return _Gateway(self.high, [dataclasses.replace(m) for m in self.missing], self.newest_ns)


@dataclass
class TrackerState:
    """Everything a :class:`SequenceTracker` knows, as taken by :meth:`SequenceTracker.snapshot`."""

    gateways: dict[Origin, _Gateway]
    pending: list[Point]
    duplicates: int
    gaps: int


class SequenceTracker:
    """Per-gateway sequence numbers: which are new, which are duplicates, which are missing.

    ``clock`` gives the monotonic time a number arrives (gaps are reported ``gap_grace`` seconds after
    that); tests give their own to replay a timeline.
    """

    def __init__(self, gap_grace: float = 10.0, reset_window: int = 1_000_000, max_ranges: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gap_grace = gap_grace
        self.reset_window = reset_window
        self.max_ranges = max_ranges
        self.clock = clock
        self.gateways: dict[Origin, _Gateway] = {}
        self.pending: list[Point] = []  # integrity points to write with the next batch
        self.duplicates = 0
        self.gaps = 0

    def observe(self, origin: Origin, seq: int, ts_ns: int, now: float | None = None) -> Arrival:
        """Whether the record numbered ``seq`` (time ``ts_ns``) is new (write it) or a duplicate (drop it)."""
        now = self.clock() if now is None else now
        gw = self.gateways.get(origin)
        if gw is None:
            self.gateways[origin] = _Gateway(high=seq, newest_ns=ts_ns)
            return Arrival.NEW
        newer = gw.newest_ns >= 0 and ts_ns > gw.newest_ns  # (-1: unknown, from an older state file)
        gw.newest_ns = max(gw.newest_ns, ts_ns)
        if seq == gw.high + 1:
            gw.high = seq
            return Arrival.NEW
        if seq > gw.high:
            gw.missing.append(_Missing(gw.high + 1, seq - 1, now, GapId(ts_ns, gw.high + 1, seq - 1)))
            self._cap(gw)
            gw.high = seq
            return Arrival.NEW
        if self._fill(origin, gw, seq):
            return Arrival.NEW
        if seq <= gw.high - self.reset_window:
            self.restart(origin, seq, ts_ns, f"sequence number {seq} is far below the highest seen ({gw.high})")
            return Arrival.NEW
        if newer:
            # Not a second delivery: that would be no newer than what was seen. The gateway numbers from
            # scratch again (spool and reservation wiped), even if its numbers are not far below yet.
            self.restart(origin, seq, ts_ns, f"sequence number {seq} at or below the highest seen ({gw.high}) "
                                             "on a record newer than any seen")
            return Arrival.NEW
        self.duplicates += 1
        return Arrival.DUPLICATE

    def gateway_started(self, origin: Origin, seq: int, ts_ns: int) -> None:
        """The gateway said it started, numbering at ``seq``: far below what was seen, it was reinstalled."""
        gw = self.gateways.get(origin)
        if gw is not None and seq < gw.high - 1000:
            self.restart(origin, seq, ts_ns, f"gateway started at sequence {seq} below {gw.high}")

    def snapshot(self) -> TrackerState:
        """The whole state, to put back with :meth:`restore` when a batch could not be stored: numbers
        marked as seen must have been written, or their redelivery would be dropped as a duplicate."""
        return TrackerState({o: g.copy() for o, g in self.gateways.items()}, list(self.pending),
                            self.duplicates, self.gaps)

    def restore(self, state: TrackerState) -> None:
        self.gateways, self.pending = state.gateways, state.pending
        self.duplicates, self.gaps = state.duplicates, state.gaps

    def restart(self, origin: Origin, seq: int, ts_ns: int, why: str) -> None:
        """The gateway's numbering began again (reinstalled, state lost): forget what was seen."""
        gw = self.gateways.get(origin)
        if gw is not None:
            # count 0: a reset loses nothing by itself (the dashboards sum "count" as records lost)
            self.pending.append(integrity_point(origin, IntegrityKind.RESET, seq, gw.high, ts_ns, explained=False,
                                                message=f"numbering restarted: {why}", count=0))
            log.warning("%s: %s; sequence tracking restarts at %d", origin, why, seq)
        self.gateways[origin] = _Gateway(high=seq, newest_ns=ts_ns)

    def unsee(self, origin: Origin, seen: list[Seen], note: str, now: float | None = None) -> None:
        """Numbers marked as seen whose records were not stored after all: they are missing again —
        reported as a gap with ``note`` unless they arrive again."""
        gw = self.gateways.get(origin)
        if gw is None or not seen:
            return
        now = self.clock() if now is None else now
        run: list[Seen] = []
        for s in [*sorted(seen), None]:  # None closes the last run
            if run and (s is None or s.seq != run[-1].seq + 1):
                first, last = run[0], run[-1]
                gw.missing.append(_Missing(first.seq, last.seq, now, GapId(first.ts_ns, first.seq, last.seq),
                                           note=note))
                run = []
            if s is not None:
                run.append(s)
        self._cap(gw)

    def explain(self, origin: Origin, first: int, last: int, ts_ns: int, count: int | None = None, *,
                kind: IntegrityKind = IntegrityKind.DROPPED, why: str = "") -> None:
        """The gateway reported a range it will never deliver: an explained gap.

        ``kind`` ``dropped``: its spool was full and dropped ``first..last``. ``skipped``: its spool resumed
        numbering above its reservation (``sequence_skipped``: new or corrupt spool file, or an unclean stop
        and a reboot); numbers of that range that never arrive were not used, or were lost with the spool's
        last unsynced commits — the gateway cannot tell which, and the message says so."""
        if kind == IntegrityKind.SKIPPED:
            message = (f"gateway resumed numbering above {last} ({why or 'unclean stop'}): numbers {first}..{last} "
                       "that never arrive were not used, or were lost with the spool's unsynced writes")
        else:
            message = (f"gateway dropped {count if count is not None else last - first + 1} record(s) "
                       f"{first}..{last} ({why or 'spool full'})")
        self.pending.append(integrity_point(origin, kind, first, last, ts_ns, explained=True, message=message))
        gw = self.gateways.get(origin)
        if gw is None:
            return
        kept: list[_Missing] = []
        changed: list[_Missing] = []
        for m in gw.missing:
            lo, hi = max(m.first, first), min(m.last, last)
            if lo > hi:
                kept.append(m)
                continue
            changed.append(m)
            if m.first < lo:
                kept.append(m.piece(m.first, lo - 1))
            if hi < m.last:
                kept.append(m.piece(hi + 1, m.last))
        gw.missing = kept
        done: set[GapId] = set()
        for m in changed:  # rewrite each gap point already written, once
            if not m.reported:
                self._respan(gw, m)
            elif m.gap not in done:
                done.add(m.gap)
                self._rewrite(origin, gw, m.gap, f"{first}..{last} explained by the gateway's "
                                                 f"{'drop' if kind == IntegrityKind.DROPPED else 'sequence skip'} report")

    def due(self, now: float | None = None) -> list[Point]:
        """Integrity points to write now: earlier explanations/resets, and gaps older than the grace."""
        now = self.clock() if now is None else now
        out, self.pending = self.pending, []
        for origin, gw in self.gateways.items():
            missing: dict[GapId, int] = {}  # pieces of one gap: one point
            for m in gw.missing:
                if not m.reported and now - m.detected >= self.gap_grace:
                    m.reported = True
                    missing[m.gap] = missing.get(m.gap, 0) + m.size
            for gap, n in missing.items():
                self.gaps += 1
                out.append(self._gap_point(origin, gw, gap, n))
        return out

    def _gap_point(self, origin: Origin, gw: _Gateway, gap: GapId, n: int) -> Point:
        """The first report of a gap of which ``n`` records are missing."""
        first, last = gap.first, gap.last
        why = next((m.note for m in gw.missing if m.gap == gap), "")
        if why:
            log.warning("%s: %d record(s) %s: sequence %d..%d", origin, n, why, first, last)
            message = f"{n} record(s) {why}: sequence {first}..{last}"
        else:
            other = gap.size - n
            note = f" (the other {other} arrived late or were explained by the gateway)" if other else ""
            log.warning("%s: %d record(s) missing: sequence %d..%d%s", origin, n, first, last, note)
            message = f"{n} record(s) never arrived: sequence {first}..{last}{note}"
        return integrity_point(origin, IntegrityKind.GAP, first, last, gap.ts_ns, explained=False, count=n,
                               message=message)

    def _cap(self, gw: _Gateway) -> None:
        del gw.missing[: max(0, len(gw.missing) - self.max_ranges)]

    def _fill(self, origin: Origin, gw: _Gateway, seq: int) -> bool:
        for i, m in enumerate(gw.missing):
            if m.first <= seq <= m.last:
                parts = [x for x in (m.piece(m.first, seq - 1), m.piece(seq + 1, m.last)) if x.first <= x.last]
                gw.missing[i : i + 1] = parts
                if m.reported:
                    log.info("late arrival of sequence number %d (reported missing before)", seq)
                    self._rewrite(origin, gw, m.gap, f"sequence {seq} arrived late")
                else:
                    self._respan(gw, m)
                return True
        return False

    @staticmethod
    def _respan(gw: _Gateway, was: _Missing) -> None:
        """A gap not written yet that is down to one piece is reported as that piece."""
        pieces = [m for m in gw.missing if m.gap == was.gap]
        if len(pieces) == 1:
            only = pieces[0]
            only.gap = GapId(only.gap.ts_ns, only.first, only.last)

    def _rewrite(self, origin: Origin, gw: _Gateway, gap: GapId, why: str) -> None:
        """Rewrite a written gap point (same series and time) with what is still missing of its range."""
        left = sum(m.size for m in gw.missing if m.gap == gap)
        first, last = gap.first, gap.last
        message = (f"{left} of {gap.size} record(s) of sequence {first}..{last} still missing "
                   f"(latest change: {why})" if left else
                   f"none of sequence {first}..{last} is missing any more (latest change: {why})")
        self.pending.append(integrity_point(origin, IntegrityKind.GAP, first, last, gap.ts_ns, explained=not left,
                                            message=message, count=left))

    # persistence: a bridge restart must not forget what it was waiting for
    def to_json(self) -> dict[str, Any]:
        """The state as JSON: per gateway its highest number, newest record time and missing ranges
        (``[first, last, ts_ns, reported, gap_first, gap_last, note]``)."""
        return {str(o): {"high": g.high, "newest_ns": g.newest_ns,
                         "missing": [[m.first, m.last, m.gap.ts_ns, m.reported, m.gap.first, m.gap.last, m.note]
                                     for m in g.missing]}
                for o, g in self.gateways.items()}

    def load_json(self, data: dict[str, Any]) -> None:
        """Take back what :meth:`to_json` gave; also the shorter rows of older state files."""
        now = self.clock()
        for key, g in data.items():
            site, line, gateway = key.split("/")
            missing = []
            for m in g["missing"]:
                first, last, ts_ns = int(m[0]), int(m[1]), int(m[2])
                gap = GapId(ts_ns, int(m[4]), int(m[5])) if len(m) >= 6 else GapId(ts_ns, first, last)
                missing.append(_Missing(first, last, now, gap, bool(m[3]), str(m[6]) if len(m) >= 7 else ""))
            self.gateways[Origin(site, line, gateway)] = _Gateway(
                high=int(g["high"]), newest_ns=int(g.get("newest_ns", -1)), missing=missing)


def load_state(tracker: SequenceTracker, path: Path) -> None:
    """Put back the state saved by :func:`save_state`; an unreadable file is logged and ignored (the
    bridge starts afresh: at worst a gap open at the restart is not reported)."""
    if not path.exists():
        return
    try:
        tracker.load_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.error("%s: sequence state unreadable (%s); starting afresh", path, exc)


def save_state(tracker: SequenceTracker, path: Path) -> None:
    """Write the state atomically (a crash mid-write leaves the previous file, never half of one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(tracker.to_json()))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot save sequence state to %s: %s", path, exc)
