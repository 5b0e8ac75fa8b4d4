"""End to end with real parts: simulated instruments on ptys and Modbus TCP → the gateway (a real
``floorwatch run`` process, or the service in-process) → a real Mosquitto → a test subscriber.

What downstream must be able to rely on: every numbered record arrives, readings in sequence order, no
gap after de-duplication by ``seq`` — across a broker outage and across a SIGKILL of the gateway — and the
alerts the scenario must raise are raised and cleared.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floorwatch.drivers.mitutoyo import MitutoyoSimulator
from floorwatch.drivers.simulate.scenario import Scenario
from floorwatch.edge.model import AlertState, decode_batch, loads
from floorwatch.edge.topics import parse_topic
from harness._util import free_port

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "floorwatch/v1"

pytestmark = pytest.mark.service


# ------------------------------------------------------------------------------------------ helpers


class Subscriber:
    """A downstream reader with a persistent session (QoS 1), as the bridge is: it sees every message the
    broker accepted, also those published while it was away."""

    def __init__(self, broker, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{time.time_ns()}",
                                  clean_session=False, protocol=paho.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "test subscriber could not connect"

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        client.subscribe(f"{PREFIX}/#", qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def records(self) -> list[tuple[str, object]]:
        """Numbered records in arrival order: ("readings", Reading) per row, ("stats", StatsSnapshot), ..."""
        out = []
        for topic, payload, _ in self.snapshot():
            parts = parse_topic(PREFIX, topic)
            if parts is None or parts.kind not in ("readings", "stats", "alerts", "events"):
                continue
            if parts.kind == "readings":
                out.extend(("readings", r) for r in decode_batch(json.loads(payload)))
            else:
                out.append((parts.kind, loads(payload)))
        return out

    def seqs(self) -> list[int]:
        return [obj.seq for _, obj in self.records()]

    def wait(self, predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"gateway exited with {proc.returncode} while waiting for {what}:\n"
                                     + (log.read_text()[-3000:] if log else ""))
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def presence(self) -> list[str]:
        return [json.loads(p)["state"] for t, p, _ in self.snapshot() if t.endswith("/presence") and p]


def write_config(path: Path, broker_url: str, data_dir: Path, instruments: str, characteristics: str,
                 extra: str = "") -> Path:
    path.write_text(f"""
[gateway]
site = "test"
line = "l1"
id = "gw"
data_dir = "{data_dir}"
log_level = "info"

{instruments}

{characteristics}

[mqtt]
url = "{broker_url}"
max_batch = 100
max_inflight = 20

[spool]
flush_interval = 0.1
max_bytes = "64 MiB"

[web]
bind = "127.0.0.1:{free_port()}"

[alerts]
debounce = 1
clear_after = 2
rule_clear_after = 2
{extra}
""")
    return path


def start_gateway(config: Path, log: Path) -> subprocess.Popen:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "floorwatch.gateway.cli", "run", "--config", str(config)],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def stop_gateway(proc: subprocess.Popen, log: Path, timeout: float = 20) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("gateway did not stop on SIGTERM:\n" + log.read_text()[-3000:]) from None


def assert_contiguous(seqs: list[int], start: int = 1) -> None:
    unique = sorted(set(seqs))
    assert unique, "nothing numbered arrived"
    missing = sorted(set(range(start, unique[-1] + 1)) - set(unique))
    assert unique[0] == start and not missing, f"sequence gap: missing {missing[:20]} (of {len(missing)})"


def assert_readings_in_order(sub: Subscriber) -> None:
    """After dropping duplicates (QoS 1 may repeat after a reconnect) readings arrive in seq order."""
    seen: set[int] = set()
    order = []
    for kind, obj in sub.records():
        if kind == "readings" and obj.seq not in seen:
            seen.add(obj.seq)
            order.append(obj.seq)
    assert order == sorted(order), "readings arrived out of order"


# ---------------------------------------------------------------------------- simulated end to end


SIM_INSTRUMENTS = """
[[instruments]]
name = "caliper-1"
driver = "mitutoyo"
simulate = "out_of_tolerance"

[[instruments]]
name = "scale-1"
driver = "mtsics"
simulate = "normal"
poll_interval = 0.1
[instruments.options]
weighing = "part"    # one weight per part: the empty pan is not a part
threshold = 50.0
zero_band = 5.0

[[instruments]]
name = "counter-1"
driver = "modbus"
simulate = "counter"
poll_interval = 0.2
"""

SIM_CHARACTERISTICS = """
[[characteristics]]
name = "bore_diameter"
instrument = "caliper-1"
unit = "mm"
nominal = 12.0
lsl = 11.95
usl = 12.05
rules = ["nelson_1"]
[characteristics.control]
center = 12.0
sigma = 0.004

