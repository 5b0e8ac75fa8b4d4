"""How many connections the web page holds, and for how long: a cap and an idle timeout at the socket level.

Why: every connection is a file descriptor, and the gateway shares its descriptors with the spool, the
serial ports and the broker connection. aiohttp accepts every connection and, before 3.14, keeps one that
never sends a request for ever; a thousand idle sockets from a port scanner, a misbehaving script or a
browser's speculative connections would leave the spool unable to open its file. So the gate sits between
the listening socket and aiohttp's protocol:

- at most ``max_connections`` are open; one more is answered ``503`` and closed at once (counted, and logged
  once per burst rather than once per connection);
- a connection must send a complete request head within ``idle_timeout`` seconds of opening or of its last
  answer, or it is closed: an idle socket, and a client that trickles its headers a byte at a time to hold
  the socket (slowloris), both go. While a request is being answered, and while its answer is being sent,
  the clock stops — unless the client stops reading the answer for as long.

The gate wraps aiohttp's protocol factory (``AppRunner.server``) and forwards the transport's calls; it
uses only asyncio's protocol contract and aiohttp's public request attributes, not aiohttp's internals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

# One warning when refusals start, one summary when none came for this long.
BURST_QUIET = 30.0

_REFUSAL_TEXT = b"too many connections to this gateway's page; try again in a moment\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
) % (len(_REFUSAL_TEXT), _REFUSAL_TEXT)

Report = Callable[[str, str, dict[str, object]], None]
"""``report(level, event, fields)``: where the gate's events go (the gateway's event log)."""


@dataclass(frozen=True)
class ConnectionCounts:
    """What the status document shows about the page's connections."""

    open: int
    max_connections: int
    refused: int
    closed_idle: int


class ConnectionGate:
    """The protocol factory for the page's listening socket: caps connections and closes idle ones."""

    def __init__(self, *, max_connections: int, idle_timeout: float, report: Report) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.report = report
        self.refused = 0
        self.closed_idle = 0
        self._open: dict[asyncio.Protocol, _GatedConnection] = {}  # aiohttp's protocol -> its gate
        self._burst_refused = 0
        self._burst_started = 0.0
        self._last_refusal = 0.0
        self._burst_timer: asyncio.TimerHandle | None = None

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``, wrapping aiohttp's ``inner`` one."""
        return lambda: _GatedConnection(self, inner)

    def counts(self) -> ConnectionCounts:
        return ConnectionCounts(len(self._open), self.max_connections, self.refused, self.closed_idle)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Stops a connection's clock while its request is answered (a slow answer is no idle client), and
        restarts it when the answer is made."""
        conn = self._open.get(request.protocol)
        if conn is None:
            return await handler(request)
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            conn.touch()

    def close_all(self) -> None:
        """Drop every connection at once (the server stops)."""
        for conn in list(self._open.values()):
            conn.abort()
        self._end_burst()

    # -- bookkeeping for the connections

    def _admit(self, transport: asyncio.Transport) -> bool:
        """Whether one more connection may open; counts and reports it when not."""
        if len(self._open) < self.max_connections:
            return True
        self.refused += 1
        self._burst_refused += 1
        loop = asyncio.get_running_loop()
        self._last_refusal = loop.time()
        if self._burst_timer is None:
            self._burst_started = self._last_refusal
            peer = transport.get_extra_info("peername")
            self.report("warning", "web_connections_refused", {
                "max_connections": self.max_connections,
                "peer": peer[0] if isinstance(peer, tuple) else str(peer),
                "fix": "more clients hold connections to the page than [web] max_connections; raise it if "
                       "they are yours, otherwise find what opens them"})
            self._burst_timer = loop.call_later(BURST_QUIET, self._check_burst)
        return False

    def _check_burst(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_until = self._last_refusal + BURST_QUIET
        if loop.time() < quiet_until:
            self._burst_timer = loop.call_at(quiet_until, self._check_burst)
            return
        self._end_burst()

    def _end_burst(self) -> None:
        if self._burst_timer is None:
            return
        self._burst_timer.cancel()
        self._burst_timer = None
        self.report("info", "web_connections_refused_ended", {
            "refused": self._burst_refused, "seconds": round(self._last_refusal - self._burst_started, 1),
            "refused_total": self.refused})
        self._burst_refused = 0


class _GatedConnection(asyncio.Protocol):
    """One accepted socket: refused at once over the cap, otherwise handed to aiohttp and timed."""

    def __init__(self, gate: ConnectionGate, inner_factory: Callable[[], asyncio.Protocol]) -> None:
        self.gate = gate
        self.inner_factory = inner_factory
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self._last_active = 0.0
        self._pending_seen = 0  # bytes of an answer waiting to be sent, at the last look
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self.gate._admit(transport):
            # Answer in words for a browser, then let go of the descriptor straight away.
            transport.write(REFUSAL)
            transport.close()
            return
        self.transport = transport
        self.inner = self.inner_factory()
        self.gate._open[self.inner] = self
        self.touch()
        self._schedule(self._last_active + self.gate.idle_timeout)
        self.inner.connection_made(transport)

    def touch(self) -> None:
        """The client's turn to speak starts now (the connection opened, or an answer was made)."""
        self._last_active = asyncio.get_running_loop().time()

    def _schedule(self, when: float) -> None:
        self._timer = asyncio.get_running_loop().call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        now = asyncio.get_running_loop().time()
        idle = self.gate.idle_timeout
        pending = self.transport.get_write_buffer_size()
        if pending:
            # An answer is on its way out: the connection is idle only when the client has stopped reading
            # it for a whole period (what waits to be sent did not shrink).
            if self._pending_seen and pending >= self._pending_seen:
                self._close_idle()
                return
            self._pending_seen = pending
            self._schedule(now + idle)
            return
        if self._pending_seen:  # the answer went out since the last look: the client's turn starts now
            self._pending_seen = 0
            self.touch()
        if self.busy:  # an answer is being made
            self._schedule(now + idle)
            return
        due = self._last_active + idle
        if now >= due:
            self._close_idle()
        else:
            self._schedule(due)

    def _close_idle(self) -> None:
        self.gate.closed_idle += 1
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # an idle peer gets no goodbye: the descriptor is freed now

    def data_received(self, data: bytes) -> None:
        # Bytes alone do not reset the clock (a trickle would hold the socket for ever): a request does.
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        if self.inner is not None:
            self.gate._open.pop(self.inner, None)
            self.inner.connection_lost(exc)
