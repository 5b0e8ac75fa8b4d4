"""The gateway's pipeline in-process, with the real spool, statistics core and alert tracker (no broker).

Measurements go in through ``Gateway.ingest`` exactly as drivers hand them over; what comes out is read
back from the real SQLite spool, decoded with the documented payload readers.
"""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest

from floorwatch.edge.clock import ManualClock
from floorwatch.edge.config import parse_config
from floorwatch.edge.model import AlertState, Measurement, MeasurementStatus, decode_batch, loads
from floorwatch.gateway.events import EventLog, safe_url
from floorwatch.gateway.service import Gateway
from harness._util import free_port


def make_config(tmp_path: Path, **over) -> dict:
    cfg = {
        "gateway": {"site": "s1", "line": "l1", "id": "gw", "data_dir": str(tmp_path / "data")},
        "instruments": [
            {"name": "caliper-1", "driver": "mitutoyo", "port": "/dev/null"},
            {"name": "counter-1", "driver": "modbus", "host": "127.0.0.1"},
        ],
        "characteristics": [
            {"name": "bore", "instrument": "caliper-1", "unit": "mm", "nominal": 12.0, "lsl": 11.95,
             "usl": 12.05, "window": 200, "rules": ["nelson_1"], "min_cpk": 1.33,
             "control": {"center": 12.0, "sigma": 0.004}},
            {"name": "parts", "instrument": "counter-1", "unit": "pcs", "kind": "count", "idle_after": 5},
        ],
        "mqtt": {"max_batch": 50},
        "spool": {"flush_interval": 0.1},
        "alerts": {"debounce": 1, "clear_after": 2, "rule_clear_after": 2},
        "web": {"enabled": False},
    }
    for key, value in over.items():
        cfg[key] = value
    return cfg


def gateway(tmp_path: Path, clock: ManualClock | None = None, **over) -> tuple[Gateway, io.StringIO]:
    out = io.StringIO()
    gw = Gateway(parse_config(make_config(tmp_path, **over)), clock=clock or ManualClock(),
                 events=EventLog(stream=out, timestamps=False), publish=False)
    gw.open()
    return gw, out


def spooled(gw: Gateway) -> list:
    """Every record in the spool, decoded: (topic suffix, object or list of readings or raw bytes)."""
    gw.flush()
    out = []
    for rec in gw.spool.pending(1_000_000):
        suffix = rec.topic[len(gw.topics.base) + 1 :]
        if suffix == "readings":
            out.append((suffix, decode_batch(json.loads(rec.payload)), rec))
        elif rec.payload:
            out.append((suffix, loads(rec.payload), rec))
        else:
            out.append((suffix, b"", rec))
    return out


def feed(gw: Gateway, clock: ManualClock, values, instrument="caliper-1", unit="mm", channel="",
         status=MeasurementStatus.OK) -> None:
    for v in values:
        clock.advance(0.01)
        gw.ingest(Measurement(v, unit, status, channel, ts_ns=clock.now_ns(), instrument=instrument))


def test_readings_are_numbered_batched_and_spooled_in_sequence_order(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0 + 0.001 * (i % 5) for i in range(120)])
    gw.tick()  # statistics snapshot (first round is due after stats_interval)
    clock.advance(1.5)
    gw.tick()
    records = spooled(gw)
    readings = [r for kind, obj, _ in records if kind == "readings" for r in obj]
    assert [r.seq for r in readings] == list(range(1, 121))
    batches = [obj for kind, obj, _ in records if kind == "readings"]
    assert max(len(b) for b in batches) <= 50
    assert all(r.characteristic == "bore" and r.unit == "mm" for r in readings)
    # spool order is sequence order across all topics, and every numbered record carries its numbers
    firsts = [rec.first_seq for _, _, rec in records if rec.first_seq is not None]
    assert firsts == sorted(firsts)
    stats = [obj for kind, obj, _ in records if kind == "stats/bore"]
    assert len(stats) == 1 and stats[0].n_total == 120 and stats[0].seq == 121
    assert math.isclose(stats[0].mean, sum(r.value for r in readings) / 120)
    gw.close()