[[characteristics]]
name = "net_weight"
instrument = "scale-1"
unit = "g"
nominal = 250.0
lsl = 240.0
usl = 260.0

[[characteristics]]
name = "parts_produced"
instrument = "counter-1"
unit = "pcs"
kind = "count"
"""


def test_simulated_instruments_to_subscriber_every_reading_stats_and_alerts(mosquitto, tmp_path):
    sub = Subscriber(mosquitto)
    config = write_config(tmp_path / "gw.toml", mosquitto.url, tmp_path / "data", SIM_INSTRUMENTS,
                          SIM_CHARACTERISTICS)
    log = tmp_path / "gateway.log"
    proc = start_gateway(config, log)
    try:
        def enough() -> bool:
            alerts = [o for k, o in sub.records() if k == "alerts" and o.kind == "out_of_spec"]
            return sum(a.state is AlertState.CLEARED for a in alerts) >= 2
        sub.wait(enough, 40, "out_of_spec raised and cleared twice", proc, log)
    finally:
        code = stop_gateway(proc, log)
    text = log.read_text()
    assert code == 0, text[-3000:]
    # the final records (stopping event, last snapshots) and the offline presence reach the subscriber
    sub.wait(lambda: "offline" in sub.presence(), 10, "presence offline")
    sub.wait(lambda: any(k == "events" and o.state == "stopping" for k, o in sub.records()), 10, "stopping")
    sub.close()
    records = sub.records()
    assert_contiguous([o.seq for _, o in records])
    assert_readings_in_order(sub)
    readings = [o for k, o in records if k == "readings"]
    by_char = {r.characteristic for r in readings}
    assert by_char == {"bore_diameter", "net_weight", "parts_produced"}
    assert all(r.unit == {"bore_diameter": "mm", "net_weight": "g", "parts_produced": "pcs"}[r.characteristic]
               for r in readings)
    stats = {o.characteristic: o for k, o in records if k == "stats"}
    assert set(stats) == {"bore_diameter", "net_weight"}  # counters have no SPC
    assert stats["bore_diameter"].n_total == sum(
        1 for r in readings if r.characteristic == "bore_diameter" and r.status.value == "ok")
    alerts = [o for k, o in records if k == "alerts"]
    oos = [a for a in alerts if a.kind == "out_of_spec"]
    assert oos[0].state is AlertState.RAISED and oos[0].subject == "bore_diameter"
    assert abs(oos[0].value - 12.0) > 0.05 and oos[0].limit in (11.95, 12.05)
    # every raised alert of the scenario is cleared again or still active and retained
    retained = {t for t, p, r in sub.snapshot() if "/active/" in t}
    assert any("out_of_spec" in t for t in retained)
    events = [(o.subject, o.state) for k, o in records if k == "events"]
    assert ("gateway", "started") in events and ("caliper-1", "online") in events
    assert sub.presence()[0] == "online" and sub.presence()[-1] == "offline"
    assert "event=gateway_ready" in text and "event=gateway_stopped" in text


# ------------------------------------------------------------------------------------ under load


FAST_CHARACTERISTICS = """
[[characteristics]]
name = "bore_diameter"
instrument = "caliper-1"
unit = "mm"
nominal = 12.0
lsl = 11.95
usl = 12.05
window = 200
[characteristics.control]
baseline = 20
"""


def fast_caliper(interval: float = 0.002) -> MitutoyoSimulator:
    return MitutoyoSimulator(Scenario("normal", nominal=12.0, sigma=0.004, tolerance=0.05, seed=3),
                             None, interval=interval)


def caliper_on(port: str) -> str:
    return f'[[instruments]]\nname = "caliper-1"\ndriver = "mitutoyo"\nport = "{port}"\ntimeout = 0.5\n'


async def wait_async(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
                     log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode} while waiting for {what}:\n"
                                 + (log.read_text()[-3000:] if log else ""))
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_broker_outage_under_load_loses_nothing_keeps_order(mosquitto, tmp_path):
    sub = Subscriber(mosquitto)
    async with fast_caliper() as sim:
        config = write_config(tmp_path / "gw.toml", mosquitto.url, tmp_path / "data",
                              caliper_on(sim.endpoint["port"]), FAST_CHARACTERISTICS)
        log = tmp_path / "gateway.log"
        proc = start_gateway(config, log)
        try:
            await wait_async(lambda: len(sub.seqs()) > 300, 20, "readings before the outage", proc, log)
            outage_from = time.time_ns()
            mosquitto.stop()
            await asyncio.sleep(3.0)  # the line keeps producing; the gateway spools
            outage_to = time.time_ns()
            mosquitto.start()
            await asyncio.sleep(2.0)
            before_stop = max(sub.seqs())
        finally:
            code = stop_gateway(proc, log)
    assert code == 0, log.read_text()[-3000:]
    await wait_async(lambda: any(k == "events" and o.state == "stopping" for k, o in sub.records()), 20,
                     "the backlog and the stopping event")
    sub.close()
    seqs = sub.seqs()
    assert_contiguous(seqs)
    assert_readings_in_order(sub)
    assert max(seqs) > before_stop
    readings = [o for k, o in sub.records() if k == "readings"]
    # The outage was under load: readings measured while the broker was down reached the subscriber later.
    # (How many depends on the machine's speed, so only that there were some is asserted.)
    assert any(outage_from <= r.ts_ns <= outage_to for r in readings)
    assert "event=broker_unavailable" in log.read_text()


async def test_sigkill_under_load_no_gap_and_statistics_restored(mosquitto, tmp_path):
    sub = Subscriber(mosquitto)
    async with fast_caliper() as sim:
        config = write_config(tmp_path / "gw.toml", mosquitto.url, tmp_path / "data",
                              caliper_on(sim.endpoint["port"]), FAST_CHARACTERISTICS)
        log = tmp_path / "gateway.log"
        proc = start_gateway(config, log)
        state_file = tmp_path / "data" / "spool.sqlite.state.json"
        await wait_async(state_file.exists, 20, "the first state save", proc, log)
        first_save = state_file.stat().st_mtime_ns
        # the state is saved every few seconds (not every flush: SD cards); wait for a periodic save
        await wait_async(lambda: state_file.stat().st_mtime_ns != first_save, 20, "a periodic state save",
                         proc, log)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        saved = json.loads(state_file.read_text())["characteristics"]["bore_diameter"]["stats"]
        from floorwatch.edge.stats import RollingStats

        n_saved = RollingStats.from_state(saved).snapshot().n_total
        assert n_saved > 500  # the periodic save happened under load
        proc = start_gateway(config, log)

        def restarted_seq() -> int | None:
            started = [o.seq for k, o in sub.records() if k == "events" and o.state == "started"]
            return started[1] if len(started) > 1 else None

        def after_restart() -> list:
            first = restarted_seq()
            return [] if first is None else [o for k, o in sub.records() if k == "stats" and o.seq > first]
        try:
            await wait_async(after_restart, 20, "a snapshot after the restart", proc, log)
        finally:
            code = stop_gateway(proc, log)
    assert code == 0
    await wait_async(lambda: any(k == "events" and o.state == "stopping" for k, o in sub.records()), 20,
                     "the stopping event")
    sub.close()
    assert_contiguous(sub.seqs())
    assert_readings_in_order(sub)
    after = after_restart()[0]
    # the restarted gateway continues the statistics from the saved state instead of starting from nothing
    assert after.n_total > n_saved and after.baseline_done
    started = [o for k, o in sub.records() if k == "events" and o.subject == "gateway" and o.state == "started"]
    assert len(started) == 2 and started[1].detail["restored"] is True
    # the last will told downstream the gateway died
    assert "offline" in sub.presence()


# ------------------------------------------------------------------- budget, credentials, TLS (in-process)


def _service_config(tmp_path: Path, url: str, **over) -> object:
    from floorwatch.edge.config import parse_config

    cfg = {
        "gateway": {"site": "test", "line": "l1", "id": "gw", "data_dir": str(tmp_path / "data")},
        "instruments": [{"name": "caliper-1", "driver": "mitutoyo", "port": "/dev/null"}],
        "characteristics": [{"name": "bore", "instrument": "caliper-1", "unit": "mm", "lsl": 11.95,
                             "usl": 12.05}],
        "mqtt": {"url": url, "max_batch": 500},
        "spool": {"flush_interval": 0.1},
        "web": {"enabled": False},
    }
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(cfg)


# Started as root, mosquitto drops to its own user, which cannot read secrets in pytest's private (0700)
# temporary directories; "user root" keeps it as the user that wrote them (no effect when not root).
STAY_USER = "user root\n" if os.geteuid() == 0 else ""


async def _feed(gw, n: int) -> None:
    from floorwatch.edge.model import Measurement

    for i in range(n):
        gw.ingest(Measurement(12.0 + (i % 7) * 0.001, "mm", ts_ns=time.time_ns(), instrument="caliper-1"))
        if i % 2000 == 1999:
            gw.flush()
            gw.tick()
            await asyncio.sleep(0)


async def test_disk_budget_exceeded_drops_oldest_and_reports_it(mosquitto_factory, tmp_path):
    import io

    from floorwatch.gateway.events import EventLog
    from floorwatch.gateway.service import Gateway

    broker = mosquitto_factory("max_queued_messages 0\n", start=False)  # down for now
    gw = Gateway(_service_config(tmp_path, broker.url, spool={"max_bytes": "1 MiB"}),
                 events=EventLog(stream=io.StringIO(), timestamps=False))
    seen = []
    gw.listeners.append(lambda kind, rec: seen.append(rec) if kind == "event" else None)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    await wait_async(lambda: gw.spool is not None and gw.alerts is not None, 10, "gateway start")
    await _feed(gw, 60_000)
    gw.flush()
    gw.tick()
    drops = [e for e in seen if e.subject == "spool" and e.state == "dropped"]
    assert drops, gw.events.stream.getvalue()[-2000:]
    assert drops[0].detail["count"] > 0 and drops[0].detail["first_seq"] >= 1
    assert drops[0].message.startswith("disk budget full: dropped ") and drops[0].detail["reason"] == "disk budget full"
    status = gw.status()
    assert status["spool"]["dropped_count"] > 0 and status["spool"]["bytes"] <= 1024**2
    assert "event=spool_dropped" in gw.events.stream.getvalue()
    # when the broker comes back, downstream is told: the gap is explained
    broker.start()
    sub = Subscriber(broker)
    await wait_async(lambda: any(k == "events" and o.state == "dropped" for k, o in sub.records()), 30,
                     "the drop report over MQTT")
    stop.set()
    assert await task == 0
    sub.close()


async def test_wrong_credentials_clear_error_and_data_kept(mosquitto_factory, tmp_path, request):
    from floorwatch.gateway.events import EventLog
    from floorwatch.gateway.service import Gateway
    from harness._util import require_binary

    passwd = require_binary("mosquitto_passwd")
    pwfile = tmp_path / "passwd"
    subprocess.run([passwd, "-b", "-c", str(pwfile), "gw", "right-password"], check=True)
    pwfile.chmod(0o600)
    port = free_port()
    broker = mosquitto_factory(f"{STAY_USER}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\n",
                               port=port, listener=False)
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong-password\n")
    import io

    out = io.StringIO()
    gw = Gateway(_service_config(tmp_path, broker.url, mqtt={"username": "gw", "password_file": str(secret)}),
                 events=EventLog(stream=out, timestamps=False))
    gw.events.attach("floorwatch.edge")
    request.addfinalizer(gw.events.detach)  # the edge loggers go back to the test's capture afterwards
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    await wait_async(lambda: gw.publisher is not None and gw.publisher.last_error, 15, "a broker error")
    await _feed(gw, 500)
    gw.flush()
    error = gw.publisher.last_error
    assert "not authorised" in error or "not authorized" in error, error
    assert "password" in error  # says what to fix
    assert gw.status()["broker"]["connected"] is False and gw.status()["broker"]["last_error"] == error
    assert gw.spool.backlog() > 0
    stop.set()
    assert await task == 0
    assert "wrong-password" not in out.getvalue()
    # the data is still in the spool for the next start
    from floorwatch.edge.spool import Spool

    with Spool(gw.spool_path, max_bytes=64 * 1024**2) as spool:
        rows = [r for rec in spool.pending(10_000) if rec.topic.endswith("/readings")
                for r in decode_batch(json.loads(rec.payload))]
    assert len(rows) == 500


async def test_tls_without_the_broker_ca_fails_verification_and_keeps_data(mosquitto_factory, tmp_path):
    from floorwatch.gateway.events import EventLog
    from floorwatch.gateway.service import Gateway
    from harness._util import require_binary

    openssl = require_binary("openssl")
    key, cert = tmp_path / "broker.key", tmp_path / "broker.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    broker = mosquitto_factory(f"{STAY_USER}listener {port} 127.0.0.1\nallow_anonymous true\ncertfile {cert}\n"
                               f"keyfile {key}\n",
                               port=port, listener=False)
    import io

    gw = Gateway(_service_config(tmp_path, f"mqtts://127.0.0.1:{broker.port}"),
                 events=EventLog(stream=io.StringIO(), timestamps=False))
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    await wait_async(lambda: gw.publisher is not None and gw.publisher.last_error, 15, "a TLS error")
    await _feed(gw, 200)
    gw.flush()
    error = gw.publisher.last_error
    assert "certificate" in error.lower() and "ca_file" in error, error
    assert gw.spool.backlog() > 0 and not gw.publisher.connected
    stop.set()
    assert await task == 0
