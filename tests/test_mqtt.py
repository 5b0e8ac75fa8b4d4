"""The MQTT publisher against a real Mosquitto: order, outages, disk budget, presence and last will, TLS,
credentials and the MQTT 5 → 3.1.1 fallback.

A real paho subscriber with a persistent session (QoS 1) plays the downstream bridge: it de-duplicates by
sequence number, as docs/payloads.md tells readers to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from floorwatch.edge.config import MqttConfig
from floorwatch.edge.model import Reading, decode_batch, encode_batch
from floorwatch.edge.mqtt import MqttPublisher
from floorwatch.edge.spool import Spool
from floorwatch.edge.topics import Topics
from harness._util import free_port, require_binary, spool_reports

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024**2
TOPICS = Topics("floorwatch/v1", "plant-1", "line-2", "gw-test")
# Started as root, mosquitto switches to the "mosquitto" user, who cannot read or write the test's private
# temporary directory (certificates, password file, its persistence file — without which a restarted broker
# forgets the subscriber's session): keep root then. As another user it does not switch at all.
AS_ROOT = "user root\n" if os.geteuid() == 0 else ""
# The harness's `mosquitto` fixture settings, plus the above: the outage tests restart the broker.
DURABLE = AS_ROOT + "max_queued_messages 0\nmax_inflight_messages 20\n"
FAST = {"backoff_min": 0.05, "backoff_max": 0.3, "connect_timeout": 5.0}


class Subscriber:
    """A downstream reader: paho, persistent session, QoS 1, reconnecting by itself."""

    def __init__(self, broker, topic: str = Topics.subscription("floorwatch/v1"), client_id: str = "bridge",
                 clean: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv311, clean_session=clean)
        self.client.reconnect_delay_set(0.05, 0.3)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def readings_seqs(self) -> list[int]:
        with self.lock:
            msgs = [m for m in self.messages if m[0] == TOPICS.readings]
        return [r.seq for _, payload, _ in msgs for r in decode_batch(json.loads(payload))]

    def presence(self) -> list[tuple[str, bool]]:
        with self.lock:
            return [(json.loads(p)["state"], retain) for t, p, retain in self.messages if t == TOPICS.presence and p]

    def wait(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; received {len(self.messages)} messages"
            time.sleep(0.02)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def add_batch(spool: Spool, n: int) -> None:
    first = spool.issue(n)
    rows = [Reading(ts_ns=time.time_ns(), seq=first + i, instrument="caliper-1", characteristic="bore_diameter",
                    value=12.0 + i * 1e-3, unit="mm") for i in range(n)]
    spool.add(TOPICS.readings, json.dumps(encode_batch(rows)).encode(), first_seq=first, last_seq=first + n - 1)


def assert_complete_in_order(seqs: list[int], expected: range | list[int]) -> None:
    """Every expected number arrived; after dropping duplicates the order is the sequence order."""
    first_seen: list[int] = []
    seen: set[int] = set()
    for s in seqs:
        if s not in seen:
            seen.add(s)
            first_seen.append(s)
    assert first_seen == list(expected), (
        f"missing {sorted(set(expected) - seen)[:10]}, out of order or unexpected: "
        f"{[s for a, s in zip(first_seen, first_seen[1:], strict=False) if s <= a][:10]}")


async def produce(spool: Spool, stop: asyncio.Event, every: float = 0.01, n: int = 50) -> None:
    """The gateway's side: new data keeps arriving, flushed in batches."""
    i = 0
    while not stop.is_set():
        add_batch(spool, n)
        i += 1
        if i % 5 == 0:
            spool.flush()
        await asyncio.sleep(every)
    spool.flush()


async def test_subscriber_receives_every_record_in_order_while_new_data_arrives(mosquitto, tmp_path) -> None:
    sub = Subscriber(mosquitto)
    with Spool(tmp_path / "spool.sqlite", max_bytes=64 * MiB) as spool:
        for _ in range(200):  # a backlog from before the gateway connected
            add_batch(spool, 100)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=mosquitto.url), TOPICS, spool, client_id="gw-test",
                                 **FAST) as pub:
            task = asyncio.create_task(pub.run())
            stop = asyncio.Event()
            producer = asyncio.create_task(produce(spool, stop))
            await asyncio.sleep(0.6)
            stop.set()
            await producer
            assert await pub.wait_drained(15), pub.stats()
            stats = pub.stats()
            assert stats["connected"] and stats["protocol"] == "5" and stats["last_error"] == ""
            assert stats["acked"] == stats["published"] >= 201 and stats["discarded_by_broker"] == 0
            total = spool.last_seq
        assert task.done()
        assert spool.backlog() == 0
    sub.wait(lambda: len(set(sub.readings_seqs())) >= total)
    assert_complete_in_order(sub.readings_seqs(), range(1, total + 1))
    sub.wait(lambda: sub.presence()[-1:] == [("offline", False)])
    assert sub.presence()[0] == ("online", False)
    sub.close()
    # A newcomer sees the retained presence: the gateway said goodbye.
    late = Subscriber(mosquitto, TOPICS.presence, client_id="late", clean=True)
    late.wait(lambda: late.presence() == [("offline", True)])
    late.close()


