"""The gateway service: instrument drivers → statistics and rules → alerts → spool → MQTT, in one asyncio process.

Why one process and one event loop: a Raspberry Pi beside the line has one or two cores to spare, every
driver is I/O-bound, and a single loop lets the whole path run without locks — a measurement becomes a
reading, enters the statistics of its characteristic, fires rules and is queued for the spool in one
synchronous step (:meth:`Gateway.ingest`).

Everything that leaves the gateway goes through the spool (``floorwatch.edge.spool``) in sequence order: readings are
collected into ``readings`` batches of at most ``mqtt.max_batch`` rows. Numbers are issued when records are
queued — the readings batch first, then the snapshots, alerts and events that happened meanwhile — so the
spool holds records in the order of their numbers, and alerts do not cut the readings into small messages. The spool is written to disk every ``spool.flush_interval`` seconds (one transaction — an SD
card is not written per reading); the MQTT publisher (``floorwatch.edge.mqtt``) drains it and deletes what the broker
acknowledged.

Statistics and alert state are written next to the spool (``<spool>.state.json``, atomic replace) every
``state_interval`` seconds when something changed and at a clean stop, and restored on start, so that a
restart — even a SIGKILL — does not forget the process: control limits learned from the baseline, the
rolling window, the CUSUM and EWMA, the alerts that are raised, how long a line has been idle. The same file
carries each driver's own state (``Driver.state``/``restore``: the Modbus production counts), handed back to
the next run's driver before it starts, so the buyer's parts count goes on instead of restarting at 0.
While running, the disk writes (state file with its fsync, spool commit) happen in a worker thread
(:meth:`Gateway.flush_async`): a slow SD card does not hold up the event loop.

Logs are one line per event in ``key=value`` form on stderr (journald adds its own timestamp); a repeated
event (same name and subject) is printed at most once a minute with a count of what was held back.
Secrets are never logged: the broker URL is shown without user information and passwords never appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from floorwatch import edge
from floorwatch.edge.alerts import AlertTracker
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import GatewayConfig
from floorwatch.edge.model import (
    Measurement,
)
from floorwatch.edge.spool import Spool
from floorwatch.edge.topics import Topics
from floorwatch.gateway.characteristic import Characteristic
from floorwatch.gateway.events import EventLog, safe_url
from floorwatch.gateway.health import HealthChecks
from floorwatch.gateway.instruments import InstrumentState, InstrumentSupervisor
from floorwatch.gateway.outbox import Listener, Outbox
from floorwatch.gateway.state_store import StateStore
from floorwatch.gateway.status_document import status_document
from floorwatch.gateway.systemd import SystemdNotify

log = logging.getLogger("floorwatch")

MAX_UNROUTED = 1000  # distinct unrouted (instrument, channel) pairs counted; bounded against odd channel names


# ------------------------------------------------------------------------------------------- gateway


class Gateway:
    """The running gateway. ``await gateway.run(stop)`` until ``stop`` is set; returns the exit status.

    ``publish=False`` runs spool-only (the demo without a broker). ``listeners`` are called with
    ``(kind, record)`` for every reading batch, snapshot, alert and event queued — the demo's live view.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventLog | None = None,
        publish: bool = True,
        stats_interval: float = 1.0,
        offline_after: float | None = None,
        drain_timeout: float = 3.0,
        start_instruments: bool = True,
        state_interval: float = 5.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.config = config
        self.clock = clock
        self.events = events or EventLog(level=config.gateway.log_level)
        self.publish = publish
        self.stats_interval = stats_interval
        self.drain_timeout = drain_timeout
        # False: the caller feeds measurements to ingest() itself (benchmark, replay of recorded frames)
        self.start_instruments = start_instruments
        # statistics state is saved at most this often (and on a clean stop): see flush()
        self.state_interval = max(state_interval, config.spool.flush_interval)
        # an instrument that has not been connected for this long is reported offline
        self.offline_after = offline_after
        ident = config.gateway
        self.topics = Topics(config.mqtt.topic_prefix, ident.site, ident.line, ident.id)
        self.spool_path = config.spool_path()
        self.state_path = self.spool_path.with_name(self.spool_path.name + ".state.json")
        self.client_id = config.mqtt.client_id or f"floorwatch-{ident.site}-{ident.line}-{ident.id}"
        self.listeners: list[Listener] = []
        self.spool: Spool | None = None
        self.publisher: Any = None
        self.alerts: AlertTracker | None = None
        self.webhook: Any = None
        self.web: Any = None
        self.characteristics: dict[str, Characteristic] = {}
        self.supervisor = InstrumentSupervisor(config.instruments, clock=clock, events=self.events, ingest=self.ingest,
                                               stop_timeout=stop_timeout)
        self._routes: dict[tuple[str, str], Characteristic] = {}
        self._unrouted: dict[tuple[str, str], int] = {}
        self.started_ns = 0
        self.started_mono = 0.0
        self.restored = False
        self.readings_total = 0
        self._last_snapshot_round = 0.0
        self._notify = SystemdNotify()
        self._stopping = False
        self.ready = False  # True once run() has started everything (READY=1 sent)

    # ------------------------------------------------------------------ set-up

    def _build_characteristics(self, alerts: AlertTracker, outbox: Outbox) -> None:
        for cfg in self.config.characteristics:
            ch = Characteristic(cfg, clock=self.clock, events=self.events, alerts=alerts, outbox=outbox,
                                rule_clear_after=self.config.alerts.rule_clear_after)
            self.characteristics[cfg.name] = ch
            self._routes[(cfg.instrument, cfg.channel)] = ch

    @property
    def instruments(self) -> dict[str, InstrumentState]:
        """Every configured instrument, once :meth:`run` took them on."""
        return self.supervisor.instruments

    # ------------------------------------------------------------------ the hot path

    def ingest(self, m: Measurement) -> None:
        """One measurement from a driver: queue it as a reading, update statistics, rules and alerts."""
        ch = self._routes.get((m.instrument, m.channel))
        inst = self.instruments.get(m.instrument)
        if inst is not None:
            inst.last = m
        if ch is None:
            key = (m.instrument, m.channel)
            if key in self._unrouted or len(self._unrouted) < MAX_UNROUTED:
                self._unrouted[key] = self._unrouted.get(key, 0) + 1
            self.events.debug("measurement_unrouted", instrument=m.instrument, channel=m.channel,
                              fix="add a characteristic with this instrument and channel to use it")
            return
        ch.take(m)
        self.readings_total += 1

    def status_event(self, subject: str, state: str, message: str = "", detail: dict[str, Any] | None = None) -> None:
        """Queue a status event (``events/<subject>``), numbered with the next batch."""
        self.outbox.event(subject, state, message, detail)

    # ------------------------------------------------------------------ periodic checks

    def tick(self) -> None:
        """Periodic work: instrument health, line stopped, snapshots due, spool events and backlog."""
        now = self.clock.monotonic()
        if self.start_instruments:
            for inst in self.instruments.values():
                self.health.instrument(inst, now)
        for ch in self.characteristics.values():
            ch.check(now)
        if now - self._last_snapshot_round >= self.stats_interval:
            self._last_snapshot_round = now
            for ch in self.characteristics.values():
                ch.snapshot_if_new()
        self.health.spool_events()
        self.health.spool_backlog()

    def flush(self, *, save_state: bool | None = None) -> None:
        """Queue what is pending, save the statistics state when due, commit the spool (one transaction).

        The state (about 35 kB per characteristic with a window of 1000) is written at most every
        ``state_interval`` seconds and only when something changed — an SD card must not be rewritten
        every second — and always on a clean stop. After a crash (SIGKILL, power cut) the restored statistics
        lack at most the readings of the last ``state_interval`` seconds (docs/gateway.md).
        """
        self.outbox.emit()
        if save_state is None:
            save_state = self.state_store.due(self._changes())
        if save_state:
            try:
                self.save_state()
            except Exception as exc:  # the spool is written all the same
                self.events.error("state_not_saved", path=str(self.state_path), error=f"{type(exc).__name__}: {exc}")
        self.spool.flush()

    async def flush_async(self) -> None:
        """:meth:`flush` for the running loop: the figures are taken on the loop, the disk writes (the state
        file with its fsync, about 1 MB with 32 characteristics; the SQLite commit, with a WAL checkpoint now
        and then) run in a worker thread, so that a slow SD card does not hold up drivers, the publisher and
        the status page. The spool is thread-safe; only one flush runs at a time (the main loop awaits it)."""
        self.outbox.emit()
        if self.state_store.due(self._changes()):
            try:
                await self.state_store.save_async(self._changes())
            except Exception as exc:  # the spool is written all the same
                self.events.error("state_not_saved", path=str(self.state_path), error=f"{type(exc).__name__}: {exc}")
        await asyncio.to_thread(self.spool.flush)

    def save_state(self) -> None:
        """Statistics, alert and instrument state to ``<spool>.state.json`` now (atomic replace)."""
        self.state_store.save(self._changes())

    def _changes(self) -> int:
        """Grows whenever something the state file holds may have changed: readings taken, alerts raised or
        cleared (both only ever grow)."""
        return self.readings_total + self.outbox.alert_changes

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Everything ``floorwatch status`` and the local web page show (JSON-ready; NaN -> None)."""
        return status_document(self)

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open the spool, build the statistics, restore the saved state. ``run`` calls it; tests and the
        benchmark call it to drive :meth:`ingest` directly. Raises ``OSError``/``SpoolError`` on a spool
        that cannot be opened."""
        cfg = self.config
        self.started_ns = self.clock.now_ns()
        self.started_mono = self.clock.monotonic()
        self._last_snapshot_round = self.started_mono
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        spool = Spool(self.spool_path, max_bytes=cfg.spool.max_bytes, clock=self.clock)
        spool.open()
        alerts = AlertTracker(cfg.alerts)
        self.outbox = Outbox(spool, self.topics, max_batch=cfg.mqtt.max_batch, clock=self.clock, events=self.events,
                             listeners=self.listeners)
        self._build_characteristics(alerts, self.outbox)
        self.spool, self.alerts = spool, alerts
        self.health = HealthChecks(cfg, spool=spool, alerts=alerts, outbox=self.outbox, clock=self.clock,
                                   events=self.events, offline_after=self.offline_after)
        self.state_store = StateStore(self.state_path, interval=self.state_interval, clock=self.clock,
                                      events=self.events, characteristics=self.characteristics, alerts=alerts,
                                      outbox=self.outbox, instruments=self.supervisor)
        self.restored = bool(self.state_store.restore())

    def close(self) -> None:
        """Flush and close the spool (the counterpart of :meth:`open` when not using ``run``)."""
        if self.spool is not None:
            self.flush(save_state=True)
            self.spool.close()

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; flush, publish offline, return 0. Start-up failures return 1."""
        cfg = self.config
        try:
            self.open()
        except Exception as exc:
            self.events.error("spool_unavailable", path=str(self.spool_path), error=f"{type(exc).__name__}: {exc}",
                              fix="check that gateway.data_dir exists and is writable by the service user")
            return 1
        if cfg.alerts.webhook_url:
            from floorwatch.edge.webhook import WebhookSender

            self.webhook = WebhookSender.from_config(cfg.alerts)
            await self.webhook.__aenter__()
            self.outbox.webhook = self.webhook
        self.events.info("gateway_starting", gateway=f"{cfg.gateway.site}/{cfg.gateway.line}/{cfg.gateway.id}",
                         version=edge.__version__, spool=str(self.spool_path),
                         broker=safe_url(cfg.mqtt.url) if self.publish else "none (spool-only)")
        tasks: list[asyncio.Task] = []
        publisher_cm = None
        try:
            if self.publish:
                from floorwatch.edge.mqtt import MqttPublisher

                publisher_cm = MqttPublisher(cfg.mqtt, self.topics, self.spool, client_id=self.client_id,
                                             clock=self.clock)
                self.publisher = await publisher_cm.__aenter__()
                tasks.append(asyncio.create_task(self._publish_loop(), name="mqtt"))
            if cfg.web.enabled:
                from floorwatch.gateway.web import StatusServer

                self.web = StatusServer(self, cfg.web.bind, events=self.events)
                try:
                    await self.web.start()
                except OSError as exc:
                    self.events.error("web_unavailable", bind=cfg.web.bind, error=str(exc),
                                      fix="another program uses this port; change [web] bind")
                    self.web = None
            await self.supervisor.start_all(run_drivers=self.start_instruments)
            self.status_event("gateway", "started", f"floorwatch {edge.__version__} started",
                              {"restored": self.restored, "instruments": len(cfg.instruments)})
            try:
                await self.flush_async()
            except Exception as exc:  # a full disk at start is reported like any other flush, not a crash
                self.events.error("flush_failed", error=f"{type(exc).__name__}: {exc}")
            self.ready = True
            self._notify.notify("READY=1")
            self._notify.notify(f"STATUS=running: {len(cfg.instruments)} instruments")
            self.events.info("gateway_ready", instruments=len(cfg.instruments),
                             characteristics=len(cfg.characteristics),
                             web=f"http://{self.web.address}" if self.web is not None else "off")
            await self._main_loop(stop)
        finally:
            await self._shutdown(tasks, publisher_cm)
        return 0

    async def _publish_loop(self) -> None:
        assert self.publisher is not None
        await self.publisher.run()

    async def _main_loop(self, stop: asyncio.Event) -> None:
        """Periodic work on fixed deadlines: the spool flush every ``flush_interval`` (it bounds the latency
        of every reading), health and alert checks every ``tick`` seconds."""
        flush_interval = self.config.spool.flush_interval
        tick = min(0.25, flush_interval)
        clock = self.clock
        next_flush = clock.monotonic() + flush_interval
        next_tick = clock.monotonic() + tick
        while not stop.is_set():
            timeout = max(0.0, min(next_flush, next_tick) - clock.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on Python 3.11
                    await stop.wait()
            now = clock.monotonic()
            # separately: a failing check must not stop the spool from being written, nor the reverse
            if now >= next_tick:
                next_tick = max(next_tick + tick, now)
                try:
                    self.tick()
                except Exception as exc:  # a bug in a check: reported, collection goes on
                    self.events.error("checks_failed", error=f"{type(exc).__name__}: {exc}")
            if now >= next_flush:
                next_flush = max(next_flush + flush_interval, now)
                try:
                    await self.flush_async()
                except Exception as exc:  # keep collecting; the spool may be on a full disk
                    self.events.error("flush_failed", error=f"{type(exc).__name__}: {exc}")
            self._notify.kick(now)
            if self.publisher is not None:
                self.health.broker(self.publisher)

    async def _shutdown(self, tasks: list[asyncio.Task], publisher_cm: Any) -> None:
        self._stopping = True
        self._notify.notify("STOPPING=1")
        self.events.info("gateway_stopping")
        await self.supervisor.stop()
        if self.spool is not None and self.alerts is not None:
            try:
                for ch in self.characteristics.values():
                    ch.snapshot_if_new()
                self.status_event("gateway", "stopping", "clean shutdown", {"readings": self.readings_total})
                self.flush(save_state=True)
            except Exception as exc:
                self.events.error("final_flush_failed", error=f"{type(exc).__name__}: {exc}")
        if self.publisher is not None and self.publisher.connected:
            # what the broker can take in a moment goes now; the rest waits in the spool for the next start
            with contextlib.suppress(Exception):
                await self.publisher.wait_drained(self.drain_timeout)
        if publisher_cm is not None:
            try:  # cancels the publisher's run(), publishes the retained "offline", disconnects cleanly
                await publisher_cm.__aexit__(None, None, None)
            except Exception as exc:
                self.events.warning("broker_disconnect_failed", error=f"{type(exc).__name__}: {exc}")
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.web is not None:
            try:
                await self.web.stop()
            except Exception as exc:
                self.events.warning("web_not_stopped", error=f"{type(exc).__name__}: {exc}")
        if self.webhook is not None:
            with contextlib.suppress(Exception):
                await self.webhook.close()
        if self.spool is not None:
            backlog = self.spool.backlog()
            try:
                self.spool.close()
            except Exception as exc:  # reported; the records committed before are safe in the file
                self.events.error("spool_close_failed", error=f"{type(exc).__name__}: {exc}")
            self.events.info("gateway_stopped", readings=self.readings_total, backlog=backlog)


def run_gateway(config: GatewayConfig, **kwargs: Any) -> int:
    """Run until SIGTERM or SIGINT (clean shutdown, exit 0)."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        gw = Gateway(config, **kwargs)
        gw.events.attach("floorwatch", "paho")
        try:
            return await gw.run(stop)
        except Exception as exc:  # a bug: one line (with where it happened) for the journal, exit 1
            import traceback

            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            gw.events.error("gateway_failed", error=f"{type(exc).__name__}: {exc}",
                            where=" <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)))
            return 1
        finally:
            gw.events.detach()

    return asyncio.run(main())