def test_units_are_normalised_and_unconvertible_units_become_error_readings(tmp_path):
    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)
    feed(gw, clock, [0.4725], unit="in")  # 12.0015 mm
    feed(gw, clock, [12.0], unit="g")  # a scale wired to a length characteristic
    readings = [r for kind, obj, _ in spooled(gw) if kind == "readings" for r in obj]
    assert readings[0].unit == "mm" and math.isclose(readings[0].value, 12.0015)
    assert readings[1].status is MeasurementStatus.ERROR and math.isnan(readings[1].value)
    assert gw.characteristics["bore"].stats.snapshot().n_total == 1  # only the good one counted
    assert gw.characteristics["bore"].stats.snapshot().n_rejected == 1
    assert "event=unit_unconvertible" in log.getvalue() and "characteristic=bore" in log.getvalue()
    gw.close()


def test_out_of_spec_raises_with_value_and_limits_then_clears_with_retained_copy_emptied(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0, 12.001, 12.061, 12.0, 12.0, 12.0])
    records = spooled(gw)
    alerts = [(kind, obj) for kind, obj, _ in records if kind.startswith("alerts/bore/out_of_spec")]
    assert [a.state for _, a in alerts] == [AlertState.RAISED, AlertState.CLEARED]
    raised = alerts[0][1]
    assert raised.value == 12.061 and raised.limit == 12.05 and raised.lsl == 11.95 and raised.usl == 12.05
    assert raised.severity.value == "critical" and "above USL" in raised.message
    active = [(obj, rec) for kind, obj, rec in records if kind == "active/bore/out_of_spec"]
    assert len(active) == 2 and all(rec.retain for _, rec in active)
    assert active[0][0] == raised and active[1][0] == b""  # cleared: zero-length retained message
    # the rule of a 3-sigma point fired too, and a snapshot follows each alert
    kinds = {kind for kind, _, _ in records}
    assert "alerts/bore/nelson_1" in kinds and "stats/bore" in kinds
    gw.close()


def test_state_survives_a_restart(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0 + 0.002 * math.sin(i) for i in range(80)] + [12.07])
    before = gw.characteristics["bore"].stats.snapshot()
    active_before = {(a.subject, a.kind) for a in gw.alerts.active()}
    assert ("bore", "out_of_spec") in active_before
    gw.close()
    last_seq = gw.spool.last_seq
    gw2, log = gateway(tmp_path, clock)
    after = gw2.characteristics["bore"].stats.snapshot()
    assert after.n_total == before.n_total and after.mean == before.mean and after.cusum_pos == before.cusum_pos
    assert {(a.subject, a.kind) for a in gw2.alerts.active()} == active_before
    assert gw2.spool.issue() == last_seq + 1  # numbering continues where it stopped
    assert "event=state_restored" in log.getvalue()
    # good readings clear the restored alert: it is not forgotten
    feed(gw2, clock, [12.0, 12.0])
    assert ("bore", "out_of_spec") not in {(a.subject, a.kind) for a in gw2.alerts.active()}
    gw2.close()


def test_changed_limits_start_statistics_afresh(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0] * 30)
    gw.close()
    cfg = make_config(tmp_path)
    cfg["characteristics"][0]["usl"] = 12.04
    gw2 = Gateway(parse_config(cfg), clock=clock, events=EventLog(stream=io.StringIO()), publish=False)
    gw2.open()
    assert gw2.characteristics["bore"].stats.snapshot().n_total == 0
    assert "configuration changed" in gw2.events.stream.getvalue()
    gw2.close()


def test_damaged_state_file_is_moved_aside_and_reported(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0] * 5)
    gw.close()
    gw.state_path.write_text('{"version": 1, "characteristics": ')
    gw2, log = gateway(tmp_path, clock)
    assert "event=state_unreadable" in log.getvalue()
    assert list(gw.state_path.parent.glob("*.state.json.corrupt-*"))
    assert gw2.characteristics["bore"].stats.snapshot().n_total == 0
    gw2.close()


