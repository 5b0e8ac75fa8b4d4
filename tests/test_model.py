"""The data model's JSON encoding: round trips, strict decoding, and the examples in docs/payloads.md."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floorwatch.edge.model import (
    Alert,
    AlertState,
    HealthEvent,
    Measurement,
    MeasurementStatus,
    PayloadError,
    Reading,
    Severity,
    StatsSnapshot,
    decode,
    decode_batch,
    dumps,
    encode,
    encode_batch,
    loads,
)

DOCS = Path(__file__).parent.parent / "docs" / "payloads.md"

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=12)
readings = st.builds(
    Reading,
    ts_ns=st.integers(0, 2**63 - 1),
    seq=st.integers(1, 2**53),
    instrument=names,
    characteristic=names,
    value=st.floats(allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(["mm", "g", "kg", "pcs", ""]),
    status=st.sampled_from(list(MeasurementStatus)),
    part_id=st.none() | names,
    lot=st.none() | names,
)


@given(readings)
def test_reading_round_trips_through_json(r):
    assert loads(dumps(r)) == r


@given(st.lists(readings, max_size=20))
def test_batch_round_trips_and_stores_names_once(rs):
    batch = json.loads(json.dumps(encode_batch(rs)))
    assert decode_batch(batch) == rs
    assert len(batch["keys"]) == len({(r.instrument, r.characteristic, r.unit) for r in rs})


def test_nan_travels_as_null_and_comes_back_as_nan():
    snap = StatsSnapshot(
        ts_ns=1, seq=2, characteristic="c", n=0, n_total=0, n_rejected=0, mean=math.nan, std=math.nan,
        min=math.nan, max=math.nan, mr_bar=math.nan, sigma_within=math.nan, ewma=math.nan,
        ewma_ucl=math.nan, ewma_lcl=math.nan, cusum_pos=0.0, cusum_neg=0.0, center=math.nan,
        sigma=math.nan, ucl=math.nan, lcl=math.nan, cp=math.nan, cpk=math.nan, pp=math.nan, ppk=math.nan,
        n_below_lsl=0, n_above_usl=0, rules=0, baseline_done=False,
    )
    text = dumps(snap)
    assert b"NaN" not in text and json.loads(text)["mean"] is None
    back = loads(text)
    assert math.isnan(back.mean) and back.cusum_pos == 0.0 and back.subgroup_size == 1


def test_alert_and_health_event_round_trip():
    a = Alert(ts_ns=5, seq=9, subject="bore", kind="out_of_spec", state=AlertState.RAISED,
              severity=Severity.CRITICAL, value=12.06, limit=12.05, lsl=11.95, usl=12.05, message="above USL")
    s = HealthEvent(ts_ns=6, seq=10, subject="caliper-1", state="offline", detail={"reconnects": 3})
    assert loads(dumps(a)) == a and loads(dumps(s)) == s


def test_a_measurement_is_encoded_only_once_the_driver_stamped_it():
    m = Measurement(12.0, "mm", channel="x")
    with pytest.raises(PayloadError, match="measurement has no ts_ns yet: the driver assigns it"):
        encode(m)
    with pytest.raises(PayloadError, match="measurement has no instrument yet"):
        encode(replace(m, ts_ns=5))
    stamped = replace(m, ts_ns=5, instrument="caliper-1")
    assert loads(dumps(stamped)) == stamped
    unstamped = {**encode(stamped), "ts_ns": None}
    with pytest.raises(PayloadError, match="measurement payload lacks field 'ts_ns'"):
        decode(unstamped)
    with pytest.raises(PayloadError, match="measurement payload lacks field 'instrument'"):
        decode({k: v for k, v in encode(stamped).items() if k != "instrument"})


def test_a_health_event_by_its_former_type_name_is_read_and_written_by_its_name():
    """v1 readers take ``"type": "status"`` from gateways older than the rename (docs/payloads.md)."""
    old = {"v": 1, "type": "status", "ts_ns": 6, "seq": 10, "subject": "spool", "state": "dropped",
           "message": "disk budget full", "detail": {"first_seq": 3, "last_seq": 4, "count": 2}}
    event = decode(old)
    assert event == HealthEvent(ts_ns=6, seq=10, subject="spool", state="dropped", message="disk budget full",
                                detail={"first_seq": 3, "last_seq": 4, "count": 2})
    assert encode(event) == {**old, "type": "event"}
    with pytest.raises(PayloadError, match="status payload lacks field 'seq'"):
        decode({k: v for k, v in old.items() if k != "seq"})


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"v": 2, "type": "reading"}', "unsupported payload version 2"),
        (b'{"v": 1, "type": "weather"}', "unknown payload type 'weather'"),
        (b'{"v": 1, "type": ["reading"]}', "unknown payload type ['reading']"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "unit": "mm"}', "lacks field 'value'"),
        (b'{"v": 1, "type": "reading", "ts_ns": "1", "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": 1.0, "unit": "mm"}', "'ts_ns': '1' is not a valid int"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": 1.0, "unit": "mm", "status": "great"}', "'status': 'great'"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": true, "unit": "mm"}', "'value': True is not a valid float"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": 1.0, "unit": "mm", "colour": "red"}', "unknown field(s) ['colour']"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": NaN, "unit": "mm"}', "NaN is not valid JSON"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": 1e999, "unit": "mm"}', "'value': inf is not a valid float"),
        (b'{"v": 1, "type": "reading", "ts_ns": 1, "seq": 1, "instrument": "i", "characteristic": "c",'
         b' "value": 1' + b'0' * 400 + b', "unit": "mm"}', "'value': 1000000000000000000000000000000000000000"),
        (b'[' * 100_000 + b']' * 100_000, "not JSON"),
    ],
)
def test_bad_payloads_are_rejected_with_the_reason(payload, message):
    with pytest.raises(PayloadError, match=re.escape(message)):
        loads(payload)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"v": 1, "type": "readings", "keys": [["i", "c"]], "rows": []}, "keys[0]"),
        ({"v": 1, "type": "readings", "keys": [["i", "c", "mm"]], "rows": [[1, 2, 5, 1.0, "ok", None, None]]},
         "rows[0]: key index 5 out of range"),
        ({"v": 1, "type": "readings", "keys": [["i", "c", "mm"]], "rows": [[1, 2, 0, "x", "ok", None, None]]},
         "rows[0]: value must be a finite number"),
        ({"v": 1, "type": "readings", "keys": [["i", "c", "mm"]], "rows": [[1, 2, 0]]}, "rows[0]"),
        ({"v": 1, "type": "readings", "keys": [["i", "c", "mm"]], "rows": [[1, 2, 0, 10**400, "ok", None, None]]},
         "rows[0]"),
        ({"v": 1, "type": "readings", "keys": [["i", "c", "mm"]], "rows": [[1, 2, 0, float("inf"), "ok", None,
                                                                               None]]},
         "rows[0]: value must be a finite number or null"),
        ({"v": 1, "type": "reading"}, "not a v1 'readings' batch"),
    ],
)
def test_bad_batches_name_the_row(batch, message):
    with pytest.raises(PayloadError, match=re.escape(message)):
        decode_batch(batch)


def _json_blocks(markdown: str) -> list[dict]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", markdown, re.S)]


def test_documented_examples_decode():
    """docs/payloads.md and the code must not drift apart."""
    blocks = _json_blocks(DOCS.read_text())
    kinds = {b["type"] for b in blocks}
    assert {"reading", "readings", "alert", "event", "presence"} <= kinds
    for block in blocks:
        if block["type"] == "readings":
            rows = decode_batch(block)
            assert [r.seq for r in rows] == sorted(r.seq for r in rows)
        elif block["type"] != "presence":
            assert encode(decode(block)) == block

