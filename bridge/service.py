"""The MQTT → InfluxDB bridge: what the buyer's Grafana reads is written here.

Guarantees, and how they are kept:

- **Nothing lost in a database outage.** The bridge subscribes with QoS 1 in a persistent MQTT 5 session
  (``clean_start=False`` and a session expiry) and acknowledges a message only after InfluxDB stored its
  points (paho's ``manual_ack``). While the database is down, writes are retried with backoff and nothing
  is acknowledged, so the broker keeps every message (its ``max_queued_messages`` must not cap the queue:
  see docs/influxdb-schema.md). A message acknowledged is a message stored.
- **Several bridges split the load.** The subscription is shared (``$share/<group>/<prefix>/+/+/+/#``).
- **Garbage never stops it.** Every payload is validated with ``floorwatch.edge.model``; one that fails goes to the
  dead-letter topic (and log/file) with the reason, is acknowledged, and the bridge carries on.
- **Loss is visible.** Sequence numbers are tracked per gateway: duplicates are dropped (the point would be
  the same anyway: writes are idempotent), numbers still missing after ``gap_grace`` seconds are written
  as ``integrity`` points (kind ``gap``), and ranges the gateway itself reported dropped (``events/spool``,
  state ``dropped``) or skipped (state ``sequence_skipped``) are written as explained (kind ``dropped`` or
  ``skipped``, ``explained=true``).

With several bridge instances in one group each sees only its share of a gateway's numbers; give each
instance its own ``gateways`` filter (e.g. one site each) so that every gateway's numbers reach one
instance, or the gaps one instance sees are the messages another one took.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator, model_validator

from floorwatch.edge import influx, topics
from floorwatch.edge.config import (
    NAME_PATTERN,
    BrokerSettings,
    ConfigError,
    StrictModel,
    load_config,
    read_toml,
    validate,
)
from floorwatch.edge.influx import InfluxTarget, InfluxWriter, Origin, Spec, WriteAborted, WriteRejected
from floorwatch.edge.model import (
    Alert,
    PayloadError,
    Reading,
    StatsSnapshot,
    StatusEvent,
    decode,
    decode_batch,
)

log = logging.getLogger("floorwatch.bridge")


# --- configuration ------------------------------------------------------------------------------------


class BridgeMqtt(BrokerSettings):
    client_id: str = Field(
        default_factory=lambda: f"floorwatch-bridge-{socket.gethostname()}",
        description="Stable per instance: the broker keeps this session's messages while the bridge is away",
    )
    group: str = Field("floorwatch-bridge", pattern=r"^[^/#+\s]+$", description="Shared-subscription group")
    gateways: str = Field("+/+/+", description="site/line/gateway filter under the prefix, e.g. 'dongguan-2/+/+'")
    session_expiry: int = Field(7 * 24 * 3600, ge=60, description="Seconds the broker keeps the session")
    receive_maximum: int = Field(100, ge=1, le=65535, description="Unacknowledged messages in flight to us")
    dead_letter_topic: str = Field("floorwatch/deadletter", pattern=r"^[^#+\s]+[^/#+\s]$")

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: str) -> str:
        parts = v.split("/")
        if len(parts) != 3 or not all(parts) or any("#" in p or ("+" in p and p != "+") for p in parts):
            raise ValueError(f"{v!r} is not site/line/gateway; use names or '+', e.g. 'dongguan-2/+/+'")
        return v

    @model_validator(mode="after")
    def _dead_letters_outside(self) -> BridgeMqtt:
        if mqtt.topic_matches_sub(self.topic_filter, self.dead_letter_topic + "/x/y/z/readings"):
            raise ValueError(
                f"dead_letter_topic {self.dead_letter_topic!r} lies under the subscription "
                f"{self.topic_filter!r}: dead letters would come back; choose a topic outside it"
            )
        return self

    @property
    def topic_filter(self) -> str:
        return f"{self.topic_prefix}/{self.gateways}/#"

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic_filter}"


class BridgeInflux(StrictModel):
    url: str = Field("http://localhost:8086", description="InfluxDB 2.x/3.x, or 1.8+ (compatibility API)")
    org: str = Field("-", description="Organisation (2.x); '-' for InfluxDB 1.8 and 3.x")
    bucket: str = Field("floorwatch", description="Bucket (2.x), database (3.x), 'database/rp' (1.8)")
    token_file: Path | None = Field(None, description="File holding the API token (1.8: 'user:password')")
    token_env: str | None = None
    timeout: float = Field(10.0, gt=0, le=300)
    gzip: bool = True
    batch_size: int = Field(5000, ge=1, le=100_000, description="Points per write at most")
    linger: float = Field(0.05, ge=0, le=10, description="Seconds to wait for more messages before a write")
    flush_interval: float = Field(1.0, gt=0, le=60, description="Seconds a batch waits at most")
    backoff_initial: float = Field(0.5, gt=0, le=60)
    backoff_max: float = Field(30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL, e.g. http://influxdb:8086")
        return url

    @model_validator(mode="after")
    def _token(self) -> BridgeInflux:
        if self.token_file is not None and self.token_env is not None:
            raise ValueError("give token_file or token_env, not both")
        return self

    def token(self) -> str:
        if self.token_file is not None:
            return _read_secret(self.token_file, "influxdb.token_file")
        if self.token_env is not None:
            value = os.environ.get(self.token_env)
            if value is None:
                raise ConfigError(f"influxdb.token_env: environment variable {self.token_env} is not set")
            return value
        return ""  # InfluxDB 1.x without authentication, VictoriaMetrics


class BridgeSequence(StrictModel):
    gap_grace: float = Field(10.0, ge=0, le=3600, description="Seconds a missing number may still arrive")
    reset_window: int = Field(1_000_000, ge=1000, description="A number this far below the highest = restart")
    state_file: Path | None = Field(None, description="Keep sequence state across bridge restarts")


class BridgeSection(StrictModel):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    dead_letter_file: Path | None = Field(None, description="Also append dead letters here (JSON lines)")
    gateway_configs: list[Path] = Field(
        default_factory=list, description="Gateway TOML files: their spec limits mark out-of-tolerance points"
    )


class BridgeConfig(StrictModel):
    bridge: BridgeSection = Field(default_factory=BridgeSection)
    mqtt: BridgeMqtt = Field(default_factory=BridgeMqtt)
    influxdb: BridgeInflux = Field(default_factory=BridgeInflux)
    sequence: BridgeSequence = Field(default_factory=BridgeSequence)


def _read_secret(path: Path, key: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def parse_bridge_config(data: dict[str, Any], source: str = "<bridge config>") -> BridgeConfig:
    return validate(BridgeConfig, data, source)


def load_bridge_config(path: str | os.PathLike[str]) -> BridgeConfig:
    """Read and validate a bridge TOML file; :class:`ConfigError` with one line per problem."""
    return parse_bridge_config(read_toml(path, "bridge/example.toml"), source=Path(path).name)


def load_specs(paths: list[Path]) -> dict[tuple[str, str, str, str], Spec]:
    """(site, line, gateway, characteristic) -> spec limits, from gateway configuration files."""
    specs: dict[tuple[str, str, str, str], Spec] = {}
    for path in paths:
        cfg = load_config(path)
        g = cfg.gateway
        for c in cfg.characteristics:
            if c.kind == "measurement":
                specs[(g.site, g.line, g.id, c.name)] = Spec(nominal=c.nominal, lsl=c.lsl, usl=c.usl)
    return specs


# --- sequence tracking --------------------------------------------------------------------------------


@dataclass
class _Missing:
    """Numbers ``first..last`` not received. A gap is written as ONE integrity point (series + ``ts_ns``)
    for the range ``span`` it was found as; late arrivals and explanations cut it into pieces that keep
    that span, and the point is rewritten with the count still missing."""

    first: int
    last: int
    detected: float  # monotonic time the gap was seen
    ts_ns: int  # time of the record that revealed it (the integrity point's timestamp)
    reported: bool = False
    span: tuple[int, int] = (0, -1)  # the gap as found; (0, -1): first..last
    note: str = ""  # why they are missing when the bridge knows (e.g. refused by the database)

    def __post_init__(self) -> None:
        if self.span == (0, -1):
            self.span = (self.first, self.last)

    def piece(self, first: int, last: int) -> _Missing:
        return _Missing(first, last, self.detected, self.ts_ns, self.reported, self.span, self.note)


@dataclass
class _Gateway:
    high: int
    missing: list[_Missing] = field(default_factory=list)
    newest_ns: int = -1  # the latest record time seen: a record seen before cannot be newer than it


class SequenceTracker:
    """Per-gateway sequence numbers: which are new, which are duplicates, which are missing.

    >>> t = SequenceTracker(gap_grace=0)
    >>> o = Origin("s", "l", "g")
    >>> [t.observe(o, n, n) for n in (1, 2, 5, 2, 3)]
    ['new', 'new', 'new', 'duplicate', 'new']
    >>> [(p._fields["first_seq"], p._fields["last_seq"], p._fields["count"]) for p in t.due(now=1e12)]
    [(4, 4, 1)]
    """

    def __init__(self, gap_grace: float = 10.0, reset_window: int = 1_000_000, max_ranges: int = 10_000) -> None:
        self.gap_grace = gap_grace
        self.reset_window = reset_window
        self.max_ranges = max_ranges
        self.gateways: dict[Origin, _Gateway] = {}
        self.pending: list[Any] = []  # integrity points to write with the next batch
        self.duplicates = 0
        self.gaps = 0

    def observe(self, origin: Origin, seq: int, ts_ns: int, now: float | None = None) -> str:
        """'new' (write it) or 'duplicate' (already written: drop it)."""
        now = time.monotonic() if now is None else now
        gw = self.gateways.get(origin)
        if gw is None:
            self.gateways[origin] = _Gateway(high=seq, newest_ns=ts_ns)
            return "new"
        newer = gw.newest_ns >= 0 and ts_ns > gw.newest_ns  # (-1: unknown, from an older state file)
        gw.newest_ns = max(gw.newest_ns, ts_ns)
        if seq == gw.high + 1:
            gw.high = seq
            return "new"
        if seq > gw.high:
            gw.missing.append(_Missing(gw.high + 1, seq - 1, now, ts_ns))
            del gw.missing[: max(0, len(gw.missing) - self.max_ranges)]
            gw.high = seq
            return "new"
        if self._fill(origin, gw, seq):
            return "new"
        if seq <= gw.high - self.reset_window:
            self.restart(origin, seq, ts_ns, f"sequence number {seq} is far below the highest seen ({gw.high})")
            return "new"
        if newer:
            # Not a second delivery: that would be no newer than what was seen. The gateway numbers from
            # scratch again (spool and reservation wiped), even if its numbers are not far below yet.
            self.restart(origin, seq, ts_ns, f"sequence number {seq} at or below the highest seen ({gw.high}) "
                                             "on a record newer than any seen")
            return "new"
        self.duplicates += 1
        return "duplicate"

    def snapshot(self) -> tuple[Any, ...]:
        """The whole state, to put back with :meth:`restore` when a batch could not be stored: numbers
        marked as seen must have been written, or their redelivery would be dropped as a duplicate."""
        gws = {o: _Gateway(g.high, [dataclasses.replace(m) for m in g.missing], g.newest_ns)
               for o, g in self.gateways.items()}
        return gws, list(self.pending), self.duplicates, self.gaps

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        self.gateways, self.pending, self.duplicates, self.gaps = snapshot

    def restart(self, origin: Origin, seq: int, ts_ns: int, why: str) -> None:
        """The gateway's numbering began again (reinstalled, state lost): forget what was seen."""
        gw = self.gateways.get(origin)
        if gw is not None:
            # count 0: a reset loses nothing by itself (the dashboards sum "count" as records lost)
            self.pending.append(influx.integrity_point(origin, "reset", seq, gw.high, ts_ns, explained=False,
                                                       message=f"numbering restarted: {why}", count=0))
            log.warning("%s/%s/%s: %s; sequence tracking restarts at %d", *_o(origin), why, seq)
        self.gateways[origin] = _Gateway(high=seq, newest_ns=ts_ns)

    def unsee(self, origin: Origin, seen: list[tuple[int, int]], note: str, now: float | None = None) -> None:
        """Numbers marked as seen whose records were not stored after all (``seen``: (seq, ts_ns)): they are
        missing again — reported as a gap with ``note`` unless they arrive again."""
        gw = self.gateways.get(origin)
        if gw is None or not seen:
            return
        now = time.monotonic() if now is None else now
        run: list[tuple[int, int]] = []
        for seq, ts_ns in sorted(seen) + [(-2, 0)]:
            if run and seq != run[-1][0] + 1:
                gw.missing.append(_Missing(run[0][0], run[-1][0], now, run[0][1], note=note))
                run = []
            run.append((seq, ts_ns))
        del gw.missing[: max(0, len(gw.missing) - self.max_ranges)]

    def _fill(self, origin: Origin, gw: _Gateway, seq: int) -> bool:
        for i, m in enumerate(gw.missing):
            if m.first <= seq <= m.last:
                parts = [x for x in (m.piece(m.first, seq - 1), m.piece(seq + 1, m.last)) if x.first <= x.last]
                gw.missing[i : i + 1] = parts
                if m.reported:
                    log.info("late arrival of sequence number %d (reported missing before)", seq)
                    self._rewrite(origin, gw, m, f"sequence {seq} arrived late")
                else:
                    self._respan(gw, m)
                return True
        return False

    @staticmethod
    def _respan(gw: _Gateway, was: _Missing) -> None:
        """A gap not written yet that is down to one piece is reported as that piece."""
        pieces = [m for m in gw.missing if m.ts_ns == was.ts_ns and m.span == was.span]
        if len(pieces) == 1:
            pieces[0].span = (pieces[0].first, pieces[0].last)

    def _rewrite(self, origin: Origin, gw: _Gateway, was: _Missing, why: str) -> None:
        """Rewrite a written gap point (same series and time) with what is still missing of its span."""
        left = sum(m.last - m.first + 1 for m in gw.missing if m.ts_ns == was.ts_ns and m.span == was.span)
        first, last = was.span
        message = (f"{left} of {last - first + 1} record(s) of sequence {first}..{last} still missing "
                   f"(latest change: {why})" if left else
                   f"none of sequence {first}..{last} is missing any more (latest change: {why})")
        self.pending.append(influx.integrity_point(origin, "gap", first, last, was.ts_ns, explained=not left,
                                                   message=message, count=left))

    def explain(self, origin: Origin, first: int, last: int, ts_ns: int, count: int | None = None, *,
                kind: str = "dropped", why: str = "") -> None:
        """The gateway reported a range it will never deliver: an explained gap.

        ``kind`` ``dropped``: its spool was full and dropped ``first..last``. ``skipped``: its spool resumed
        numbering above its reservation (``sequence_skipped``: new or corrupt spool file, or an unclean stop
        and a reboot); numbers of that range that never arrive were not used, or were lost with the spool's
        last unsynced commits — the gateway cannot tell which, and the message says so."""
        if kind == "skipped":
            message = (f"gateway resumed numbering above {last} ({why or 'unclean stop'}): numbers {first}..{last} "
                       "that never arrive were not used, or were lost with the spool's unsynced writes")
        else:
            message = (f"gateway dropped {count if count is not None else last - first + 1} record(s) "
                       f"{first}..{last} ({why or 'spool full'})")
        self.pending.append(influx.integrity_point(origin, kind, first, last, ts_ns, explained=True,
                                                   message=message))
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
        done: set[tuple[int, tuple[int, int]]] = set()
        for m in changed:  # rewrite each gap point already written, once
            if not m.reported:
                self._respan(gw, m)
            elif (m.ts_ns, m.span) not in done:
                done.add((m.ts_ns, m.span))
                self._rewrite(origin, gw, m, f"{first}..{last} explained by the gateway's "
                                             f"{'drop' if kind == 'dropped' else 'sequence skip'} report")

    def due(self, now: float | None = None) -> list[Any]:
        """Integrity points to write now: earlier explanations/resets, and gaps older than the grace."""
        now = time.monotonic() if now is None else now
        out, self.pending = self.pending, []
        for origin, gw in self.gateways.items():
            spans: dict[tuple[int, tuple[int, int]], int] = {}  # pieces of one gap: one point
            for m in gw.missing:
                if not m.reported and now - m.detected >= self.gap_grace:
                    m.reported = True
                    key = (m.ts_ns, m.span)
                    spans[key] = spans.get(key, 0) + m.last - m.first + 1
            for (ts_ns, (first, last)), n in spans.items():
                self.gaps += 1
                other = last - first + 1 - n
                note = f" (the other {other} arrived late or were explained by the gateway)" if other else ""
                why = next((m.note for m in gw.missing if m.ts_ns == ts_ns and m.span == (first, last)), "")
                if why:
                    log.warning("%s/%s/%s: %d record(s) %s: sequence %d..%d", *_o(origin), n, why, first, last)
                    out.append(influx.integrity_point(origin, "gap", first, last, ts_ns, explained=False, count=n,
                                                      message=f"{n} record(s) {why}: sequence {first}..{last}"))
                    continue
                log.warning("%s/%s/%s: %d record(s) missing: sequence %d..%d%s", *_o(origin), n, first, last, note)
                out.append(influx.integrity_point(
                    origin, "gap", first, last, ts_ns, explained=False, count=n,
                    message=f"{n} record(s) never arrived: sequence {first}..{last}{note}"))
        return out

    # persistence: a bridge restart must not forget what it was waiting for
    def to_json(self) -> dict[str, Any]:
        return {"/".join(_o(o)): {"high": g.high, "newest_ns": g.newest_ns,
                                  "missing": [[m.first, m.last, m.ts_ns, m.reported, *m.span, m.note]
                                              for m in g.missing]}
                for o, g in self.gateways.items()}

    def load_json(self, data: dict[str, Any]) -> None:
        now = time.monotonic()
        for key, g in data.items():
            site, line, gateway = key.split("/")
            self.gateways[Origin(site, line, gateway)] = _Gateway(
                high=int(g["high"]), newest_ns=int(g.get("newest_ns", -1)),
                missing=[_Missing(int(m[0]), int(m[1]), now, int(m[2]), bool(m[3]),
                                  (int(m[4]), int(m[5])) if len(m) >= 6 else (int(m[0]), int(m[1])),
                                  str(m[6]) if len(m) >= 7 else "")
                         for m in g["missing"]])


