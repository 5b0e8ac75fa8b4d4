"""floorwatch.bridge.points and .writer: the line protocol of the documented schema, idempotent points, and a writer that retries
with backoff until the database (a real VictoriaMetrics speaking the InfluxDB v2 write API) is back."""

from __future__ import annotations

import math
import threading
import time

import pytest

from floorwatch.bridge import points
from floorwatch.bridge.points import Origin, Spec
from floorwatch.bridge.writer import InfluxTarget, InfluxWriter, WriteAborted
from floorwatch.edge.model import (
    Alert,
    AlertState,
    HealthEvent,
    MeasurementStatus,
    Reading,
    Severity,
    StatsSnapshot,
)

ORIGIN = Origin("dongguan-2", "line-3", "gw-01")
T = 1_700_000_000_000_000_000


def test_reading_line_has_the_documented_tags_and_fields():
    r = Reading(T, 42, "caliper-1", "bore_diameter", 11.9, "mm", MeasurementStatus.OK, part_id="P 1", lot="L,7")
    line = points.reading_line(ORIGIN, r, Spec(12.0, 11.95, 12.05))
    assert line == ('reading,characteristic=bore_diameter,gateway=gw-01,instrument=caliper-1,line=line-3,'
                    'site=dongguan-2,unit=mm lot="L,7",out_of_spec=true,part_id="P 1",seq=42i,status="ok",'
                    f'value=11.9 {T}')


def test_a_reading_without_a_number_is_still_a_point_without_value():
    r = Reading(T, 5, "scale-1", "net_weight", math.nan, "g", MeasurementStatus.OVERLOAD)
    line = points.reading_line(ORIGIN, r, Spec(250.0, 247.5, 255.0))
    assert "value=" not in line and "out_of_spec" not in line
    assert 'seq=5i,status="overload"' in line


def test_same_record_gives_the_same_point_so_writes_are_idempotent():
    r = Reading(T, 7, "caliper-1", "bore_diameter", 12.0, "mm")
    line = points.reading_line(ORIGIN, r)
    assert line == points.reading_line(ORIGIN, Reading(T, 7, "caliper-1", "bore_diameter", 12.0, "mm"))
    assert line.rsplit(" ", 1)[1] == str(T)  # the record's own time: a second delivery overwrites itself


def test_stats_alert_event_and_integrity_points():
    nan = math.nan
    s = StatsSnapshot(T, "bore_diameter", 30, 30, 1, 12.0, 0.01, 11.98, 12.02, 0.011, 0.0098, 12.0, 12.01, 11.99,
                      0.0, 0.2, 12.0, 0.01, 12.03, 11.97, 1.6, nan, 1.5, 1.4, 0, 0, 5, True, seq=9)
    line = points.stats_point(ORIGIN, s, Spec(lsl=11.95, usl=12.05)).to_line_protocol()
    assert line.startswith("stats,characteristic=bore_diameter,gateway=gw-01,line=line-3,site=dongguan-2 ")
    fields = dict(kv.split("=", 1) for kv in line.split(" ")[1].split(","))
    assert fields["cp"] == "1.6" and "cpk" not in fields and "xbar" not in fields  # NaN left out
    assert fields["n"] == "30i" and fields["rules"] == "5i" and fields["baseline_done"] == "true"
    assert fields["lsl"] == "11.95" and fields["usl"] == "12.05" and "nominal" not in fields
    a = Alert(T, "bore_diameter", "out_of_spec", AlertState.CLEARED, Severity.CRITICAL, message="ok again", seq=10)
    assert points.alert_point(ORIGIN, a).to_line_protocol() == (
        "alert,gateway=gw-01,kind=out_of_spec,line=line-3,severity=critical,site=dongguan-2,subject=bore_diameter "
        f'active=0i,message="ok again",seq=10i,state="cleared" {T}')
    e = HealthEvent(T, "spool", "backlog", seq=11, detail={"backlog": 1200, "oldest": "2023-11-14", "ok": True})
    line = points.event_point(ORIGIN, e).to_line_protocol()
    assert "detail_backlog=1200," in line  # no "i": a float, whatever the gateway sent
    assert True and "detail_ok" not in line and "detail_oldest" not in line
    assert 'detail="{\\"backlog\\":1200,\\"ok\\":true,\\"oldest\\":\\"2023-11-14\\"}"' in line
    assert "online=" not in line
    assert "online=0i" in points.event_point(ORIGIN, HealthEvent(T, "caliper-1", "offline", seq=12)).to_line_protocol()
    gap = points.integrity_point(ORIGIN, "gap", 16, 20, T, explained=False, message="5 missing").to_line_protocol()
    assert gap == (f'integrity,gateway=gw-01,kind=gap,line=line-3,site=dongguan-2 count=5i,explained=false,'
                   f'first_seq=16i,last_seq=20i,message="5 missing" {T}')


def test_writer_retries_with_backoff_until_the_database_is_back(victoria):
    victoria.stop()
    writer = InfluxWriter(InfluxTarget(victoria.url, "-", "floorwatch", "", timeout_s=2),
                          backoff_initial=0.05, backoff_max=0.2)
    r = Reading(T, 1, "caliper-1", "bore_diameter", 12.0, "mm")
    done = threading.Event()

    def write():
        writer.write([points.reading_line(ORIGIN, r)])
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    deadline = time.monotonic() + 10
    while writer.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.failures >= 3 and not done.is_set()
    victoria.start()
    assert done.wait(15), "the write did not succeed once the database was back"
    thread.join()
    assert writer.failures == 0
    assert victoria.export('{__name__="reading_value"}')[0]["values"] == [12.0]
    writer.close()


def test_writer_gives_up_only_when_told_to_stop(victoria):
    victoria.stop()
    writer = InfluxWriter(InfluxTarget(victoria.url, "-", "floorwatch", "", timeout_s=1),
                          backoff_initial=0.05, backoff_max=0.1)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(WriteAborted, match="stopped while InfluxDB writes were failing"):
        writer.write(["reading value=1 1"], stop)
    assert writer.failures >= 2
    writer.close()


def test_text_fields_never_break_the_line():
    a = Alert(T, "bore_diameter", "out_of_spec", AlertState.RAISED, Severity.CRITICAL, message="line 1\nline 2\r",
              seq=3)
    line = points.alert_point(ORIGIN, a).to_line_protocol()
    assert "\n" not in line and 'message="line 1 line 2 "' in line