def test_line_stopped_is_raised_when_the_count_stops_and_cleared_when_parts_come(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [100.0, 101.0, 102.0], instrument="counter-1", unit="pcs")
    for _ in range(7):
        clock.advance(1.0)
        feed(gw, clock, [102.0], instrument="counter-1", unit="pcs")  # unchanged: no new part
        gw.tick()
    assert ("parts", "line_stopped") in {(a.subject, a.kind) for a in gw.alerts.active()}
    for i in range(3):
        feed(gw, clock, [103.0 + i], instrument="counter-1", unit="pcs")
        gw.tick()
    records = spooled(gw)
    states = [obj.state for kind, obj, _ in records if kind == "alerts/parts/line_stopped"]
    assert states == [AlertState.RAISED, AlertState.CLEARED]
    gw.close()


def test_cpk_below_the_minimum_raises_cpk_low(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    # a wide process: sigma 0.02 against a tolerance of +-0.05 -> Cpk about 0.8, below 1.33
    rng = random.Random(1)
    feed(gw, clock, [rng.gauss(12.0, 0.02) for _ in range(60)])
    clock.advance(1.1)
    gw.tick()
    raised = [obj for kind, obj, _ in spooled(gw) if kind == "alerts/bore/cpk_low"]
    assert raised and raised[0].state is AlertState.RAISED and raised[0].limit == 1.33
    assert raised[0].value < 1.33
    gw.close()


def test_spool_backlog_above_the_threshold_raises_an_alert(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock, spool={"flush_interval": 0.1, "backlog_alert": 10})
    feed(gw, clock, [12.0] * 600)
    gw.flush()
    gw.tick()
    assert ("spool", "spool_backlog") in {(a.subject, a.kind) for a in gw.alerts.active()}
    status = gw.status()
    assert status["spool"]["backlog"] > 10
    assert any(a["kind"] == "spool_backlog" for a in status["alerts"])
    gw.close()


def test_not_ok_and_garbage_values_never_enter_statistics(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0, 12.001])
    feed(gw, clock, [float("nan"), float("inf")])
    feed(gw, clock, [99.0], status=MeasurementStatus.OVERLOAD)
    snap = gw.characteristics["bore"].stats.snapshot()
    assert snap.n_total == 2 and snap.n_rejected == 3 and snap.max == 12.001
    readings = [r for kind, obj, _ in spooled(gw) if kind == "readings" for r in obj]
    assert [r.status.value for r in readings] == ["ok", "ok", "error", "error", "overload"]
    assert not gw.alerts.active()  # an overload is shown, never raised as out of spec
    gw.close()


def test_measurements_of_unknown_channels_are_counted_not_published(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [21.5], instrument="counter-1", unit="degC", channel="temperature")
    assert not [obj for kind, obj, _ in spooled(gw) if kind == "readings"]
    assert gw.routes.unrouted == {("counter-1", "temperature"): 1}
    gw.close()


def test_an_unstamped_measurement_is_refused_counted_and_logged_not_a_reading(tmp_path):
    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)
    gw.ingest(Measurement(12.0, "mm"))  # straight from a parser: no time, no instrument
    gw.ingest(Measurement(12.0, "mm", instrument="caliper-1"))  # no time
    gw.ingest(Measurement(12.0, "mm", ts_ns=clock.now_ns()))  # no instrument
    feed(gw, clock, [12.001])  # the gateway goes on with stamped ones
    readings = [r for kind, obj, _ in spooled(gw) if kind == "readings" for r in obj]
    assert [(r.seq, r.value) for r in readings] == [(1, 12.001)]
    assert gw.unstamped_refused == 3 and gw.status()["gateway"]["unstamped_refused"] == 3
    assert "level=error event=measurement_unstamped" in log.getvalue()
    assert "Driver.stamp()" in log.getvalue()
    gw.close()


def test_status_document_is_json_and_names_everything(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.0, 12.01])
    clock.advance(1.1)
    gw.tick()
    gw.flush()
    doc = json.loads(json.dumps(gw.status(), allow_nan=False))
    assert doc["gateway"]["readings"] == 2 and doc["gateway"]["last_seq"] >= 3
    bore = next(c for c in doc["characteristics"] if c["name"] == "bore")
    assert bore["last_value"] == 12.01 and bore["n"] == 2 and math.isclose(bore["mean"], 12.005)
    assert doc["broker"]["enabled"] is False
    gw.close()


