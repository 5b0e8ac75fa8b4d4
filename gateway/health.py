"""The gateway's own health: instruments, spool and broker, turned into health events, log lines and alerts.

Checked every main-loop tick (a quarter second):

- an instrument is ``online`` while its driver is connected and ``offline`` once it has not been for a grace
  period (``max(3 s, 3 × timeout)``; a replug is not an outage), or at once when its driver could not even
  be created — an ``events/<instrument>`` record, a log line and the ``instrument_offline`` alert;
- what the spool reports (oldest data dropped for the disk budget, a corrupt file moved aside, sequence
  numbers skipped after a power cut) becomes an ``events/spool`` record and a log line — never silently;
- a spool backlog above ``spool.backlog_alert`` raises ``spool_backlog``;
- the broker connection coming and going is logged once per change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from floorwatch.edge.alerts import AlertTracker
from floorwatch.edge.clock import Clock
from floorwatch.edge.config import GatewayConfig
from floorwatch.edge.model import Severity
from floorwatch.edge.spool.events import SpoolDropped
from floorwatch.gateway.events import EventLog, safe_url
from floorwatch.gateway.instruments import InstrumentState
from floorwatch.gateway.outbox import Outbox

if TYPE_CHECKING:
    from floorwatch.edge.mqtt import MqttPublisher
    from floorwatch.edge.spool import Spool


class HealthChecks:
    """See the module docstring. ``offline_after`` overrides every instrument's grace period (tests)."""

    def __init__(self, config: GatewayConfig, *, spool: Spool, alerts: AlertTracker, outbox: Outbox,
                 clock: Clock, events: EventLog, offline_after: float | None = None) -> None:
        self.config = config
        self.spool = spool
        self.alerts = alerts
        self.outbox = outbox
        self.clock = clock
        self.events = events
        self.offline_after = offline_after
        self.dropped_total = 0  # numbered items the spool reported dropped since start
        self._broker_seen: tuple[bool, str] | None = None  # (connected, last error) last logged

    # --- instruments --------------------------------------------------------------------------------------

    def instrument(self, inst: InstrumentState, now: float) -> None:
        """Online/offline from the driver's health, with a grace period so a replug is not an outage.
        An instrument whose driver could not even be created is offline from the start, with the reason."""
        health = inst.driver.health if inst.driver is not None else None
        name = inst.config.name
        grace = self.offline_after if self.offline_after is not None else max(3.0, 3 * inst.config.timeout)
        reason = (health.last_error if health is not None else inst.error) or "no connection"
        detail = {} if health is None else {"frames_ok": health.frames_ok, "frames_rejected": health.frames_rejected,
                                            "reconnects": health.reconnects}
        if health is not None and health.connected:
            inst.down_since = None
            if inst.online is not True:
                inst.online, inst.since = True, now
                self.outbox.event(name, "online", "instrument connected", detail)
                self.events.info("instrument_online", instrument=name)
        else:
            if inst.down_since is None:
                inst.down_since = now
            if inst.online is not False and (health is None or now - inst.down_since >= grace):
                inst.online, inst.since = False, now
                self.outbox.event(name, "offline", reason, detail)
                self.events.warning("instrument_offline", instrument=name, error=reason)
        offline = inst.online is False
        if offline or self.alerts.is_active(name, "instrument_offline"):
            message = f"{name} offline: {reason}" if offline else f"{name} back online"
            self.outbox.alert(self.alerts.update(name, "instrument_offline", offline, ts_ns=self.clock.now_ns(),
                                                 severity=Severity.CRITICAL, message=message))

    # --- spool --------------------------------------------------------------------------------------------

    def spool_events(self) -> None:
        """What the spool reported since the last call, as events on ``events/spool`` and log lines."""
        for event in self.spool.drain_events():
            if isinstance(event, SpoolDropped):
                self.dropped_total += event.count
            detail = event.detail()
            self.outbox.event("spool", event.kind, event.message, detail)
            log = self.events.error if event.log_level == "error" else self.events.warning
            log(event.log_name, **detail, **({"fix": event.fix} if event.fix else {}))

    def spool_backlog(self) -> None:
        """``spool_backlog`` raised while more than ``spool.backlog_alert`` records wait for the broker."""
        backlog = self.spool.backlog()
        limit = self.config.spool.backlog_alert
        high = backlog > limit
        if high or self.alerts.is_active("spool", "spool_backlog"):
            message = (f"{backlog} records wait to be published (alert above {limit})" if high
                       else f"backlog down to {backlog} records")
            self.outbox.alert(self.alerts.update("spool", "spool_backlog", high, ts_ns=self.clock.now_ns(),
                                                 severity=Severity.WARNING, value=float(backlog), limit=float(limit),
                                                 message=message))

    # --- broker -------------------------------------------------------------------------------------------

    def broker(self, publisher: MqttPublisher) -> None:
        """One log line when the broker connection comes or goes (or fails differently)."""
        seen = (bool(publisher.connected), str(publisher.last_error or ""))
        if seen == self._broker_seen:
            return
        if seen[0]:
            self.events.info("broker_connected", broker=safe_url(self.config.mqtt.url))
        elif seen[1]:
            self.events.error("broker_unavailable", broker=safe_url(self.config.mqtt.url), error=seen[1],
                              backlog=self.spool.backlog())
        self._broker_seen = seen
