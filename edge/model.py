"""The data model: what an instrument measured, what the gateway publishes, and how it is encoded.

Everything here is immutable and typed. The JSON encoding is versioned (``"v": 1``) and documented in
``docs/payloads.md``; change that document and the version together.

Flow of objects::

    instrument --frame--> driver --Measurement--> gateway --Reading(seq)--> statistics --StatsSnapshot
                                                                       \\--> rules --Alert

A ``Measurement`` is what a driver makes of one frame (it knows the instrument, not the characteristic).
The gateway maps it to a characteristic, normalises the unit and gives it a sequence number: a ``Reading``.

>>> r = Reading(ts_ns=1_700_000_000_000_000_000, seq=7, instrument="caliper-1",
...             characteristic="bore_diameter", value=10.012, unit="mm")
>>> decode(encode(r)) == r
True
>>> encode(r)["type"]
'reading'
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, Field, dataclass, field, fields
from enum import StrEnum
from typing import Any

PAYLOAD_VERSION = 1


def assigned_later(default: Any, *, by: str) -> Any:
    """A field a later stage of the pipeline fills in (``by`` says which); ``default`` means "not yet".

    Such a field is keyword-only, so the stage that builds the record cannot confuse it with the values it
    does know. :func:`encode` refuses a record that still lacks it and :func:`decode` a payload without it:
    whatever leaves or enters the gateway has it.
    """
    return field(default=default, kw_only=True, metadata={"assigned_by": by})


def _unassigned(obj: Any) -> Field[Any] | None:
    """The first field of ``obj`` a later stage has not filled in yet, or None."""
    for f in fields(obj):
        if "assigned_by" in f.metadata and getattr(obj, f.name) == f.default:
            return f
    return None


class MeasurementStatus(StrEnum):
    """State of one measured value as the instrument reported it."""

    OK = "ok"
    UNSTABLE = "unstable"  # scale still settling: shown, never used for statistics
    OVERLOAD = "overload"  # above the instrument's range
    UNDERLOAD = "underload"  # below the instrument's range
    ERROR = "error"  # the instrument reported an error, or the unit could not be converted


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value decoded from one instrument frame, before the gateway assigns it to a characteristic.

    A parser knows the value, not when or from which instrument the frame came: it returns a measurement
    with ``ts_ns`` None and ``instrument`` ``""``, and the driver stamps both (``Driver.stamp``) before it
    hands the measurement on. The gateway refuses an unstamped one (``Measurement.stamped``).

    ``channel`` distinguishes several values of one instrument (a U-WAVE receiver's transmitters, a Modbus
    register map); single-value instruments use ``""``. ``detail`` says why a value is not ok
    (e.g. ``"ERR3: range exceeded"``).

    >>> m = Measurement(0.512, "mm")
    >>> m.stamped, m.ts_ns, m.instrument
    (False, None, '')
    """

    ts_ns: int | None = assigned_later(None, by="the driver")  # None until the driver stamps it
    instrument: str = assigned_later("", by="the driver")  # "" until the driver stamps it
    value: float
    unit: str = ""
    status: MeasurementStatus = MeasurementStatus.OK
    channel: str = ""
    detail: str = ""

    @property
    def stamped(self) -> bool:
        """The driver gave it its time and instrument: the only kind the gateway takes."""
        return self.ts_ns is not None and bool(self.instrument)


