"""The bridge against a real Mosquitto and a real InfluxDB v2 write API (VictoriaMetrics).

Test data is published with paho directly and encoded with floorwatch.edge.model, as a gateway would publish it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from floorwatch.bridge.config import parse_bridge_config
from floorwatch.bridge.service import Bridge
from floorwatch.edge.model import (
    Alert,
    AlertState,
    HealthEvent,
    Reading,
    Severity,
    StatsSnapshot,
    dumps,
    encode_batch,
)
from floorwatch.edge.topics import Topics
from harness._util import spool_reports

T0 = 1_700_000_000_000_000_000
TOPICS = Topics("floorwatch/v1", "dongguan-2", "line-3", "gw-01")


def wait_until(check: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def bridge_config(broker, victoria, tmp_path, client_id: str = "bridge-test", **sequence):
    return parse_bridge_config({
        "bridge": {"dead_letter_file": str(tmp_path / "dead.jsonl")},
        "mqtt": {"url": broker.url, "client_id": client_id, "group": "test"},
        "influxdb": {"url": victoria.url, "org": "-", "bucket": "floorwatch", "linger": 0.02, "batch_size": 120,
                     "flush_interval": 0.3, "backoff_initial": 0.1, "backoff_max": 0.5, "timeout": 2},
        "sequence": {"gap_grace": 0.5, **sequence},
    })


@pytest.fixture
def start_bridge() -> Iterator[Callable[..., Bridge]]:
    bridges: list[Bridge] = []

    def start(config) -> Bridge:
        bridge = Bridge(config)
        bridge.start()
        assert bridge.subscribed.wait(10), "bridge did not subscribe"
        bridges.append(bridge)
        return bridge

    yield start
    for b in bridges:
        b.stop()


class Publisher:
    """A gateway stand-in: paho, QoS 1, payloads from floorwatch.edge.model."""

    def __init__(self, broker) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def send(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def readings(self, seqs: range | list[int], per_message: int = 100) -> None:
        seqs = list(seqs)
        for i in range(0, len(seqs), per_message):
            rows = [Reading(ts_ns=T0 + s * 1_000_000_000, seq=s, instrument="caliper-1",
                            characteristic="bore_diameter", value=12.0 + (s % 7) / 1000, unit="mm")
                    for s in seqs[i : i + per_message]]
            self.send(TOPICS.readings, json.dumps(encode_batch(rows)))

    def flush(self) -> None:
        for info in self.infos:
            info.wait_for_publish(10)
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)
    yield pub
    pub.close()


def stored_seqs(victoria, name: str = "reading_seq") -> list[int]:
    return sorted(int(v) for s in victoria.export(f'{{__name__="{name}"}}') for v in s["values"])


def stats(seq: int) -> StatsSnapshot:
    nan = float("nan")
    return StatsSnapshot(ts_ns=T0 + seq * 1_000_000_000, seq=seq, characteristic="bore_diameter", n=30,
                         n_total=30, n_rejected=0, mean=12.003, std=0.002, min=11.999, max=12.006,
                         mr_bar=0.002, sigma_within=0.0018, ewma=12.002, ewma_ucl=12.005, ewma_lcl=11.995,
                         cusum_pos=0.0, cusum_neg=0.1, center=12.0, sigma=0.002, ucl=12.006, lcl=11.994,
                         cp=1.6, cpk=1.4, pp=1.5, ppk=1.3, n_below_lsl=0, n_above_usl=0, rules=0,
                         baseline_done=True, xbar=nan)


def test_every_published_record_arrives_as_a_point(mosquitto, victoria, publisher, start_bridge, tmp_path):
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.readings(range(1, 501))
    publisher.send(TOPICS.stats("bore_diameter"), dumps(stats(501)))
    publisher.send(TOPICS.alert("bore_diameter", "out_of_spec"), dumps(Alert(
        ts_ns=T0 + 502 * 10**9, seq=502, subject="bore_diameter", kind="out_of_spec", state=AlertState.RAISED,
        severity=Severity.CRITICAL, value=12.061, limit=12.05, lsl=11.95, usl=12.05, message="above USL")))
    publisher.send(TOPICS.event("caliper-1"), dumps(HealthEvent(
        ts_ns=T0 + 503 * 10**9, seq=503, subject="caliper-1", state="online", detail={"reconnects": 2})))
    publisher.send(TOPICS.presence, json.dumps({"v": 1, "type": "presence", "state": "online", "ts_ns": T0,
                                              "version": "0.1.0"}), retain=True)
    publisher.flush()
    wait_until(lambda: len(stored_seqs(victoria)) == 500, what="500 readings")
    assert stored_seqs(victoria) == list(range(1, 501))
    series = victoria.export('{__name__="reading_value"}')
    assert series[0]["metric"] == {"__name__": "reading_value", "site": "dongguan-2", "line": "line-3",
                                   "gateway": "gw-01", "instrument": "caliper-1",
                                   "characteristic": "bore_diameter", "unit": "mm"}
    wait_until(lambda: victoria.export('{__name__="presence_online"}'), what="presence point")
    assert victoria.export('{__name__="stats_cpk"}')[0]["values"] == [1.4]
    assert victoria.export('{__name__="alert_active"}')[0]["metric"]["kind"] == "out_of_spec"
    assert victoria.export('{__name__="event_detail_reconnects"}')[0]["values"] == [2.0]
    # the same records delivered again (QoS 1 after a reconnect) are dropped as duplicates
    publisher.readings(range(401, 501))
    publisher.flush()
    wait_until(lambda: bridge.tracker.duplicates == 100, what="100 duplicates counted")
    assert stored_seqs(victoria) == list(range(1, 501))
    assert bridge.counters.dead_letters == 0 and bridge.tracker.gaps == 0


# What gateways from before the rename publish (docs/payloads.md, "Renamed names"): the bridge takes it as today's.
FORMER_PRESENCE_TOPIC = f"{TOPICS.base}/status"


def test_presence_on_the_former_status_topic_is_stored_as_presence(mosquitto, victoria, publisher, start_bridge,
                                                                   tmp_path):
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.send(FORMER_PRESENCE_TOPIC, json.dumps({"v": 1, "type": "presence", "state": "online", "ts_ns": T0,
                                                      "version": "0.1.0"}), retain=True)
    publisher.flush()
    series = wait_until(lambda: victoria.export('{__name__="presence_online"}'), what="presence point")
    assert series[0]["metric"]["gateway"] == "gw-01" and series[0]["values"] == [1]
    publisher.send(FORMER_PRESENCE_TOPIC, json.dumps({"v": 1, "type": "presence", "state": "offline", "ts_ns": T0,
                                                      "version": "0.1.0"}), retain=True)  # its last will
    publisher.flush()
    wait_until(lambda: victoria.export('{__name__="presence_online"}')[0]["values"] == [1, 0],
               what="the offline presence point")
    assert bridge.counters.dead_letters == 0


def test_health_events_of_the_former_type_status_are_stored_as_events(mosquitto, victoria, publisher,
                                                                      start_bridge, tmp_path):
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.readings(range(1, 4))
    publisher.send(TOPICS.event("caliper-1"), json.dumps({
        "v": 1, "type": "status", "ts_ns": T0 + 4 * 10**9, "seq": 4, "subject": "caliper-1", "state": "offline",
        "message": "port vanished", "detail": {"reconnects": 3}}))
    # 5..7 dropped by the gateway's spool, and said so the old way: the numbers stay explained, not a gap
    publisher.send(TOPICS.event("spool"), json.dumps({
        "v": 1, "type": "status", "ts_ns": T0 + 8 * 10**9, "seq": 8, "subject": "spool", "state": "dropped",
        "message": "disk budget full", "detail": {"first_seq": 5, "last_seq": 7, "count": 3}}))
    publisher.readings(range(9, 11))
    publisher.flush()
    wait_until(lambda: victoria.export('{__name__="event_detail_reconnects"}'), what="the instrument event")
    assert victoria.export('{__name__="event_online"}')[0]["values"] == [0]
    wait_until(lambda: victoria.export('{__name__="integrity_count", kind="dropped"}'), what="the drop report")
    wait_until(lambda: stored_seqs(victoria) == [1, 2, 3, 9, 10], what="the readings")
    time.sleep(1.0)  # past the gap grace (0.5 s): an unexplained 5..7 would be reported by now
    assert bridge.tracker.gaps == 0 and bridge.counters.dead_letters == 0


SHIPPED_BROKER_CONF = Path(__file__).resolve().parents[1] / "deploy" / "cloud" / "mosquitto" / "mosquitto.conf"


def shipped_queue_settings() -> str:
    """The queue and in-flight lines of the shipped broker configuration: "nothing lost" depends on them
    (Mosquitto's default max_queued_messages 1000 silently drops messages held for the bridge)."""
    lines = [line for line in SHIPPED_BROKER_CONF.read_text().splitlines()
             if line.split(" ", 1)[0] in ("max_queued_messages", "max_queued_bytes", "max_inflight_messages",
                                          "max_packet_size")]
    assert len(lines) == 4, f"{SHIPPED_BROKER_CONF} lost its queue settings: {lines}"
    return "\n".join(lines) + "\n"


def test_database_outage_loses_nothing(mosquitto_factory, victoria, start_bridge, tmp_path):
    # The broker runs with the shipped queue settings: that is what production relies on.
    mosquitto = mosquitto_factory(shipped_queue_settings())
    publisher = Publisher(mosquitto)
    config = bridge_config(mosquitto, victoria, tmp_path)
    bridge = start_bridge(config)
    publisher.readings(range(1, 101))
    publisher.flush()
    wait_until(lambda: len(stored_seqs(victoria)) == 100, what="first 100 readings")
    victoria.stop()
    # more messages than the broker's in-flight window and the bridge's receive maximum, and in all more
    # than Mosquitto's default max_queued_messages (1000) would hold for the bridge
    publisher.readings(range(101, 2101), per_message=2)
    publisher.flush()
    wait_until(lambda: bridge.writer.failures >= 2, what="failing writes during the outage")
    # the bridge itself goes away during the outage, nothing acknowledged; messages keep coming
    bridge.stop()
    publisher.readings(range(2101, 3101), per_message=2)
    publisher.flush()
    victoria.start()
    start_bridge(config)  # same client id: the broker's persistent session resumes
    wait_until(lambda: len(stored_seqs(victoria)) >= 3100, timeout=40, what="all 3100 readings")
    assert stored_seqs(victoria) == list(range(1, 3101))
    assert "dropped" not in mosquitto.log_text().lower()
    publisher.close()


def test_invalid_payloads_are_dead_lettered(mosquitto, victoria, publisher, start_bridge, tmp_path):
    letters: list[dict] = []
    got = threading.Event()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(c, u, msg):
        letters.append({"topic": msg.topic, **json.loads(msg.payload)})
        got.set()

    watcher.on_message = on_message
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.loop_start()
    watcher.subscribe("floorwatch/deadletter/#", qos=1)
    try:
        bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
        good = Reading(ts_ns=T0, seq=1, instrument="caliper-1", characteristic="bore_diameter", value=12.0,
                       unit="mm")
        publisher.send(TOPICS.readings, b"\xff\xfe not json")
        publisher.send(TOPICS.readings, json.dumps({**encode_batch([good]), "v": 2}))
        bad_row = encode_batch([good])
        bad_row["rows"][0][3] = "12.0"  # a number as text: garbage must never become a number
        publisher.send(TOPICS.readings, json.dumps(bad_row))
        publisher.send(TOPICS.stats("bore_diameter"), dumps(good))  # a reading on a stats topic
        publisher.send(f"{TOPICS.base}/firmware/blob", b"{}")
        publisher.send(TOPICS.presence, json.dumps({"v": 1, "type": "presence", "state": "asleep", "ts_ns": 1}))
        publisher.send(TOPICS.readings, json.dumps(encode_batch([good])))  # still running: this arrives
        publisher.flush()
        wait_until(lambda: len(letters) == 6, what="6 dead letters")
        wait_until(lambda: stored_seqs(victoria) == [1], what="the valid reading")
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    reasons = {(x["topic"].removeprefix("floorwatch/deadletter/"), x["reason"]) for x in letters}
    assert (TOPICS.readings, "not a v1 'readings' batch payload") in reasons
    assert any(t == TOPICS.readings and r.startswith("payload is not JSON") for t, r in reasons)
    assert any("rows[0]: value must be a finite number or null" in r for _, r in reasons)
    assert any(t.endswith("/stats/bore_diameter") and "carries 'reading' payloads" in r for t, r in reasons)
    assert any(t.endswith("/firmware/blob") and "unknown topic kind 'firmware'" in r for t, r in reasons)
    assert any(t == TOPICS.presence and "'asleep' is not 'online' or 'offline'" in r for t, r in reasons)
    binary = next(x for x in letters if x["reason"].startswith("payload is not JSON"))
    assert binary["encoding"] == "base64"
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) == 6
    assert bridge.counters.dead_letters == 6


