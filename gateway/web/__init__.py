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

import os
import platform

# yarl (aiohttp's URL library) ships 32-bit ARM wheels whose C extension is built with -ffast-math: loading
# it turns on flush-to-zero for the whole process, so every subnormal float becomes 0 — in the statistics
# too (found by `make test-armhf`). On 32-bit ARM its pure-Python fallback is used instead. This must run
# before aiohttp is first imported: every module that imports aiohttp is in this package.
if platform.machine().startswith(("armv6", "armv7", "armv8l")):
    os.environ.setdefault("YARL_NO_EXTENSIONS", "1")

from floorwatch.gateway.web.server import StatusServer  # noqa: E402

__all__ = ["StatusServer"]
