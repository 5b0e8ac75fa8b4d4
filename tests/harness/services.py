"""Real servers for the tests: Mosquitto, InfluxDB 1.x (v1 write + InfluxQL) and VictoriaMetrics (InfluxDB v2
write API). Each starts on free loopback ports in its own temporary directory and is stopped after the test.

Fixtures:
- ``mosquitto``: a running broker (default configuration: anonymous on loopback, persistence on).
- ``mosquitto_factory(conf="", **kw)``: start brokers with extra configuration lines (e.g. the shipped
  deploy/cloud/mosquitto.conf with its paths rewritten); each returned broker can ``stop()`` and ``start()``
  again on the same port with the same persistence — for outage tests.
- ``influxdb``: InfluxDB 1.x with database ``floorwatch``; ``.write(lines)``, ``.query(q)``.
- ``victoria``: VictoriaMetrics accepting ``/api/v2/write``; ``.url``, ``.export(match)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._util import free_port, require_binary, stop, wait_for_port


class Broker:
    """A real Mosquitto process. ``url`` is what a Floorwatch [mqtt] url takes."""

    def __init__(self, workdir: Path, conf: str = "", port: int | None = None, listener: bool = True) -> None:
        self.binary = require_binary("mosquitto")
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log = workdir / "mosquitto.log"
        (workdir / "persist").mkdir(exist_ok=True)
        head = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n" if listener else ""
        # Started as root, Mosquitto drops to the 'mosquitto' user, which cannot write the private temp
        # directory: persistence (and so sessions across a restart) would silently not work.
        if os.geteuid() == 0 and not any(line.startswith("user ") for line in conf.splitlines()):
            head = "user root\n" + head
        self.conf_path = workdir / "mosquitto.conf"
        self.conf_path.write_text(
            head
            + f"persistence true\npersistence_location {workdir / 'persist'}/\n"
            + f"log_dest file {self.log}\nlog_type all\n"
            + conf
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.proc, log=self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    brokers: list[Broker] = []

    def make(conf: str = "", port: int | None = None, listener: bool = True, start: bool = True) -> Broker:
        broker = Broker(tmp_path_factory.mktemp("mosquitto"), conf, port, listener)
        brokers.append(broker)
        return broker.start() if start else broker

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture
def mosquitto(mosquitto_factory) -> Broker:
    # The default max_queued_messages (1000) silently drops messages for offline subscribers
    # (reference/mqtt.md): tests of "nothing lost" run with it raised, as the shipped configuration does.
    return mosquitto_factory("max_queued_messages 0\nmax_inflight_messages 20\n")


def _http(method: str, url: str, data: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class InfluxV1:
    """A real InfluxDB 1.x: the v1 ``/write`` endpoint and InfluxQL ``/query``."""

    database = "floorwatch"

    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("influxd")
        self.port, rpc = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "influxd.log"
        conf = workdir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n  query-log-enabled = false\n'
            f"[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([self.binary, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, log=self.log, timeout=30)
        deadline = time.monotonic() + 20
        while _http("GET", f"{self.url}/ping")[0] != 204:
            if time.monotonic() > deadline:
                raise TimeoutError("influxd did not answer /ping")
            time.sleep(0.1)
        self.query(f'CREATE DATABASE "{self.database}"')

    def write(self, lines: str | list[str], precision: str = "ns") -> None:
        body = "\n".join(lines) if isinstance(lines, list) else lines
        qs = urllib.parse.urlencode({"db": self.database, "precision": precision})
        status, text = _http("POST", f"{self.url}/write?{qs}", body.encode())
        if status != 204:
            raise RuntimeError(f"influxdb write failed ({status}): {text[:500]!r}")

    def query(self, q: str, epoch: str = "ns") -> dict:
        qs = urllib.parse.urlencode({"db": self.database, "q": q, "epoch": epoch})
        status, text = _http("POST", f"{self.url}/query?{qs}")
        if status != 200:
            raise RuntimeError(f"influxdb query failed ({status}): {text[:500]!r}")
        return json.loads(text)

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxV1]:
    server = InfluxV1(tmp_path_factory.mktemp("influxdb"))
    yield server
    server.stop()


class Victoria:
    """A real VictoriaMetrics: accepts influxdb-client's v2 writes (``/api/v2/write``) unchanged.

    ``stop()``/``start()`` keep the same port and data, for database-outage tests.
    """

    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("victoria-metrics")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "victoria.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"-storageDataPath={self.workdir / 'data'}",
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    "-retentionPeriod=100y",  # tests write fixed timestamps from the past
                    "-search.disableCache",
                    "-search.latencyOffset=0s",
                    "-loggerLevel=WARN",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, log=self.log, timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def flush(self) -> None:
        """Make just-written data searchable (VictoriaMetrics buffers new rows for about a second)."""
        _http("GET", f"{self.url}/internal/force_flush")

    def export(self, match: str = '{__name__!=""}') -> list[dict]:
        """Every series matching a selector, with all its values and timestamps (ms)."""
        self.flush()
        qs = urllib.parse.urlencode({"match[]": match, "start": "0"})
        status, text = _http("GET", f"{self.url}/api/v1/export?{qs}")
        if status != 200:
            raise RuntimeError(f"victoria export failed ({status}): {text[:500]!r}")
        return [json.loads(line) for line in text.decode().splitlines() if line.strip()]


@pytest.fixture
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victoria]:
    server = Victoria(tmp_path_factory.mktemp("victoria"))
    yield server
    server.stop()