async def test_broker_outage_under_load_loses_nothing_and_keeps_order(mosquitto_factory, tmp_path) -> None:
    mosquitto = mosquitto_factory(DURABLE)
    sub = Subscriber(mosquitto)
    errors: list[str] = []
    with Spool(tmp_path / "spool.sqlite", max_bytes=64 * MiB) as spool:
        async with MqttPublisher(MqttConfig(url=mosquitto.url), TOPICS, spool, client_id="gw-test",
                                 **FAST) as pub:
            asyncio.create_task(pub.run())
            stop = asyncio.Event()
            producer = asyncio.create_task(produce(spool, stop, every=0.005))
            await asyncio.sleep(0.5)
            assert pub.connected
            await asyncio.to_thread(mosquitto.stop)
            for _ in range(30):  # 1.5 s of outage with data still arriving
                await asyncio.sleep(0.05)
                errors.append(pub.last_error)
            backlog_in_outage = spool.backlog()
            await asyncio.to_thread(mosquitto.start)
            await asyncio.sleep(0.5)
            stop.set()
            await producer
            assert await pub.wait_drained(20), pub.stats()
            assert pub.reconnects >= 1
            total = spool.last_seq
    assert backlog_in_outage > 20, "the outage built a backlog in the spool"
    assert any("connection refused" in e and "mqtt.url" in e for e in errors), set(errors)
    sub.wait(lambda: len(set(sub.readings_seqs())) >= total, timeout=20)
    assert_complete_in_order(sub.readings_seqs(), range(1, total + 1))
    sub.close()


async def test_budget_exceeded_during_outage_drops_oldest_and_says_so(mosquitto_factory, tmp_path) -> None:
    mosquitto = mosquitto_factory(DURABLE)
    sub = Subscriber(mosquitto)
    mosquitto.stop()
    with Spool(tmp_path / "spool.sqlite", max_bytes=256 * 1024) as spool:
        async with MqttPublisher(MqttConfig(url=mosquitto.url), TOPICS, spool, client_id="gw-test",
                                 **FAST) as pub:
            asyncio.create_task(pub.run())
            for _ in range(60):
                add_batch(spool, 200)
                spool.flush()
            dropped = [d for kind, d in spool_reports(spool) if kind == "dropped"]
            assert dropped and not pub.connected
            await asyncio.to_thread(mosquitto.start)
            assert await pub.wait_drained(15), pub.stats()
            stats = spool.stats()
    lost = set().union(*(range(d["first_seq"], d["last_seq"] + 1) for d in dropped))
    assert stats["dropped_count"] == len(lost) and min(lost) == 1, "the oldest went first and were counted"
    kept = [s for s in range(1, 60 * 200 + 1) if s not in lost]
    sub.wait(lambda: len(set(sub.readings_seqs())) >= len(kept))
    assert_complete_in_order(sub.readings_seqs(), kept)
    sub.close()


PUBLISHER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from floorwatch.edge.config import MqttConfig
    from floorwatch.edge.mqtt import MqttPublisher
    from floorwatch.edge.spool import Spool
    from floorwatch.edge.topics import Topics

    async def main():
        topics = Topics("floorwatch/v1", "plant-1", "line-2", "gw-test")
        with Spool(Path(sys.argv[2]), max_bytes=64 * 1024**2) as spool:
            async with MqttPublisher(MqttConfig(url=sys.argv[1]), topics, spool, client_id="gw-kill") as pub:
                task = asyncio.create_task(pub.run())
                while not pub.connected:
                    await asyncio.sleep(0.01)
                print("connected", flush=True)
                await task

    asyncio.run(main())
