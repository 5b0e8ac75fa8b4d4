"""The gateway's local web page and status API, on ``[web] bind`` (127.0.0.1:8080 by default).

Why a page on the gateway itself: a technician at the line, with a laptop on the Pi's network or a browser
on the Pi, sees whether the instruments talk and what the process does — without Grafana, without the
broker. ``floorwatch status`` reads the same JSON.

- ``GET /api/status``: the gateway's state as JSON (``Gateway.status()``: instruments, characteristics,
  active alerts, spool, broker).
- ``GET /``: a small page that shows those values and refreshes itself every second (plain JavaScript,
  no external files: it works on a line with no internet).
- ``GET /healthz``: ``ok`` while the service runs (for a load balancer or a monitoring probe).

A tiny HTTP/1.1 server on asyncio streams: a handful of requests per second from a few browsers needs no
framework. Requests are read with limits (line length, header count, a timeout) so a stray client cannot
hold the gateway up. Nothing here accepts input that changes the gateway: the page is read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

MAX_LINE = 8192
MAX_HEADERS = 64
REQUEST_TIMEOUT = 10.0


class StatusServer:
    """Serves ``/``, ``/api/status`` and ``/healthz`` for one gateway (anything with ``status() -> dict``)."""

    def __init__(self, gateway: Any, bind: str, *, events: Any = None) -> None:
        host, _, port = bind.rpartition(":")
        self.gateway = gateway
        self.host = host.strip("[]")
        self.port = int(port)
        self.events = events
        self._server: asyncio.base_events.Server | None = None
        self.requests = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        request = await self._read_request(reader)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                if request is None:
                    return
                method, path, keep_alive = request
                self.requests += 1
                status, ctype, body = self._route(method, path)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                    f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
                )
                writer.write(head.encode() + (body if method != "HEAD" else b""))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, bool] | None:
        line = await reader.readline()
        if not line:
            return None
        if len(line) > MAX_LINE:
            return ("BAD", "", False)
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return ("BAD", "", False)
        method, target, version = parts
        keep_alive = version == "HTTP/1.1"
        for _ in range(MAX_HEADERS):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "connection":
                keep_alive = value.strip().lower() != "close" if keep_alive else value.strip().lower() == "keep-alive"
            if name.strip().lower() == "content-length" and value.strip() not in ("", "0"):
                return ("BAD", "", False)  # read-only server: no request bodies
        else:
            return ("BAD", "", False)
        return method, target.split("?", 1)[0], keep_alive

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method == "BAD":
            return "400 Bad Request", "text/plain; charset=utf-8", b"bad request\n"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain; charset=utf-8", b"read-only: use GET\n"
        if path == "/api/status":
            try:
                data = self.gateway.status()
            except Exception as exc:  # the page must say what is wrong rather than hang
                if self.events is not None:
                    self.events.error("status_failed", error=f"{type(exc).__name__}: {exc}")
                body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
                return "500 Internal Server Error", "application/json", body
            return "200 OK", "application/json", json.dumps(data, allow_nan=False).encode()
        if path in ("/", "/index.html"):
            return "200 OK", "text/html; charset=utf-8", PAGE.encode()
        if path == "/healthz":
            return "200 OK", "text/plain; charset=utf-8", b"ok\n"
        return "404 Not Found", "text/plain; charset=utf-8", b"not found: try / or /api/status\n"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Floorwatch gateway</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.2em 0 .3em}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#eee} .num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176317} .bad{color:#b00020;font-weight:bold} .warn{color:#9a6700} #meta{color:#555}
</style></head>
<body>
<h1>Floorwatch <span id="gw">gateway</span></h1>
<div id="meta">loading…</div>
<h2>Characteristics</h2>
<table id="characteristics"><thead><tr><th>characteristic</th><th>last value</th><th>unit</th><th>n</th>
<th>mean</th><th>Cpk</th><th>LSL</th><th>USL</th><th>alerts</th></tr></thead><tbody></tbody></table>
<h2>Instruments</h2>
<table id="instruments"><thead><tr><th>instrument</th><th>driver</th><th>connected</th><th>frames ok</th>
<th>rejected</th><th>last reading</th><th>last error</th></tr></thead><tbody></tbody></table>
<h2>Active alerts</h2>
<table id="alerts"><thead><tr><th>subject</th><th>kind</th><th>severity</th><th>message</th></tr></thead>
<tbody></tbody></table>
<h2>Spool and broker</h2>
<table id="transport"><tbody></tbody></table>
<script>
"use strict";
function fmt(v, d) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(d || 6);
  return String(v);
}
function cell(row, text, cls) {
  const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; row.appendChild(td);
}
function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const r of rows) { const tr = document.createElement("tr"); for (const c of r) cell(tr, c[0], c[1]); body.appendChild(tr); }
}
function render(s) {
  const g = s.gateway;
  document.getElementById("gw").textContent = g.site + " / " + g.line + " / " + g.id;
  document.getElementById("meta").textContent = "version " + g.version + " · up " + Math.round(g.uptime_s) +
    " s · " + g.readings + " readings · last seq " + fmt(g.last_seq) + " · updated " + new Date().toLocaleTimeString();
  fill("characteristics", s.characteristics.map(c => [
    [c.name], [fmt(c.last_value), "num " + (c.last_status && c.last_status !== "ok" ? "warn" : "")], [c.unit],
    [fmt(c.n)], [fmt(c.mean)], [fmt(c.cpk, 3), "num " + (c.cpk !== null && c.cpk !== undefined && c.cpk < 1.33 ? "bad" : "")],
    [fmt(c.lsl)], [fmt(c.usl)], [c.active_alerts.join(", ") || "none", c.active_alerts.length ? "bad" : "ok"]]));
  fill("instruments", s.instruments.map(i => [
    [i.name], [i.driver + (i.simulate ? " (simulated: " + i.simulate + ")" : "")],
    [i.connected ? "yes" : "no", i.connected ? "ok" : "bad"], [fmt(i.frames_ok), "num"],
    [fmt(i.frames_rejected), "num " + (i.frames_rejected ? "warn" : "")],
    [i.last_reading ? fmt(i.last_reading.value) + " " + i.last_reading.unit + " " + i.last_reading.status
      + (i.last_reading.channel ? " [" + i.last_reading.channel + "]" : "") : "–"],
    [[i.last_error, (i.extra || {}).last_notice && "instrument says: " + i.extra.last_notice,
      (i.extra || {}).hint && "hint: " + i.extra.hint].filter(Boolean).join(" — ")]]));
  fill("alerts", s.alerts.map(a => [[a.subject], [a.kind], [a.severity, a.severity === "critical" ? "bad" : "warn"], [a.message]]));
  const sp = s.spool, b = s.broker;
  fill("transport", [
    [["spool backlog"], [fmt(sp.backlog), "num"]], [["spool bytes"], [fmt(sp.bytes) + " of " + fmt(sp.max_bytes), "num"]],
    [["dropped (disk budget)"], [fmt(sp.dropped_count || 0), sp.dropped_count ? "bad" : "num"]],
    [["broker"], [b.url + (b.enabled ? (b.connected ? " connected" : " not connected") : " (spool-only)"), b.connected ? "ok" : "bad"]],
    [["broker error"], [b.last_error || ""]]]);
}
async function poll() {
  try {
    const r = await fetch("/api/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    document.getElementById("meta").textContent = "gateway not reachable: " + e.message;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"""
