"""Instrument supervision: each instrument's driver (and simulator) started, kept running, and stopped.

An instrument whose driver cannot even be created (an unknown driver, a Modbus instrument without a register
map) is left with the reason in ``InstrumentState.error`` and the others run. A driver that fails while
running is reported and restarted after a growing pause (``floorwatch.edge.backoff.Backoff``), never taking
the gateway down. At a stop every driver is cancelled and given ``stop_timeout`` seconds: one stuck in a
library call is left behind and named, so it cannot keep the gateway from stopping and saving.

Drivers may keep state of their own (``Driver.state``/``restore``: the Modbus production counts). What the
previous run saved is handed to the new driver before it starts; an instrument whose driver is not running
keeps what was saved for it, so a device that fails to start loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from floorwatch.drivers import registry
from floorwatch.drivers.base import Driver, Simulator
from floorwatch.edge.backoff import Backoff
from floorwatch.edge.clock import Clock
from floorwatch.edge.config import InstrumentConfig
from floorwatch.edge.model import Measurement
from floorwatch.gateway.events import EventLog


@dataclass
class InstrumentState:
    """One configured instrument as the gateway sees it: its driver, whether it is online, its last measurement."""

    config: InstrumentConfig
    driver: Driver | None = None
    simulator: Simulator | None = None
    task: asyncio.Task[None] | None = None
    online: bool | None = None  # None: not known yet (starting)
    since: float = 0.0  # monotonic time the current connected state began
    error: str = ""  # why the driver could not be created or started
    last: Measurement | None = None
    down_since: float | None = None  # monotonic time the connection was first seen down
    restored_state: bool = False  # the driver was offered its saved state; from now on it saves its own


class InstrumentSupervisor:
    """Starts, restarts and stops the drivers of the configured instruments; see the module docstring.

    ``ingest`` is what every driver hands its measurements to.
    """

    def __init__(self, configs: Sequence[InstrumentConfig], *, clock: Clock, events: EventLog,
                 ingest: Callable[[Measurement], None], stop_timeout: float) -> None:
        self.configs = configs
        self.clock = clock
        self.events = events
        self.ingest = ingest
        self.stop_timeout = stop_timeout  # seconds to wait for each driver and simulator to stop
        self.instruments: dict[str, InstrumentState] = {}
        self.saved: dict[str, dict[str, Any]] = {}  # Driver.state() of the previous run, by instrument

    async def start_all(self, *, run_drivers: bool = True) -> None:
        """Take every configured instrument on; start its driver unless ``run_drivers`` is False (the caller
        feeds the measurements itself: benchmark, replay of recorded frames)."""
        for cfg in self.configs:
            inst = InstrumentState(cfg)
            self.instruments[cfg.name] = inst
            if run_drivers:
                await self.start(inst)

    async def start(self, inst: InstrumentState) -> None:
        """Create the instrument's driver (after its simulator, when ``simulate`` is set) and run it."""
        cfg = inst.config
        try:
            spec = registry.get(cfg.driver)
            options = registry.parse_options(spec, cfg)
            if cfg.simulate is not None:
                if spec.simulator is None:
                    raise ValueError(f"driver {cfg.driver!r} has no simulator; remove 'simulate'")
                inst.simulator = spec.simulator(cfg.simulate, options, self.clock)
                await inst.simulator.start()
                cfg = cfg.model_copy(update=dict(inst.simulator.endpoint))
                inst.config = cfg
            inst.driver = spec.driver(cfg, options, self.clock)
            self._restore(inst)
        except Exception as exc:  # a bad instrument must not stop the others
            inst.error = f"{type(exc).__name__}: {exc}"
            self.events.error("instrument_not_started", instrument=cfg.name, driver=cfg.driver, error=inst.error)
            return
        inst.since = self.clock.monotonic()
        inst.task = asyncio.create_task(self.drive(inst), name=f"driver:{cfg.name}")
        self.events.info("instrument_started", instrument=cfg.name, driver=cfg.driver,
                         port=cfg.port, host=cfg.host, simulate=cfg.simulate)

    async def drive(self, inst: InstrumentState) -> None:
        """Run one driver; a driver bug is logged and the driver restarted, never taking the gateway down."""
        backoff = Backoff(first=1.0, maximum=30.0)
        while True:
            try:
                assert inst.driver is not None
                await inst.driver.run(self.ingest)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                inst.error = f"{type(exc).__name__}: {exc}"
                wait = backoff.next()
                self.events.error("driver_failed", instrument=inst.config.name, error=inst.error, restart_in=wait)
                await asyncio.sleep(wait)

    async def stop(self) -> None:
        """Cancel every driver (each given ``stop_timeout`` seconds), then stop the simulators."""
        running = [inst.task for inst in self.instruments.values() if inst.task is not None]
        for task in running:
            task.cancel()
        if running:
            # bounded: a driver stuck in a library call must not keep the gateway from stopping (and saving)
            _, stuck = await asyncio.wait(running, timeout=self.stop_timeout)
            for task in stuck:
                self.events.error("driver_not_stopping", task=task.get_name(), waited=self.stop_timeout,
                                  fix="the gateway stops without it; report this driver's hang")
        for inst in self.instruments.values():
            if inst.simulator is not None:
                try:
                    async with asyncio.timeout(self.stop_timeout):
                        await inst.simulator.stop()
                except Exception as exc:
                    self.events.warning("simulator_not_stopped", instrument=inst.config.name,
                                        error=f"{type(exc).__name__}: {exc}")

    # --- driver state across a restart ------------------------------------------------------------------

    def _restore(self, inst: InstrumentState) -> None:
        """Hand the driver what its previous run saved, before it starts (``Driver.restore``)."""
        assert inst.driver is not None
        name = inst.config.name
        saved = self.saved.get(name)
        try:
            notes = inst.driver.restore(saved) if saved else []
        except Exception as exc:  # a driver bug must not stop the instrument
            notes = [f"internal error: {type(exc).__name__}: {exc}"]
        for note in notes:
            self.events.warning("instrument_state_not_restored", instrument=name, reason=note)
        if saved and not notes:
            self.events.info("instrument_state_restored", instrument=name)
        inst.restored_state = True

    def driver_states(self) -> dict[str, dict[str, Any]]:
        """Each driver's own state (``Driver.state``: e.g. production counts), by instrument. An instrument
        whose driver is not running keeps what was saved for it."""
        out = {}
        for cfg in self.configs:
            name = cfg.name
            inst = self.instruments.get(name)
            saved = self.saved.get(name)
            if inst is not None and inst.driver is not None and inst.restored_state:
                try:
                    saved = inst.driver.state()
                except Exception as exc:  # a driver bug must not cost the statistics their state
                    self.events.error("instrument_state_not_saved", instrument=name,
                                      error=f"{type(exc).__name__}: {exc}")
            if saved:
                out[name] = saved
        return out