def test_gaps_are_reported_and_spool_drops_explained(mosquitto, victoria, publisher, start_bridge, tmp_path):
    state = tmp_path / "seq.json"
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path, state_file=str(state)))
    publisher.readings(range(1, 11))
    # 11..15 dropped by the gateway (reported), 16..20 lost without a word
    publisher.send(TOPICS.event("spool"), dumps(HealthEvent(
        ts_ns=T0 + 21 * 10**9, seq=21, subject="spool", state="dropped", message="disk budget full",
        detail={"first_seq": 11, "last_seq": 15, "count": 5})))
    publisher.readings(range(22, 31))
    publisher.flush()
    wait_until(lambda: bridge.tracker.gaps == 1, what="a gap report")

    def integrity() -> dict[tuple[str, str], list[float]]:
        return {(s["metric"]["__name__"], s["metric"]["kind"]): s["values"]
                for s in victoria.export('{__name__=~"integrity_.*"}')}

    wait_until(lambda: ("integrity_count", "gap") in integrity(), what="gap point")
    got = integrity()
    assert got[("integrity_first_seq", "gap")] == [16] and got[("integrity_last_seq", "gap")] == [20]
    assert got[("integrity_explained", "gap")] == [0]
    assert got[("integrity_first_seq", "dropped")] == [11] and got[("integrity_count", "dropped")] == [5]
    assert got[("integrity_explained", "dropped")] == [1]
    # a late arrival inside a reported gap is still written, not taken for a duplicate
    publisher.readings([17])
    publisher.flush()
    wait_until(lambda: 17 in stored_seqs(victoria), what="late reading 17")
    saved = json.loads(state.read_text())["dongguan-2/line-3/gw-01"]
    assert saved["high"] == 30
    assert [m[:2] for m in saved["missing"]] == [[16, 16], [18, 20]]