def test_log_lines_are_one_per_event_rate_limited_and_free_of_secrets():
    out = io.StringIO()
    now = [0.0]
    ev = EventLog(stream=out, clock=lambda: now[0], timestamps=False, window=60)
    for _ in range(100):
        ev.warning("frame_rejected", instrument="scale-1", reason="bad checksum")
    ev.warning("frame_rejected", instrument="caliper-1", reason="bad checksum")
    now[0] = 61.0
    ev.warning("frame_rejected", instrument="scale-1", reason="bad checksum")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[2].endswith("repeated=99")
    assert safe_url("mqtts://gw-01:hunter2@broker:8883") == "mqtts://broker:8883"


def test_a_value_sitting_on_the_limit_does_not_flap(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock, alerts={"debounce": 1, "clear_after": 2, "hysteresis": 0.1})
    # around the USL (12.05): out, just in, out, just in ... then convincingly back inside
    feed(gw, clock, [12.051, 12.049, 12.052, 12.048, 12.051, 12.049, 12.049, 12.0, 12.0])
    states = [obj.state for kind, obj, _ in spooled(gw) if kind == "alerts/bore/out_of_spec"]
    assert states == [AlertState.RAISED, AlertState.CLEARED]
    gw.close()


def test_restored_alert_of_a_removed_characteristic_is_cleared(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [12.09])
    assert ("bore", "out_of_spec") in {(a.subject, a.kind) for a in gw.alerts.active()}
    gw.close()
    last = gw.spool.last_seq
    cfg = make_config(tmp_path)
    cfg["characteristics"][0]["name"] = "bore_renamed"
    gw2 = Gateway(parse_config(cfg), clock=clock, events=EventLog(stream=io.StringIO()), publish=False)
    gw2.open()
    assert not gw2.alerts.active()
    records = spooled(gw2)
    cleared = [obj for kind, obj, rec in records if kind.startswith("alerts/bore/") and rec.first_seq > last]
    assert cleared and all(a.state is AlertState.CLEARED for a in cleared)
    assert [obj for kind, obj, _ in records if kind == "active/bore/out_of_spec"][-1] == b""
    gw2.close()


async def test_instrument_offline_is_reported_and_alerts_go_to_the_webhook(tmp_path):
    """A driver that cannot open its port: offline event and alert after the grace period; the alert is
    POSTed to a real HTTP receiver."""
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = make_config(tmp_path, alerts={"webhook_url": f"http://127.0.0.1:{server.server_port}/hook"})
    points = [{"name": "", "address": 0, "type": "u32", "counter": True}]
    cfg["instruments"] = [{"name": "caliper-1", "driver": "mitutoyo", "port": str(tmp_path / "no-such-port")},
                          {"name": "counter-1", "driver": "modbus", "host": "127.0.0.1", "tcp_port": free_port(),
                           "timeout": 0.2, "options": {"points": points}},
                          # a driver that cannot even be created (no register map) is offline, with the reason
                          {"name": "plc-2", "driver": "modbus", "host": "127.0.0.1"}]
    out = io.StringIO()
    gw = Gateway(parse_config(cfg), events=EventLog(stream=out, timestamps=False), publish=False,
                 offline_after=0.3)
    events = []
    gw.listeners.append(lambda kind, rec: events.append(rec) if kind == "event" else None)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        for _ in range(100):
            if len([r for r in received if r["kind"] == "instrument_offline"]) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        assert await task == 0
        server.shutdown()
    offline = {e.subject for e in events if e.state == "offline"}
    assert offline == {"caliper-1", "counter-1", "plc-2"}
    assert {r["subject"] for r in received if r["kind"] == "instrument_offline"} == offline
    plc = next(e for e in events if e.subject == "plc-2")
    assert "register map" in plc.message
    assert all(r["state"] == "raised" and r["severity"] == "critical" and r["seq"] > 0 for r in received)
    assert "event=instrument_offline instrument=caliper-1" in out.getvalue()


