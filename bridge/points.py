"""Gateway records as InfluxDB points, in the schema of docs/influxdb-schema.md.

The measurement names are ``floorwatch.edge.influx`` (the dashboards query them too); this module decides
the tags, fields and timestamps of each point. The dashboard tests load a real InfluxDB with these points
and run every dashboard query against it, so a rename here breaks a test, not a dashboard.

Writes are idempotent: a record's point is identified by its series (measurement + tags) and its own
timestamp (``ts_ns`` of the record, nanosecond precision), so a record delivered twice (QoS 1 is
at-least-once) overwrites itself instead of counting twice.

>>> from floorwatch.edge.model import Reading
>>> origin = Origin("dongguan-2", "line-3", "gw-01")
>>> r = Reading(ts_ns=1_700_000_000_000_000_000, seq=7, instrument="caliper-1",
...             characteristic="bore_diameter", value=12.061, unit="mm")
>>> print(reading_line(origin, r, Spec(nominal=12.0, lsl=11.95, usl=12.05)))
reading,characteristic=bore_diameter,gateway=gw-01,instrument=caliper-1,line=line-3,site=dongguan-2,unit=mm out_of_spec=true,seq=7i,status="ok",value=12.061 1700000000000000000
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum

from influxdb_client import Point, WritePrecision

from floorwatch.edge.influx import ALERT, EVENT, INTEGRITY, PRESENCE, READING, STATS
from floorwatch.edge.model import Alert, AlertState, HealthEvent, Reading, StatsSnapshot

# Statistics fields that are record metadata or tags, not figures.
_STATS_SKIP = {"ts_ns", "seq", "characteristic"}


class IntegrityKind(StrEnum):
    """What an ``integrity`` point reports (its ``kind`` tag)."""

    GAP = "gap"  # numbers never received
    DROPPED = "dropped"  # the gateway said its full spool dropped them: an explained gap
    SKIPPED = "skipped"  # the gateway resumed numbering above its reservation: an explained gap
    RESET = "reset"  # the gateway's numbering started again


@dataclass(frozen=True, slots=True)
class Origin:
    """Which gateway a record came from: the site/line/gateway part of its MQTT topic (tags on every point)."""

    site: str
    line: str
    gateway: str

    def __str__(self) -> str:
        return f"{self.site}/{self.line}/{self.gateway}"

    def tags(self, point: Point) -> Point:
        return point.tag("site", self.site).tag("line", self.line).tag("gateway", self.gateway)


@dataclass(frozen=True, slots=True)
class Spec:
    """A characteristic's specification (from a gateway configuration); None where not specified.

    >>> Spec(lsl=1.0, usl=2.0).outside(2.5), Spec(lsl=1.0).outside(2.5), Spec().outside(9.0)
    (True, False, None)
    """

    nominal: float | None = None
    lsl: float | None = None
    usl: float | None = None

    def outside(self, value: float) -> bool | None:
        """True when ``value`` is out of tolerance; None when there is nothing to compare against."""
        if not math.isfinite(value) or (self.lsl is None and self.usl is None):
            return None
        return (self.lsl is not None and value < self.lsl) or (self.usl is not None and value > self.usl)


def _text(value: str) -> str:
    """A string field without line breaks or other control characters (line protocol is line-based)."""
    return "".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in value)


def _finite(point: Point, name: str, value: float | None) -> Point:
    # Undefined figures (NaN, None) are left out: InfluxDB has no NaN, and a missing field reads as null.
    if value is not None and math.isfinite(value):
        point.field(name, float(value))
    return point


def reading_point(origin: Origin, r: Reading, spec: Spec | None = None) -> Point:
    """One reading. ``value`` is left out when the instrument gave no number; ``seq`` and ``status`` are
    always present, so the point exists either way. ``out_of_spec`` is written when the spec is known."""
    p = origin.tags(Point(READING)).tag("instrument", r.instrument).tag("characteristic", r.characteristic)
    p.tag("unit", r.unit)
    _finite(p, "value", r.value)
    p.field("seq", r.seq).field("status", r.status.value)
    if r.part_id is not None:
        p.field("part_id", _text(r.part_id))
    if r.lot is not None:
        p.field("lot", _text(r.lot))
    if spec is not None:
        outside = spec.outside(r.value)
        if outside is not None:
            p.field("out_of_spec", outside)
    return p.time(r.ts_ns, WritePrecision.NS)


def reading_line(origin: Origin, r: Reading, spec: Spec | None = None) -> str:
    return reading_point(origin, r, spec).to_line_protocol()


def stats_point(origin: Origin, s: StatsSnapshot, spec: Spec | None = None) -> Point:
    """A statistics snapshot: every figure as a field (NaN left out), plus the spec limits when known, so
    that charts can draw nominal/LSL/USL lines next to the control limits."""
    p = origin.tags(Point(STATS)).tag("characteristic", s.characteristic)
    p.field("seq", s.seq)
    for f in fields(s):
        if f.name in _STATS_SKIP:
            continue
        value = getattr(s, f.name)
        if isinstance(value, bool):
            p.field(f.name, value)
        elif isinstance(value, int):
            p.field(f.name, value)
        else:
            _finite(p, f.name, value)
    if spec is not None:
        _finite(p, "nominal", spec.nominal)
        _finite(p, "lsl", spec.lsl)
        _finite(p, "usl", spec.usl)
    return p.time(s.ts_ns, WritePrecision.NS)


def alert_point(origin: Origin, a: Alert) -> Point:
    """An alert raised or cleared; ``active`` is 1 while raised, 0 once cleared (for state timelines)."""
    p = origin.tags(Point(ALERT)).tag("subject", a.subject).tag("kind", a.kind).tag("severity", a.severity.value)
    p.field("seq", a.seq).field("state", a.state.value).field("active", 1 if a.state is AlertState.RAISED else 0)
    p.field("message", _text(a.message))
    for name in ("value", "limit", "lsl", "usl"):
        _finite(p, name, getattr(a, name))
    return p.time(a.ts_ns, WritePrecision.NS)


def event_point(origin: Origin, e: HealthEvent) -> Point:
    """A change of state. Numeric ``detail`` entries become ``detail_<key>`` float fields (e.g.
    ``detail_backlog``, ``detail_count``); the whole detail is kept as JSON text in ``detail``.
    Instrument and gateway states online/offline also give ``online`` (1/0)."""
    p = origin.tags(Point(EVENT)).tag("subject", e.subject).tag("state", e.state)
    p.field("seq", e.seq).field("message", _text(e.message))
    if e.state in ("online", "offline"):
        p.field("online", 1 if e.state == "online" else 0)
    if e.detail:
        p.field("detail", json.dumps(e.detail, sort_keys=True, separators=(",", ":"), default=str))
        for key, value in sorted(e.detail.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                _finite(p, f"detail_{key}", value)
    return p.time(e.ts_ns, WritePrecision.NS)


def presence_point(origin: Origin, state: str, since_ns: int, version: str, received_ns: int) -> Point:
    """A gateway's presence (retained ``presence`` topic). Timestamped when the bridge received it: the
    last will carries the time its session began, which would otherwise overwrite the online point."""
    p = origin.tags(Point(PRESENCE))
    p.field("state", state).field("online", 1 if state == "online" else 0).field("since_ns", since_ns)
    p.field("version", _text(version))
    return p.time(received_ns, WritePrecision.NS)


def integrity_point(origin: Origin, kind: IntegrityKind, first_seq: int, last_seq: int, ts_ns: int, *,
                    explained: bool, message: str, count: int | None = None) -> Point:
    """A data-integrity event: ``kind`` is ``gap`` (numbers never received), ``dropped`` (the gateway
    said it dropped them: an explained gap), ``skipped`` (the gateway resumed numbering above its
    reservation: an explained gap) or ``reset`` (the gateway's numbering started again). ``count``: the
    records concerned, ``last_seq - first_seq + 1`` unless given (a gap of which some arrived late)."""
    p = origin.tags(Point(INTEGRITY)).tag("kind", str(kind))
    p.field("first_seq", first_seq).field("last_seq", last_seq)
    n = max(0, last_seq - first_seq + 1) if count is None else count
    p.field("count", n).field("explained", explained).field("message", _text(message))
    return p.time(ts_ns, WritePrecision.NS)


def to_lines(points: Iterable[Point]) -> list[str]:
    return [p.to_line_protocol() for p in points]