@dataclass(frozen=True, slots=True)
class Reading:
    """A measured value of a characteristic, numbered by the gateway.

    ``seq`` is the gateway's sequence number: one counter per gateway shared by every message it publishes,
    contiguous and monotonic across restarts, so that downstream can detect loss.
    """

    ts_ns: int
    seq: int
    instrument: str
    characteristic: str
    value: float
    unit: str
    status: MeasurementStatus = MeasurementStatus.OK
    part_id: str | None = None
    lot: str | None = None


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Statistics of one characteristic after its latest reading. Undefined figures are NaN.

    Window figures cover the last ``window`` accepted readings; ``n_total`` counts every accepted reading
    since the last reset; ``n_rejected`` counts readings kept out of the statistics (non-finite value or a
    status other than ok). Control limits (``center``, ``sigma``, ``ucl``, ``lcl``) are those the rules are
    evaluated against: configured, or learned from the baseline phase (``baseline_done``).
    """

    ts_ns: int
    seq: int | None = assigned_later(None, by="the outbox")  # None until the outbox numbers it
    characteristic: str
    n: int
    n_total: int
    n_rejected: int
    mean: float
    std: float
    min: float
    max: float
    mr_bar: float
    sigma_within: float
    ewma: float
    ewma_ucl: float
    ewma_lcl: float
    cusum_pos: float
    cusum_neg: float
    center: float
    sigma: float
    ucl: float
    lcl: float
    cp: float
    cpk: float
    pp: float
    ppk: float
    n_below_lsl: int
    n_above_usl: int
    rules: int  # bitmask of the rules the latest point fired (see floorwatch.edge.stats.rules)
    baseline_done: bool
    # Subgroup charts (subgroup size 2..10); NaN for individuals charts.
    xbar: float = math.nan
    r: float = math.nan
    s: float = math.nan
    r_bar: float = math.nan
    s_bar: float = math.nan
    xbar_ucl: float = math.nan
    xbar_lcl: float = math.nan
    r_ucl: float = math.nan
    r_lcl: float = math.nan
    s_ucl: float = math.nan
    s_lcl: float = math.nan
    subgroup_size: int = 1


@dataclass(frozen=True, slots=True)
class Alert:
    """A raised or cleared alert. ``subject`` is a characteristic, an instrument or the gateway itself.

    ``kind`` names the condition (``out_of_spec``, ``nelson_1`` … ``nelson_8``, ``we_1`` … ``we_4``,
    ``cusum``, ``ewma``, ``cpk_low``, ``line_stopped``, ``instrument_offline``, ``spool_backlog``,
    ``data_dropped``). ``value`` is the value that crossed ``limit``; NaN where it does not apply.

    The alert tracker (``floorwatch.edge.alerts``) decides an alert without a number (``seq`` None); the
    gateway's outbox numbers it when it queues it for publishing, and only a numbered alert is encoded.
    """

    ts_ns: int
    seq: int | None = assigned_later(None, by="the outbox")  # None until the outbox numbers it
    subject: str
    kind: str
    state: AlertState
    severity: Severity
    value: float = math.nan
    limit: float = math.nan
    lsl: float = math.nan
    usl: float = math.nan
    message: str = ""


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A change of state of the gateway, of one instrument or of the spool (``subject``): an instrument
    online/offline, data dropped, the gateway started/stopping. Published on ``events/<subject>`` as an
    ``event`` payload.

    ``detail`` holds small extra figures (frames ok/rejected, spool backlog, dropped counts).
    """

    ts_ns: int
    seq: int | None = assigned_later(None, by="the outbox")  # None until the outbox numbers it
    subject: str
    state: str
    message: str = ""
    detail: dict[str, Any] | None = None


_TYPES: dict[str, type] = {
    "reading": Reading,
    "stats": StatsSnapshot,
    "alert": Alert,
    "event": HealthEvent,
    "measurement": Measurement,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
# Payload types by the name older gateways wrote: still v1, so a reader takes them as the current type (the
# compatibility rule in docs/payloads.md). Never written.
FORMER_TYPES = {"status": "event"}
_ENUMS = {"status": MeasurementStatus, "severity": Severity, "state": AlertState}


Record = Reading | StatsSnapshot | Alert | HealthEvent | Measurement


class PayloadError(ValueError):
    """A payload that does not follow docs/payloads.md. The message says which field and why."""


def _plain(value: Any) -> Any:
    # JSON has no NaN: undefined figures travel as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode(obj: Record) -> dict[str, Any]:
    """The v1 JSON object of one record (a dict; ``dumps`` makes the text).

    Raises :class:`PayloadError` for a record a later stage has not completed yet (see :func:`assigned_later`).
    """
    name = _NAMES[type(obj)]
    missing = _unassigned(obj)
    if missing is not None:
        raise PayloadError(f"{name} has no {missing.name} yet: {missing.metadata['assigned_by']} assigns it "
                           "before the record may leave the gateway")
    return {"v": PAYLOAD_VERSION, "type": name, **figures(obj)}


def figures(obj: Record) -> dict[str, Any]:
    """A record's fields as JSON-ready values (undefined figures as None), numbered or not: for reports
    such as ``floorwatch analyze --json``, which show a record without publishing it."""
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}


