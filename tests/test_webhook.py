"""Webhook delivery against a real local HTTP server: retries, permanent failures, a bounded queue."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from floorwatch.edge.config import AlertsConfig
from floorwatch.edge.model import Alert, AlertState, Severity, loads
from floorwatch.edge.webhook import WebhookSender
from harness._util import free_port

FAST = {"backoff_min": 0.02, "backoff_max": 0.1}


def alert(seq: int) -> Alert:
    return Alert(ts_ns=1_700_000_000_000_000_000, seq=seq, subject="bore_diameter", kind="out_of_spec",
                 state=AlertState.RAISED, severity=Severity.CRITICAL, value=12.061, limit=12.05, lsl=11.95,
                 usl=12.05, message="bore_diameter 12.061 mm above USL 12.05 mm")


class Receiver:
    """A real HTTP server; ``plan`` holds the status (or "slow") to answer to each POST, then 200."""

    def __init__(self, plan: list[int | str]) -> None:
        self.plan = list(plan)
        self.requests: list[tuple[dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                answer = outer.plan.pop(0) if outer.plan else 200
                if answer == "slow":
                    time.sleep(0.5)
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/SECRET-TOKEN"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_fails_twice_then_succeeds_is_delivered_once() -> None:
    rx = Receiver([500, 503])
    try:
        async with WebhookSender(rx.url, **FAST) as hook:
            assert hook.send_alert(alert(9))
            await wait_for(lambda: hook.delivered == 1)
            stats = hook.stats()
        assert stats["attempts"] == 3 and stats["failed"] == 0 and stats["queued"] == 0
        assert len(rx.requests) == 3
        headers, body = rx.requests[-1]
        assert headers["Content-Type"] == "application/json"
        assert loads(body) == alert(9), "the body is the v1 alert payload"
        assert all(b == body for _, b in rx.requests), "a retry sends the same event"
    finally:
        rx.close()


async def test_permanently_down_counts_failures_and_never_blocks() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/T0/SECRET-TOKEN"  # nothing listens there
    async with WebhookSender(url, max_queue=10, max_attempts=3, **FAST) as hook:
        kept = [hook.send_alert(alert(i)) for i in range(1000)]
        # Submitting never waits for delivery: all 1000 were taken or dropped before the sender made its
        # first attempt (send_alert does not yield to the event loop, whatever the machine's speed).
        assert hook.stats()["attempts"] == 0
        assert kept.count(False) == hook.dropped >= 990 - 1
        await wait_for(lambda: hook.failed >= 2)
        error = hook.last_error
    assert "unreachable" in error and "alerts.webhook_url" in error
    assert "SECRET-TOKEN" not in error, "the token in the URL is not shown"
    assert hook.failed + hook.delivered + hook.dropped == 1000, "every event is accounted for"
    assert hook.delivered == 0


async def test_rejected_request_is_not_retried() -> None:
    rx = Receiver([400])
    try:
        async with WebhookSender(rx.url, **FAST) as hook:
            hook.send_alert(alert(1))
            hook.send_alert(alert(2))
            await wait_for(lambda: hook.failed + hook.delivered == 2)
        assert hook.failed == 1 and hook.delivered == 1 and len(rx.requests) == 2
        assert "HTTP 400" in hook.last_error and "alerts.webhook_url" in hook.last_error
        assert [json.loads(b)["seq"] for _, b in rx.requests] == [1, 2], "in order"
    finally:
        rx.close()


async def test_slow_receiver_times_out_and_is_retried() -> None:
    rx = Receiver(["slow"])
    try:
        async with WebhookSender(rx.url, timeout=0.2, **FAST) as hook:
            hook.send_alert(alert(1))
            await wait_for(lambda: hook.delivered == 1)
        assert hook.attempts == 2 and "did not answer within 0.2 s" in hook.last_error
    finally:
        rx.close()


def test_configuration() -> None:
    assert WebhookSender.from_config(AlertsConfig()) is None
    hook = WebhookSender.from_config(AlertsConfig(webhook_url="http://127.0.0.1:9/x", webhook_timeout=2.5))
    assert hook is not None and hook.timeout == 2.5