def test_state_is_saved_every_few_seconds_not_every_flush(tmp_path):
    """The state is ~35 kB per characteristic: rewriting it every flush would wear out an SD card."""
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    gw.flush()
    saved = gw.state_path.read_bytes()
    feed(gw, clock, [12.0] * 10)
    gw.flush()
    assert gw.state_path.read_bytes() == saved  # within state_interval: not rewritten
    clock.advance(gw.state_interval)
    gw.flush()
    assert gw.state_path.read_bytes() != saved
    saved = gw.state_path.read_bytes()
    clock.advance(gw.state_interval)
    gw.flush()
    assert gw.state_path.read_bytes() == saved  # nothing changed: not rewritten
    gw.close()


def test_a_corrupt_spool_is_moved_aside_and_reported(tmp_path):
    spool = tmp_path / "data" / "spool.sqlite"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"this is not an SQLite database" * 100)
    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)
    gw.tick()
    events = [obj for kind, obj, _ in spooled(gw) if kind == "events/spool"]
    assert [e.state for e in events] == ["corrupt"]
    assert "moved aside" in events[0].message
    assert "event=spool_corrupt" in log.getvalue()
    assert list(spool.parent.glob("spool.sqlite.corrupt-*"))
    feed(gw, clock, [12.0])  # and the gateway goes on with a new spool
    assert [r.value for kind, obj, _ in spooled(gw) if kind == "readings" for r in obj] == [12.0]
    gw.close()


def test_state_file_of_the_wrong_shape_never_stops_the_start(tmp_path):
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    gw.close()
    for garbage in ('[1, 2, 3]', '{"version": 1, "characteristics": [1]}',
                    '{"version": 1, "characteristics": {"bore": 5}}', '{"version": 99}', '\x00\xff'):
        gw.state_path.write_text(garbage)
        gw2, log = gateway(tmp_path, clock)
        assert "event=state_unreadable" in log.getvalue(), garbage
        feed(gw2, clock, [12.0])
        assert gw2.characteristics["bore"].stats.snapshot().n_total == 1
        gw2.close()


def test_subgroup_rules_are_judged_once_per_subgroup(tmp_path):
    """With subgroups of 5 a rule alert must not clear on the readings in between two subgroup means."""
    clock = ManualClock()
    cfg = make_config(tmp_path)
    cfg["characteristics"][0].update(subgroup_size=5, rules=["nelson_1"], window=200)
    gw = Gateway(parse_config(cfg), clock=clock, events=EventLog(stream=io.StringIO()), publish=False)
    gw.open()
    feed(gw, clock, [12.0, 12.002, 11.998, 12.001, 11.999] * 4)  # four quiet subgroups
    feed(gw, clock, [12.04] * 5)  # a subgroup mean far beyond 3 sigma of the mean (but in spec)
    assert ("bore", "nelson_1") in {(a.subject, a.kind) for a in gw.alerts.active()}
    feed(gw, clock, [12.0, 12.002, 11.998, 12.001, 11.999])  # one quiet subgroup: rule_clear_after is 2
    assert ("bore", "nelson_1") in {(a.subject, a.kind) for a in gw.alerts.active()}
    feed(gw, clock, [12.0, 12.002, 11.998, 12.001, 11.999])  # the second: now it clears
    assert ("bore", "nelson_1") not in {(a.subject, a.kind) for a in gw.alerts.active()}
    gw.close()


def test_rule_alerts_hold_while_the_rule_keeps_firing_now_and_then(tmp_path):
    """A drifting process fires nelson_1 on some points and not others: the alert stays raised until
    rule_clear_after points pass without it, instead of flapping raised/cleared every few points."""
    clock = ManualClock()
    cfg = make_config(tmp_path)
    cfg["characteristics"][0].update(rules=["nelson_1"], control={"center": 12.0, "sigma": 0.001})
    cfg["alerts"] = {"debounce": 1, "clear_after": 2, "rule_clear_after": 10}
    gw = Gateway(parse_config(cfg), clock=clock, events=EventLog(stream=io.StringIO()), publish=False)
    gw.open()
    feed(gw, clock, [12.0, 12.0045, 12.0, 12.0, 12.0, 12.0045])  # beyond 3 sigma now and then
    raised = [a for a in gw.alerts.active() if a.kind == "nelson_1"]
    assert len(raised) == 1
    feed(gw, clock, [12.0] * 9)
    assert any(a.kind == "nelson_1" for a in gw.alerts.active())  # 9 quiet points: not yet
    feed(gw, clock, [12.0])
    assert not any(a.kind == "nelson_1" for a in gw.alerts.active())  # the 10th clears it
    gw.close()


