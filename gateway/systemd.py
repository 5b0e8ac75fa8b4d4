"""Telling systemd how the gateway is doing: READY, WATCHDOG and STOPPING for a ``Type=notify`` unit.

Why: systemd then starts what depends on the gateway only once it collects, and restarts a gateway whose
event loop hangs (the watchdog is kicked from the main loop, so a loop that stops turning stops kicking).
Outside systemd (``$NOTIFY_SOCKET`` unset) nothing is sent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sdnotify


class SystemdNotify:
    """READY / WATCHDOG / STOPPING for ``Type=notify`` units; does nothing outside systemd.

    Uses the ``sdnotify`` package (a datagram to ``$NOTIFY_SOCKET``). ``kick`` sends ``WATCHDOG=1`` every
    half ``WatchdogSec`` (``$WATCHDOG_USEC``), however often it is called.
    """

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self.enabled:
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        self._last_kick = 0.0

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def kick(self, now: float) -> None:
        """The main loop turned at monotonic time ``now``: keep the watchdog quiet."""
        if self.watchdog_interval is not None and now - self._last_kick >= self.watchdog_interval:
            self._last_kick = now
            self.notify("WATCHDOG=1")