@pytest.mark.parametrize(("topic", "reading", "reason"), [
    ("floorwatch/v1/dong guan/line-3/gw-01/readings", {}, "site 'dong guan' is not a valid name"),
    (TOPICS.readings, {"instrument": "cal\\"}, "instrument 'cal\\\\' is not a valid name"),
    (TOPICS.readings, {"characteristic": "bore\nx"}, "characteristic 'bore\\nx' is not a valid name"),
    (TOPICS.readings, {"unit": "mm\\"}, "unit 'mm\\\\' of 'bore_diameter' has control characters"),
])
def test_names_that_would_break_the_line_protocol_are_invalid(topic, reading, reason):
    from floorwatch.bridge.message import Incoming
    from floorwatch.bridge.validate import Invalid, parse_message

    r = Reading(**{"ts_ns": T0, "seq": 1, "instrument": "caliper-1", "characteristic": "bore_diameter",
                   "value": 12.0, "unit": "mm", **reading})
    msg = Incoming(1, 1, topic, json.dumps(encode_batch([r])).encode(), False, 0, 0)
    with pytest.raises(Invalid) as err:
        parse_message("floorwatch/v1", msg)
    assert reason in str(err.value)


def test_bridges_in_one_group_split_the_load(mosquitto, victoria, publisher, start_bridge, tmp_path):
    # gap_grace is long: each instance sees only its share of the numbers (docs/influxdb-schema.md)
    one = start_bridge(bridge_config(mosquitto, victoria, tmp_path, client_id="bridge-a", gap_grace=3600))
    two = start_bridge(bridge_config(mosquitto, victoria, tmp_path, client_id="bridge-b", gap_grace=3600))
    publisher.readings(range(1, 401), per_message=10)
    publisher.flush()
    wait_until(lambda: len(stored_seqs(victoria)) == 400, what="400 readings through two bridges")
    assert stored_seqs(victoria) == list(range(1, 401))
    assert one.counters.messages > 0 and two.counters.messages > 0
    assert one.counters.messages + two.counters.messages == 40


