"""Each service fixture proves it works: a round trip through the real server."""

from __future__ import annotations

import subprocess
import threading

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from harness._util import require_binary


def test_mosquitto_publish_subscribe_round_trip(mosquitto):
    got: list[bytes] = []
    subscribed, received = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_subscribe = lambda *a: subscribed.set()

    def on_message(c, u, msg):
        got.append(msg.payload)
        received.set()

    client.on_message = on_message
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        client.subscribe("harness/#", qos=1)
        assert subscribed.wait(5)
        # an independent client publishes: proves the broker, not just paho's loopback
        subprocess.run(
            [require_binary("mosquitto_pub"), "-h", mosquitto.host, "-p", str(mosquitto.port),
             "-t", "harness/x", "-m", "hello", "-q", "1"],
            check=True, timeout=10,
        )
        assert received.wait(5)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got == [b"hello"]


def test_mosquitto_restarts_on_same_port(mosquitto):
    port = mosquitto.port
    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.running and mosquitto.port == port


def test_influxdb_v1_write_query_round_trip(influxdb):
    influxdb.write(["reading,characteristic=bore value=12.01 1700000000000000000",
                    "reading,characteristic=bore value=12.02 1700000001000000000"])
    result = influxdb.query('SELECT "value" FROM "reading" WHERE "characteristic" = \'bore\'')
    values = result["results"][0]["series"][0]["values"]
    assert values == [[1700000000000000000, 12.01], [1700000001000000000, 12.02]]


def test_victoria_accepts_influxdb_client_v2_writes(victoria):
    with InfluxDBClient(url=victoria.url, token="unused", org="floorwatch") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        write.write(
            bucket="floorwatch",
            record=[Point("reading").tag("characteristic", "bore").field("value", 12.5)
                    .time(1_700_000_000_000_000_000, WritePrecision.NS)],
        )
    series = victoria.export('{__name__="reading_value"}')
    assert len(series) == 1
    assert series[0]["metric"]["characteristic"] == "bore"
    assert series[0]["values"] == [12.5]
    assert series[0]["timestamps"] == [1_700_000_000_000]