def _o(origin: Origin) -> tuple[str, str, str]:
    return origin.site, origin.line, origin.gateway


# --- validation ---------------------------------------------------------------------------------------


@dataclass
class Incoming:
    """One MQTT message as received, with what is needed to acknowledge it later."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    retain: bool
    received_ns: int
    generation: int  # connection it arrived on: an ack after a reconnect would hit a reused packet id


@dataclass
class Parsed:
    """A validated message: its records (or presence) and where it came from."""

    origin: Origin
    kind: str
    records: list[Reading | StatsSnapshot | Alert | StatusEvent] = field(default_factory=list)
    presence: dict[str, Any] | None = None


class Invalid(Exception):
    """Why a message goes to the dead letters."""


_EXPECTED = {topics.STATS: StatsSnapshot, topics.ALERTS: Alert, topics.EVENTS: StatusEvent}


def parse_message(prefix: str, msg: Incoming) -> Parsed | None:
    """Validate one message against docs/payloads.md. None = nothing to store (an emptied retained
    ``active`` topic, or the retained copy of an alert already stored from ``alerts/``).
    Raises :class:`Invalid` with the reason otherwise.

    >>> m = Incoming(1, 1, "floorwatch/v1/s/l/g/stats/x", b'{"v": 2}', False, 0, 0)
    >>> parse_message("floorwatch/v1", m)
    Traceback (most recent call last):
    ...
    floorwatch.bridge.service.Invalid: unsupported payload version 2; this reader knows v1
    """
    parts = topics.parse_topic(prefix, msg.topic)
    if parts is None:
        raise Invalid(f"topic {msg.topic!r} is not <prefix>/<site>/<line>/<gateway>/<kind>/...")
    origin = Origin(parts.site, parts.line, parts.gateway)
    if parts.kind == topics.ACTIVE:
        return None
    if parts.kind not in topics.SEQUENCED and parts.kind != topics.STATUS:
        raise Invalid(f"unknown topic kind {parts.kind!r}; expected one of "
                      f"{sorted(topics.SEQUENCED | {topics.STATUS, topics.ACTIVE})}")
    if not msg.payload:
        raise Invalid("empty payload (only an 'active/...' retained alert may be emptied)")
    try:
        data = json.loads(msg.payload, parse_constant=_not_json, parse_float=_finite_float)
    except _NotANumber as exc:
        raise Invalid(f"payload has {exc}, not a number JSON allows; undefined figures are null "
                      "(docs/payloads.md)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise Invalid("payload is nested too deeply to be a Floorwatch payload (JSON arrays/objects "
                      "inside each other thousands of times)") from None
    try:
        if parts.kind == topics.READINGS:
            parsed = Parsed(origin, parts.kind, records=list(decode_batch(data)))
            check_names(parsed)
            return parsed
        if parts.kind == topics.STATUS:
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
                      f"{ {StatsSnapshot: 'stats', Alert: 'alert', StatusEvent: 'status'}[expected]!r}")
    if isinstance(record, StatsSnapshot) and parts.subject != record.characteristic:
        raise Invalid(f"stats for {record.characteristic!r} on the topic of {parts.subject!r}")
    parsed = Parsed(origin, parts.kind, records=[record])
    check_names(parsed)
    return parsed


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
        elif isinstance(rec, StatusEvent):
            names += [("subject", rec.subject), ("state", rec.state)]
    for what, name in names:
        if not _NAME.fullmatch(name):
            raise Invalid(f"{what} {name!r} is not a valid name: 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit")


def _presence(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("type") != "presence":
        raise PayloadError("status topic needs a v1 'presence' payload")
    state, ts, version = data.get("state"), data.get("ts_ns"), data.get("version", "")
    if state not in ("online", "offline"):
        raise PayloadError(f"presence payload field 'state': {state!r} is not 'online' or 'offline'")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise PayloadError(f"presence payload field 'ts_ns': {ts!r} is not a valid int")
    if not isinstance(version, str):
        raise PayloadError(f"presence payload field 'version': {version!r} is not a valid str")
    return {"state": state, "ts_ns": ts, "version": version}


# --- the service --------------------------------------------------------------------------------------


@dataclass
class BridgeCounters:
    messages: int = 0
    points: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    gaps: int = 0
    writes: int = 0


class Bridge:
    """Run with :meth:`start` / :meth:`stop` (or :meth:`run` until a stop signal)."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.specs = load_specs(config.bridge.gateway_configs)
        self.counters = BridgeCounters()
        self.tracker = SequenceTracker(config.sequence.gap_grace, config.sequence.reset_window)
        state = config.sequence.state_file
        if state is not None and state.exists():
            try:
                self.tracker.load_json(json.loads(state.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("%s: sequence state unreadable (%s); starting afresh", state, exc)
        ic = config.influxdb
        self.writer = InfluxWriter(
            InfluxTarget(url=ic.url, org=ic.org, bucket=ic.bucket, token=ic.token(), timeout_s=ic.timeout,
                         gzip=ic.gzip),
            backoff_initial=ic.backoff_initial, backoff_max=ic.backoff_max)
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.generation = 0
        self._worker: threading.Thread | None = None
        self._stopped = False
        self._refused: dict[int, str] = {}  # mid -> why the broker refused a dead letter
        self.client = self._make_client()

    # MQTT ---------------------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        mc = self.config.mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=mc.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if mc.username:
            client.username_pw_set(mc.username, mc.password())
        ctx = mc.tls_context()
        if ctx is not None:
            client.tls_set_context(ctx)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda c, u: log.error(
            "cannot reach the broker at %s; retrying", self.config.mqtt.url)
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.config.mqtt.url, reason_code)
            return
        self.generation += 1
        log.info("connected to %s (session present: %s); subscribing to %s", self.config.mqtt.url,
                 flags.session_present, self.config.mqtt.subscription)
        client.subscribe(self.config.mqtt.subscription, qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("lost the broker (%s); reconnecting — unacknowledged messages will come again",
                        reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):  # MQTT 5: the broker took the dead letter but refused it
            self._refused[mid] = str(reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Incoming(msg.mid, msg.qos, msg.topic, bytes(msg.payload), bool(msg.retain),
                                time.time_ns(), self.generation))

    def start(self) -> None:
        mc = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = mc.session_expiry
        props.ReceiveMaximum = mc.receive_maximum
        self.client.connect_async(mc.host, mc.port, keepalive=mc.keepalive, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="bridge-writer", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, finish (or abandon, unacknowledged) the batch in hand, disconnect."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        self.writer.close()

    def run(self) -> None:
        self.start()
        try:
            while not self.stopping.wait(3600):
                pass
        finally:
            self.stop()

    # processing ---------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Incoming]]:
        ic = self.config.influxdb
        while not self.stopping.is_set():
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                yield []  # time to report due gaps
                continue
            batch, deadline = [first], time.monotonic() + ic.flush_interval
            while len(batch) < self.config.mqtt.receive_maximum:  # no more can be in flight to us
                wait = min(ic.linger, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    batch.append(self.inbox.get(timeout=wait))
                except queue.Empty:
                    break
            yield batch

    def _work(self) -> None:
        for batch in self._batches():
            try:
                self.process(batch)
            except WriteAborted as exc:
                log.warning("%s; %d message(s) left unacknowledged for the broker to deliver again",
                            exc, len(batch))
                return
            except Exception:  # never let one bad batch stop the bridge
                log.exception("unexpected error processing %d message(s); they stay unacknowledged",
                              len(batch))

    def process(self, batch: list[Incoming]) -> None:
        """Validate, write, dead-letter, acknowledge — in that order.

        The sequence state changes only with a batch that was stored: if anything unexpected fails, it is
        put back as it was and the messages are processed again one by one; one that still fails goes to
        the dead letters with the error. A message is never left unacknowledged while later ones are
        acknowledged: the broker would only deliver it again after a reconnect, and it would hold one of
        the ``receive_maximum`` slots meanwhile."""
        saved, messages = self.tracker.snapshot(), self.counters.messages
        try:
            self._process(batch)
            return
        except WriteAborted:
            self.tracker.restore(saved)
            raise
        except Exception:
            self.tracker.restore(saved)
            self.counters.messages = messages
            log.exception("unexpected error processing %d message(s); processing them one by one", len(batch))
        for msg in batch:
            saved, messages = self.tracker.snapshot(), self.counters.messages
            try:
                self._process([msg])
            except WriteAborted:
                self.tracker.restore(saved)
                raise
            except Exception as exc:
                self.tracker.restore(saved)
                self.counters.messages = messages + 1
                log.exception("cannot process the message from %s", msg.topic)
                self._settle([msg], [(msg, f"bridge error: {type(exc).__name__}: {exc}")])

    def _process(self, batch: list[Incoming]) -> None:
        per_message: list[tuple[Incoming, list[str], Origin | None, list[tuple[int, int]]]] = []
        dead: list[tuple[Incoming, str]] = []
        for msg in batch:
            self.counters.messages += 1
            try:
                parsed = parse_message(self.prefix, msg)
            except Invalid as exc:
                dead.append((msg, str(exc)))
                continue
            seen: list[tuple[int, int]] = []  # (seq, ts_ns) marked as seen for this message
            try:
                lines = self._points(parsed, msg, seen) if parsed is not None else []
                per_message.append((msg, lines, parsed.origin if parsed is not None else None, seen))
            except Exception as exc:  # a bug must cost one message (dead-lettered), not stall the bridge
                log.exception("cannot turn the message from %s into points", msg.topic)
                reason = f"bridge error: {type(exc).__name__}: {exc}"
                if parsed is not None:
                    self.tracker.unsee(parsed.origin, seen, f"not stored: {reason}; see the dead letters")
                dead.append((msg, reason))
        integrity = influx.to_lines(self.tracker.due())
        lines = [line for _, ls, _, _ in per_message for line in ls] + integrity
        size = self.config.influxdb.batch_size
        try:
            for i in range(0, len(lines), size):  # rewriting a chunk after a failure is harmless: idempotent
                self.writer.write(lines[i : i + size], self.stopping)
        except WriteRejected as exc:
            # one message the database refuses must not take the others with it: write one by one
            log.error("%s; writing message by message to find the rejected one(s)", exc)
            for line in integrity:
                try:
                    self.writer.write([line], self.stopping)
                except WriteRejected as one:
                    log.error("the database refused an integrity point (%s): %s", one, line[:300])
            for msg, ls, origin, seen in per_message:
                try:
                    self.writer.write(ls, self.stopping)
                except WriteRejected as one:
                    dead.append((msg, str(one)))
                    if origin is not None:  # its numbers are not in the database: a gap, with the reason
                        self.tracker.unsee(origin, seen, f"refused by the database ({one}); see the dead letters")
        if not batch and not integrity:
            return
        self.counters.points += len(lines)
        self.counters.writes += 1
        self._settle(batch, dead)

    def _settle(self, batch: list[Incoming], dead: list[tuple[Incoming, str]]) -> None:
        """Dead-letter what must be, save the sequence state, acknowledge in the order received."""
        self.counters.duplicates = self.tracker.duplicates
        self.counters.gaps = self.tracker.gaps
        kept = [(msg, self._dead_letter(msg, reason)) for msg, reason in dead]
        undelivered = {id(msg) for msg, info in kept if not self._delivered(info, msg)}
        self._save_state()
        for msg in batch:  # in the order received, as MQTT asks
            if msg.qos > 0 and msg.generation == self.generation and id(msg) not in undelivered:
                self.client.ack(msg.mid, msg.qos)

    def _points(self, parsed: Parsed, msg: Incoming, seen: list[tuple[int, int]] | None = None) -> list[str]:
        """The message's points; numbers marked as seen are appended to ``seen`` as (seq, ts_ns)."""
        seen = [] if seen is None else seen
        origin = parsed.origin
        if parsed.presence is not None:
            p = parsed.presence
            return [influx.presence_point(origin, p["state"], p["ts_ns"], p["version"],
                                          msg.received_ns).to_line_protocol()]
        out = []
        for rec in parsed.records:
            if isinstance(rec, StatusEvent) and rec.subject == "gateway" and rec.state == "started":
                gw = self.tracker.gateways.get(origin)
                if gw is not None and rec.seq < gw.high - 1000:
                    self.tracker.restart(origin, rec.seq, rec.ts_ns,
                                         f"gateway started at sequence {rec.seq} below {gw.high}")
            if self.tracker.observe(origin, rec.seq, rec.ts_ns) == "duplicate":
                continue
            seen.append((rec.seq, rec.ts_ns))
            if isinstance(rec, Reading):
                spec = self.specs.get((origin.site, origin.line, origin.gateway, rec.characteristic))
                out.append(influx.reading_point(origin, rec, spec))
            elif isinstance(rec, StatsSnapshot):
                spec = self.specs.get((origin.site, origin.line, origin.gateway, rec.characteristic))
                out.append(influx.stats_point(origin, rec, spec))
            elif isinstance(rec, Alert):
                out.append(influx.alert_point(origin, rec))
            else:
                out.append(influx.event_point(origin, rec))
                if rec.subject == "spool" and rec.state in ("dropped", "sequence_skipped"):
                    self._explain(origin, rec)
        return influx.to_lines(out)

    def _explain(self, origin: Origin, rec: StatusEvent) -> None:
        d = rec.detail or {}
        first, last, count = d.get("first_seq"), d.get("last_seq"), d.get("count")
        kind = "dropped" if rec.state == "dropped" else "skipped"
        if isinstance(first, int) and isinstance(last, int) and first <= last:
            self.tracker.explain(origin, first, last, rec.ts_ns, count if isinstance(count, int) else None,
                                 kind=kind, why=str(d.get("reason") or ""))
        else:
            log.warning("%s/%s/%s: spool %s report without first_seq/last_seq: %s", *_o(origin), rec.state, d)

    def _dead_letter(self, msg: Incoming, reason: str) -> tuple[mqtt.MQTTMessageInfo, bool]:
        """Publish (and log, and append to the file) one dead letter; returns the publish handle and
        whether the file took it."""
        self.counters.dead_letters += 1
        try:
            text, encoding = msg.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(msg.payload).decode(), "base64"
        letter = {"reason": reason, "topic": msg.topic, "received_ns": msg.received_ns,
                  "encoding": encoding, "payload": text}
        body = json.dumps(letter, separators=(",", ":"))
        log.warning("dead letter from %s: %s", msg.topic, reason)
        info = self.client.publish(f"{self.config.mqtt.dead_letter_topic}/{msg.topic}", body, qos=1)
        path = self.config.bridge.dead_letter_file
        if path is None:
            return info, False
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(body + "\n")
            return info, True
        except OSError as exc:
            log.error("cannot append to dead-letter file %s: %s", path, exc)
            return info, False

    def _delivered(self, letter: tuple[mqtt.MQTTMessageInfo, bool], msg: Incoming) -> bool:
        """A dead letter is kept once the broker took it or the file did; until then the invalid message
        stays unacknowledged, so that the broker delivers it (and we dead-letter it) again."""
        info, in_file = letter
        try:
            info.wait_for_publish(timeout=5)
        except (ValueError, RuntimeError):
            pass
        refused = self._refused.pop(info.mid, None) if info.is_published() else None
        if refused is not None:
            # Keeping the message unacknowledged would not bring it back (no reconnect is coming) and would
            # hold one of the receive_maximum slots: say it loudly, with the payload, and go on.
            excerpt = msg.payload[:500].decode("utf-8", errors="replace")
            log.error("the broker refused the dead letter for %s (%s): check the ACL lets user %s write %s/#, "
                      "or set bridge.dead_letter_file; %s; payload: %r", msg.topic, refused,
                      self.config.mqtt.username or "(anonymous)", self.config.mqtt.dead_letter_topic,
                      "kept in the dead-letter file" if in_file else "NOT kept anywhere else", excerpt)
            return True
        if info.is_published() or in_file:
            return True
        log.error("dead letter for %s not delivered to the broker; leaving the message unacknowledged", msg.topic)
        return False

    def _save_state(self) -> None:
        path = self.config.sequence.state_file
        if path is None:
            return
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps(self.tracker.to_json()))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot save sequence state to %s: %s", path, exc)