# ------------------------------------------------------------------ review fixes: restarts, failures, blocking


def test_a_stopped_line_stays_stopped_across_a_restart(tmp_path):
    """The idle time is saved with the state: after a restart the line_stopped alert neither clears by
    itself nor waits a whole idle_after again."""
    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    feed(gw, clock, [100.0, 101.0], instrument="counter-1", unit="pcs")
    for _ in range(6):
        clock.advance(1.0)
        gw.tick()
    assert ("parts", "line_stopped") in {(a.subject, a.kind) for a in gw.alerts.active()}
    gw.close()
    clock.advance(30.0)  # down for 30 s
    gw2, _ = gateway(tmp_path, clock)
    feed(gw2, clock, [101.0], instrument="counter-1", unit="pcs")  # still no new part
    for _ in range(5):
        clock.advance(0.25)
        gw2.tick()
    idle = next(c for c in gw2.status()["characteristics"] if c["name"] == "parts")["idle_for"]
    assert idle == pytest.approx(6 + 30 + 1.25 + 0.01, abs=0.05)
    # the one raised before the restart (still in the spool: no broker here), and no clearing since
    assert [obj.state for kind, obj, _ in spooled(gw2) if kind == "alerts/parts/line_stopped"] == [
        AlertState.RAISED]
    assert ("parts", "line_stopped") in {(a.subject, a.kind) for a in gw2.alerts.active()}
    gw2.close()


def test_a_failing_listener_loses_no_reading(tmp_path):
    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)

    def broken_view(kind, record):
        raise RuntimeError("terminal went away")

    gw.listeners.append(broken_view)
    feed(gw, clock, [12.0, 12.061, 12.0, 12.0])  # readings and an alert raised and cleared
    records = spooled(gw)
    assert [r.seq for kind, obj, _ in records if kind == "readings" for r in obj] == [1, 2, 3, 4]
    assert [obj.state for kind, obj, _ in records if kind == "alerts/bore/out_of_spec"] == [
        AlertState.RAISED, AlertState.CLEARED]
    assert "event=listener_failed" in log.getvalue() and "terminal went away" in log.getvalue()
    gw.close()


def test_a_record_that_cannot_be_encoded_keeps_its_number_and_says_why(tmp_path):
    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)
    gw.health_event("spool", "dropped", "figures", {"count": 3, "ratio": math.nan, "at": tmp_path})
    gw.health_event("gateway", "odd", "a detail JSON cannot hold", {"ids": {1, 2}})
    feed(gw, clock, [12.0])
    records = spooled(gw)
    seqs = sorted(s for _, _, rec in records if rec.first_seq is not None
                  for s in range(rec.first_seq, rec.last_seq + 1))
    assert seqs == list(range(1, len(seqs) + 1))  # contiguous: nothing lost, nothing unexplained
    dropped = next(obj for kind, obj, _ in records if kind == "events/spool")
    assert dropped.detail == {"count": 3, "ratio": None, "at": str(tmp_path)}
    explained = next(obj for kind, obj, _ in records if kind == "events/gateway")
    assert explained.state == "record_unencodable" and "TypeError" in explained.message
    assert "event=record_unencodable" in log.getvalue()
    gw.close()


def test_unrouted_channels_are_counted_in_bounded_memory(tmp_path):
    from floorwatch.gateway.routing import MAX_UNROUTED

    clock = ManualClock()
    gw, _ = gateway(tmp_path, clock)
    for i in range(MAX_UNROUTED + 500):
        gw.ingest(Measurement(1.0, "mm", MeasurementStatus.OK, f"garbled-{i}", ts_ns=clock.now_ns(), instrument="caliper-1"))
    gw.ingest(Measurement(1.0, "mm", MeasurementStatus.OK, "garbled-1", ts_ns=clock.now_ns(), instrument="caliper-1"))
    assert len(gw.routes.unrouted) == MAX_UNROUTED and gw.routes.unrouted[("caliper-1", "garbled-1")] == 2
    gw.close()


