"""MQTT publisher: drains the spool to the broker in order, acknowledging each record on PUBACK.

Why it is built this way (measured limits in ``/work/shared/reference/mqtt.md``, topics in
``docs/payloads.md``):

* Nothing is published that is not in the spool, and nothing leaves the spool before the broker has
  acknowledged it (QoS 1 PUBACK). A lost connection hands every unacknowledged record back to the spool
  (``Spool.release``) and they are sent again, oldest first, after the reconnect: at-least-once, in order;
  downstream drops duplicates by sequence number.
* A small in-flight window (``[mqtt] max_inflight``, 20 by default): paho slows down with a large window and
  loses messages beyond 65 535 unacknowledged ones. Throughput comes from big batches, not a big window.
* paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``) runs one network thread per connection attempt; its
  callbacks are handed to the asyncio loop (``call_soon_threadsafe``), so the spool is only touched from
  the loop. Each attempt gets a fresh paho client: no paho-internal queue survives a disconnect, the
  spool is the only queue.
* MQTT 5 first; when ``protocol = "auto"`` and the broker refuses it (CONNACK "unsupported protocol
  version", or it hangs up before any CONNACK), the publisher falls back to 3.1.1 and stays there.
* TLS verifies the broker by default (``ca_file`` or the system CAs; ``tls_insecure`` turns it off);
  an optional client certificate; username and password (``MqttConfig.password()``, read at each connect).
* Presence: ``{"type": "presence", "state": "online"}`` retained on ``<gateway>/presence`` after each
  connect, the retained last will ``"offline"`` (with the time the session began) if the gateway dies, and
  an explicit retained ``"offline"`` on a clean exit (``__aexit__``).
* Errors say what to fix, e.g. ``not authorised by the broker (bad user name or password): check
  mqtt.username and the password in mqtt.password_file / mqtt.password_env``; the latest one is in
  ``last_error`` and ``stats()``, logged once per change. Reconnects back off exponentially with jitter (``floorwatch.edge.backoff``).

Usage::

    async with MqttPublisher(config.mqtt, topics, spool, client_id="gw-01") as publisher:
        task = asyncio.create_task(publisher.run())
        ...                      # the gateway adds to and flushes the spool
    # leaving the block cancels run(), publishes "offline" and disconnects cleanly

Additive extras beyond the shared contract: keyword arguments ``backoff_min``/``backoff_max`` (seconds
between connection attempts), ``connect_timeout`` (seconds to wait for CONNACK); attributes ``protocol``
(``"5"`` or ``"3.1.1"`` in use), ``reconnects`` and ``discarded_by_broker`` (records an MQTT 5 broker
acknowledged with "no matching subscribers", i.e. threw away: logged once); ``stats()`` also reports them,
``protocol`` and ``url``;
``presence_payload()`` builds the presence JSON; ``wait_drained(timeout)`` waits until the spool is empty
(for shutdown and tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from floorwatch import edge
from floorwatch.edge.backoff import Backoff
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock
from floorwatch.edge.config import ConfigError, MqttConfig
from floorwatch.edge.model import PAYLOAD_VERSION
from floorwatch.edge.spool import Spool
from floorwatch.edge.topics import Topics

log = logging.getLogger(__name__)

_UNSUPPORTED_PROTOCOL = 0x84  # CONNACK "Unsupported protocol version" (3.1.1 code 1 maps to it)
_BAD_CREDENTIALS = 0x86  # "Bad user name or password" (3.1.1 code 4)
_NOT_AUTHORISED = 0x87  # "Not authorized" (3.1.1 code 5)
_SERVER_UNAVAILABLE = 0x88
_NO_MATCHING_SUBSCRIBERS = 0x10  # PUBACK: accepted, and thrown away at once


_MQTT_MAX_PACKET = 268_435_460  # remaining length up to 268 435 455 bytes, plus the fixed header


def publish_packet_size(topic: str, payload: bytes, qos: int, *, v5: bool) -> int:
    """Bytes of the PUBLISH packet that carries ``payload`` (as the broker's maximum packet size counts).

    >>> publish_packet_size("a/b", b"x" * 10, 1, v5=True)
    20
    """
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + (1 if v5 else 0) + len(payload)
    header = 1 + next((n for n, bound in enumerate((128, 16_384, 2_097_152, 268_435_456), 1) if remaining < bound),
                      4)
    return header + remaining


def presence_payload(state: str, ts_ns: int, version: str) -> bytes:
    """The retained presence message of ``docs/payloads.md``.

    >>> presence_payload("online", 5, "0.1.0")
    b'{"v":1,"type":"presence","state":"online","ts_ns":5,"version":"0.1.0"}'
    """
    return json.dumps({"v": PAYLOAD_VERSION, "type": "presence", "state": state, "ts_ns": ts_ns,
                       "version": version}, separators=(",", ":")).encode()


class ConnectError(Exception):
    """A connection attempt failed; the message names the setting to fix. ``fallback``: try MQTT 3.1.1."""

    def __init__(self, message: str, *, fallback: bool = False) -> None:
        super().__init__(message)
        self.fallback = fallback


def explain_connect_error(exc: BaseException, config: MqttConfig) -> str:
    """One line that says what went wrong while connecting and which setting fixes it.

    >>> cfg = MqttConfig(url="mqtt://broker.local:1883")
    >>> explain_connect_error(ConnectionRefusedError(111, "Connection refused"), cfg)
    'cannot reach the broker at broker.local:1883: connection refused; is it running, and is mqtt.url right?'
    """
    where = f"{config.host}:{config.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        if "hostname" in detail.lower() or "ip address mismatch" in detail.lower() or exc.verify_code == 62:
            return (f"TLS: certificate verify failed ({detail}) for {where}: the broker's certificate is not "
                    f"issued for {config.host!r}; use the host name in the certificate in mqtt.url")
        if "expired" in detail.lower():
            return f"TLS: certificate verify failed ({detail}) for {where}: the broker's certificate has expired"
        ca = f"mqtt.ca_file ({config.ca_file})" if config.ca_file else "mqtt.ca_file (unset: system CAs used)"
        return (f"TLS: certificate verify failed ({detail}) for {where}: check {ca} is the CA that signed "
                "the broker's certificate")
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).lower()
        if "wrong_version_number" in reason or "record_layer_failure" in reason or "packet length" in reason:
            return (f"TLS: the broker at {where} did not answer in TLS ({exc.reason}); is this a plain MQTT "
                    "port? use mqtt://…:1883 for plain or the broker's TLS port with mqtts://")
        if "certificate required" in reason or "handshake failure" in reason or "unknown ca" in reason:
            return (f"TLS: the broker at {where} refused the handshake ({exc.reason}); it may require a client "
                    "certificate: set mqtt.cert_file and mqtt.key_file (issued by a CA the broker trusts)")
        return f"TLS error with {where}: {exc.reason or exc}; check mqtt.ca_file, mqtt.cert_file, mqtt.key_file"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach the broker at {where}: connection refused; is it running, and is mqtt.url right?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve broker host {config.host!r} ({exc.strerror}); check mqtt.url and DNS"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from the broker at {where} (timed out); check the network, a firewall, and mqtt.url"
    if isinstance(exc, ConnectionError | OSError):
        return f"connection to the broker at {where} failed: {exc}; check the network and mqtt.url"
    return f"connecting to {where} failed: {exc!r}"


def explain_connack(reason: Any, config: MqttConfig) -> ConnectError:
    """A ConnectError for a refused CONNACK (paho ReasonCode), with the fix in the message."""
    code = getattr(reason, "value", reason)
    where = f"{config.host}:{config.port}"
    if code in (_BAD_CREDENTIALS, _NOT_AUTHORISED):
        who = f"user {config.username!r}" if config.username else "anonymous clients (no mqtt.username set)"
        return ConnectError(
            f"not authorised by the broker at {where} ({reason}) for {who}: check mqtt.username and the "
            "password in mqtt.password_file / mqtt.password_env, and the broker's password file")
    if code == _UNSUPPORTED_PROTOCOL:
        return ConnectError(f"the broker at {where} does not support this MQTT version ({reason}); "
                            "set mqtt.protocol = \"3.1.1\" or \"auto\"", fallback=True)
    if code == _SERVER_UNAVAILABLE:
        return ConnectError(f"the broker at {where} is unavailable ({reason}); retrying")
    if code in (0x85, 0x02):  # client identifier not valid
        return ConnectError(f"the broker at {where} rejected client id {config.client_id!r} ({reason}); "
                            "set mqtt.client_id to a short unique name")
    return ConnectError(f"the broker at {where} refused the connection: {reason}")


def _close_sockets_of(exc: BaseException) -> None:
    """Close sockets a failed ``connect()`` left open (paho drops a TLS socket whose handshake failed
    without closing it): one file descriptor per attempt would otherwise wait for the garbage collector."""
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                with contextlib.suppress(OSError):
                    value.close()
        tb = tb.tb_next


class _Session:
    """One TCP/TLS connection attempt with its own paho client and network thread."""

    def __init__(self, publisher: MqttPublisher, client: paho.Client) -> None:
        self.publisher = publisher
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[str] = self.loop.create_future()
        self.tcp_connected = False
        self._stop = threading.Event()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_log = self._on_log
        self.socket_error = ""  # paho only logs errors raised while reading (e.g. TLS 1.3 alerts)
        self.max_packet: int | None = None  # bytes; a larger PUBLISH makes the broker hang up
        self.thread = threading.Thread(target=self._main, name="floorwatch-mqtt", daemon=True)
        # A CONNACK that arrives after we gave up waiting must not be reported as "never retrieved".
        self.connack.add_done_callback(lambda f: f.cancelled() or f.exception())

    def start(self) -> None:
        self.thread.start()

    def _post(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is listening any more
            self.loop.call_soon_threadsafe(fn, *args)

    def _main(self) -> None:
        cfg = self.publisher.config
        try:
            self.client.connect(cfg.host, cfg.port, cfg.keepalive)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable message
            _close_sockets_of(exc)
            self._post(self._fail, ConnectError(explain_connect_error(exc, cfg)), "connect failed")
            return
        self.tcp_connected = True
        reason = "connection closed"
        while not self._stop.is_set() and self.client.socket() is not None:
            rc = self.client.loop(timeout=0.2)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                reason = paho.error_string(rc)
                break
        if self.client.socket() is not None:  # stopped without a DISCONNECT: drop the socket (will applies)
            with contextlib.suppress(Exception):
                self.client._sock_close()  # noqa: SLF001
        self._post(self._fail, self._closed_error(reason), reason)

    def _closed_error(self, reason: str) -> ConnectError:
        """Why the connection ended before (or without) a CONNACK."""
        cfg = self.publisher.config
        where = f"{cfg.host}:{cfg.port}"
        err = self.socket_error
        low = err.lower()
        if "certificate required" in low or "certificate_required" in low:
            return ConnectError(f"TLS: the broker at {where} requires a client certificate ({err}): set "
                                "mqtt.cert_file and mqtt.key_file (issued by a CA the broker trusts)")
        if "ssl" in low or "tls" in low:
            return ConnectError(f"TLS error with {where}: {err}; check mqtt.ca_file, mqtt.cert_file, "
                                "mqtt.key_file and the broker's TLS settings")
        if err:
            return ConnectError(f"connection to the broker at {where} failed: {err}")
        # Closed without a word: what brokers that do not speak MQTT 5 may do.
        return ConnectError(f"the broker at {where} closed the connection before accepting it ({reason})",
                            fallback=True)

    # paho callbacks (network thread) -> event loop
    def _on_log(self, client: paho.Client, userdata: Any, level: int, message: str) -> None:
        if level == paho.MQTT_LOG_ERR and "socket" in message:
            self.socket_error = message

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.max_packet = getattr(properties, "MaximumPacketSize", None)  # announced by an MQTT 5 broker
        self._post(self._connected, reason)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._post(self._mark_closed, str(reason))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._post(self.publisher._on_ack, self, mid, reason)  # noqa: SLF001

    # on the event loop
    def _connected(self, reason: Any) -> None:
        if self.connack.done():
            return
        if getattr(reason, "is_failure", False):
            self.connack.set_exception(explain_connack(reason, self.publisher.config))
        else:
            self.connack.set_result(None)

    def _fail(self, error: ConnectError, reason: str) -> None:
        if not self.connack.done():
            self.connack.set_exception(error)
        self._mark_closed(reason)

    def _mark_closed(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        self.publisher._wake.set()  # noqa: SLF001

    def stop(self) -> None:
        """End the network thread (after a DISCONNECT, or abruptly)."""
        self._stop.set()

    async def join(self, timeout: float = 5.0) -> None:
        self._stop.set()
        await asyncio.to_thread(self.thread.join, timeout)


class MqttPublisher:
    """Publishes the spool's records to the broker; see the module docstring."""

    def __init__(self, config: MqttConfig, topics: Topics, spool: Spool, *, client_id: str,
                 clock: Clock = SYSTEM_CLOCK, version: str = edge.__version__, backoff_min: float = 0.5,
                 backoff_max: float = 30.0, connect_timeout: float = 10.0) -> None:
        self.config = config
        self.topics = topics
        self.spool = spool
        self.client_id = config.client_id or client_id
        self.clock = clock
        self.version = version
        # ±20 % jitter: gateways that lost the same broker at the same moment do not all return in one burst
        self._backoff = Backoff(first=backoff_min, maximum=backoff_max, jitter=0.2)
        self.connect_timeout = connect_timeout
        self.window = config.max_inflight
        self.protocol = "3.1.1" if config.protocol == "3.1.1" else "5"
        self.connected = False
        self.last_error = ""
        self.published = 0
        self.acked = 0
        self.reconnects = 0
        self.discarded_by_broker = 0  # acknowledged with "no matching subscribers": nobody will get them
        self._warned_discarded = False
        self._connections = 0
        self._inflight: dict[int, tuple[int, str]] = {}  # mid -> (spool record id, topic)
        self._session: _Session | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_task: asyncio.Task | None = None
        self._closing = False
        self._logged_error = ""

    @property
    def backoff_min(self) -> float:
        """Seconds before the first reconnect attempt."""
        return self._backoff.first

    @property
    def backoff_max(self) -> float:
        """The longest wait between reconnect attempts."""
        return self._backoff.maximum

    # --- lifecycle ------------------------------------------------------------------------------------

    async def __aenter__(self) -> MqttPublisher:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.spool.add_listener(self._spool_committed)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        task = self._run_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.spool.remove_listener(self._spool_committed)
        session = self._session
        if session is None:
            return
        if self.connected and not session.closed.done():
            # Let the acknowledgements of what is in flight arrive (fewer duplicates after a restart) ...
            deadline = asyncio.get_running_loop().time() + 1.0
            while self._inflight and asyncio.get_running_loop().time() < deadline and not session.closed.done():
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):  # not wait_for: it can swallow a cancel on 3.11
                        await self._wake.wait()
            # ... then say goodbye: retained "offline", and a clean DISCONNECT (the broker drops the will).
            info = session.client.publish(self.topics.presence, presence_payload("offline", self.clock.now_ns(),
                                                                               self.version), qos=1, retain=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, 2.0)
            session.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(session.closed)
        self._end_session(session)
        await session.join()

    def _spool_committed(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    # --- the connection loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff; until cancelled (or the context is left)."""
        if self._loop is None:
            raise RuntimeError("use 'async with MqttPublisher(...) as publisher:' around run()")
        self._run_task = asyncio.current_task()
        self._backoff.reset()
        while not self._closing:
            try:
                session = await self._connect()
            except ConnectError as exc:
                if exc.fallback and self.config.protocol == "auto" and self.protocol == "5":
                    self.protocol = "3.1.1"
                    log.info("broker %s:%s refused MQTT 5 (%s); falling back to MQTT 3.1.1",
                             self.config.host, self.config.port, exc)
                    continue
                self._error(str(exc))
                await self._backoff.sleep()
                continue
            acked_before, began = self.acked, asyncio.get_running_loop().time()
            try:
                await self._publish_until_closed(session)
            except asyncio.CancelledError:
                raise  # __aexit__ says goodbye on this connection
            except BaseException:
                self._end_session(session)
                await session.join()
                raise
            if self._closing:
                return
            self._end_session(session)
            await session.join()
            # A connection that delivered something, or lasted, resets the backoff; a broker that accepts
            # and then drops us (or refuses every message) is retried ever more slowly.
            if self.acked > acked_before or asyncio.get_running_loop().time() - began > 5.0:
                self._backoff.reset()
            await self._backoff.sleep()

    async def _connect(self) -> _Session:
        client = self._make_client()
        session = _Session(self, client)
        self._session = session
        session.start()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await asyncio.shield(session.connack)
        except TimeoutError:
            await session.join(1.0)
            raise ConnectError(f"no CONNACK from the broker at {self.config.host}:{self.config.port} within "
                               f"{self.connect_timeout:g} s; is it an MQTT broker and is it overloaded?") from None
        except ConnectError as exc:
            await session.join(1.0)
            if exc.fallback and not session.tcp_connected:
                raise ConnectError(str(exc)) from None  # never reached the broker: not a protocol problem
            raise
        except BaseException:
            await session.join(1.0)
            raise
        self.connected = True
        self._connections += 1
        if self._connections > 1:
            self.reconnects += 1
        if self.last_error:
            log.info("connected to the broker at %s:%s (MQTT %s) after: %s", self.config.host,
                     self.config.port, self.protocol, self.last_error)
        else:
            log.info("connected to the broker at %s:%s (MQTT %s)", self.config.host, self.config.port,
                     self.protocol)
        self.last_error = ""
        self._logged_error = ""
        client.publish(self.topics.presence, presence_payload("online", self.clock.now_ns(), self.version),
                       qos=1, retain=True)
        return session

    def _make_client(self) -> paho.Client:
        cfg = self.config
        v5 = self.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.enable_logger(logging.getLogger("paho"))
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        if v5:
            client.connect_timeout = self.connect_timeout
        if cfg.tls:
            client.tls_set_context(self._tls_context())
        if cfg.username:
            try:
                password = cfg.password()
            except ConfigError as exc:
                raise ConnectError(str(exc)) from None
            client.username_pw_set(cfg.username, password)
        will = presence_payload("offline", self.clock.now_ns(), self.version)
        client.will_set(self.topics.presence, will, qos=1, retain=True)
        return client

    def _tls_context(self) -> ssl.SSLContext:
        try:
            ctx = self.config.tls_context()
        except ConfigError as exc:
            raise ConnectError(str(exc)) from None
        assert ctx is not None  # only called for mqtts://
        if self.config.tls_insecure:
            log.warning("mqtt.tls_insecure is set: the broker's host name is NOT checked against its certificate")
        return ctx

    async def _publish_until_closed(self, session: _Session) -> None:
        """Keep up to ``window`` records in flight, oldest first, until the connection ends."""
        while not session.closed.done() and not self._closing:
            self._wake.clear()
            room = self.window - len(self._inflight)
            if room > 0:
                records = self.spool.pending(room)
                for i, rec in enumerate(records):
                    size = publish_packet_size(rec.topic, rec.payload, rec.qos, v5=self.protocol == "5")
                    limit = min(session.max_packet or _MQTT_MAX_PACKET, _MQTT_MAX_PACKET)
                    if size > limit:
                        self._undeliverable(rec, size, limit)
                        continue
                    info = session.client.publish(rec.topic, rec.payload, qos=rec.qos, retain=rec.retain)
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self.spool.release(r.id for r in records[i:])
                        break
                    self._inflight[info.mid] = (rec.id, rec.topic)
                    self.published += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._wake.wait()
        if not session.closed.done():
            return
        reason = session.closed.result()
        if not self._closing:
            self._error(f"connection to the broker at {self.config.host}:{self.config.port} lost ({reason}); "
                        "reconnecting")

    def _undeliverable(self, rec: Any, size: int, limit: int) -> None:
        """A record the broker would hang up on, after every reconnect, blocking all behind it."""
        who = "the broker's maximum packet size" if limit < _MQTT_MAX_PACKET else "MQTT's maximum packet size"
        reason = (f"{size} bytes as an MQTT packet, more than {who} ({limit} bytes); it can never be delivered")
        self.spool.undeliverable(rec, reason)
        self._error(f"a record on {rec.topic} (seq {rec.first_seq}..{rec.last_seq}) is {reason}: dropped and "
                    "reported; lower mqtt.max_batch or raise the broker's max_packet_size")

    def _on_ack(self, session: _Session, mid: int, reason: Any) -> None:
        if session is not self._session:
            return  # a late acknowledgement from an earlier connection: its records were released
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # presence messages are not spooled
        record_id, topic = entry
        if getattr(reason, "is_failure", False):
            # The broker received the message but refused it (MQTT 5), e.g. an ACL: keep it and say why.
            self.spool.release([record_id])
            self._error(f"the broker refused a message on {topic} ({reason}); check the broker's ACL lets "
                        f"{self.config.username or 'this client'} publish under {self.topics.base}")
            session.client.disconnect()
        else:
            self.spool.ack([record_id])
            self.acked += 1
            if getattr(reason, "value", None) == _NO_MATCHING_SUBSCRIBERS:
                self._discarded(topic)
        self._wake.set()

    def _discarded(self, topic: str) -> None:
        """The broker took the record and threw it away: nobody subscribes (MQTT 5 tells, 3.1.1 does not)."""
        self.discarded_by_broker += 1
        if not self._warned_discarded:
            self._warned_discarded = True
            log.warning("the broker at %s:%s had no subscriber for %s and discarded it; records published while "
                        "nobody subscribes are lost (is the bridge running, with its persistent session? "
                        "docs/influxdb-schema.md); counted in discarded_by_broker", self.config.host,
                        self.config.port, topic)

    def _end_session(self, session: _Session) -> None:
        if self._inflight:
            self.spool.release(rid for rid, _ in self._inflight.values())
            self._inflight.clear()
        self.connected = False
        session.stop()

    def _error(self, message: str) -> None:
        self.last_error = message
        if message != self._logged_error:
            log.warning("mqtt: %s", message)
            self._logged_error = message

    # --- reporting ------------------------------------------------------------------------------------

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until the spool's backlog is empty (True) or ``timeout`` seconds passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.spool.backlog() > 0 or self._inflight:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def stats(self) -> dict:
        return {
            "connected": self.connected,
            "url": f"{'mqtts' if self.config.tls else 'mqtt'}://{self.config.host}:{self.config.port}",
            "protocol": self.protocol,
            "published": self.published,
            "acked": self.acked,
            "in_flight": len(self._inflight),
            "reconnects": self.reconnects,
            "discarded_by_broker": self.discarded_by_broker,
            "last_error": self.last_error,
        }
