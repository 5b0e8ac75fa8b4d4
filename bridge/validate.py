"""Payload validation: a received message becomes records the bridge may store, or the reason it may not.

Every payload is checked against docs/payloads.md with ``floorwatch.edge.model``; names that become InfluxDB
tags are checked against the names a gateway configuration allows. Whatever fails raises :class:`Invalid`
with the reason, and the message goes to the dead letters — garbage never stops the bridge, and never
becomes a point.

>>> m = Incoming(1, 1, "floorwatch/v1/s/l/g/stats/x", b'{"v": 2}', False, 0, 0)
>>> parse_message("floorwatch/v1", m)
Traceback (most recent call last):
...
floorwatch.bridge.validate.Invalid: unsupported payload version 2; this reader knows v1
>>> ok = Incoming(2, 1, "floorwatch/v1/s/l/g/presence", b'{"v":1,"type":"presence","state":"online","ts_ns":5}',
...               True, 0, 0)
>>> parse_message("floorwatch/v1", ok).presence
Presence(state='online', ts_ns=5, version='')

Names an older gateway still publishes — presence on ``…/status``, health events as ``"type": "status"`` —
are read as today's (``floorwatch.edge.topics.FORMER_KINDS``, ``floorwatch.edge.model.FORMER_TYPES``; the
compatibility rule in docs/payloads.md):

>>> old = Incoming(3, 1, "floorwatch/v1/s/l/g/status", b'{"v":1,"type":"presence","state":"offline","ts_ns":5}',
...                True, 0, 0)
>>> parse_message("floorwatch/v1", old).presence
Presence(state='offline', ts_ns=5, version='')
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from floorwatch.bridge.message import Incoming
from floorwatch.bridge.points import Origin
from floorwatch.edge import topics
from floorwatch.edge.config import NAME_PATTERN
from floorwatch.edge.model import (
    Alert,
    HealthEvent,
    PayloadError,
    Reading,
    StatsSnapshot,
    decode,
    decode_batch,
)

Record = Reading | StatsSnapshot | Alert | HealthEvent


@dataclass(frozen=True, slots=True)
class Presence:
    """A gateway's retained ``presence`` payload: online since ``ts_ns``, or offline (its last will)."""

    state: str  # "online" or "offline"
    ts_ns: int
    version: str


@dataclass
class Parsed:
    """A validated message: its records (or presence) and where it came from."""

    origin: Origin
    kind: str  # the topic kind (floorwatch.edge.topics)
    records: list[Record] = field(default_factory=list)
    presence: Presence | None = None


class Invalid(Exception):
    """Why a message goes to the dead letters."""


_EXPECTED: dict[str, type[Record]] = {topics.STATS: StatsSnapshot, topics.ALERTS: Alert, topics.EVENTS: HealthEvent}
_TYPE_NAMES: dict[type[Record], str] = {StatsSnapshot: "stats", Alert: "alert", HealthEvent: "event"}