async def test_a_stalled_state_write_does_not_hold_up_the_event_loop(tmp_path):
    """The state file (about 1 MB with 32 characteristics, fsynced) is written by a worker thread. A FIFO
    in place of the temporary file stands in for a stalled SD card: the write blocks until it is read."""
    import asyncio
    import os
    import threading

    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)
    feed(gw, clock, [12.0, 12.001])
    fifo = gw.state_path.with_name(gw.state_path.name + ".tmp")
    os.mkfifo(fifo)
    ticks = 0

    async def loop_turns() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counter = asyncio.create_task(loop_turns())
    flushing = asyncio.create_task(gw.flush_async())
    await asyncio.sleep(0.3)
    assert not flushing.done() and ticks >= 10  # the write waits; the loop goes on
    data = bytearray()
    reader = threading.Thread(target=lambda: data.extend(open(fifo, "rb").read()))  # noqa: SIM115
    reader.start()
    await asyncio.wait_for(flushing, 5)
    reader.join(5)
    counter.cancel()
    assert json.loads(data)["characteristics"]["bore"]["stats"] is not None
    os.unlink(fifo)  # a FIFO cannot be fsynced: that save failed and was reported, the next one is a file
    assert "event=state_not_saved" in log.getvalue()
    assert gw.spool.backlog() >= 1 and [r.seq for k, o, _ in spooled(gw) if k == "readings" for r in o] == [1, 2]
    gw.close()


