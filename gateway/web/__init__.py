"""The gateway's local web page and status API, on ``[web] bind`` (127.0.0.1:8080 by default).

Why a page on the gateway itself: a technician at the line, with a laptop on the Pi's network or a browser
on the Pi, sees whether the instruments talk and what the process does — without Grafana, without the
broker. ``floorwatch status`` reads the same JSON. See docs/web.md.

- ``server``: :class:`StatusServer`, aiohttp on ``[web] bind`` (what the gateway service starts and stops);
- ``gate``: the cap on connections and the idle timeout, at the socket level (file descriptors are shared
  with the spool, the serial ports and the broker);
- ``security``: Host checking (DNS rebinding), the view token and the action token, as middleware;
- ``pages``: ``/``, ``/api/status``, ``/healthz``.
"""

from floorwatch.gateway.web.server import StatusServer

__all__ = ["StatusServer"]