def test_numbers_the_gateway_skipped_are_an_explained_gap(mosquitto, victoria, publisher, start_bridge, tmp_path):
    """A gateway whose spool file was lost (or after a power cut) resumes above its sequence reservation and
    says so: the spool queues a ``sequence_skipped`` event, which the gateway publishes on ``events/spool``.
    Those numbers were never used: the bridge must show an explained gap, not data lost."""
    from floorwatch.edge.spool import Spool

    path = tmp_path / "spool.sqlite"
    with Spool(path, max_bytes=1 << 20, seq_reserve=50) as spool:
        spool.issue(10)
        spool.flush()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with Spool(path, max_bytes=1 << 20, seq_reserve=50) as spool:
        [(kind, detail)] = spool_reports(spool)
        resumed = spool.issue(10)
    # a new file does not know which numbers the lost one used: everything up to the reservation
    assert kind == "sequence_skipped" and (detail["first_seq"], detail["last_seq"]) == (1, 60) and resumed == 61
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.readings(range(1, 11))
    publisher.readings(range(61, 70))
    publisher.send(TOPICS.event("spool"), dumps(HealthEvent(  # as gateway/service.py publishes it
        ts_ns=T0 + 70 * 10**9, seq=70, subject="spool", state=kind, message="sequence numbers never used",
        detail=detail)))
    publisher.flush()
    wait_until(lambda: len(stored_seqs(victoria)) == 19, what="19 readings")
    wait_until(lambda: victoria.export('{__name__="integrity_explained"}'), what="an integrity point")
    time.sleep(1.0)  # twice the gap grace: an unexplained gap would be reported by now
    got = {(s["metric"]["__name__"], s["metric"]["kind"]): s["values"]
           for s in victoria.export('{__name__=~"integrity_.*"}')}
    assert bridge.tracker.gaps == 0, got
    assert got[("integrity_first_seq", "skipped")] == [1] and got[("integrity_last_seq", "skipped")] == [60]
    assert got[("integrity_count", "skipped")] == [60] and got[("integrity_explained", "skipped")] == [1]
    assert ("integrity_count", "gap") not in got


