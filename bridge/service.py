"""The running bridge: MQTT in, InfluxDB out, on two threads (paho's network loop and one writer).

Guarantees, and how they are kept:

- **Nothing lost in a database outage.** The bridge subscribes with QoS 1 in a persistent MQTT 5 session
  (``clean_start=False`` and a session expiry) and acknowledges a message only after InfluxDB stored its
  points (paho's ``manual_ack``). While the database is down, writes are retried with backoff and nothing
  is acknowledged, so the broker keeps every message (its ``max_queued_messages`` must not cap the queue:
  see docs/influxdb-schema.md). A message acknowledged is a message stored.
- **Several bridges split the load.** The subscription is shared (``$share/<group>/<prefix>/+/+/+/#``).
- **Garbage never stops it.** Every payload is validated (:mod:`floorwatch.bridge.validate`); one that fails
  goes to the dead-letter topic (and log/file) with the reason (:mod:`floorwatch.bridge.dead_letters`), is
  acknowledged, and the bridge carries on.
- **Loss is visible.** Sequence numbers are tracked per gateway (:mod:`floorwatch.bridge.sequence`):
  duplicates are dropped, numbers still missing after ``gap_grace`` seconds are written as ``integrity``
  points, and ranges the gateway itself reported dropped or skipped are written as explained.

With several bridge instances in one group each sees only its share of a gateway's numbers; give each
instance its own ``gateways`` filter (e.g. one site each) so that every gateway's numbers reach one
instance, or the gaps one instance sees are the messages another one took.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from floorwatch.bridge.config import BridgeConfig
from floorwatch.bridge.dead_letters import DeadLetters
from floorwatch.bridge.intake import Intake, Rejected
from floorwatch.bridge.message import Incoming
from floorwatch.bridge.points import to_lines
from floorwatch.bridge.sequence import SequenceTracker, load_state, save_state
from floorwatch.bridge.specs import SpecLimits
from floorwatch.bridge.writer import InfluxTarget, InfluxWriter, WriteAborted, WriteRejected

log = logging.getLogger("floorwatch.bridge")


@dataclass
class BridgeCounters:
    messages: int = 0
    points: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    gaps: int = 0
    writes: int = 0


class Bridge:
    """Run with :meth:`start` / :meth:`stop` (or :meth:`run` until a stop signal)."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.specs = SpecLimits.load(config.bridge.gateway_configs)
        self.counters = BridgeCounters()
        self.tracker = SequenceTracker(config.sequence.gap_grace, config.sequence.reset_window)
        if config.sequence.state_file is not None:
            load_state(self.tracker, config.sequence.state_file)
        self.intake = Intake(self.prefix, self.tracker, self.specs)
        ic = config.influxdb
        self.writer = InfluxWriter(
            InfluxTarget(url=ic.url, org=ic.org, bucket=ic.bucket, token=ic.token(), timeout_s=ic.timeout,
                         gzip=ic.gzip),
            backoff_initial=ic.backoff_initial, backoff_max=ic.backoff_max)
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.generation = 0
        self._worker: threading.Thread | None = None
        self._stopped = False
        self.client = self._make_client()
        self.dead_letters = DeadLetters(self.client, config.mqtt.dead_letter_topic, config.bridge.dead_letter_file,
                                        config.mqtt.username)
        self.client.on_publish = self.dead_letters.on_publish

    # MQTT ---------------------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        mc = self.config.mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=mc.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if mc.username:
            client.username_pw_set(mc.username, mc.password())
        ctx = mc.tls_context()
        if ctx is not None:
            client.tls_set_context(ctx)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda c, u: log.error(
            "cannot reach the broker at %s; retrying", self.config.mqtt.url)
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: self.subscribed.set()
        return client
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.config.mqtt.url, reason_code)
            return
        self.generation += 1
        log.info("connected to %s (session present: %s); subscribing to %s", self.config.mqtt.url,
                 flags.session_present, self.config.mqtt.subscription)
        client.subscribe(self.config.mqtt.subscription, qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("lost the broker (%s); reconnecting — unacknowledged messages will come again",
                        reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Incoming(msg.mid, msg.qos, msg.topic, bytes(msg.payload), bool(msg.retain),
                                time.time_ns(), self.generation))

    def start(self) -> None:
        mc = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = mc.session_expiry
        props.ReceiveMaximum = mc.receive_maximum
        self.client.connect_async(mc.host, mc.port, keepalive=mc.keepalive, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="bridge-writer", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, finish (or abandon, unacknowledged) the batch in hand, disconnect."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        self.writer.close()

    def run(self) -> None:
        self.start()
        try:
            while not self.stopping.wait(3600):
                pass
        finally:
            self.stop()

    # processing ---------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Incoming]]:
        ic = self.config.influxdb
        while not self.stopping.is_set():
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                yield []  # time to report due gaps
                continue
            batch, deadline = [first], time.monotonic() + ic.flush_interval
            while len(batch) < self.config.mqtt.receive_maximum:  # no more can be in flight to us
                wait = min(ic.linger, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    batch.append(self.inbox.get(timeout=wait))
                except queue.Empty:
                    break
            yield batch

    def _work(self) -> None:
        for batch in self._batches():
            try:
                self.process(batch)
            except WriteAborted as exc:
                log.warning("%s; %d message(s) left unacknowledged for the broker to deliver again",
                            exc, len(batch))
                return
            except Exception:  # never let one bad batch stop the bridge
                log.exception("unexpected error processing %d message(s); they stay unacknowledged",
                              len(batch))


    def process(self, batch: list[Incoming]) -> None:
        """Validate, write, dead-letter, acknowledge — in that order.

        The sequence state changes only with a batch that was stored: if anything unexpected fails, it is
        put back as it was and the messages are processed again one by one; one that still fails goes to
        the dead letters with the error. A message is never left unacknowledged while later ones are
        acknowledged: the broker would only deliver it again after a reconnect, and it would hold one of
        the ``receive_maximum`` slots meanwhile."""
        saved, messages = self.tracker.snapshot(), self.counters.messages
        try:
            self._process(batch)
            return
        except WriteAborted:
            self.tracker.restore(saved)
            raise
        except Exception:
            self.tracker.restore(saved)
            self.counters.messages = messages
            log.exception("unexpected error processing %d message(s); processing them one by one", len(batch))
        for msg in batch:
            saved, messages = self.tracker.snapshot(), self.counters.messages
            try:
                self._process([msg])
            except WriteAborted:
                self.tracker.restore(saved)
                raise
            except Exception as exc:
                self.tracker.restore(saved)
                self.counters.messages = messages + 1
                log.exception("cannot process the message from %s", msg.topic)
                self._settle([msg], [Rejected(msg, f"bridge error: {type(exc).__name__}: {exc}")])

    def _process(self, messages: list[Incoming]) -> None:
        self.counters.messages += len(messages)
        batch = self.intake.take(messages)
        integrity = to_lines(self.tracker.due())
        lines = batch.lines + integrity
        size = self.config.influxdb.batch_size
        try:
            for i in range(0, len(lines), size):  # rewriting a chunk after a failure is harmless: idempotent
                self.writer.write(lines[i : i + size], self.stopping)
        except WriteRejected as exc:
            # one message the database refuses must not take the others with it: write one by one
            log.error("%s; writing message by message to find the rejected one(s)", exc)
            for line in integrity:
                try:
                    self.writer.write([line], self.stopping)
                except WriteRejected as one:
                    log.error("the database refused an integrity point (%s): %s", one, line[:300])
            for accepted in batch.accepted:
                try:
                    self.writer.write(accepted.lines, self.stopping)
                except WriteRejected as one:
                    batch.rejected.append(Rejected(accepted.message, str(one)))
                    if accepted.origin is not None:  # its numbers are not in the database: a gap, with the reason
                        self.tracker.unsee(accepted.origin, accepted.seen,
                                           f"refused by the database ({one}); see the dead letters")
        if not messages and not integrity:
            return
        self.counters.points += len(lines)
        self.counters.writes += 1
        self._settle(messages, batch.rejected)

    def _settle(self, messages: list[Incoming], rejected: list[Rejected]) -> None:
        """Dead-letter what must be, save the sequence state, acknowledge in the order received."""
        self.counters.duplicates = self.tracker.duplicates
        self.counters.gaps = self.tracker.gaps
        self.counters.dead_letters += len(rejected)
        posted = [self.dead_letters.post(r.message, r.reason) for r in rejected]
        undelivered = {id(p.message) for p in posted if not self.dead_letters.kept(p)}
        if self.config.sequence.state_file is not None:
            save_state(self.tracker, self.config.sequence.state_file)
        for msg in messages:  # in the order received, as MQTT asks
            if msg.qos > 0 and msg.generation == self.generation and id(msg) not in undelivered:
                self.client.ack(msg.mid, msg.qos)
