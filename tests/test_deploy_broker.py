"""The shipped cloud broker configuration (deploy/cloud/mosquitto/) run for real: TLS with certificates made
by deploy/cloud/gen-certs.sh, accounts made by deploy/cloud/add-gateway.sh, and the shipped ACL file.

Only paths and the port are rewritten (the shipped file names the container's paths); every security
setting is the shipped one, so a weakened configuration fails here.
"""

from __future__ import annotations

import getpass
import re
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from harness._util import free_port, require_binary

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ROOT / "deploy" / "cloud"
CONF = CLOUD / "mosquitto" / "mosquitto.conf"
ACL = CLOUD / "mosquitto" / "acl"

GW1 = ("dongguan-2", "line-3", "gw-01")
GW2 = ("dongguan-2", "line-3", "gw-02")
GW_OTHER_SITE = ("shenzhen-1", "line-1", "gw-01")  # same gateway id, another site
NOT_AUTHORISED = 135
BAD_CREDENTIALS = 134


def topic(gw: tuple[str, str, str], rest: str) -> str:
    return "floorwatch/v1/" + "/".join(gw) + "/" + rest


@dataclass
class Deployment:
    """A running broker with the shipped configuration plus the accounts' passwords."""

    broker: object
    certs: Path
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.broker.port


