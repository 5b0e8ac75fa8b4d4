"""From received messages to points: validation, then sequence tracking — everything the bridge decides
before it writes, without the broker or the database (which :mod:`floorwatch.bridge.service` adds).

>>> from floorwatch.bridge.sequence import SequenceTracker
>>> from floorwatch.bridge.specs import SpecLimits
>>> intake = Intake("floorwatch/v1", SequenceTracker(gap_grace=0), SpecLimits())
>>> presence = b'{"v":1,"type":"presence","state":"online","ts_ns":5}'
>>> batch = intake.take([Incoming(1, 1, "floorwatch/v1/s/l/g/presence", presence, True, 7, 0),
...                      Incoming(2, 1, "floorwatch/v1/s/l/g/readings", b"not json", False, 8, 0)])
>>> batch.lines
['presence,gateway=g,line=l,site=s online=1i,since_ns=5i,state="online",version="" 7']
>>> [r.reason.split(":")[0] for r in batch.rejected]
['payload is not JSON']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from floorwatch.bridge import points
from floorwatch.bridge.message import Incoming
from floorwatch.bridge.points import IntegrityKind, Origin
from floorwatch.bridge.sequence import Arrival, Seen, SequenceTracker
from floorwatch.bridge.specs import SpecLimits
from floorwatch.bridge.validate import Invalid, Parsed, parse_message
from floorwatch.edge.model import Alert, HealthEvent, Reading, StatsSnapshot

log = logging.getLogger(__name__)

# The spool's reports of numbers it will never deliver, and the integrity kind each is written as.
_EXPLAINED = {"dropped": IntegrityKind.DROPPED, "sequence_skipped": IntegrityKind.SKIPPED}


@dataclass
class Accepted:
    """A valid message: its points (none for duplicates or an emptied retained alert), where it came from,
    and the sequence numbers it marked as seen — to be taken back if its points are not stored after all."""

    message: Incoming
    lines: list[str]
    origin: Origin | None
    seen: list[Seen] = field(default_factory=list)


@dataclass
class Rejected:
    """A message for the dead letters, and why."""

    message: Incoming
    reason: str


@dataclass
class Batch:
    """What :meth:`Intake.take` made of a batch of messages, in the order they were received."""

    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [line for a in self.accepted for line in a.lines]


class Intake:
    """Validates messages and turns them into points, with the tracker deciding what is new."""

    def __init__(self, prefix: str, tracker: SequenceTracker, specs: SpecLimits) -> None:
        self.prefix = prefix
        self.tracker = tracker
        self.specs = specs

    def take(self, messages: list[Incoming]) -> Batch:
        """Every message either accepted with its points, or rejected with the reason."""
        batch = Batch()
        for msg in messages:
            try:
                parsed = parse_message(self.prefix, msg)
            except Invalid as exc:
                batch.rejected.append(Rejected(msg, str(exc)))
                continue
            seen: list[Seen] = []
            try:
                lines = self.points(parsed, msg, seen) if parsed is not None else []
                batch.accepted.append(Accepted(msg, lines, parsed.origin if parsed is not None else None, seen))
            except Exception as exc:  # a bug must cost one message (dead-lettered), not stall the bridge
                log.exception("cannot turn the message from %s into points", msg.topic)
                reason = f"bridge error: {type(exc).__name__}: {exc}"
                if parsed is not None:
                    self.tracker.unsee(parsed.origin, seen, f"not stored: {reason}; see the dead letters")
                batch.rejected.append(Rejected(msg, reason))
        return batch

    def points(self, parsed: Parsed, msg: Incoming, seen: list[Seen] | None = None) -> list[str]:
        """The message's points as line protocol; numbers marked as seen are appended to ``seen``."""
        seen = [] if seen is None else seen
        origin = parsed.origin
        if parsed.presence is not None:
            p = parsed.presence
            return [points.presence_point(origin, p.state, p.ts_ns, p.version, msg.received_ns).to_line_protocol()]
        out = []
        for rec in parsed.records:
            if isinstance(rec, HealthEvent) and rec.subject == "gateway" and rec.state == "started":
                self.tracker.gateway_started(origin, rec.seq, rec.ts_ns)
            if self.tracker.observe(origin, rec.seq, rec.ts_ns) is Arrival.DUPLICATE:
                continue
            seen.append(Seen(rec.seq, rec.ts_ns))
            if isinstance(rec, Reading):
                out.append(points.reading_point(origin, rec, self.specs.get(origin, rec.characteristic)))
            elif isinstance(rec, StatsSnapshot):
                out.append(points.stats_point(origin, rec, self.specs.get(origin, rec.characteristic)))
            elif isinstance(rec, Alert):
                out.append(points.alert_point(origin, rec))
            else:
                out.append(points.event_point(origin, rec))
                if rec.subject == "spool" and rec.state in _EXPLAINED:
                    self._explain(origin, rec)
        return points.to_lines(out)

    def _explain(self, origin: Origin, rec: HealthEvent) -> None:
        """The gateway's report of numbers it will never deliver (its ``detail``: first_seq, last_seq, count)."""
        d = rec.detail or {}
        first, last, count = d.get("first_seq"), d.get("last_seq"), d.get("count")
        if isinstance(first, int) and isinstance(last, int) and first <= last:
            self.tracker.explain(origin, first, last, rec.ts_ns, count if isinstance(count, int) else None,
                                 kind=_EXPLAINED[rec.state], why=str(d.get("reason") or ""))
        else:
            log.warning("%s: spool %s report without first_seq/last_seq: %s", origin, rec.state, d)
