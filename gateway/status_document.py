"""The status document: the JSON that ``floorwatch status``, ``/api/status`` and the local web page read.

One document with everything a technician at the line asks first: is each instrument talking (frames ok and
rejected, the last raw frame, the last error), what does each characteristic do (last value, window, mean,
Cpk, control limits, active alerts), which alerts are raised, how full is the spool, is the broker connected
and if not, why. It is built on the event loop from the gateway's parts as they are now; undefined figures
(NaN) are ``null``, so any JSON reader takes it.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from floorwatch import edge
from floorwatch.edge.model import Alert
from floorwatch.gateway.characteristic import Characteristic
from floorwatch.gateway.events import safe_url
from floorwatch.gateway.instruments import InstrumentState
from floorwatch.gateway.outbox import json_ready

if TYPE_CHECKING:
    from floorwatch.gateway.service import Gateway

# the statistics figures shown per characteristic, from its latest snapshot
SNAPSHOT_FIGURES = ("n", "n_total", "n_rejected", "mean", "std", "cp", "cpk", "ppk", "ucl", "lcl", "center", "ewma")


def _num(v: float | int) -> float | int | None:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def status_document(gateway: Gateway) -> dict[str, Any]:
    """Everything ``floorwatch status`` and the local web page show (JSON-ready; NaN -> None)."""
    now = gateway.clock.monotonic()
    active = gateway.alerts.active() if gateway.alerts is not None else []
    by_subject: dict[str, list[str]] = {}
    for a in active:
        by_subject.setdefault(a.subject, []).append(a.kind)
    ident = gateway.config.gateway
    spool = gateway.spool
    return json_ready({
        "gateway": {"site": ident.site, "line": ident.line, "id": ident.id, "version": edge.__version__,
                    "started_ns": gateway.started_ns, "uptime_s": now - gateway.started_mono,
                    "last_seq": spool.last_seq if spool is not None else None,
                    "readings": gateway.readings_total, "restored": gateway.restored,
                    "unstamped_refused": gateway.unstamped_refused,
                    "topic_base": gateway.topics.base},
        "instruments": [_instrument(inst, by_subject.get(name, [])) for name, inst in gateway.instruments.items()],
        "characteristics": [_characteristic(ch, by_subject.get(name, []))
                            for name, ch in gateway.characteristics.items()],
        "alerts": [_alert(a) for a in active],
        "spool": _spool(gateway),
        "broker": _broker(gateway),
    })


def _instrument(inst: InstrumentState, alerts: list[str]) -> dict[str, Any]:
    h = inst.driver.health if inst.driver is not None else None
    last = inst.last
    return {
        "name": inst.config.name,
        "driver": inst.config.driver,
        "port": inst.config.port,
        "host": inst.config.host,
        "simulate": inst.config.simulate,
        "connected": bool(h and h.connected),
        "online": inst.online,
        "frames_ok": h.frames_ok if h else 0,
        "frames_rejected": h.frames_rejected if h else 0,
        "frames_ignored": h.frames_ignored if h else 0,
        "reconnects": h.reconnects if h else 0,
        "last_error": (h.last_error if h else "") or inst.error,
        "last_reject_reason": h.last_reject_reason if h else "",
        "last_raw": h.last_raw.decode("latin-1") if h else "",
        # what the driver knows beyond the counts: port settings, a hint for the technician, the
        # instrument's last notice (battery low, busy, …), per-unit Modbus state
        "extra": json.loads(json.dumps(h.extra, default=str)) if h else {},
        "last_reading": None if last is None else {
            "ts_ns": last.ts_ns, "value": _num(last.value), "unit": last.unit,
            "status": last.status.value, "channel": last.channel},
        "active_alerts": alerts,
    }


def _characteristic(ch: Characteristic, alerts: list[str]) -> dict[str, Any]:
    cfg = ch.config
    last = ch.last
    entry: dict[str, Any] = {
        "name": cfg.name, "instrument": cfg.instrument, "unit": cfg.unit,
        "kind": cfg.kind, "lsl": cfg.lsl, "usl": cfg.usl,
        "nominal": cfg.nominal,
        "last_value": None if last is None else _num(last.value),
        "last_status": None if last is None else last.status.value,
        "last_ts_ns": None if last is None else last.ts_ns,
        "active_alerts": alerts,
    }
    snap = ch.snapshot
    if snap is not None:
        entry.update({k: _num(getattr(snap, k)) for k in SNAPSHOT_FIGURES})
        entry["baseline_done"] = snap.baseline_done
    if cfg.kind == "count":
        entry["idle_for"] = ch.idle_for
    return entry


def _alert(a: Alert) -> dict[str, Any]:
    return {"subject": a.subject, "kind": a.kind, "severity": str(a.severity.value), "since_ns": a.ts_ns,
            "value": _num(a.value), "limit": _num(a.limit), "message": a.message}


def _spool(gateway: Gateway) -> dict[str, Any]:
    spool = gateway.spool
    out: dict[str, Any] = {}
    if spool is not None:
        out = dict(spool.stats())
        out["backlog"] = spool.backlog()
    out["path"] = str(gateway.spool_path)
    out["dropped_reported"] = gateway.health.dropped_total if spool is not None else 0
    return out


def _broker(gateway: Gateway) -> dict[str, Any]:
    publisher = gateway.publisher
    if publisher is not None:
        out = dict(publisher.stats())
        out["enabled"] = True
    else:
        out = {"enabled": False, "connected": False,
               "last_error": "" if gateway.publish else "spool-only: no broker configured for this run"}
    out["url"] = safe_url(gateway.config.mqtt.url)
    return out
