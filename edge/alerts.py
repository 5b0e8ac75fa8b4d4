"""Alert state: when a condition becomes an alert, and when the alert is over.

Why: a rule result point by point would flap — a bore diameter sitting right on its USL goes out, in, out,
in, and the line supervisor's phone buzzes forty times an hour. The tracker turns conditions into alerts
with three brakes (configured in ``[alerts]``, ``floorwatch.edge.config.AlertsConfig``):

* ``debounce``: an alert is raised only after that many consecutive points with the condition active;
* ``clear_after``: a raised alert clears only after that many consecutive points without it;
* ``hysteresis``: for alerts given spec limits (``lsl``/``usl``), a point counts towards clearing only if
  the value is back inside the limits by that fraction of the tolerance (``usl - lsl``; a one-sided
  specification uses that fraction of the limit's magnitude); a value on the limit keeps the alert raised.
  Other alerts clear when the condition is gone, or as the caller decides with ``clearance_ok`` — e.g.
  ``clearance_ok=tracker.inside_margin(cpk, limit=1.33)`` for hysteresis on a threshold.

Every raised alert is followed, eventually, by exactly one cleared event for the same subject and kind;
``active()`` lists the raised ones (status page, retained ``active/…`` topics). ``state()``/``from_state()``
persist the tracker with the statistics so a restart neither forgets nor repeats an alert.

>>> from floorwatch.edge.config import AlertsConfig
>>> t = AlertTracker(AlertsConfig(debounce=2, clear_after=2))
>>> for i, v in enumerate([12.06, 12.07, 12.0, 12.01]):
...     change = t.update("bore", "out_of_spec", v > 12.05, ts_ns=i, severity=Severity.CRITICAL, value=v,
...                       limit=12.05, lsl=11.95, usl=12.05)
...     print(v, change.state.value if change else "-")
12.06 -
12.07 raised
12.0 -
12.01 cleared

Additive extras beyond the shared contract: ``update(..., clearance_ok=None, debounce=None,
clear_after=None)`` (per-call overrides), ``clear(subject, kind=None, *, ts_ns, message)`` to close alerts
whose subject went away, ``restore(state)`` (``from_state`` on an existing tracker), ``is_active()``, and
the module function ``clear_of_limits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from floorwatch.edge.config import AlertsConfig
from floorwatch.edge.model import Alert, AlertState, Severity

STATE_VERSION = 1


def clear_of_limits(value: float, lsl: float, usl: float, fraction: float) -> bool:
    """True when ``value`` is inside the given limits by ``fraction`` of the tolerance.

    With both limits the margin is ``fraction * (usl - lsl)``; with one limit (the other NaN) it is
    ``fraction * |limit|``. A value that is not a number is never "inside".

    >>> clear_of_limits(12.04, 11.95, 12.05, 0.1)   # margin 0.01: 12.04 is just inside it
    True
    >>> clear_of_limits(12.045, 11.95, 12.05, 0.1)
    False
    >>> clear_of_limits(0.4, math.nan, 0.5, 0.1)    # one-sided: below 0.5 - 0.05
    True
    """
    if not math.isfinite(value):
        return False
    has_lo, has_hi = math.isfinite(lsl), math.isfinite(usl)
    if has_lo and has_hi:
        margin = fraction * (usl - lsl)
    elif has_lo or has_hi:
        margin = fraction * abs(lsl if has_lo else usl)
    else:
        return True
    return (not has_lo or value >= lsl + margin) and (not has_hi or value <= usl - margin)


# The tracker's state file holds each raised alert by these fields, in this order (no ``seq``: the tracker
# remembers the alert it decided, before the outbox numbered its published copy).
_SAVED_FIELDS = ("subject", "kind", "state", "severity", "ts_ns", "value", "limit", "lsl", "usl", "message")


def _saved(alert: Alert) -> dict[str, Any]:
    """A raised alert as the state file holds it: JSON-ready, NaN as None."""
    out: dict[str, Any] = {}
    for name in _SAVED_FIELDS:
        v = getattr(alert, name)
        out[name] = None if isinstance(v, float) and not math.isfinite(v) else (
            v.value if isinstance(v, AlertState | Severity) else v)
    return out


def _restored(data: dict[str, Any], where: str) -> Alert:
    """Inverse of :func:`_saved`; a damaged entry is a ValueError that says where and what to do."""
    try:
        floats = {k: math.nan if data.get(k) is None else float(data[k]) for k in ("value", "limit", "lsl", "usl")}
        ts = data["ts_ns"]
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise TypeError("ts_ns must be an integer")
        return Alert(subject=str(data["subject"]), kind=str(data["kind"]), state=AlertState(data["state"]),
                     severity=Severity(data["severity"]), ts_ns=ts, message=str(data.get("message", "")), **floats)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"alert state {where}: {exc!s}; the saved state is damaged — delete it to start "
                         "without active alerts") from None


@dataclass(slots=True)
class _Entry:
    raised: Alert | None = None  # the alert as raised (not numbered)
    active_run: int = 0  # consecutive active points while not raised
    clear_run: int = 0  # consecutive clear points while raised


@dataclass
class AlertTracker:
    """Debounce and hysteresis per (subject, kind); see the module docstring."""

    config: AlertsConfig
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)

    def update(self, subject: str, kind: str, active: bool, *, ts_ns: int, severity: Severity,
               value: float = math.nan, limit: float = math.nan, lsl: float = math.nan, usl: float = math.nan,
               message: str = "", clearance_ok: bool | None = None, debounce: int | None = None,
               clear_after: int | None = None) -> Alert | None:
        """Feed one point of one condition; returns the alert it raises or clears, if any (not numbered yet:
        the outbox numbers it).

        ``clearance_ok``: whether this inactive point is far enough from the limit to count towards clearing;
        by default computed with ``inside_margin(value, lsl, usl, hysteresis)`` when limits are given.
        """
        key = (subject, kind)
        entry = self._entries.get(key)
        if entry is None:
            if not active:
                return None  # nothing to remember: keeps memory bounded by the alerts that matter
            entry = self._entries[key] = _Entry()
        if entry.raised is None:
            if not active:
                del self._entries[key]
                return None
            entry.active_run += 1
            if entry.active_run < (debounce or self.config.debounce):
                return None
            alert = Alert(ts_ns=ts_ns, subject=subject, kind=kind, state=AlertState.RAISED, severity=severity,
                          value=value, limit=limit, lsl=lsl, usl=usl, message=message or f"{subject}: {kind}")
            entry.raised, entry.active_run, entry.clear_run = alert, 0, 0
            return alert
        if active:
            entry.clear_run = 0
            return None
        if clearance_ok is None:
            # Spec limits given: hysteresis applies. Threshold-only alerts (Cpk, backlog, idle time) clear as
            # soon as the condition is gone, unless the caller passes clearance_ok=tracker.inside_margin(...).
            has_limits = math.isfinite(lsl) or math.isfinite(usl)
            clearance_ok = self.inside_margin(value, math.nan, lsl, usl) if has_limits else True
        if not clearance_ok:
            entry.clear_run = 0  # back inside, but not convincingly: still on the limit
            return None
        entry.clear_run += 1
        if entry.clear_run < (clear_after or self.config.clear_after):
            return None
        raised = entry.raised
        del self._entries[key]
        return Alert(ts_ns=ts_ns, subject=subject, kind=kind, state=AlertState.CLEARED, severity=raised.severity,
                     value=value, limit=limit, lsl=lsl, usl=usl, message=message or f"{subject}: {kind} cleared")

    def inside_margin(self, value: float, limit: float = math.nan, lsl: float = math.nan,
                      usl: float = math.nan) -> bool:
        """Whether ``value`` is far enough from its limit(s) to count towards clearing (``hysteresis``).

        With spec limits: inside them by ``hysteresis * (usl - lsl)`` (``clear_of_limits``). With only a
        threshold ``limit`` (Cpk, backlog, idle time): at least ``hysteresis * |limit|`` away from it. A value
        that is not a number, or no limit at all, counts (the caller already said the condition is inactive).

        >>> from floorwatch.edge.config import AlertsConfig
        >>> t = AlertTracker(AlertsConfig(hysteresis=0.1))
        >>> t.inside_margin(12.049, 12.05, 11.95, 12.05), t.inside_margin(1.34, 1.33), t.inside_margin(1.5, 1.33)
        (False, False, True)
        """
        h = self.config.hysteresis
        if h <= 0 or not math.isfinite(value):
            return True
        if math.isfinite(lsl) or math.isfinite(usl):
            return clear_of_limits(value, lsl, usl, h)
        if math.isfinite(limit):
            return abs(value - limit) >= h * abs(limit)
        return True

    def clear(self, subject: str, kind: str | None = None, *, ts_ns: int, message: str = "") \
            -> list[Alert]:
        """Clear raised alerts of ``subject`` (one ``kind`` or all) at once, e.g. when it left the configuration."""
        out = []
        for key in [k for k in self._entries if k[0] == subject and (kind is None or k[1] == kind)]:
            entry = self._entries.pop(key)
            if entry.raised is not None:
                r = entry.raised
                out.append(Alert(ts_ns=ts_ns, subject=r.subject, kind=r.kind, state=AlertState.CLEARED,
                                 severity=r.severity, message=message or f"{r.subject}: {r.kind} cleared"))
        return out

    def active(self) -> list[Alert]:
        """Every alert currently raised, as it was raised (not numbered), oldest first."""
        return sorted((e.raised for e in self._entries.values() if e.raised is not None), key=lambda t: t.ts_ns)

    def is_active(self, subject: str, kind: str) -> bool:
        entry = self._entries.get((subject, kind))
        return entry is not None and entry.raised is not None

    def state(self) -> dict[str, Any]:
        """JSON-ready state (no NaN) to save with the statistics."""
        return {"v": STATE_VERSION, "alerts": [
            {"subject": s, "kind": k, "active_run": e.active_run, "clear_run": e.clear_run,
             "raised": _saved(e.raised) if e.raised else None}
            for (s, k), e in self._entries.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this tracker's alerts by a saved ``state()`` (keeps the configuration)."""
        self._entries = type(self).from_state(self.config, state)._entries

    @classmethod
    def from_state(cls, config: AlertsConfig, state: dict[str, Any]) -> AlertTracker:
        """Inverse of ``state()``; a damaged state is a ValueError that says what is wrong."""
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION or not isinstance(state.get("alerts"), list):
            raise ValueError(f"alert state must be an object with v={STATE_VERSION} and a list 'alerts'; "
                             "delete the saved state to start without active alerts")
        tracker = cls(config)
        for i, item in enumerate(state["alerts"]):
            where = f"alerts[{i}]"
            if not isinstance(item, dict):
                raise ValueError(f"alert state {where} is not an object")
            try:
                subject, kind = str(item["subject"]), str(item["kind"])
                active_run, clear_run = int(item.get("active_run", 0)), int(item.get("clear_run", 0))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"alert state {where}: {exc!s} is missing or invalid") from None
            raised = item.get("raised")
            tracker._entries[(subject, kind)] = _Entry(
                raised=_restored(raised, where) if raised is not None else None,
                active_run=max(active_run, 0), clear_run=max(clear_run, 0))
        return tracker
