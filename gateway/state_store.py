"""What the gateway remembers across a restart: ``<spool>.state.json`` next to the spool.

Why: a restart — even a SIGKILL — must not make the gateway forget the process. The file holds the
statistics of every characteristic (control limits learned from the baseline, the rolling window, CUSUM and
EWMA; for counters the last count and how long the line has been idle), the alert tracker (raised alerts,
debounce counts) and each driver's own state (``Driver.state``: the Modbus production counts).

It is written at most every ``interval`` seconds and only when something changed (about 35 kB per
characteristic: an SD card must not be rewritten every second), and at every clean stop; by atomic replace
with fsync, so a crash leaves the old file or the new one, never half. While running, the write happens in a
worker thread (:meth:`StateStore.save_async`): a slow SD card does not hold up the event loop.

On start it is read back: a characteristic whose configuration changed starts afresh (its old statistics
would be wrong; :func:`fingerprint`), a damaged file is moved aside and reported, and an alert raised for
something no longer configured is cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floorwatch.edge.alerts import AlertTracker
from floorwatch.edge.clock import Clock
from floorwatch.edge.config import CharacteristicConfig
from floorwatch.gateway.characteristic import Characteristic
from floorwatch.gateway.events import EventLog
from floorwatch.gateway.instruments import InstrumentSupervisor
from floorwatch.gateway.outbox import Outbox

STATE_VERSION = 1


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fingerprint(cfg: CharacteristicConfig) -> str:
    """What a characteristic's saved statistics depend on: restored only if this is unchanged (its
    ``idle_after`` is not among it: changing when a line counts as stopped keeps the statistics)."""
    relevant = cfg.model_dump(mode="json", exclude={"idle_after"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class StateStore:
    """Saves and restores the state of the gateway's parts; see the module docstring.

    ``changes`` (in :meth:`due`, :meth:`save`) is a number that grows whenever something the file holds may
    have changed — the gateway passes readings taken plus alerts raised or cleared — so an idle gateway does
    not rewrite the file.
    """

    def __init__(self, path: Path, *, interval: float, clock: Clock, events: EventLog,
                 characteristics: Mapping[str, Characteristic], alerts: AlertTracker, outbox: Outbox,
                 instruments: InstrumentSupervisor) -> None:
        self.path = path
        self.interval = interval
        self.clock = clock
        self.events = events
        self.characteristics = characteristics
        self.alerts = alerts
        self.outbox = outbox
        self.instruments = instruments
        self._saved_at = -float("inf")  # monotonic time of the last save
        self._saved_changes = -1
        # one writer at a time: the worker thread's periodic save and a stop's final save share the temporary file
        self._lock = threading.Lock()

    # --- saving -------------------------------------------------------------------------------------------

    def due(self, changes: int) -> bool:
        """Whether a periodic save is due: ``interval`` seconds since the last one, and something changed."""
        return self.clock.monotonic() - self._saved_at >= self.interval and changes != self._saved_changes

    def save(self, changes: int) -> None:
        """Write the state now, in this thread."""
        data = self.encode()
        self._write(data)
        self._written(changes)

    async def save_async(self, changes: int) -> None:
        """Write the state from a worker thread; the figures are taken here, on the loop (they must not change
        while written)."""
        data = self.encode()
        await asyncio.to_thread(self._write, data)
        self._written(changes)

    def encode(self) -> bytes:
        """The file's content now."""
        chars = {name: {"fingerprint": fingerprint(ch.config), **ch.state()}
                 for name, ch in self.characteristics.items()}
        data = {"version": STATE_VERSION, "saved_ns": self.clock.now_ns(), "characteristics": chars,
                "alerts": self.alerts.state(), "instruments": self.instruments.driver_states()}
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()

    def _write(self, data: bytes) -> None:
        with self._lock:
            write_atomic(self.path, data)

    def _written(self, changes: int) -> None:
        self._saved_at = self.clock.monotonic()
        self._saved_changes = changes

    # --- restoring ----------------------------------------------------------------------------------------

    def restore(self) -> list[str]:
        """Hand every part what the previous run saved; returns the characteristics whose statistics came
        back. Nothing here stops the start: what cannot be restored starts afresh and the log says why."""
        data = self._read()
        if data is None:
            return []
        chars: dict[str, dict[str, Any]] = data["characteristics"]
        saved_ns = data.get("saved_ns")
        # seconds the gateway was down (wall clock; never negative, even when the clock was set back)
        down_for = max(0.0, (self.clock.now_ns() - saved_ns) / 1e9) if isinstance(saved_ns, int) else 0.0
        restored = []
        for name, saved in chars.items():
            ch = self.characteristics.get(name)
            if ch is None:
                continue
            if saved.get("fingerprint") != fingerprint(ch.config):
                self.events.warning("state_not_restored", characteristic=name,
                                    reason="its configuration changed; statistics start afresh")
                continue
            try:
                ch.restore(saved, down_for=down_for)  # the line stays stopped (or not) across the restart
            except (ValueError, TypeError, KeyError) as exc:
                self.events.warning("state_not_restored", characteristic=name, reason=str(exc))
                continue
            restored.append(name)
        self._restore_instruments(data.get("instruments"))
        self._restore_alerts(data.get("alerts"))
        self.events.info("state_restored", characteristics=",".join(restored) or "-",
                         active_alerts=len(self.alerts.active()))
        return restored

    def _read(self) -> dict[str, Any] | None:
        """The saved state, checked for its shape; a damaged file is moved aside and reported (None)."""
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError(f"not a version {STATE_VERSION} state file")
            chars = data.get("characteristics")
            if not isinstance(chars, dict) or not all(isinstance(v, dict) for v in chars.values()):
                raise ValueError("'characteristics' must map names to saved statistics")
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            self.events.error("state_unreadable", path=str(self.path), moved_to=str(aside), error=str(exc),
                              fix="statistics start afresh; control limits are learned again from the baseline")
            return None
        return data

    def _restore_instruments(self, saved: Any) -> None:  # as read from JSON
        if saved is None:
            self.events.info("instrument_state_absent", path=str(self.path),
                             reason="state file from an older version: production counts start from 0")
        elif isinstance(saved, dict):
            self.instruments.saved = {k: v for k, v in saved.items() if isinstance(v, dict)}
        else:
            self.events.warning("instrument_state_not_restored", reason="'instruments' is not a mapping")

    def _restore_alerts(self, saved: Any) -> None:  # as read from JSON
        """The raised alerts come back raised (and clear normally); one of a subject no longer configured is
        cleared at once, so no dashboard shows it forever."""
        alerts = self.alerts
        if saved is not None:
            try:
                alerts.restore(saved)
            except (ValueError, TypeError, KeyError) as exc:
                self.events.warning("alert_state_not_restored", reason=str(exc))
        known = {*self.characteristics, *(cfg.name for cfg in self.instruments.configs), "spool", "gateway"}
        for subject in sorted({a.subject for a in alerts.active()} - known):
            for cleared in alerts.clear(subject, ts_ns=self.clock.now_ns(),
                                        message=f"{subject} is no longer in the configuration"):
                self.outbox.alert(cleared)
        for raised in alerts.active():
            ch = self.characteristics.get(raised.subject)
            if ch is not None:
                ch.watch.add(raised.kind)  # a raised rule alert goes on being judged, and clears in time