def parse_message(prefix: str, msg: Incoming) -> Parsed | None:
    """Validate one message against docs/payloads.md. None = nothing to store (an emptied retained
    ``active`` topic, or the retained copy of an alert already stored from ``alerts/``).
    Raises :class:`Invalid` with the reason otherwise."""
    parts = topics.parse_topic(prefix, msg.topic)
    if parts is None:
        raise Invalid(f"topic {msg.topic!r} is not <prefix>/<site>/<line>/<gateway>/<kind>/...")
    origin = Origin(parts.site, parts.line, parts.gateway)
    if parts.kind == topics.ACTIVE:
        return None
    if parts.kind not in topics.SEQUENCED and parts.kind != topics.PRESENCE:
        raise Invalid(f"unknown topic kind {parts.kind!r}; expected one of "
                      f"{sorted(topics.SEQUENCED | {topics.PRESENCE, topics.ACTIVE})}")
    if not msg.payload:
        raise Invalid("empty payload (only an 'active/...' retained alert may be emptied)")
    data = _json(msg.payload)
    try:
        if parts.kind == topics.READINGS:
            parsed = Parsed(origin, parts.kind, records=list(decode_batch(data)))
            check_names(parsed)
            return parsed
        if parts.kind == topics.PRESENCE:
            parsed = Parsed(origin, parts.kind, presence=_presence(data))
            check_names(parsed)
            return parsed
        record = decode(data)
    except PayloadError as exc:
        raise Invalid(str(exc)) from None
    except OverflowError as exc:  # an integer where a float belongs, beyond a float's range
        raise Invalid(f"a number in the payload is too large ({exc}); figures must fit a 64-bit float") from None
    expected = _EXPECTED[parts.kind]
    if not isinstance(record, expected):
        raise Invalid(f"topic kind {parts.kind!r} carries {data.get('type')!r} payloads, not the expected "
                      f"{_TYPE_NAMES[expected]!r}")
    if isinstance(record, StatsSnapshot) and parts.subject != record.characteristic:
        raise Invalid(f"stats for {record.characteristic!r} on the topic of {parts.subject!r}")
    parsed = Parsed(origin, parts.kind, records=[record])
    check_names(parsed)
    return parsed


def _json(payload: bytes) -> Any:
    """The payload as JSON data — standard JSON only: no NaN/Infinity, no number beyond a float's range."""
    try:
        return json.loads(payload, parse_constant=_not_json, parse_float=_finite_float)
    except _NotANumber as exc:
        raise Invalid(f"payload has {exc}, not a number JSON allows; undefined figures are null "
                      "(docs/payloads.md)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise Invalid("payload is nested too deeply to be a Floorwatch payload (JSON arrays/objects "
                      "inside each other thousands of times)") from None


class _NotANumber(Exception):
    """NaN, Infinity or a number beyond a float's range in a payload."""


def _not_json(token: str) -> float:
    """``json.loads`` would turn the non-standard tokens NaN, Infinity and -Infinity into floats."""
    raise _NotANumber(token)


def _finite_float(text: str) -> float:
    """``json.loads`` would turn a number like 1e999 into infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(text if len(text) <= 40 else text[:40] + "…")
    return value


_NAME = re.compile(NAME_PATTERN)
_UNIT = re.compile(r"^[^\\\x00-\x1f\x7f]{0,32}$")


def check_names(parsed: Parsed) -> None:
    """Names become InfluxDB tags: they must be the names a gateway configuration allows (letters, digits,
    '_', '.', '-'), so that a garbled payload can neither break the line protocol nor invent series."""
    o = parsed.origin
    names: list[tuple[str, str]] = [("site", o.site), ("line", o.line), ("gateway", o.gateway)]
    for rec in parsed.records:
        if isinstance(rec, Reading):
            names += [("instrument", rec.instrument), ("characteristic", rec.characteristic)]
            if not _UNIT.fullmatch(rec.unit):
                raise Invalid(f"unit {rec.unit!r} of {rec.characteristic!r} has control characters or backslashes")
        elif isinstance(rec, StatsSnapshot):
            names.append(("characteristic", rec.characteristic))
        elif isinstance(rec, Alert):
            names += [("subject", rec.subject), ("kind", rec.kind)]
        elif isinstance(rec, HealthEvent):
            names += [("subject", rec.subject), ("state", rec.state)]
    for what, name in names:
        if not _NAME.fullmatch(name):
            raise Invalid(f"{what} {name!r} is not a valid name: 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit")


def _presence(data: Any) -> Presence:
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("type") != "presence":
        raise PayloadError("presence topic needs a v1 'presence' payload")
    state, ts, version = data.get("state"), data.get("ts_ns"), data.get("version", "")
    if state not in ("online", "offline"):
        raise PayloadError(f"presence payload field 'state': {state!r} is not 'online' or 'offline'")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise PayloadError(f"presence payload field 'ts_ns': {ts!r} is not a valid int")
    if not isinstance(version, str):
        raise PayloadError(f"presence payload field 'version': {version!r} is not a valid str")
    return Presence(state, ts, version)
