"""The web page's server: aiohttp behind the connection gate, with the security checks, on ``[web] bind``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from floorwatch.edge.config import WebConfig
from floorwatch.gateway.web.gate import ConnectionCounts, ConnectionGate
from floorwatch.gateway.web.pages import EventSink, Pages, StatusSource, plain_not_found
from floorwatch.gateway.web.security import AccessPolicy, security_headers

# A child of "floorwatch": the gateway routes it through its event log like the other library loggers.
LOG = logging.getLogger("floorwatch.gateway.web")
REQUEST_LOG = logging.getLogger("floorwatch.gateway.web.requests")  # aiohttp's per-connection messages

STOP_TIMEOUT = 2.0
# Connections the kernel queues before the page accepts them; asyncio also accepts up to this many at once,
# so it bounds the descriptors a burst holds beyond max_connections for the moment it takes to refuse them.
ACCEPT_BACKLOG = 64  # seconds a stop waits for answers under way before dropping them


class _MalformedRequestsAreDebug(logging.Filter):
    """aiohttp logs a request it cannot parse at error level; that is the client's mistake (a port scanner,
    TLS spoken to plain HTTP), answered with 400, and must not look like a fault of the gateway's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


REQUEST_LOG.addFilter(_MalformedRequestsAreDebug())


class StatusServer:
    """Serves the page, ``/api/status`` and ``/healthz`` for one gateway (anything with ``status() -> dict``).

    ``config`` is the ``[web]`` table (the defaults without it). ``bind`` (host:port) always wins over the table's, so that the caller decides where it listens.
    ``routes`` are served besides the page's own, behind the same checks (a route for anything but GET/HEAD
    needs the action token).
    """

    def __init__(self, gateway: StatusSource, bind: str, *, events: EventSink | None = None,
                 config: WebConfig | None = None, routes: Iterable[web.AbstractRouteDef] = ()) -> None:
        config = config or WebConfig()
        host, _, port = bind.rpartition(":")
        self.gateway = gateway
        self.config = config
        self.host = host.strip("[]")
        self.port = int(port)
        self.events = events
        self.routes = list(routes)
        self.gate = ConnectionGate(max_connections=config.max_connections, idle_timeout=config.idle_timeout,
                                   report=self._report)
        self.policy: AccessPolicy | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connections(self) -> ConnectionCounts:
        return self.gate.counts()

    async def start(self) -> None:
        """Listen; :class:`OSError` when the address cannot be had (the port is taken)."""
        self.policy = AccessPolicy.from_config(self.config)
        for problem in self.policy.errors:
            self._report("error", "web_token_unreadable", {"error": problem})
        app = web.Application(
            middlewares=[self.gate.middleware, self.policy.check_host, plain_not_found, self.policy.check_tokens],
            logger=LOG)
        app.on_response_prepare.append(security_headers)
        Pages(self.gateway, self.events, self.gate.counts).add_routes(app)
        app.add_routes(self.routes)
        runner = web.AppRunner(
            app, logger=REQUEST_LOG, access_log=None, shutdown_timeout=STOP_TIMEOUT,
            # aiohttp's own keep-alive limit, a little after the gate's: the gate closes idle connections
            keepalive_timeout=self.config.idle_timeout + 1.0)
        await runner.setup()
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self.gate.factory(runner.server), self.host, self.port,
                                                    reuse_address=True, backlog=ACCEPT_BACKLOG)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, runner, self._server, self._runner = self._server, self._runner, None, None
        if server is not None:
            server.close()  # no new connections
        if runner is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT * 2):
                    await runner.cleanup()
        self.gate.close_all()  # whatever aiohttp did not finish in time
        if server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await server.wait_closed()

    def _report(self, level: str, event: str, fields: dict[str, object]) -> None:
        if self.events is not None:
            getattr(self.events, level)(event, **fields)
        else:
            LOG.log(logging.getLevelName(level.upper()), "%s %s", event, fields)
