"""The gateway service: instrument drivers → statistics and rules → alerts → spool → MQTT, in one asyncio process.

Why one process and one event loop: a Raspberry Pi beside the line has one or two cores to spare, every
driver is I/O-bound, and a single loop lets the whole path run without locks — a measurement becomes a
reading, enters the statistics of its characteristic, fires rules and is queued for the spool in one
synchronous step (:meth:`Gateway.ingest`).

:class:`Gateway` wires the parts and runs their lifecycle; each part has one job:

- ``instruments.py`` — starts, restarts and stops the drivers (and simulators), and carries each driver's
  own state across a restart;
- ``routing.py`` — which characteristic a measurement feeds (instrument, channel);
- ``characteristic.py`` — one characteristic: reading in its unit → statistics → signals → alerts and
  snapshots (Cpk, line stopped);
- ``outbox.py`` — numbers every record and queues it in the spool (``floorwatch.edge.spool``) in the order of
  its numbers: readings in batches of at most ``mqtt.max_batch``, then what happened meanwhile;
- ``health.py`` — instruments online/offline, spool events and backlog, the broker connection → health events,
  log lines and alerts;
- ``state_store.py`` — ``<spool>.state.json``: what survives a restart (statistics, alerts, driver state);
- ``status_document.py`` — the JSON that ``floorwatch status``, ``/api/status`` and the page read;
- ``events.py`` (the ``key=value`` log) and ``systemd.py`` (READY, WATCHDOG, STOPPING).

The main loop writes the spool every ``spool.flush_interval`` seconds (one transaction — an SD card is not
written per reading; the MQTT publisher ``floorwatch.edge.mqtt`` drains it) and runs the checks every quarter
second. While running, the disk writes (the state file with its fsync, the spool commit) happen in a worker
thread (:meth:`Gateway.flush_async`): a slow SD card does not hold up the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from floorwatch import edge
from floorwatch.edge.alerts import AlertTracker
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import GatewayConfig
from floorwatch.edge.model import Measurement
from floorwatch.edge.spool import Spool
from floorwatch.edge.topics import Topics
from floorwatch.edge.webhook import WebhookSender
from floorwatch.gateway.characteristic import Characteristic
from floorwatch.gateway.events import EventLog, safe_url
from floorwatch.gateway.health import HealthChecks
from floorwatch.gateway.instruments import InstrumentState, InstrumentSupervisor
from floorwatch.gateway.outbox import Listener, Outbox
from floorwatch.gateway.routing import Routes
from floorwatch.gateway.state_store import StateStore
from floorwatch.gateway.status_document import status_document
from floorwatch.gateway.systemd import SystemdNotify

if TYPE_CHECKING:
    from floorwatch.edge.mqtt import MqttPublisher
    from floorwatch.gateway.web import StatusServer

T = TypeVar("T")


class Gateway:
    """The running gateway. ``await gateway.run(stop)`` until ``stop`` is set; returns the exit status.

    ``publish=False`` runs spool-only (the demo without a broker). ``listeners`` are called with
    ``(kind, record)`` for every reading batch, snapshot, alert and event queued — the demo's live view.
    Tests and the benchmark call :meth:`open`, feed :meth:`ingest`, call :meth:`tick` and :meth:`flush`,
    and :meth:`close`.
    """

    # built by open(): the parts that need the open spool and the alert tracker
    outbox: Outbox
    health: HealthChecks
    state_store: StateStore

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
        self.stats_interval = stats_interval  # seconds between two snapshots of a characteristic
        self.drain_timeout = drain_timeout  # seconds the broker is given at a stop to take what is spooled
        # False: the caller feeds measurements to ingest() itself (benchmark, replay of recorded frames)
        self.start_instruments = start_instruments
        # statistics state is saved at most this often (and on a clean stop): see flush()
        self.state_interval = max(state_interval, config.spool.flush_interval)
        # an instrument that has not been connected for this long is reported offline (default: per instrument)
        self.offline_after = offline_after
        ident = config.gateway
        self.topics = Topics(config.mqtt.topic_prefix, ident.site, ident.line, ident.id)
        self.spool_path = config.spool_path()
        self.state_path = self.spool_path.with_name(self.spool_path.name + ".state.json")
        self.client_id = config.mqtt.client_id or f"floorwatch-{ident.site}-{ident.line}-{ident.id}"
        self.listeners: list[Listener] = []
        self.spool: Spool | None = None  # set by open()
        self.alerts: AlertTracker | None = None  # set by open()
        self.publisher: MqttPublisher | None = None  # while run() publishes
        self.webhook: WebhookSender | None = None  # while run() posts alerts to alerts.webhook_url
        self.web: StatusServer | None = None  # while run() serves the local page
        self.characteristics: dict[str, Characteristic] = {}
        self.routes = Routes(self.events)
        self.supervisor = InstrumentSupervisor(config.instruments, clock=clock, events=self.events,
                                               ingest=self.ingest, stop_timeout=stop_timeout)
        self.started_ns = 0
        self.started_mono = 0.0
        self.restored = False  # statistics of a previous run were restored
        self.readings_total = 0
        self.unstamped_refused = 0  # measurements without their time or instrument (a driver bug): kept out
        self._last_snapshot_round = 0.0
        self._notify = SystemdNotify()
        self.ready = False  # True once run() has started everything (READY=1 sent)

    @property
    def instruments(self) -> dict[str, InstrumentState]:
        """Every configured instrument, once :meth:`run` took them on."""
        return self.supervisor.instruments

    @property
    def _open_spool(self) -> Spool:
        if self.spool is None:
            raise RuntimeError("the gateway is not open: call open() (or run()) first")
        return self.spool

    # ------------------------------------------------------------------ the hot path

    def ingest(self, m: Measurement) -> None:
        """One measurement from a driver: queue it as a reading, update statistics, rules and alerts.

        Only a stamped measurement is taken (``Driver.stamp``): one without its time or instrument is a
        driver bug, and a reading at a made-up time or of no instrument would mislead everyone downstream.
        It is counted (``unstamped_refused``, in the status document), logged, and kept out.
        """
        if not m.stamped:
            self.unstamped_refused += 1
            self.events.error("measurement_unstamped", instrument=m.instrument or None, channel=m.channel,
                              ts_ns=m.ts_ns, refused=self.unstamped_refused,
                              fix="a driver must emit what Driver.stamp() returns; report the driver")
            return
        inst = self.supervisor.instruments.get(m.instrument)
        if inst is not None:
            inst.last = m
        ch = self.routes.find(m)
        if ch is not None:
            ch.take(m)
            self.readings_total += 1

    def health_event(self, subject: str, state: str, message: str = "", detail: dict[str, Any] | None = None) -> None:
        """Queue a health event (``events/<subject>``), numbered with the next batch."""
        self.outbox.event(subject, state, message, detail)

    # ------------------------------------------------------------------ periodic work

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
        self._open_spool.flush()

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
        await asyncio.to_thread(self._open_spool.flush)

    def save_state(self) -> None:
        """Statistics, alert and instrument state to ``<spool>.state.json`` now (atomic replace)."""
        self.state_store.save(self._changes())

    def _changes(self) -> int:
        """Grows whenever something the state file holds may have changed: readings taken, alerts raised or
        cleared (both only ever grow)."""
        return self.readings_total + self.outbox.alert_changes

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
        for ch_cfg in cfg.characteristics:
            ch = Characteristic(ch_cfg, clock=self.clock, events=self.events, alerts=alerts, outbox=self.outbox,
                                rule_clear_after=cfg.alerts.rule_clear_after)
            self.characteristics[ch_cfg.name] = ch
            self.routes.add(ch)
        self.health = HealthChecks(cfg, spool=spool, alerts=alerts, outbox=self.outbox, clock=self.clock,
                                   events=self.events, offline_after=self.offline_after)
        self.state_store = StateStore(self.state_path, interval=self.state_interval, clock=self.clock,
                                      events=self.events, characteristics=self.characteristics, alerts=alerts,
                                      outbox=self.outbox, instruments=self.supervisor)
        self.spool, self.alerts = spool, alerts
        self.restored = bool(self.state_store.restore())

    def close(self) -> None:
        """Flush and close the spool (the counterpart of :meth:`open` when not using ``run``)."""
        if self.spool is not None:
            self.flush(save_state=True)
            self.spool.close()

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; flush, publish offline, return 0. Start-up failures return 1."""
        try:
            self.open()
        except Exception as exc:
            self.events.error("spool_unavailable", path=str(self.spool_path), error=f"{type(exc).__name__}: {exc}",
                              fix="check that gateway.data_dir exists and is writable by the service user")
            return 1
        # Every part started is stopped on the way out, in the reverse order: drivers first (nothing new comes
        # in), then the last snapshots and the state are written, the web page stops, the broker takes what it
        # can and hears "offline", the webhook sends what it holds, and the spool closes last.
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._close_spool)
            try:
                await self._start(stack)
                await self._main_loop(stop)
            finally:
                self._notify.notify("STOPPING=1")
                self.events.info("gateway_stopping")
        return 0

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the webhook, the publisher, the web page and the instruments, each with its stop on ``stack``;
        then tell systemd the gateway is ready."""
        cfg = self.config
        sender = WebhookSender.from_config(cfg.alerts)  # None without alerts.webhook_url
        if sender is not None:
            self.webhook = await stack.enter_async_context(self._stopped_or_reported(sender, "webhook_not_stopped"))
            self.outbox.webhook = sender
        self.events.info("gateway_starting", gateway=f"{cfg.gateway.site}/{cfg.gateway.line}/{cfg.gateway.id}",
                         version=edge.__version__, spool=str(self.spool_path),
                         broker=safe_url(cfg.mqtt.url) if self.publish else "none (spool-only)")
        if self.publish:
            from floorwatch.edge.mqtt import MqttPublisher

            publisher = MqttPublisher(cfg.mqtt, self.topics, self._open_spool, client_id=self.client_id,
                                      clock=self.clock)
            # leaving it publishes the retained "offline" and disconnects cleanly
            self.publisher = await stack.enter_async_context(
                self._stopped_or_reported(publisher, "broker_disconnect_failed"))
            await stack.enter_async_context(_task(publisher.run(), name="mqtt"))
            stack.push_async_callback(self._drain, publisher)
        if cfg.web.enabled:
            await self._start_web(stack)
        stack.callback(self._final_flush)
        stack.push_async_callback(self.supervisor.stop)
        await self.supervisor.start_all(run_drivers=self.start_instruments)
        self.health_event("gateway", "started", f"floorwatch {edge.__version__} started",
                          {"restored": self.restored, "instruments": len(cfg.instruments)})
        try:
            await self.flush_async()
        except Exception as exc:  # a full disk at start is reported like any other flush, not a crash
            self.events.error("flush_failed", error=f"{type(exc).__name__}: {exc}")
        self.ready = True
        self._notify.notify("READY=1")
        self._notify.notify(f"STATUS=running: {len(cfg.instruments)} instruments")
        self.events.info("gateway_ready", instruments=len(cfg.instruments), characteristics=len(cfg.characteristics),
                         web=f"http://{self.web.address}" if self.web is not None else "off")

    async def _start_web(self, stack: contextlib.AsyncExitStack) -> None:
        """The local page; a port taken by another program is reported and the gateway runs without it."""
        from floorwatch.gateway.web import StatusServer

        bind = self.config.web.bind
        web = StatusServer(self, bind, events=self.events, config=self.config.web)
        try:
            await web.start()
        except OSError as exc:
            self.events.error("web_unavailable", bind=bind, error=str(exc),
                              fix="another program uses this port; change [web] bind")
            return
        self.web = web
        stack.push_async_callback(self._stop_web, web)

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

    # ------------------------------------------------------------------ stopping (called by run's exit stack)

    def _final_flush(self) -> None:
        """Once the drivers stopped: the last snapshots and a 'stopping' event queued, spool and state written."""
        try:
            for ch in self.characteristics.values():
                ch.snapshot_if_new()
            self.health_event("gateway", "stopping", "clean shutdown", {"readings": self.readings_total})
            self.flush(save_state=True)
        except Exception as exc:
            self.events.error("final_flush_failed", error=f"{type(exc).__name__}: {exc}")

    async def _drain(self, publisher: MqttPublisher) -> None:
        """What the broker can take in a moment goes now; the rest waits in the spool for the next start."""
        if publisher.connected:
            with contextlib.suppress(Exception):
                await publisher.wait_drained(self.drain_timeout)

    async def _stop_web(self, web: StatusServer) -> None:
        try:
            await web.stop()
        except Exception as exc:
            self.events.warning("web_not_stopped", error=f"{type(exc).__name__}: {exc}")

    def _close_spool(self) -> None:
        spool = self._open_spool
        backlog = spool.backlog()
        try:
            spool.close()
        except Exception as exc:  # reported; the records committed before are safe in the file
            self.events.error("spool_close_failed", error=f"{type(exc).__name__}: {exc}")
        self.events.info("gateway_stopped", readings=self.readings_total, backlog=backlog)

    @contextlib.asynccontextmanager
    async def _stopped_or_reported(self, part: AbstractAsyncContextManager[T], event: str) -> AsyncIterator[T]:
        """Enter ``part``; a failure while leaving it is logged as ``event`` instead of raised, so that one part
        that fails to stop does not keep the others from stopping (and the spool from being closed)."""
        inner = contextlib.AsyncExitStack()
        entered = await inner.enter_async_context(part)
        try:
            yield entered
        finally:
            try:
                await inner.aclose()
            except Exception as exc:
                self.events.warning(event, error=f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def _task(coro: Coroutine[Any, Any, None], *, name: str) -> AsyncIterator[asyncio.Task[None]]:
    """A task that lives as long as the context: cancelled and awaited when it is left."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


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