""")


def test_last_will_offline_is_delivered_when_the_gateway_is_killed(mosquitto, tmp_path) -> None:
    sub = Subscriber(mosquitto, TOPICS.presence, client_id="watch", clean=True)
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, mosquitto.url, str(tmp_path / "s.sqlite")],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "connected", f"publisher did not connect (rc={proc.poll()})"
        sub.wait(lambda: ("online", False) in sub.presence())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    sub.wait(lambda: sub.presence()[-1][0] == "offline", timeout=10)
    sub.close()
    late = Subscriber(mosquitto, TOPICS.presence, client_id="late", clean=True)
    late.wait(lambda: late.presence() == [("offline", True)])
    late.close()


# --- TLS and credentials ------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(directory: Path, name: str) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue_cert(directory: Path, ca: tuple, name: str, *, server: bool) -> tuple[Path, Path]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def tls_broker(mosquitto_factory, certs: Path, *, require_client_cert: bool = False):
    ca = make_ca(certs, "plant-ca")
    server_cert, server_key = issue_cert(certs, ca, "broker", server=True)
    port = free_port()
    conf = (f"{AS_ROOT}listener {port} 127.0.0.1\nallow_anonymous true\ncafile {certs / 'plant-ca.pem'}\n"
            f"certfile {server_cert}\nkeyfile {server_key}\n")
    if require_client_cert:
        conf += "require_certificate true\n"
    return mosquitto_factory(conf, port=port, listener=False), ca


async def run_until(pub: MqttPublisher, predicate, timeout: float = 10.0) -> None:
    task = asyncio.create_task(pub.run())
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, pub.stats()
        assert not task.done() or task.exception() is None, task.exception()
        await asyncio.sleep(0.02)


async def test_tls_verifies_the_broker_and_a_wrong_ca_keeps_the_data(mosquitto_factory, tmp_path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    broker, _ = tls_broker(mosquitto_factory, certs)
    make_ca(certs, "other-ca")
    url = f"mqtts://127.0.0.1:{broker.port}"
    with Spool(tmp_path / "spool.sqlite", max_bytes=8 * MiB) as spool:
        for _ in range(5):
            add_batch(spool, 10)
        spool.flush()
        wrong = MqttConfig(url=url, ca_file=certs / "other-ca.pem")
        async with MqttPublisher(wrong, TOPICS, spool, client_id="gw-tls", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "TLS: certificate verify failed" in pub.last_error and "mqtt.ca_file" in pub.last_error
            await asyncio.sleep(0.3)
            assert not pub.connected and spool.backlog() == 5
        # System CAs do not know the plant's CA either: the same clear error.
        async with MqttPublisher(MqttConfig(url=url), TOPICS, spool, client_id="gw-tls", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "certificate verify failed" in pub.last_error and "system CAs" in pub.last_error
        assert spool.backlog() == 5
        # A plain-MQTT URL against the TLS port, and a missing CA file, also say what to change.
        async with MqttPublisher(MqttConfig(url=url, ca_file=certs / "nope.pem"), TOPICS, spool,
                                 client_id="gw-tls", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "mqtt.ca_file" in pub.last_error and "does not exist" in pub.last_error
        right = MqttConfig(url=url, ca_file=certs / "plant-ca.pem")
        async with MqttPublisher(right, TOPICS, spool, client_id="gw-tls", **FAST) as pub:
            await run_until(pub, lambda: spool.backlog() == 0)
            assert pub.stats()["url"].startswith("mqtts://")


async def test_tls_client_certificate(mosquitto_factory, tmp_path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    broker, ca = tls_broker(mosquitto_factory, certs, require_client_cert=True)
    client_cert, client_key = issue_cert(certs, ca, "gw-01", server=False)
    url = f"mqtts://127.0.0.1:{broker.port}"
    with Spool(tmp_path / "spool.sqlite", max_bytes=8 * MiB) as spool:
        add_batch(spool, 10)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=url, ca_file=certs / "plant-ca.pem"), TOPICS, spool,
                                 client_id="gw-tls", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "mqtt.cert_file" in pub.last_error, pub.last_error
            assert spool.backlog() == 1
        cfg = MqttConfig(url=url, ca_file=certs / "plant-ca.pem", cert_file=client_cert, key_file=client_key)
        async with MqttPublisher(cfg, TOPICS, spool, client_id="gw-tls", **FAST) as pub:
            await run_until(pub, lambda: spool.backlog() == 0)


async def test_wrong_credentials_give_not_authorised_and_keep_the_data(mosquitto_factory, tmp_path,
                                                                       monkeypatch) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run([require_binary("mosquitto_passwd"), "-c", "-b", str(passwd), "gw-01", "s3cret-pw"],
                   check=True, capture_output=True)
    port = free_port()
    broker = mosquitto_factory(f"{AS_ROOT}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n",
                               port=port, listener=False)
    wrong_file = tmp_path / "mqtt-password"
    wrong_file.write_text("guessed\n")
    with Spool(tmp_path / "spool.sqlite", max_bytes=8 * MiB) as spool:
        add_batch(spool, 10)
        spool.flush()
        cfg = MqttConfig(url=broker.url, username="gw-01", password_file=wrong_file)
        async with MqttPublisher(cfg, TOPICS, spool, client_id="gw-auth", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "not authorised" in pub.last_error and "mqtt.password_file" in pub.last_error
            assert "s3cret" not in pub.last_error and "guessed" not in pub.last_error
            assert spool.backlog() == 1 and not pub.connected
        async with MqttPublisher(MqttConfig(url=broker.url), TOPICS, spool, client_id="gw-auth", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "not authorised" in pub.last_error and "anonymous" in pub.last_error
        monkeypatch.setenv("FW_TEST_MQTT_PASSWORD", "s3cret-pw")
        cfg = MqttConfig(url=broker.url, username="gw-01", password_env="FW_TEST_MQTT_PASSWORD")
        async with MqttPublisher(cfg, TOPICS, spool, client_id="gw-auth", **FAST) as pub:
            await run_until(pub, lambda: spool.backlog() == 0)
            assert pub.last_error == ""


async def test_unset_password_variable_is_a_clear_error(mosquitto, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FW_TEST_UNSET", raising=False)
    cfg = MqttConfig(url=mosquitto.url, username="gw-01", password_env="FW_TEST_UNSET")
    with Spool(tmp_path / "spool.sqlite", max_bytes=8 * MiB) as spool:
        async with MqttPublisher(cfg, TOPICS, spool, client_id="gw", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "FW_TEST_UNSET is not set" in pub.last_error


# --- protocol versions ----------------------------------------------------------------------------------


class LegacyBrokerFront:
    """A TCP front for the real broker that behaves like an MQTT 3.1.1-only broker: it answers an MQTT 5
    CONNECT with the 3.1.1 refusal "unacceptable protocol version" and forwards everything else."""

    def __init__(self, broker) -> None:
        self.broker = broker
        self.refused = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.read(64)
        # CONNECT: fixed header, remaining length, "\x00\x04MQTT", protocol level
        level = head[head.index(b"MQTT") + 4] if b"MQTT" in head else 0
        if level == 5:
            self.refused += 1
            writer.write(b"\x20\x02\x00\x01")
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
        up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_auto_protocol_falls_back_to_3_1_1(mosquitto, tmp_path) -> None:
    front = LegacyBrokerFront(mosquitto)
    await front.start()
    sub = Subscriber(mosquitto)
    with Spool(tmp_path / "spool.sqlite", max_bytes=8 * MiB) as spool:
        for _ in range(10):
            add_batch(spool, 10)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=f"mqtt://127.0.0.1:{front.port}"), TOPICS, spool,
                                 client_id="gw-old", **FAST) as pub:
            await run_until(pub, lambda: spool.backlog() == 0)
            assert pub.stats()["protocol"] == "3.1.1" and front.refused == 1
        # Asked for MQTT 5 only, the same broker gives a clear error instead.
        add_batch(spool, 10)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=f"mqtt://127.0.0.1:{front.port}", protocol="5"), TOPICS,
                                 spool, client_id="gw-old", **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert "does not support this MQTT version" in pub.last_error and "mqtt.protocol" in pub.last_error
            assert spool.backlog() == 1
    sub.wait(lambda: len(set(sub.readings_seqs())) >= 100)
    assert_complete_in_order(sub.readings_seqs(), range(1, 101))
    sub.close()
    await front.close()


async def test_explicit_3_1_1_and_unreachable_broker(mosquitto, tmp_path) -> None:
    with Spool(tmp_path / "spool.sqlite", max_bytes=8 * MiB) as spool:
        add_batch(spool, 10)
        spool.flush()
        nobody = free_port()
        async with MqttPublisher(MqttConfig(url=f"mqtt://127.0.0.1:{nobody}"), TOPICS, spool, client_id="gw",
                                 **FAST) as pub:
            await run_until(pub, lambda: pub.last_error)
            assert f"127.0.0.1:{nobody}: connection refused" in pub.last_error
            assert pub.stats()["protocol"] == "5", "no fallback when the broker was never reached"
        async with MqttPublisher(MqttConfig(url=mosquitto.url, protocol="3.1.1"), TOPICS, spool, client_id="gw",
                                 **FAST) as pub:
            await run_until(pub, lambda: spool.backlog() == 0)
            assert pub.protocol == "3.1.1"


async def test_a_large_backlog_replays_completely_while_the_spool_is_flushed(mosquitto, tmp_path) -> None:
    """An outage's backlog (2000 batches of 500 readings) drains to the broker while the gateway keeps
    flushing its spool: every batch is acknowledged and removed. How fast is a benchmark
    (bench/bench_replay.py, docs/benchmarks.md), not asserted here; the timeout is only a hang guard."""
    rows = [Reading(ts_ns=time.time_ns(), seq=1 + i, instrument="caliper-1", characteristic="bore_diameter",
                    value=12.0 + i * 1e-6, unit="mm") for i in range(500)]
    payload = json.dumps(encode_batch(rows)).encode()
    with Spool(tmp_path / "spool.sqlite", max_bytes=512 * MiB) as spool:
        for _ in range(2000):
            seq = spool.issue(500)
            spool.add(TOPICS.readings, payload, first_seq=seq, last_seq=seq + 499)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=mosquitto.url), TOPICS, spool, client_id="gw-fast", **FAST) as pub:
            asyncio.create_task(pub.run())
            flusher_stop = asyncio.Event()

            async def flush_acknowledged_like_the_gateway() -> None:
                while not flusher_stop.is_set():
                    await asyncio.sleep(0.2)
                    spool.flush()

            flusher = asyncio.create_task(flush_acknowledged_like_the_gateway())
            assert await pub.wait_drained(300), pub.stats()
            flusher_stop.set()
            await flusher
            spool.flush()
            assert spool.backlog() == 0 and pub.stats()["published"] >= 2000, pub.stats()


async def test_a_record_larger_than_the_broker_accepts_is_dropped_and_reported(mosquitto_factory, tmp_path) -> None:
    """A broker refuses packets above its maximum packet size by hanging up. Sent again after each
    reconnect, such a record would block everything behind it for ever. The broker announces its limit
    (MQTT 5 CONNACK): a record beyond it can never be delivered, so it is dropped, counted and reported
    (a 'dropped' spool event, explaining the gap) and the records behind it flow."""
    broker = mosquitto_factory(AS_ROOT + "max_packet_size 20000\n")
    sub = Subscriber(broker)
    with Spool(tmp_path / "spool.sqlite", max_bytes=64 * MiB) as spool:
        add_batch(spool, 10)
        add_batch(spool, 1000)  # about 60 kB
        add_batch(spool, 10)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=broker.url), TOPICS, spool, client_id="gw-test", **FAST) as pub:
            asyncio.create_task(pub.run())
            assert await pub.wait_drained(5), pub.stats()
            assert pub.reconnects == 0
            assert "maximum packet size" in pub.last_error and "mqtt.max_batch" in pub.last_error
        [(kind, detail)] = spool_reports(spool)
        assert kind == "dropped" and (detail["first_seq"], detail["last_seq"], detail["count"]) == (11, 1010, 1000)
        assert "maximum packet size (20000 bytes)" in detail["reason"]
        assert spool.stats()["dropped_count"] == 1000
    sub.wait(lambda: len(set(sub.readings_seqs())) >= 20)
    assert_complete_in_order(sub.readings_seqs(), [*range(1, 11), *range(1011, 1021)])
    sub.close()


async def test_records_the_broker_had_no_subscriber_for_are_counted_and_said(mosquitto, tmp_path, caplog) -> None:
    """With nobody subscribed (the bridge's persistent session expired, or never created), an MQTT 5 broker
    acknowledges a message with "no matching subscribers" and throws it away; the spool then deletes it
    too. The gateway cannot keep data for a consumer that may never come, but it must not be silent."""
    with Spool(tmp_path / "spool.sqlite", max_bytes=64 * MiB) as spool:
        add_batch(spool, 10)
        add_batch(spool, 10)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=mosquitto.url), TOPICS, spool, client_id="gw-test", **FAST) as pub:
            asyncio.create_task(pub.run())
            assert await pub.wait_drained(5), pub.stats()
            assert pub.stats()["discarded_by_broker"] == 2
    warnings = [r.getMessage() for r in caplog.records if "no subscriber" in r.getMessage()]
    assert len(warnings) == 1 and "bridge" in warnings[0], warnings
