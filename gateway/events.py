"""The gateway's log: one line per event in ``key=value`` form, with repeats held back, and no secrets in it.

Why its own log format: journald adds the timestamp and keeps the lines; a technician greps them
(``journalctl -u floorwatch | grep event=instrument_offline``), and a flapping cable must not fill the SD card
with the same line. The library loggers (MQTT, spool, drivers, paho) are routed into the same format by
:meth:`EventLog.attach`. Secrets never appear: URLs are shown with :func:`safe_url`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit


def _fmt_value(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        text = json.dumps(text)
    return text


def safe_url(url: str) -> str:
    """A URL without user name or password, for logs and the status page.

    >>> safe_url("mqtts://gw:secret@broker.example.com:8883")
    'mqtts://broker.example.com:8883'
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class EventLog:
    """One line per event, ``key=value``, with repeats of the same event and subject held back.

    A flapping cable must not fill the SD card with the same line: an event repeated within ``window``
    seconds is counted instead of printed, and the next line printed for it says ``repeated=N``.

    >>> import io
    >>> out = io.StringIO()
    >>> ev = EventLog(stream=out, window=60.0, clock=lambda: 0.0, timestamps=False)
    >>> for _ in range(3):
    ...     ev.warning("frame_rejected", instrument="caliper-1", reason="bad checksum")
    >>> print(out.getvalue().strip())
    level=warning event=frame_rejected instrument=caliper-1 reason="bad checksum"
    """

    LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        level: str = "info",
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        timestamps: bool = True,
    ) -> None:
        self.stream = stream
        self.threshold = self.LEVELS[level]
        self.window = window
        self.clock = clock
        self.timestamps = timestamps
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        # logger name -> (handlers, level, propagate) before attach(), for detach()
        self._attached: dict[str, tuple[list[logging.Handler], int, bool]] = {}

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the gateway

    def event(self, level: str, name: str, *, key: str = "", **fields: object) -> None:
        if self.LEVELS[level] < self.threshold:
            return
        subject = key or str(next(iter(fields.values()), "")) if fields else key
        now = self.clock()
        last = self._last.get((name, subject))
        repeated = 0
        if last is not None:
            at, held = last
            if now - at < self.window:
                self._last[(name, subject)] = (at, held + 1)
                return
            repeated = held
        self._last[(name, subject)] = (now, 0)
        if len(self._last) > 10_000:  # bounded: forget the oldest subjects
            for k in list(self._last)[:5000]:
                del self._last[k]
        parts = []
        if self.timestamps:
            t = time.time()
            parts.append("ts=" + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z")
        parts.append(f"level={level}")
        parts.append(f"event={name}")
        parts.extend(f"{k}={_fmt_value(v)}" for k, v in fields.items() if v is not None)
        if repeated:
            parts.append(f"repeated={repeated}")
        self._write(" ".join(parts))

    def debug(self, name: str, *, key: str = "", **fields: object) -> None:
        self.event("debug", name, key=key, **fields)

    def info(self, name: str, *, key: str = "", **fields: object) -> None:
        self.event("info", name, key=key, **fields)

    def warning(self, name: str, *, key: str = "", **fields: object) -> None:
        self.event("warning", name, key=key, **fields)

    def error(self, name: str, *, key: str = "", **fields: object) -> None:
        self.event("error", name, key=key, **fields)

    def attach(self, *loggers: str) -> None:
        """Route the library loggers (``floorwatch.edge.mqtt``, ``floorwatch.edge.spool``, ``drivers.*``, paho) through this log,
        so that every line has the same form and the same repeat limit."""
        handler = _EventLogHandler(self)
        for name in loggers:
            logger = logging.getLogger(name)
            self._attached.setdefault(name, (list(logger.handlers), logger.level, logger.propagate))
            logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _EventLogHandler)]
            logger.addHandler(handler)
            logger.setLevel(min(self.threshold, logging.WARNING) if name == "paho" else self.threshold)
            logger.propagate = False

    def detach(self) -> None:
        """Give the library loggers back as they were (a process that runs a gateway and then goes on,
        e.g. the tests, must not keep its logging rerouted)."""
        for name, (handlers, level, propagate) in self._attached.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        self._attached.clear()


class _EventLogHandler(logging.Handler):
    def __init__(self, events: EventLog) -> None:
        super().__init__()
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        level = {10: "debug", 20: "info", 30: "warning"}.get(record.levelno, "error")
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        self.events.event(level, "library", key=record.name + message[:40], logger=record.name, message=message)
