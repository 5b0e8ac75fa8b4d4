"""One characteristic's pipeline: measurement → reading → statistics → signals → alerts and snapshots.

A :class:`Characteristic` takes the measurements routed to it (one instrument and channel), converts them
to its unit, queues them as readings, pushes the good ones into its rolling statistics and turns the
signals of each point (spec limits, the enabled run rules, EWMA, CUSUM — the bits of the signal catalogue
``floorwatch.edge.signals``) into alerts through the alert tracker (debounce, hysteresis). It publishes a
statistics snapshot when asked (every ``stats_interval``) and right after an alert, and judges Cpk against
``min_cpk`` at each snapshot. A production counter (``kind = "count"``) has no statistics: it remembers
when its count last went up, for ``line_stopped``.

All of this runs synchronously on the event loop, per measurement, without locks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from floorwatch.drivers.units import convert
from floorwatch.edge.alerts import AlertTracker
from floorwatch.edge.clock import Clock
from floorwatch.edge.config import CharacteristicConfig
from floorwatch.edge.model import Measurement, MeasurementStatus, Severity, StatsSnapshot
from floorwatch.edge.signals import alert_masks
from floorwatch.gateway.events import EventLog
from floorwatch.gateway.outbox import Outbox, PendingReading

NAN = math.nan
MIN_CPK_READINGS = 30  # readings in the window before Cpk is judged against min_cpk
SNAPSHOT_GAP = 0.1  # seconds: least time between two alert-triggered snapshots of one characteristic

RULE_TEXT = {
    "nelson_1": "one point beyond 3 sigma",
    "nelson_2": "9 points in a row on one side of the centre line",
    "nelson_3": "6 points in a row steadily increasing or decreasing",
    "nelson_4": "14 points in a row alternating up and down",
    "nelson_5": "2 of 3 points beyond 2 sigma on one side",
    "nelson_6": "4 of 5 points beyond 1 sigma on one side",
    "nelson_7": "15 points in a row within 1 sigma (stratification)",
    "nelson_8": "8 points in a row beyond 1 sigma, none within",
    "we_1": "one point beyond 3 sigma (WE 1)",
    "we_2": "2 of 3 points beyond 2 sigma (WE 2)",
    "we_3": "4 of 5 points beyond 1 sigma (WE 3)",
    "we_4": "8 points in a row on one side (WE 4)",
    "ewma": "EWMA outside its control limits: the process mean is drifting",
    "cusum": "CUSUM beyond its decision interval: the process mean has shifted",
}


class Stats(Protocol):
    """What a characteristic needs of its statistics: ``floorwatch.edge.stats.RollingStats`` (the compiled
    core, or the pure-Python reference without a compiler)."""

    def push(self, x: float, ok: bool = True) -> int: ...

    def snapshot(self, ts_ns: int = 0, seq: int = 0) -> StatsSnapshot: ...

    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AlertCheck:
    """One per-point alert a characteristic can raise: which bits, which kind, how severe."""

    mask: int
    kind: str
    severity: Severity


def alert_checks(cfg: CharacteristicConfig) -> list[AlertCheck]:
    """The alerts a characteristic can raise, from the signal catalogue: spec limits, its rules, EWMA, CUSUM.

    >>> from floorwatch.edge.config import CharacteristicConfig
    >>> cfg = CharacteristicConfig(name="bore", instrument="caliper-1", unit="mm", usl=12.05, rules=["nelson_1"])
    >>> sorted(c.kind for c in alert_checks(cfg))
    ['cusum', 'ewma', 'nelson_1', 'out_of_spec']
    """
    if cfg.kind == "count":
        return []
    spec = ["below_lsl", "above_usl"] if cfg.lsl is not None or cfg.usl is not None else []
    kinds = alert_masks([*spec, *cfg.rules, "ewma_high", "ewma_low", "cusum_high", "cusum_low"])
    return [AlertCheck(mask, kind, severity) for kind, (mask, severity) in kinds.items()]


class Characteristic:
    """The statistics, alerts and latest reading of one characteristic; see the module docstring."""

    def __init__(self, config: CharacteristicConfig, *, clock: Clock, events: EventLog, alerts: AlertTracker,
                 outbox: Outbox, rule_clear_after: int) -> None:
        # imported here, not at the top: the gateway attaches its log first, so that "compiled core
        # unavailable, using the reference" (said once, on import) reaches the journal in the gateway's form
        from floorwatch.edge.stats import RollingStats

        self.config = config
        self.name = config.name
        self.clock = clock
        self.events = events
        self.alerts = alerts
        self.outbox = outbox
        self.rule_clear_after = rule_clear_after
        self.stats: Stats | None = None if config.kind == "count" else RollingStats.from_config(config)
        self.checks = alert_checks(config)
        self.last: PendingReading | None = None  # the latest reading
        self.snapshot: StatsSnapshot | None = None  # the latest snapshot published
        self.new_since_snapshot = 0
        self.snapshot_due = False  # an alert asked for a snapshot within SNAPSHOT_GAP of the last one
        self.snapshot_mono = -math.inf  # monotonic time of the last snapshot
        self.watch: set[str] = set()  # alert kinds with a pending count in the tracker
        self.subgroup_size = config.subgroup_size
        self.sg_fill = 0  # readings in the current subgroup
        self.unit_errors = 0  # measurements in a unit that cannot be converted to this one
        # counters
        self.count_last_value = NAN
        self.count_last_change = NAN  # monotonic seconds of the last increase

    # --- the hot path -----------------------------------------------------------------------------------

    def take(self, m: Measurement) -> None:
        """One measurement routed here: queue it as a reading, update the statistics, rules and alerts."""
        cfg = self.config
        value = m.value
        status = m.status
        unit = cfg.unit
        if m.unit and m.unit != unit:
            try:
                value = convert(value, m.unit, unit)
            except ValueError as exc:
                self.unit_errors += 1
                self.events.warning("unit_unconvertible", characteristic=cfg.name, instrument=m.instrument,
                                    unit=m.unit, error=str(exc))
                value, status = NAN, MeasurementStatus.ERROR
        if not math.isfinite(value) and status is MeasurementStatus.OK:
            status = MeasurementStatus.ERROR
        # numbered when its batch is queued (Outbox.emit): the spool then holds numbers in order
        reading = PendingReading(m.ts_ns, m.instrument, cfg.name, value, unit, status)
        self.last = reading
        self.new_since_snapshot += 1
        self.outbox.reading(reading)
        stats = self.stats
        if stats is None:
            if status is MeasurementStatus.OK:
                self._count(value)
            return
        ok = status is MeasurementStatus.OK
        bits = stats.push(value, ok)
        if ok:
            chart_point = True
            if self.subgroup_size > 1:  # chart rules are judged once per subgroup, on its last reading
                self.sg_fill = (self.sg_fill + 1) % self.subgroup_size
                chart_point = self.sg_fill == 0
            if bits or self.watch:
                self._point_alerts(m.ts_ns, value, int(bits), chart_point)

    def _point_alerts(self, ts_ns: int, value: float, bits: int, chart_point: bool) -> None:
        cfg = self.config
        lsl = NAN if cfg.lsl is None else cfg.lsl
        usl = NAN if cfg.usl is None else cfg.usl
        changes = 0  # alerts raised or cleared by this point
        for check in self.checks:
            active = bool(bits & check.mask)
            kind = check.kind
            if not active and kind not in self.watch:
                continue
            if not chart_point and kind != "out_of_spec":
                continue  # mid-subgroup: the chart has no new point, so a rule neither fires nor clears
            if active:
                self.watch.add(kind)
            limit = NAN
            if kind == "out_of_spec":
                if active:
                    above = value > usl if math.isfinite(usl) else False
                    limit = usl if above else lsl
                    message = (f"{cfg.name} {value:g} {cfg.unit} {'above USL' if above else 'below LSL'} "
                               f"{limit:g} {cfg.unit}")
                else:
                    message = f"{cfg.name} {value:g} {cfg.unit} back within {lsl:g}..{usl:g} {cfg.unit}"
            elif active:
                message = f"{cfg.name}: {RULE_TEXT.get(kind, kind)} (value {value:g} {cfg.unit})"
            else:
                message = f"{cfg.name}: {RULE_TEXT.get(kind, kind)} no longer seen"
            # out_of_spec clears only when the value is back inside by the hysteresis margin (the tracker
            # computes it from the limits); a control rule clears when the rule no longer fires
            alert = self.alerts.update(cfg.name, kind, active, ts_ns=ts_ns, severity=check.severity,
                                       value=value, limit=limit, lsl=lsl, usl=usl, message=message,
                                       clearance_ok=None if kind == "out_of_spec" else True,
                                       clear_after=None if kind == "out_of_spec" else self.rule_clear_after)
            if alert is not None:
                self.outbox.alert(alert)
                changes += 1
            if not active and not self.alerts.is_active(cfg.name, kind):
                self.watch.discard(kind)
        if changes:
            # the figures at the moment of the alert, right after it — at most every SNAPSHOT_GAP seconds
            # (a noisy process with many rules must not turn every point into a snapshot)
            if self.clock.monotonic() - self.snapshot_mono >= SNAPSHOT_GAP:
                self.take_snapshot()
            else:
                self.snapshot_due = True

    def _count(self, value: float) -> None:
        """A production count: remember when it last went up (for 'line stopped')."""
        now = self.clock.monotonic()
        changed = value != self.count_last_value
        if changed or not math.isfinite(self.count_last_change):
            self.count_last_change = now
        self.count_last_value = value
        if changed and self.alerts.is_active(self.name, "line_stopped"):
            self._line_check(now)

    # --- snapshots and periodic checks --------------------------------------------------------------------

    def take_snapshot(self) -> None:
        """Queue the statistics as they are now (numbered when queued), then judge Cpk on them."""
        if self.stats is None:
            return
        snap = self.stats.snapshot(self.clock.now_ns())
        self.snapshot = snap
        self.snapshot_mono = self.clock.monotonic()
        self.new_since_snapshot = 0
        self.snapshot_due = False
        self.outbox.snapshot(snap)
        self._cpk_check(snap)

    def snapshot_if_new(self) -> None:
        """A snapshot when readings came since the last one (the round every ``stats_interval``, the stop)."""
        if self.new_since_snapshot:
            self.take_snapshot()

    def check(self, now: float) -> None:
        """The periodic part (``now``: monotonic seconds): a counter's 'line stopped', or the snapshot an
        alert asked for when SNAPSHOT_GAP held it back."""
        if self.config.kind == "count":
            self._line_check(now)
        elif self.snapshot_due:
            self.take_snapshot()

    def _cpk_check(self, snap: StatsSnapshot) -> None:
        cfg = self.config
        if cfg.min_cpk is None:
            return
        cpk = snap.cpk
        if snap.n < MIN_CPK_READINGS:
            return  # a capability index from a handful of readings is noise, not a finding
        if not math.isfinite(cpk) and not self.alerts.is_active(cfg.name, "cpk_low"):
            return
        low = math.isfinite(cpk) and cpk < cfg.min_cpk
        if low:
            message = f"{cfg.name}: Cpk {cpk:.2f} below the required {cfg.min_cpk:g} (over {snap.n} readings)"
        else:
            message = f"{cfg.name}: Cpk {cpk:.2f} back at or above {cfg.min_cpk:g}"
        self.outbox.alert(self.alerts.update(cfg.name, "cpk_low", low, ts_ns=snap.ts_ns, severity=Severity.WARNING,
                                             value=cpk, limit=cfg.min_cpk, message=message))

    def _line_check(self, now: float) -> None:
        cfg = self.config
        if not math.isfinite(self.count_last_change):
            return
        idle = now - self.count_last_change
        stopped = idle >= cfg.idle_after
        if not stopped and not self.alerts.is_active(cfg.name, "line_stopped"):
            return
        message = (f"{cfg.name}: no new part for {idle:.0f} s (limit {cfg.idle_after:g} s)" if stopped
                   else f"{cfg.name}: parts are counted again")
        self.outbox.alert(self.alerts.update(cfg.name, "line_stopped", stopped, ts_ns=self.clock.now_ns(),
                                             severity=Severity.WARNING, value=idle, limit=cfg.idle_after,
                                             message=message))

    @property
    def idle_for(self) -> float | None:
        """Seconds since a counter last went up (None before its first count)."""
        if not math.isfinite(self.count_last_change):
            return None
        return self.clock.monotonic() - self.count_last_change

    # --- across a restart ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What of this characteristic survives a restart (JSON-ready): the statistics, a counter's last
        count and how long the line has been idle."""
        return {
            "stats": self.stats.state() if self.stats is not None else None,
            "count_last_value": self.count_last_value if math.isfinite(self.count_last_value) else None,
            "count_idle_for": self.idle_for,
        }

    def restore(self, saved: dict[str, Any], *, down_for: float) -> None:
        """Take back a saved :meth:`state`; ``down_for``: seconds the gateway was not running (a stopped line
        stays stopped across the restart). A damaged part raises ValueError, TypeError or KeyError."""
        from floorwatch.edge.stats import RollingStats

        if self.stats is not None and saved.get("stats") is not None:
            stats = RollingStats.from_state(saved["stats"])
            self.stats = stats
            self.sg_fill = stats.snapshot().n_total % self.subgroup_size
        last = saved.get("count_last_value")
        self.count_last_value = NAN if last is None else float(last)
        idle = saved.get("count_idle_for")
        if idle is not None:
            self.count_last_change = self.clock.monotonic() - float(idle) - down_for
