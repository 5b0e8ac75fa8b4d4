"""Optional webhook delivery of alerts: an HTTP POST per alert event, with retry and backoff.

Why: some plants want a raised alert in a chat channel or a ticket system without running anything
that speaks MQTT. The webhook is a *side* channel: MQTT through the spool stays the record of truth, so
this module may give up on an alert, but it must never slow the measuring pipeline down. Hence:

* ``submit()`` / ``send_alert()`` only append to a bounded in-memory queue and return at once; when the
  queue is full the oldest waiting event is dropped and counted (``dropped``);
* one worker task delivers events in order, running the blocking ``urllib`` POST in a thread;
* a failed POST is retried with exponential backoff when retrying can help (no connection, timeout,
  HTTP 408/429/5xx) and given up at once when it cannot (other 4xx: the receiver rejects the request);
  every given-up event is counted (``failed``) and the reason kept in ``last_error``;
* the URL may carry a token (Slack-style hooks put it in the path), so messages and logs show only
  ``scheme://host``.

The body is the alert's v1 JSON (``docs/payloads.md``), so a receiver can de-duplicate by ``seq``.

Usage::

    hook = WebhookSender.from_config(config.alerts)      # None when no webhook_url is configured
    if hook:
        async with hook:
            hook.send_alert(alert)

Everything here is additive to the shared contract (which only asks for "HTTP POST with retry and backoff,
bounded queue, failures counted, never blocking the pipeline").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections import deque
from urllib.parse import urlsplit

from floorwatch import edge
from floorwatch.edge.backoff import Backoff
from floorwatch.edge.config import AlertsConfig
from floorwatch.edge.model import Alert, dumps

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def origin_only(url: str) -> str:
    """The URL without anything that may be a secret (userinfo, path, query).

    >>> origin_only("https://user:pw@hooks.example.com/services/T0/B0/XYZ?token=abc")
    'https://hooks.example.com'
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class WebhookSender:
    """Bounded, ordered, retrying HTTP POST of alert events; see the module docstring."""

    def __init__(self, url: str, *, timeout: float = 5.0, max_queue: int = 1000, max_attempts: int = 5,
                 backoff_min: float = 0.5, backoff_max: float = 30.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"webhook URL {origin_only(url)!r} must be http:// or https:// (alerts.webhook_url)")
        if max_queue < 1 or max_attempts < 1:
            raise ValueError("webhook max_queue and max_attempts must be at least 1")
        self.url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_min = backoff_min
        self.backoff_max = max(backoff_max, backoff_min)
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._busy = False
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.attempts = 0
        self.last_error = ""

    @classmethod
    def from_config(cls, config: AlertsConfig, **kwargs: float | int) -> WebhookSender | None:
        if not config.webhook_url:
            return None
        return cls(config.webhook_url, timeout=config.webhook_timeout, **kwargs)  # type: ignore[arg-type]

    # --- the pipeline's side: never waits -----------------------------------------------------------------

    def submit(self, body: bytes) -> bool:
        """Queue one JSON body; False when the queue was full and the oldest event had to be dropped."""
        kept = True
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self.dropped += 1
            kept = False
            log.warning("webhook %s: queue full (%d), dropped the oldest alert event", origin_only(self.url),
                        self._max_queue)
        self._queue.append(body)
        self._wake.set()
        return kept

    def send_alert(self, alert: Alert) -> bool:
        return self.submit(dumps(alert))

    # --- lifecycle ------------------------------------------------------------------------------------

    async def __aenter__(self) -> WebhookSender:
        self._wake = asyncio.Event()
        if self._queue:
            self._wake.set()
        self._task = asyncio.create_task(self._worker(), name="floorwatch-webhook")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Give queued events ``drain_timeout`` seconds to go out, then stop (what is left is counted)."""
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while (self._queue or self._busy) and loop.time() < deadline and not self._task.done():
            await asyncio.sleep(0.02)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._queue:
            self.failed += len(self._queue)
            log.warning("webhook %s: %d alert events not delivered at shutdown", origin_only(self.url),
                        len(self._queue))
            self._queue.clear()

    # --- delivery -------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            body = self._queue.popleft()
            self._busy = True
            try:
                await self._deliver(body)
            finally:
                self._busy = False

    async def _deliver(self, body: bytes) -> None:
        # each event starts from the first wait: one receiver's bad minute does not slow the next event
        backoff = Backoff(first=self.backoff_min, maximum=self.backoff_max, jitter=0.2)
        for attempt in range(1, self.max_attempts + 1):
            self.attempts += 1
            ok, retry, error = await asyncio.to_thread(self._post, body)
            if ok:
                self.delivered += 1
                return
            self.last_error = error
            if not retry or attempt == self.max_attempts:
                self.failed += 1
                log.warning("webhook: alert event not delivered after %d attempt(s): %s", attempt, error)
                return
            await backoff.sleep()

    def _post(self, body: bytes) -> tuple[bool, bool, str]:
        """One POST (in a worker thread): (delivered, worth retrying, error message)."""
        where = origin_only(self.url)
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"floorwatch/{edge.__version__}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
                return True, False, ""
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRY_STATUS:
                return False, True, f"webhook {where} answered HTTP {exc.code} {exc.reason}; retrying"
            return False, False, (f"webhook {where} rejected the alert (HTTP {exc.code} {exc.reason}); check "
                                  "alerts.webhook_url and what the receiver expects")
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                return False, True, f"webhook {where} did not answer within {self.timeout:g} s (alerts.webhook_timeout)"
            text = getattr(reason, "strerror", None) or str(reason)
            return False, True, f"webhook {where} unreachable: {text}; check alerts.webhook_url and the network"
        except TimeoutError:
            return False, True, f"webhook {where} did not answer within {self.timeout:g} s (alerts.webhook_timeout)"
        except (OSError, ValueError) as exc:
            return False, True, f"webhook {where} failed: {exc}"

    def stats(self) -> dict:
        return {"queued": len(self._queue), "delivered": self.delivered, "failed": self.failed,
                "dropped": self.dropped, "attempts": self.attempts, "last_error": self.last_error}