def test_a_payload_that_breaks_the_decoder_costs_only_itself(mosquitto, victoria, publisher, start_bridge, tmp_path):
    """Payloads Python's own decoders choke on (an integer too large for a float, nesting too deep for the
    JSON parser) must be dead-lettered like any invalid payload — not stall the batch they arrived in
    (left unacknowledged, its numbers already marked as seen, so a redelivery would be dropped)."""
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    huge = json.dumps(encode_batch([Reading(T0, 11, "caliper-1", "bore_diameter", 1.0, "mm")]))
    huge = huge.replace("[[1700000000000000000, 11, 0, 1.0,", "[[1700000000000000000, 11, 0, 1" + "0" * 400 + ",")
    assert "0" * 400 in huge
    publisher.readings(range(1, 11))
    publisher.send(TOPICS.readings, huge)
    publisher.send(TOPICS.readings, b"[" * 100_000)
    publisher.readings(range(12, 21))
    publisher.flush()
    wait_until(lambda: stored_seqs(victoria) == [*range(1, 11), *range(12, 21)], timeout=10,
               what="every valid reading, also those batched with the bad payloads")
    wait_until(lambda: bridge.counters.dead_letters == 2, what="2 dead letters")
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    reasons = sorted(x["reason"] for x in letters)
    assert "too large" in reasons[0] or "too large" in reasons[1], reasons
    assert any("nested too deeply" in r for r in reasons), reasons


def test_nan_and_infinity_are_not_json_and_never_become_a_reading(mosquitto, victoria, publisher, start_bridge,
                                                                   tmp_path):
    """docs/payloads.md: JSON without NaN, undefined figures are null. Python's decoder would accept the
    tokens NaN/Infinity and turn 1e999 into infinity; stored, such a reading would be an "ok" point whose
    value silently vanished. They are dead-lettered instead."""
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    good = json.dumps(encode_batch([Reading(T0 + 10**9, 1, "caliper-1", "bore_diameter", 12.0, "mm")]))
    publisher.send(TOPICS.readings, good)
    for seq, token in ((2, "Infinity"), (3, "NaN"), (4, "-1e999")):
        publisher.send(TOPICS.readings, good.replace("[1700000001000000000, 1, 0, 12.0,",
                                                     f"[{T0 + seq * 10**9}, {seq}, 0, {token},"))
    publisher.send(TOPICS.stats("bore_diameter"), dumps(stats(5)).replace(b'"cpk":1.4', b'"cpk":NaN'))
    publisher.readings([6])
    publisher.flush()
    wait_until(lambda: bridge.counters.dead_letters == 4 and 6 in stored_seqs(victoria), what="4 dead letters")
    assert stored_seqs(victoria) == [1, 6] and not victoria.export('{__name__="stats_seq"}')
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert all("not a number JSON allows" in x["reason"] for x in letters), letters


