"""Benchmark: how fast a gateway replays its spool's backlog to a real Mosquitto after an outage.

An outage leaves the spool holding batches (500 readings each); when the broker returns, the publisher must
drain them several times faster than the gateway produces new ones (50 000 readings/s at full line rate is
100 messages/s), or the backlog never ends. The named peer, in the same run against the same broker, is
paho-mqtt publishing the same payloads straight from memory at QoS 1 with the same in-flight window: the
ceiling that the spool (SQLite reads, acknowledgements, deletes) costs against.

Run: ``python3 bench/bench_replay.py`` (needs the ``mosquitto`` binary; ``--messages`` to vary). The figures
in docs/benchmarks.md ("Backlog replay") come from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from floorwatch.edge.config import MqttConfig
from floorwatch.edge.model import Reading, encode_batch
from floorwatch.edge.mqtt import MqttPublisher
from floorwatch.edge.spool import Spool
from floorwatch.edge.topics import Topics
from floorwatch.gateway.commands.demo import PrivateBroker, _find_mosquitto

TOPICS = Topics("floorwatch/v1", "bench", "line-1", "gw-1")
BATCH = 500


def payload() -> bytes:
    rows = [Reading(ts_ns=time.time_ns(), seq=1 + i, instrument="caliper-1", characteristic="bore_diameter",
                    value=12.0 + i * 1e-6, unit="mm") for i in range(BATCH)]
    return json.dumps(encode_batch(rows)).encode()


async def floorwatch_replay(url: str, messages: int, workdir: Path) -> float:
    """Messages per second from a full spool to the broker's acknowledgements, the spool flushed as the
    gateway does it."""
    data = payload()
    with Spool(workdir / "spool.sqlite", max_bytes=2**31) as spool:
        for _ in range(messages):
            seq = spool.issue(BATCH)
            spool.add(TOPICS.readings, data, first_seq=seq, last_seq=seq + BATCH - 1)
        spool.flush()
        async with MqttPublisher(MqttConfig(url=url), TOPICS, spool, client_id="bench-replay") as pub:
            started = time.perf_counter()
            task = asyncio.create_task(pub.run())
            stop = asyncio.Event()

            async def flush_like_the_gateway() -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.2)
                    spool.flush()

            flusher = asyncio.create_task(flush_like_the_gateway())
            if not await pub.wait_drained(600):
                raise RuntimeError(f"the backlog did not drain: {pub.stats()}")
            elapsed = time.perf_counter() - started
            stop.set()
            await flusher
            task.cancel()
    return messages / elapsed


def paho_straight(port: int, messages: int, inflight: int) -> float:
    """The peer: the same payloads published from memory, QoS 1, ``inflight`` messages in flight."""
    data = payload()
    done = threading.Event()
    acked = 0

    def on_publish(client, userdata, mid, reason_code=None, properties=None) -> None:
        nonlocal acked
        acked += 1
        if acked == messages:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-peer")
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for _ in range(messages):
        client.publish(TOPICS.readings, data, qos=1)
    if not done.wait(600):
        raise RuntimeError(f"paho: {acked} of {messages} acknowledged")
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return messages / elapsed


class Subscriber:
    """Stands in for the bridge: subscribed at QoS 1, so the broker forwards every message (as in the field)
    instead of discarding it for want of a subscriber."""

    def __init__(self, port: int) -> None:
        self.received = 0
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-bridge")
        self.client.on_message = self._count
        ready = threading.Event()
        self.client.on_subscribe = lambda *a, **k: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(TOPICS.readings, qos=1)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the benchmark's subscriber was not subscribed within 10 s")

    def _count(self, client, userdata, message) -> None:
        self.received += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help=f"batches of {BATCH} readings in the backlog")
    args = parser.parse_args(argv)
    inflight = MqttConfig(url="mqtt://127.0.0.1").max_inflight
    with tempfile.TemporaryDirectory() as tmp:
        broker = PrivateBroker(_find_mosquitto(), Path(tmp))
        broker.start()
        subscriber = Subscriber(broker.port)
        try:
            ours = asyncio.run(floorwatch_replay(f"mqtt://127.0.0.1:{broker.port}", args.messages, Path(tmp)))
            peer = paho_straight(broker.port, args.messages, inflight)
        finally:
            subscriber.close()
            broker.stop()
    print(f"Python {platform.python_version()} on {platform.machine()}; {args.messages} messages of {BATCH} "
          f"readings, {inflight} in flight")
    print(f"floorwatch spool -> broker : {ours:8.0f} messages/s = {ours * BATCH:10.0f} readings/s")
    print(f"paho straight from memory  : {peer:8.0f} messages/s = {peer * BATCH:10.0f} readings/s")
    print(f"floorwatch / paho          : {ours / peer:8.2f}x; vs 100 messages/s of new data at full line rate: "
          f"{ours / 100:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