def shipped_conf(certs: Path, passwd: Path, port: int) -> str:
    """The shipped mosquitto.conf with the container's paths and port replaced, nothing else."""
    text = CONF.read_text()
    replacements = {
        "password_file /mosquitto/config/passwd": f"password_file {passwd}",
        "acl_file /mosquitto/config/acl": f"acl_file {ACL}",
        # the harness sets persistence_location (its own directory) and mosquitto refuses a second one
        "persistence_location /mosquitto/data/\n": "",
        "cafile /mosquitto/certs/ca.crt": f"cafile {certs / 'ca.crt'}",
        "certfile /mosquitto/certs/server.crt": f"certfile {certs / 'server.crt'}",
        "keyfile /mosquitto/certs/server.key": f"keyfile {certs / 'server.key'}",
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{CONF} no longer has exactly one '{old.strip()}'; update this test"
        text = text.replace(old, new)
    assert not re.search(r"\s/mosquitto/", text), "a container path was left unreplaced"
    # Started as root, mosquitto drops to the 'mosquitto' user, which cannot read the test's files.
    return text + f"\nuser {getpass.getuser()}\n"


def add_account(passwd: Path, secrets: Path, *args: str) -> str:
    result = subprocess.run(
        ["sh", str(CLOUD / "add-gateway.sh"), "--passwd", str(passwd), "--secrets", str(secrets), *args],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    name = args[-1] if args[0] == "--account" else ".".join(args)
    return (secrets / f"{name}.password").read_text().strip()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    require_binary("openssl")
    out = tmp_path_factory.mktemp("certs")
    subprocess.run(["sh", str(CLOUD / "gen-certs.sh"), "--out", str(out), "--server", "broker.test",
                    "--client", "gw-01"], check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture
def deployment(certs, mosquitto_factory, tmp_path) -> Deployment:
    require_binary("mosquitto_passwd")
    passwd, secrets = tmp_path / "passwd", tmp_path / "secrets"
    passwords = {"/".join(gw): add_account(passwd, secrets, *gw) for gw in (GW1, GW2, GW_OTHER_SITE)}
    passwords["bridge"] = add_account(passwd, secrets, "--account", "bridge")
    passwords["buyer"] = add_account(passwd, secrets, "--account", "buyer")
    port = free_port()
    broker = mosquitto_factory(shipped_conf(certs, passwd, port), port=port, listener=False)
    return Deployment(broker, certs, passwords)


class Client:
    """A paho client that connects over TLS and records CONNACK, PUBACK reason codes and messages."""

    def __init__(self, dep: Deployment, username: str | None, password: str | None = None,
                 protocol: int = mqtt.MQTTv5, client_id: str = "", persistent: bool = False,
                 tls: bool = True, cert: tuple[Path, Path] | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.client.enable_logger()
        if username is not None:
            self.client.username_pw_set(username, password if password is not None else dep.passwords[username])
        if tls:
            certfile, keyfile = (str(cert[0]), str(cert[1])) if cert else (None, None)
            self.client.tls_set(ca_certs=str(dep.certs / "ca.crt"), certfile=certfile, keyfile=keyfile)
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.puback: dict[int, int] = {}
        self.acked = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        self.message_arrived = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.protocol = protocol
        self.dep = dep
        self.persistent = persistent

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.acked:
            self.puback[mid] = reason_code.value
            self.acked.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        with self.message_arrived:
            self.messages.append((msg.topic, msg.payload))
            self.message_arrived.notify_all()

    def connect(self) -> ReasonCode:
        props = None
        kwargs: dict = {}
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            if self.persistent:
                props.SessionExpiryInterval = 3600
            kwargs["clean_start"] = not self.persistent
        elif self.persistent:
            self.client._clean_session = False
        self.client.connect("127.0.0.1", self.dep.port, keepalive=30, properties=props, **kwargs)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK within 10 s"
        assert self.connack is not None
        return self.connack

    def subscribe(self, filter_: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(filter_, qos=1)
        assert self.subscribed.wait(10), f"no SUBACK for {filter_}"

    def publish(self, topic_: str, payload: bytes = b"x", retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK reason code (always 0 on MQTT 3.1.1)."""
        info = self.client.publish(topic_, payload, qos=1, retain=retain)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.puback, 10), f"no PUBACK for {topic_}"
            return self.puback[info.mid]

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        with self.message_arrived:
            self.message_arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients():
    made: list[Client] = []

    def make(*args, **kwargs) -> Client:
        c = Client(*args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def connected(make, dep, username, **kw) -> Client:
    c = make(dep, username, **kw)
    rc = c.connect()
    assert not rc.is_failure, f"{username} was refused: {rc}"
    return c


# ------------------------------------------------------------------ gateways


def test_gateway_publishes_under_its_own_prefix_and_is_refused_elsewhere(deployment, clients):
    bridge = connected(clients, deployment, "bridge")
    bridge.subscribe("#")  # everything the bridge may read
    gw = connected(clients, deployment, "/".join(GW1))

    own = [topic(GW1, "readings"), topic(GW1, "stats/bore_diameter"), topic(GW1, "alerts/bore_diameter/nelson_1"),
           topic(GW1, "events/caliper-1")]
    for t in own:
        assert gw.publish(t, t.encode()) in (0, 16)  # success / success, no matching subscribers
    forged = [topic(GW2, "readings"), topic(GW_OTHER_SITE, "readings"), "floorwatch/v1/dongguan-2/line-3/readings",
              "floorwatch/v1/other", "elsewhere/readings", "$SYS/broker/x"]
    for t in forged:
        assert gw.publish(t, b"forged") == NOT_AUTHORISED, t
    marker = topic(GW1, "events/marker")
    gw.publish(marker, b"marker")
    got = bridge.wait_messages(len(own) + 1)
    assert [t for t, _ in got] == own + [marker]
    assert b"forged" not in [p for _, p in got]


def test_gateway_publish_elsewhere_is_silently_dropped_on_mqtt_3_1_1(deployment, clients):
    bridge = connected(clients, deployment, "bridge")
    bridge.subscribe("floorwatch/v1/#")
    gw = connected(clients, deployment, "/".join(GW1), protocol=mqtt.MQTTv311)
    assert gw.publish(topic(GW2, "readings"), b"forged") == 0  # 3.1.1 has no way to say no
    assert gw.publish(topic(GW1, "readings"), b"own") == 0
    # messages from one publisher arrive in order: the own one arriving alone proves the forged one was dropped
    assert bridge.wait_messages(1) == [(topic(GW1, "readings"), b"own")]
    time.sleep(0.3)
    assert bridge.messages == [(topic(GW1, "readings"), b"own")]


# "status": where gateways older than the rename to "presence" publish it (docs/payloads.md)
@pytest.mark.parametrize("kind", ["presence", "status"])
def test_gateway_retained_presence_and_last_will_work_under_its_prefix(deployment, clients, kind):
    gw = clients(deployment, "/".join(GW1))
    gw.client.will_set(topic(GW1, kind), b'{"state": "offline"}', qos=1, retain=True)
    assert not gw.connect().is_failure
    assert gw.publish(topic(GW1, kind), b'{"state": "online"}', retain=True) in (0, 16)
    buyer = connected(clients, deployment, "buyer")
    buyer.subscribe(topic(GW1, kind))
    assert buyer.wait_messages(1) == [(topic(GW1, kind), b'{"state": "online"}')]
    gw.client._sock.close()  # an unclean end: the broker publishes the will
    assert buyer.wait_messages(2)[1] == (topic(GW1, kind), b'{"state": "offline"}')


# ------------------------------------------------------------------ authentication and transport


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (None, None),  # anonymous
        ("dongguan-2/line-3/gw-01", "wrong-password-123"),
        ("nobody", "any-password-1234"),
        ("bridge", ""),
    ],
    ids=["anonymous", "wrong-password", "unknown-user", "empty-password"],
)
def test_clients_without_valid_credentials_are_refused(deployment, clients, username, password):
    c = clients(deployment, username, password)
    # Mosquitto 2.0 answers "not authorised" (135); other versions say "bad user name or password" (134)
    assert c.connect().value in (NOT_AUTHORISED, BAD_CREDENTIALS)
    assert not c.client.is_connected()


def test_anonymous_and_wrong_password_refused_by_an_independent_client(deployment):
    sub = require_binary("mosquitto_sub")
    base = [sub, "-h", "127.0.0.1", "-p", str(deployment.port), "--cafile", str(deployment.certs / "ca.crt"),
            "-t", "floorwatch/v1/#", "-C", "1", "-W", "3", "-V", "mqttv5"]
    anon = subprocess.run(base, capture_output=True, text=True, timeout=20)
    wrong = subprocess.run(base + ["-u", "bridge", "-P", "not-the-password"], capture_output=True, text=True,
                           timeout=20)
    for refused in (anon, wrong):
        assert refused.returncode != 0 and re.search(r"not authori[sz]ed|bad user name or password",
                                                     refused.stderr, re.I), refused.stderr
    ok = subprocess.run(base[:-4] + ["-t", "$SYS/none", "-u", "bridge", "-P", deployment.passwords["bridge"],
                                     "-W", "1"], capture_output=True, text=True, timeout=20)
    assert "refused" not in ok.stderr.lower() and "not authori" not in ok.stderr.lower(), ok.stderr


def _connect_packet(username: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with username and password, as a plain-TCP client would send it."""

    def s(x: str) -> bytes:
        return len(x.encode()).to_bytes(2, "big") + x.encode()

    body = s("MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big") + s("plain") + s(username) + s(password)
    return bytes([0x10, len(body)]) + body


def test_plain_tcp_is_refused_on_the_tls_listener(deployment, clients):
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=5) as sock:
        sock.sendall(_connect_packet("bridge", deployment.passwords["bridge"]))
        try:
            reply = sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"\x20"), "the broker answered a plain-TCP CONNECT with a CONNACK"
    # a paho client without TLS gets no session either
    plain = clients(deployment, "bridge", tls=False)
    plain.client.connect("127.0.0.1", deployment.port)
    plain.client.loop_start()
    assert not plain.connected.wait(2), "a plain-TCP client was accepted"


def test_tls_verifies_the_broker_by_the_generated_ca(deployment):
    ctx = ssl.create_default_context(cafile=str(deployment.certs / "ca.crt"))
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=5) as raw:
        # a client that trusts only the system CAs must not accept the private CA's certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


# ------------------------------------------------------------------ bridge and buyer


def test_bridge_reads_every_gateway_also_through_a_shared_subscription(deployment, clients):
    plain = connected(clients, deployment, "bridge", client_id="bridge-plain")
    plain.subscribe("floorwatch/v1/+/+/+/#")
    shared = connected(clients, deployment, "bridge", client_id="bridge-shared")
    shared.subscribe("$share/bridges/floorwatch/v1/+/+/+/#")
    sent = []
    for gw in (GW1, GW2, GW_OTHER_SITE):
        c = connected(clients, deployment, "/".join(gw))
        t = topic(gw, "readings")
        assert c.publish(t, t.encode()) in (0, 16)
        sent.append((t, t.encode()))
    assert sorted(plain.wait_messages(3)) == sorted(sent)
    assert sorted(shared.wait_messages(3)) == sorted(sent)
    # the bridge writes no gateway data, not even where the gateway pattern would open a subtree to it;
    # only dead letters (payloads it could not store), outside the gateways' tree
    for t in ("floorwatch/v1/bridge/line/gw/readings", topic(GW1, "readings"), "bridge/status"):
        assert plain.publish(t, b"from-bridge") == NOT_AUTHORISED, t
    assert plain.publish("floorwatch/deadletter/floorwatch/v1/a/b/c/readings", b"bad") in (0, 16)


def test_buyer_reads_dashboard_topics_but_its_publishes_go_nowhere(deployment, clients):
    bridge = connected(clients, deployment, "bridge")
    bridge.subscribe("#")
    buyer = connected(clients, deployment, "buyer")
    buyer.subscribe("floorwatch/v1/#")
    gw = connected(clients, deployment, "/".join(GW1))
    gw.publish(topic(GW1, "stats/bore_diameter"), b"stats")
    assert buyer.wait_messages(1) == [(topic(GW1, "stats/bore_diameter"), b"stats")]
    for t in ("floorwatch/v1/buyer/line/gw/readings", topic(GW1, "readings"), topic(GW1, "active/x/y"), "buyer"):
        assert buyer.publish(t, b"from-buyer") == NOT_AUTHORISED, t
    gw.publish(topic(GW1, "events/marker"), b"marker")
    got = bridge.wait_messages(2)
    assert [p for _, p in got] == [b"stats", b"marker"]


def test_broker_holds_more_than_a_thousand_messages_for_an_offline_bridge(deployment, clients):
    """The shipped queue limits: Mosquitto's default (1000) would silently drop most of these."""
    bridge = connected(clients, deployment, "bridge", client_id="bridge-1", persistent=True)
    bridge.subscribe("floorwatch/v1/+/+/+/#")
    bridge.close()
    gw = connected(clients, deployment, "/".join(GW1))
    # paho's default in-flight window is 20, the same as the broker's max_inflight_messages
    count = 3000
    infos = [gw.client.publish(topic(GW1, "readings"), str(i).encode(), qos=1) for i in range(count)]
    deadline = time.monotonic() + 30
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
    again = connected(clients, deployment, "bridge", client_id="bridge-1", persistent=True)
    got = again.wait_messages(count, timeout=30)
    assert [int(p) for _, p in got] == list(range(count))
    assert "dropped" not in deployment.broker.log_text().lower()


# ------------------------------------------------------------------ the shipped files themselves


def test_every_non_gateway_account_denies_itself_the_gateway_pattern_subtree():
    """The pattern 'floorwatch/v1/%u/#' applies to every account: each non-gateway account must deny it."""
    sections: dict[str, list[str]] = {}
    current = None
    patterns = []
    for line in ACL.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("pattern "):
            assert current is None, "a pattern after a user section applies to everyone; put patterns first"
            patterns.append(line)
        elif line.startswith("user "):
            current = line.split(None, 1)[1]
            sections[current] = []
        else:
            assert current is not None, f"topic line outside a user section: {line}"
            sections[current].append(line)
    assert patterns == ["pattern readwrite floorwatch/v1/%u/#"]
    assert set(sections) == {"bridge", "buyer"}
    for user, lines in sections.items():
        assert f"topic deny floorwatch/v1/{user}/#" in lines, user
        writes = [x.split()[-1] for x in lines if re.match(r"topic (write|readwrite) ", x)]
        # only the bridge writes, and only dead letters, outside the gateways' tree
        assert writes == (["floorwatch/deadletter/#"] if user == "bridge" else []), (user, writes)


def test_gen_certs_rerun_keeps_the_ca_and_issues_verifiable_certificates(tmp_path):
    openssl = require_binary("openssl")
    script = ["sh", str(CLOUD / "gen-certs.sh"), "--out", str(tmp_path)]
    subprocess.run(script + ["--server", "mqtt.example.com", "--san", "IP:203.0.113.7"], check=True,
                   capture_output=True, timeout=60)
    ca = (tmp_path / "ca.crt").read_bytes()
    again = subprocess.run(script + ["--server", "mqtt.example.com", "--client", "gw-07"], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "keeping the existing CA" in again.stdout
    assert (tmp_path / "ca.crt").read_bytes() == ca
    for cert in ("server.crt", "clients/gw-07.crt"):
        subprocess.run([openssl, "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / cert)], check=True,
                       capture_output=True)
    text = subprocess.run([openssl, "x509", "-in", str(tmp_path / "server.crt"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:mqtt.example.com" in text and "IP Address:203.0.113.7" in text and "TLS Web Server" in text
    assert "DNS:mosquitto" in text  # the name the bridge connects to inside compose.yaml
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    bad = subprocess.run(script + ["--san", "mqtt.example.com"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "must start with DNS: or IP:" in bad.stderr


def test_add_gateway_refuses_bad_names_reserved_sites_and_silent_overwrites(tmp_path):
    require_binary("mosquitto_passwd")
    passwd, secrets = tmp_path / "passwd", tmp_path / "secrets"
    first = add_account(passwd, secrets, *GW1)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(CLOUD / "add-gateway.sh"), "--passwd", str(passwd), "--secrets",
                               str(secrets), *args], capture_output=True, text=True, timeout=30)

    again = run(*GW1)
    assert again.returncode != 0 and "--rotate" in again.stderr
    assert run("--rotate", *GW1).returncode == 0
    assert (secrets / "dongguan-2.line-3.gw-01.password").read_text().strip() != first
    for args, message in [
        (("site/x", "line", "gw"), "not a valid name"),
        (("site", "li+ne", "gw"), "not a valid name"),
        (("bridge", "line", "gw"), "reserved"),
        (("site", "line"), "site, line and id"),
        (("--account", "admin"), "no 'user admin' section"),
    ]:
        result = run(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert passwd.read_text().count("\n") == 1
    assert oct(passwd.stat().st_mode & 0o777) == "0o640"


def test_client_certificates_from_gen_certs_work_for_mutual_tls(certs, mosquitto_factory, tmp_path, clients):
    """The documented switch to mutual TLS: require_certificate true, client certificates by gen-certs.sh."""
    passwd, secrets = tmp_path / "passwd", tmp_path / "secrets"
    password = add_account(passwd, secrets, *GW1)
    port = free_port()
    conf = shipped_conf(certs, passwd, port)
    assert conf.count("require_certificate false") == 1
    broker = mosquitto_factory(conf.replace("require_certificate false", "require_certificate true"), port=port,
                               listener=False)
    dep = Deployment(broker, certs, {"/".join(GW1): password})
    with_cert = clients(dep, "/".join(GW1), cert=(certs / "clients/gw-01.crt", certs / "clients/gw-01.key"))
    assert not with_cert.connect().is_failure
    assert with_cert.publish(topic(GW1, "readings")) in (0, 16)
    without = clients(dep, "/".join(GW1))
    without.client.connect_async("127.0.0.1", port)
    without.client.loop_start()
    assert not without.connected.wait(2), "a client without a certificate was accepted"