async def test_a_driver_that_ignores_its_cancel_does_not_keep_the_gateway_from_stopping(tmp_path):
    """A driver stuck in a library call (it swallowed the cancel): the gateway stops anyway, saves its
    state, says which driver hung, and exits 0."""
    import asyncio
    import contextlib

    from floorwatch.drivers.base import Driver
    from floorwatch.gateway.instruments import InstrumentState

    class Stuck(Driver):
        released = False

        async def run(self, emit):
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if self.released:
                        raise
                    continue  # what a library bug looks like from outside

    cfg = parse_config(make_config(tmp_path))
    out = io.StringIO()
    gw = Gateway(cfg, events=EventLog(stream=out, timestamps=False), publish=False, start_instruments=False,
                 stop_timeout=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    while not gw.ready:
        await asyncio.sleep(0.01)
    inst: InstrumentState = gw.instruments["caliper-1"]
    inst.driver = Stuck(inst.config, None)
    inst.task = asyncio.create_task(gw.supervisor.drive(inst), name="driver:caliper-1")
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
    assert "event=driver_not_stopping task=driver:caliper-1" in out.getvalue()
    assert "event=gateway_stopped" in out.getvalue() and gw.state_path.exists()
    inst.driver.released = True
    inst.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await inst.task


async def test_a_failing_check_does_not_stop_the_spool_from_being_written(tmp_path):
    """A bug in the periodic checks (here: a driver whose health cannot be read) is reported, and readings
    still reach the disk every flush_interval."""
    import asyncio
    import contextlib

    from floorwatch.drivers.base import Driver

    class BrokenHealth(Driver):
        async def run(self, emit):
            await asyncio.Event().wait()

        def __getattribute__(self, name):
            if name == "health":
                raise RuntimeError("health is broken")
            return super().__getattribute__(name)

    cfg = make_config(tmp_path)
    cfg["instruments"][1]["tcp_port"] = free_port()  # nothing answers there
    out = io.StringIO()
    gw = Gateway(parse_config(cfg), events=EventLog(stream=out, timestamps=False), publish=False)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        while not gw.ready:
            await asyncio.sleep(0.01)
        inst = gw.instruments["caliper-1"]
        inst.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await inst.task
        inst.driver = BrokenHealth(inst.config, None)
        gw.ingest(Measurement(12.0, "mm", ts_ns=gw.clock.now_ns(), instrument="caliper-1"))
        for _ in range(100):
            committed = gw.spool.pending(1000)
            if any(rec.topic.endswith("/readings") for rec in committed):
                break
            await asyncio.sleep(0.02)
        assert any(rec.topic.endswith("/readings") for rec in committed)
    finally:
        stop.set()
        assert await task == 0
    assert "event=checks_failed" in out.getvalue() and "health is broken" in out.getvalue()


def test_overlapping_state_saves_leave_a_whole_file(tmp_path):
    """The loop's worker thread and a stop's final save may overlap (the run cancelled mid-write): they
    take turns, and the file is always one whole state."""
    import threading

    clock = ManualClock()
    gw, log = gateway(tmp_path, clock)
    feed(gw, clock, [12.0 + 0.001 * i for i in range(200)])
    errors: list[BaseException] = []

    def save_many() -> None:
        for _ in range(30):
            try:
                gw.save_state()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert json.loads(gw.state_path.read_text())["characteristics"]["bore"]["stats"] is not None
    gw.close()


def test_event_log_gives_the_library_loggers_back():
    """attach() reroutes the library loggers into the gateway's log; detach() restores them, so a process
    that ran a gateway (the demo, the tests) does not keep its logging swallowed."""
    import logging

    logger = logging.getLogger("floorwatch.test_detach")
    before = (list(logger.handlers), logger.level, logger.propagate)
    out = io.StringIO()
    log = EventLog(stream=out, timestamps=False)
    log.attach("floorwatch.test_detach")
    logger.warning("while attached")
    assert "while attached" in out.getvalue() and logger.propagate is False
    log.detach()
    assert (list(logger.handlers), logger.level, logger.propagate) == before


async def test_a_part_that_fails_to_stop_is_reported_and_the_others_still_stop(tmp_path, monkeypatch):
    """run() stops its parts from one exit stack: a broker connection that fails to close is reported, and
    the drivers, the state file and the spool are still stopped, written and closed (exit 0)."""
    import asyncio

    from floorwatch.edge.mqtt import MqttPublisher

    async def broken_exit(self, *exc):
        raise RuntimeError("socket already gone")

    monkeypatch.setattr(MqttPublisher, "__aexit__", broken_exit)
    cfg = make_config(tmp_path, mqtt={"url": f"mqtt://127.0.0.1:{free_port()}", "max_batch": 50})  # nobody there
    out = io.StringIO()
    gw = Gateway(parse_config(cfg), events=EventLog(stream=out, timestamps=False), start_instruments=False)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    while not gw.ready:
        await asyncio.sleep(0.01)
    gw.ingest(Measurement(12.0, "mm", ts_ns=gw.clock.now_ns(), instrument="caliper-1"))
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    log = out.getvalue()
    assert "event=broker_disconnect_failed" in log and "socket already gone" in log
    assert log.index("event=broker_disconnect_failed") < log.index("event=gateway_stopped")
    assert json.loads(gw.state_path.read_text())["characteristics"]["bore"]["stats"] is not None


async def test_a_failing_driver_is_restarted_after_a_growing_pause(tmp_path):
    """A driver bug never takes the gateway down: the driver is restarted, 1 s after the first failure and
    twice as long after each further one (floorwatch.edge.backoff.Backoff)."""
    import asyncio

    from floorwatch.drivers.base import Driver

    class Flaky(Driver):
        runs = 0

        async def run(self, emit):
            Flaky.runs += 1
            if Flaky.runs <= 2:
                raise OSError(f"port vanished ({Flaky.runs})")
            await asyncio.Event().wait()

    out = io.StringIO()  # window=0: every failure printed, none held back as a repeat
    gw = Gateway(parse_config(make_config(tmp_path)), events=EventLog(stream=out, timestamps=False, window=0),
                 publish=False, start_instruments=False)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    while not gw.ready:
        await asyncio.sleep(0.01)
    inst = gw.instruments["caliper-1"]
    inst.driver = Flaky(inst.config, None)
    inst.task = asyncio.create_task(gw.supervisor.drive(inst), name="driver:caliper-1")
    for _ in range(100):
        if Flaky.runs == 3:
            break
        await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    failures = [line for line in out.getvalue().splitlines() if "event=driver_failed" in line]
    assert Flaky.runs == 3 and len(failures) == 2
    assert "restart_in=1 " in failures[0] + " " and "restart_in=2 " in failures[1] + " "
    assert "port vanished (2)" in inst.error