def decode(data: dict[str, Any]) -> Record:
    """Inverse of :func:`encode`; raises :class:`PayloadError` naming the bad field.

    A type by its former name (:data:`FORMER_TYPES`) is read as the current one:

    >>> decode({"v": 1, "type": "status", "ts_ns": 5, "seq": 9, "subject": "caliper-1", "state": "online"})
    HealthEvent(ts_ns=5, seq=9, subject='caliper-1', state='online', message='', detail=None)
    """
    if not isinstance(data, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(data).__name__}")
    if data.get("v") != PAYLOAD_VERSION:
        raise PayloadError(f"unsupported payload version {data.get('v')!r}; this reader knows v{PAYLOAD_VERSION}")
    name = data.get("type")
    cls = _TYPES.get(FORMER_TYPES.get(name, name)) if isinstance(name, str) else None  # [..] is unhashable
    if cls is None:
        raise PayloadError(f"unknown payload type {data.get('type')!r}; expected one of {sorted(_TYPES)}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        later = "assigned_by" in f.metadata  # present in every payload: whatever is sent has it
        if f.name not in data or later and data[f.name] == f.default:
            if f.default is not MISSING and not later:
                continue
            raise PayloadError(f"{data['type']} payload lacks field {f.name!r}")
        value = data[f.name]
        kwargs[f.name] = _coerce(data["type"], f.name, f.type, value)
    unknown = set(data) - {f.name for f in fields(cls)} - {"v", "type"}
    if unknown:
        raise PayloadError(f"{data['type']} payload has unknown field(s) {sorted(unknown)}")
    return cls(**kwargs)


def _coerce(kind: str, name: str, annotation: Any, value: Any) -> Any:
    ann = str(annotation)
    try:
        if name in _ENUMS and ann in ("MeasurementStatus", "Severity", "AlertState"):
            return _ENUMS[name](value)
        if ann == "float":
            if value is None:
                return math.nan
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            value = float(value)
            if not math.isfinite(value):  # 1e999 parses as infinity: undefined figures travel as null
                raise ValueError
            return value
        if ann in ("int", "int | None"):  # None never gets here: decode() refused it as not yet assigned
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if ann == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if ann == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if ann == "str | None":
            if value is not None and not isinstance(value, str):
                raise TypeError
            return value
        if ann.startswith("dict"):
            if value is not None and not isinstance(value, dict):
                raise TypeError
            return value
    except (TypeError, ValueError, OverflowError):
        raise PayloadError(f"{kind} payload field {name!r}: {value!r:.40} is not a valid {ann}") from None
    return value


def dumps(obj: Record) -> bytes:
    return json.dumps(encode(obj), separators=(",", ":"), allow_nan=False).encode()


def loads(payload: bytes | str) -> Record:
    try:
        data = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from None
    return decode(data)


def _no_constant(name: str) -> float:
    # NaN and Infinity are not JSON; a writer that emits them would smuggle a non-number in as a number.
    raise ValueError(f"{name} is not valid JSON (undefined figures are written as null)")


# --- compact batch encoding for many readings in one message -------------------------------------------
#
# {"v":1,"type":"readings","keys":[[instrument, characteristic, unit], ...],
#  "rows":[[ts_ns, seq, key_index, value|null, status, part_id|null, lot|null], ...]}
# Repeated names are stored once in "keys"; a row costs a few dozen bytes.


def encode_batch(readings: list[Reading] | tuple[Reading, ...]) -> dict[str, Any]:
    """Many readings as one compact v1 object.

    >>> rs = [Reading(ts_ns=i, seq=i, instrument="scale", characteristic="net_weight", value=100.0 + i,
    ...               unit="g") for i in range(3)]
    >>> b = encode_batch(rs)
    >>> b["keys"], b["rows"][1]
    ([['scale', 'net_weight', 'g']], [1, 1, 0, 101.0, 'ok', None, None])
    >>> decode_batch(b) == rs
    True
    """
    keys: dict[tuple[str, str, str], int] = {}
    rows = []
    for r in readings:
        key = (r.instrument, r.characteristic, r.unit)
        idx = keys.get(key)
        if idx is None:
            idx = keys[key] = len(keys)
        value = r.value if math.isfinite(r.value) else None
        rows.append([r.ts_ns, r.seq, idx, value, r.status.value, r.part_id, r.lot])
    return {"v": PAYLOAD_VERSION, "type": "readings", "keys": [list(k) for k in keys], "rows": rows}


def decode_batch(data: dict[str, Any]) -> list[Reading]:
    """Inverse of :func:`encode_batch`; raises :class:`PayloadError` naming the bad row."""
    if not isinstance(data, dict) or data.get("v") != PAYLOAD_VERSION or data.get("type") != "readings":
        raise PayloadError("not a v1 'readings' batch payload")
    keys, rows = data.get("keys"), data.get("rows")
    if not isinstance(keys, list) or not isinstance(rows, list):
        raise PayloadError("readings batch needs list fields 'keys' and 'rows'")
    for i, k in enumerate(keys):
        if not (isinstance(k, list) and len(k) == 3 and all(isinstance(s, str) for s in k)):
            raise PayloadError(f"readings batch keys[{i}] must be [instrument, characteristic, unit]")
    out = []
    for i, row in enumerate(rows):
        try:
            ts, seq, idx, value, status, part, lot = row
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (ts, seq, idx)):
                raise TypeError("ts, seq and key index must be integers")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(float(value))):
                raise TypeError("value must be a finite number or null")
            if not 0 <= idx < len(keys):
                raise IndexError(f"key index {idx} out of range")
            if part is not None and not isinstance(part, str) or lot is not None and not isinstance(lot, str):
                raise TypeError("part_id and lot must be strings or null")
            instrument, characteristic, unit = keys[idx]
            out.append(
                Reading(
                    ts_ns=ts,
                    seq=seq,
                    instrument=instrument,
                    characteristic=characteristic,
                    value=math.nan if value is None else float(value),
                    unit=unit,
                    status=MeasurementStatus(status),
                    part_id=part,
                    lot=lot,
                )
            )
        except (TypeError, ValueError, IndexError, OverflowError) as exc:
            raise PayloadError(f"readings batch rows[{i}]: {exc}") from None
    return out