def test_gap_points_count_what_is_still_missing(mosquitto, victoria, publisher, start_bridge, tmp_path):
    """One gap, one integrity point whose ``count`` is what is still missing: a late arrival splits a gap in
    two pieces, which must not become two points with the same series and time (one would overwrite the
    other); and once written, the point is rewritten as numbers arrive late or the gateway explains them —
    a partly explained gap stays unexplained for the rest."""
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.readings(range(1, 11))
    publisher.readings(range(21, 31))
    publisher.readings([15])  # late, before the gap is reported: 11..14 and 16..20 remain
    publisher.flush()
    wait_until(lambda: bridge.tracker.gaps, what="a gap report")

    def gap() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for s in victoria.export('{__name__=~"integrity_(first_seq|last_seq|count|explained)", kind="gap"}'):
            out[s["metric"]["__name__"].removeprefix("integrity_")] = s["values"]
        return out

    # (VictoriaMetrics keeps every sample written at one time; InfluxDB keeps the last: the rewrite)
    wait_until(lambda: gap().get("count"), what="the gap point")
    assert gap() == {"first_seq": [11], "last_seq": [20], "count": [9], "explained": [0]}
    publisher.readings([16])  # late, after the report
    publisher.send(TOPICS.event("spool"), dumps(HealthEvent(
        ts_ns=T0 + 31 * 10**9, seq=31, subject="spool", state="dropped", message="disk budget full",
        detail={"first_seq": 11, "last_seq": 14, "count": 4})))
    publisher.flush()
    wait_until(lambda: 4 in gap()["count"], what="the gap point rewritten")
    assert set(gap()["explained"]) == {0} and set(gap()["first_seq"]) == {11} and set(gap()["last_seq"]) == {20}
    publisher.readings(range(17, 21))
    publisher.flush()
    wait_until(lambda: 0 in gap()["count"], what="the gap point rewritten again")
    assert 1 in gap()["explained"]


def test_a_reinstalled_gateway_numbering_from_1_again_is_a_reset_not_duplicates(mosquitto, victoria, publisher,
                                                                                start_bridge, tmp_path):
    """A gateway whose spool and reservation were wiped (new SD card, reinstall) numbers from 1 again. Its
    new records are not duplicates — they are newer than anything seen — even while its numbers are still
    below the highest seen: they must be written, and the reset reported."""
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.readings(range(1, 301))
    publisher.flush()
    wait_until(lambda: len(stored_seqs(victoria)) == 300, what="300 readings")

    def again(seqs: range) -> None:  # the reinstalled gateway, an hour later
        rows = [Reading(ts_ns=T0 + (3600 + s) * 10**9, seq=s, instrument="caliper-1",
                        characteristic="bore_diameter", value=12.0, unit="mm") for s in seqs]
        publisher.send(TOPICS.readings, json.dumps(encode_batch(rows)))

    again(range(1, 51))  # the first batch may leave before the gateway's "started" event
    publisher.send(TOPICS.event("gateway"), dumps(HealthEvent(ts_ns=T0 + 3651 * 10**9, seq=51, subject="gateway",
                                                              state="started")))
    again(range(52, 101))
    again(range(91, 101))  # delivered twice: duplicates of the new numbering
    publisher.flush()
    wait_until(lambda: len(stored_seqs(victoria)) >= 399, what="the new gateway's 99 readings")
    assert stored_seqs(victoria) == sorted([*range(1, 301), *range(1, 51), *range(52, 101)])
    wait_until(lambda: bridge.tracker.duplicates == 10, what="10 duplicates")
    resets = victoria.export('{__name__="integrity_first_seq", kind="reset"}')
    assert resets and resets[0]["values"] == [1]
    # nothing is missing: the dashboards sum "count" of unexplained integrity points as records lost
    assert victoria.export('{__name__="integrity_count", kind="reset"}')[0]["values"] == [0]


