"""Writing points to InfluxDB: synchronous v2 writes, retried with backoff until the database takes them.

The bridge acknowledges MQTT messages only after :meth:`InfluxWriter.write` returned, so retrying here
(instead of dropping) is what makes a database outage lose nothing: the broker keeps the unacknowledged
messages. Only data the database will never accept is given up on (:class:`WriteRejected`), and only a stop
request ends the retrying (:class:`WriteAborted`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from floorwatch.edge.backoff import Backoff

log = logging.getLogger(__name__)


class WriteRejected(Exception):
    """The database refused the data itself (HTTP 400/422: malformed or conflicting field types):
    retrying cannot help; the records go to the dead letters with this reason."""


class WriteAborted(Exception):
    """Shutdown was requested while a write was still failing; nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    """Where to write with the InfluxDB v2 write API.

    - InfluxDB 2.x / 3.x: ``url``, ``org``, ``bucket`` (3.x: the database) and an API token.
    - InfluxDB 1.8+ (compatibility API ``/api/v2/write``): ``org`` is ignored (write ``-``), ``bucket`` is
      ``database/retention-policy`` (or just ``database``), the token is ``username:password``
      (or any text when authentication is off).
    """

    url: str
    org: str
    bucket: str
    token: str
    timeout_s: float = 10.0
    gzip: bool = True


class InfluxWriter:
    """Synchronous v2 writes with retry and exponential backoff until the database takes the data."""

    def __init__(self, target: InfluxTarget, *, backoff_initial: float = 0.5, backoff_max: float = 30.0) -> None:
        self.target = target
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.client = InfluxDBClient(
            url=target.url, token=target.token, org=target.org,
            timeout=int(target.timeout_s * 1000), enable_gzip=target.gzip,
            retries=False,  # retries are ours: with backoff and a stop signal
        )
        self.api = self.client.write_api(write_options=SYNCHRONOUS)
        self.failures = 0  # consecutive failed attempts (for status/logging)

    def write(self, lines: list[str], stop: threading.Event | None = None) -> None:
        """Write ``lines`` (line protocol, ns precision). Returns once stored; retries transient failures
        (connection refused, timeouts, 5xx, 429, and 401/403/404 which an operator can fix while we wait).
        Raises :class:`WriteRejected` for data the database will never accept, :class:`WriteAborted` when
        ``stop`` is set while still failing."""
        if not lines:
            return
        # Each write starts with the short wait again: a database that was back for the last write is
        # likely back for this one.
        backoff = Backoff(first=self.backoff_initial, maximum=self.backoff_max)
        body = "\n".join(lines)
        while True:
            reason = self._attempt(body)
            if reason is None:
                return
            delay = backoff.next()
            self.failures += 1
            log.error("InfluxDB write to %s failed (attempt %d): %s; retrying in %.1f s",
                      self.target.url, self.failures, reason, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise WriteAborted(f"stopped while InfluxDB writes were failing: {reason}")
            else:
                time.sleep(delay)

    def _attempt(self, body: str) -> str | None:
        """One write: None once stored, else why it failed (worth retrying); raises :class:`WriteRejected`."""
        try:
            self.api.write(bucket=self.target.bucket, org=self.target.org, record=body,
                           write_precision=WritePrecision.NS)
        except ApiException as exc:
            if exc.status in (400, 422):
                raise WriteRejected(f"InfluxDB rejected the data ({exc.status}): {_body(exc)}") from None
            reason = f"HTTP {exc.status}: {_body(exc)}"
            if exc.status in (401, 403):
                reason += " (check the token / token_file and its write permission on the bucket)"
            elif exc.status == 404:
                reason += f" (does bucket/database {self.target.bucket!r} exist?)"
            return reason
        except (Urllib3Error, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # unknown: treat as transient — retrying loses nothing, dropping would
            return f"unexpected {type(exc).__name__}: {exc}"
        if self.failures:
            log.warning("InfluxDB write succeeded again after %d failed attempt(s)", self.failures)
        self.failures = 0
        return None

    def close(self) -> None:
        self.client.close()


def _body(exc: ApiException) -> str:
    """The database's own words about a refused write (its response body), shortened for a log line."""
    body: object = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return str(body or exc.reason)[:300]
