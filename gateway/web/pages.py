"""What the web page serves: ``/`` (the page), ``/api/status`` (its JSON), ``/healthz``.

The page is plain HTML with a small script that fetches ``/api/status`` every second and fills the tables;
it loads no external files, so it works on a line without internet. ``floorwatch status`` reads the same
JSON. The status document is ``Gateway.status()`` plus a ``web`` part: the page's own connections
(open, the cap, how many were refused and how many were closed for idling).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from floorwatch.gateway.web.gate import ConnectionCounts


class StatusSource(Protocol):
    """What the page shows: the gateway (or anything with the same ``status()``)."""

    def status(self) -> dict[str, Any]: ...


class EventSink(Protocol):
    """The gateway's event log (``floorwatch.gateway.events.EventLog``), as far as the page uses it."""

    def info(self, name: str, **fields: Any) -> None: ...

    def warning(self, name: str, **fields: Any) -> None: ...

    def error(self, name: str, **fields: Any) -> None: ...


class Pages:
    """The request handlers, for one gateway."""

    def __init__(self, gateway: StatusSource, events: EventSink | None,
                 connections: Callable[[], ConnectionCounts]) -> None:
        self.gateway = gateway
        self.events = events
        self.connections = connections

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/index.html", self.index)
        app.router.add_get("/api/status", self.status)
        app.router.add_get("/healthz", self.healthz)

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def status(self, request: web.Request) -> web.Response:
        try:
            doc = {**self.gateway.status(), "web": dataclasses.asdict(self.connections())}
            body = json.dumps(doc, allow_nan=False).encode()
        except Exception as exc:  # the page must say what is wrong rather than hang
            if self.events is not None:
                self.events.error("status_failed", error=f"{type(exc).__name__}: {exc}")
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=500)
        return web.Response(body=body, content_type="application/json")  # JSON is UTF-8: no charset


@web.middleware
async def plain_not_found(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """A wrong address gets a hint where to go, in words, instead of aiohttp's bare ``404: Not Found``."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404, text="not found: try / or /api/status\n")
    except web.HTTPMethodNotAllowed as exc:
        return web.Response(status=405, text=f"{request.method} is not allowed here; use "
                            f"{' or '.join(sorted(exc.allowed_methods))}\n", headers={"Allow": exc.headers["Allow"]})


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
  const sp = s.spool, b = s.broker, w = s.web || {};
  fill("transport", [
    [["spool backlog"], [fmt(sp.backlog), "num"]], [["spool bytes"], [fmt(sp.bytes) + " of " + fmt(sp.max_bytes), "num"]],
    [["dropped (disk budget)"], [fmt(sp.dropped_count || 0), sp.dropped_count ? "bad" : "num"]],
    [["broker"], [b.url + (b.enabled ? (b.connected ? " connected" : " not connected") : " (spool-only)"), b.connected ? "ok" : "bad"]],
    [["broker error"], [b.last_error || ""]],
    [["page connections"], [fmt(w.open) + " of " + fmt(w.max_connections) + (w.refused ? ", " + w.refused +
      " refused (too many at once)" : ""), w.refused ? "warn" : "num"]]]);
}
async function poll() {
  try {
    const r = await fetch("/api/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status + ": " + (await r.text()).trim());
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