def test_a_message_the_database_refuses_is_a_gap_with_the_reason(mosquitto, victoria, publisher, start_bridge,
                                                                 tmp_path):
    """A message the database refuses for good goes to the dead letters — and its records are NOT in the
    database, so the dashboards must show them missing (an integrity gap saying why), not count them as
    received. VictoriaMetrics refuses a line longer than 256 KiB with HTTP 400, as InfluxDB refuses e.g.
    a field whose type changed."""
    bridge = start_bridge(bridge_config(mosquitto, victoria, tmp_path))
    publisher.readings(range(1, 11))
    publisher.send(TOPICS.event("caliper-1"), dumps(HealthEvent(
        ts_ns=T0 + 11 * 10**9, seq=11, subject="caliper-1", state="offline", message="x" * 300_000)))
    publisher.readings(range(12, 21))
    publisher.flush()
    # (a batch is rewritten message by message after a refusal: VictoriaMetrics keeps both copies)
    wait_until(lambda: set(stored_seqs(victoria)) == {*range(1, 11), *range(12, 21)}, what="the 19 readings")
    wait_until(lambda: bridge.counters.dead_letters == 1, what="the refused message dead-lettered")
    wait_until(lambda: bridge.tracker.gaps == 1, what="a gap report for the refused record")

    def gap() -> dict:
        return {s["metric"]["__name__"]: s["values"]
                for s in victoria.export('{__name__=~"integrity_(first_seq|last_seq|count)", kind="gap"}')}

    # the gap point is written with the bridge's next batch: wait for it rather than race it
    expected = {"integrity_first_seq": [11], "integrity_last_seq": [11], "integrity_count": [1]}
    wait_until(lambda: gap() == expected, what="the gap point in the database")
    assert gap() == expected
    [letter] = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert letter["reason"].startswith("InfluxDB rejected the data (400)")


def test_a_dead_letter_the_broker_refuses_is_an_error_with_the_fix(mosquitto_factory, victoria, start_bridge,
                                                                   tmp_path, caplog):
    """An ACL that does not let the bridge write its dead-letter topic: MQTT 5 answers the dead letter with
    "not authorised" — not a delivery. The bridge says so with the fix and the payload (it is kept nowhere
    else when there is no dead-letter file), and carries on."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite floorwatch/v1/#\n")  # anonymous clients: no floorwatch/deadletter/#
    broker = mosquitto_factory(f"acl_file {acl}\n")
    publisher = Publisher(broker)
    config = bridge_config(broker, victoria, tmp_path)
    config = config.model_copy(update={"bridge": config.bridge.model_copy(update={"dead_letter_file": None})})
    bridge = start_bridge(config)
    publisher.send(TOPICS.readings, b"not json at all")
    publisher.readings([1])
    publisher.flush()
    wait_until(lambda: stored_seqs(victoria) == [1], what="the valid reading after the invalid one")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "dead letter" in r.getMessage()]
    assert errors and "refused" in errors[0] and "ACL" in errors[0] and "not json at all" in errors[0], errors
    assert bridge.counters.dead_letters == 1
    publisher.close()


def test_the_bridge_over_tls_with_a_client_certificate(mosquitto_factory, victoria, start_bridge, tmp_path):
    """The bridge's TLS context (CA, client certificate) against a real TLS broker requiring certificates."""
    from test_mqtt import issue_cert, tls_broker

    certs = tmp_path / "certs"
    certs.mkdir()
    broker, ca = tls_broker(mosquitto_factory, certs, require_client_cert=True)
    cert, key = issue_cert(certs, ca, "bridge", server=False)
    gw_cert, gw_key = issue_cert(certs, ca, "gw-01", server=False)
    config = bridge_config(broker, victoria, tmp_path)
    config = config.model_copy(update={"mqtt": config.mqtt.model_copy(update={
        "url": f"mqtts://127.0.0.1:{broker.port}", "ca_file": certs / "plant-ca.pem", "cert_file": cert,
        "key_file": key})})
    start_bridge(config)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.tls_set(ca_certs=str(certs / "plant-ca.pem"), certfile=str(gw_cert), keyfile=str(gw_key))
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    rows = [Reading(T0 + s, s, "caliper-1", "bore_diameter", 12.0, "mm") for s in range(1, 11)]
    pub.publish(TOPICS.readings, json.dumps(encode_batch(rows)), qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    wait_until(lambda: stored_seqs(victoria) == list(range(1, 11)), what="10 readings over TLS")
