"""The generated dashboards and alert rules: every InfluxQL query runs against a real InfluxDB 1.x loaded
with the bridge's own line protocol and returns what its panel draws; the JSON is deterministic, has stable
uids and reads back through the grafana-foundation-sdk model unchanged."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import dashboard as dm

from floorwatch.bridge.config import parse_bridge_config
from floorwatch.bridge.message import Incoming
from floorwatch.bridge.service import Bridge
from floorwatch.bridge.validate import parse_message
from floorwatch.dashboards import generate as gen
from floorwatch.edge.config import load_config
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

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "gateway" / "example.toml"
S = 1_000_000_000
T0 = 1_700_000_000 * S
_GATEWAY = load_config(EXAMPLE).gateway  # the spec limits the bridge marks readings with come from here
SITE, LINE, GW = _GATEWAY.site, _GATEWAY.line, _GATEWAY.id


def _stats(seq: int, ts: int, name: str, mean: float, subgroup: int = 1) -> StatsSnapshot:
    nan = float("nan")
    sub = subgroup > 1
    return StatsSnapshot(
        ts_ns=ts, seq=seq, characteristic=name, n=50, n_total=50 + seq, n_rejected=0, mean=mean, std=0.01,
        min=mean - 0.03, max=mean + 0.03, mr_bar=0.011, sigma_within=0.0098, ewma=mean, ewma_ucl=mean + 0.02,
        ewma_lcl=mean - 0.02, cusum_pos=0.3, cusum_neg=0.0, center=mean, sigma=0.01, ucl=mean + 0.03,
        lcl=mean - 0.03, cp=1.5, cpk=1.2 + seq / 10_000, pp=1.4, ppk=1.1, n_below_lsl=0, n_above_usl=1, rules=0,
        baseline_done=True, xbar=mean if sub else nan, r=0.02 if sub else nan, r_bar=0.021 if sub else nan,
        r_ucl=0.044 if sub else nan, r_lcl=0.0 if sub else nan, xbar_ucl=mean + 0.012 if sub else nan,
        xbar_lcl=mean - 0.012 if sub else nan, subgroup_size=subgroup)


def gateway_messages() -> list[tuple[str, bytes]]:
    """Ten minutes of one gateway: two measured characteristics, a counter, alerts, events, a gap."""
    t = Topics("floorwatch/v1", SITE, LINE, GW)
    out: list[tuple[str, bytes]] = [(t.presence, json.dumps({"v": 1, "type": "presence", "state": "online",
                                                           "ts_ns": T0, "version": "0.1.0"}).encode())]
    seq = 0

    def nxt() -> int:
        nonlocal seq
        seq += 1
        return seq

    out.append((t.event("caliper-1"), dumps(HealthEvent(T0, "caliper-1", "online", seq=nxt()))))
    for minute in range(10):
        rows = []
        for i in range(30):
            ts = T0 + (minute * 60 + i * 2) * S
            bore = 12.0 + 0.01 * ((i % 5) - 2) + (0.07 if (minute, i) == (4, 7) else 0.0)  # one above USL
            rows.append(Reading(ts, nxt(), "caliper-1", "bore_diameter", bore, "mm"))
            rows.append(Reading(ts + 1000, nxt(), "scale-1", "net_weight", 250.0 + (i % 3) * 0.2, "g"))
            rows.append(Reading(ts + 2000, nxt(), "counter-1", "parts_produced", float(minute * 30 + i), "pcs"))
        out.append((t.readings, json.dumps(encode_batch(rows)).encode()))
        ts = T0 + (minute * 60 + 59) * S
        out.append((t.stats("bore_diameter"), dumps(_stats(nxt(), ts, "bore_diameter", 12.0))))
        out.append((t.stats("net_weight"), dumps(_stats(nxt(), ts + 1, "net_weight", 250.2, subgroup=5))))
        if minute == 5:
            seq += 4  # four records that never arrive: a gap
    out.append((t.alert("bore_diameter", "out_of_spec"), dumps(Alert(
        T0 + 250 * S, "bore_diameter", "out_of_spec", AlertState.RAISED, Severity.CRITICAL, 12.07, 12.05,
        11.95, 12.05, "bore_diameter 12.070 mm above USL 12.05 mm", seq=nxt()))))
    out.append((t.alert("bore_diameter", "out_of_spec"), dumps(Alert(
        T0 + 260 * S, "bore_diameter", "out_of_spec", AlertState.CLEARED, Severity.CRITICAL,
        message="bore_diameter back within spec", seq=nxt()))))
    out.append((t.alert("parts_produced", "line_stopped"), dumps(Alert(
        T0 + 400 * S, "parts_produced", "line_stopped", AlertState.RAISED, Severity.WARNING,
        message="no new part for 120 s", seq=nxt()))))
    out.append((t.event("spool"), dumps(HealthEvent(T0 + 500 * S, "spool", "backlog", seq=nxt(),
                                                    detail={"backlog": 1200}))))
    out.append((t.event("spool"), dumps(HealthEvent(T0 + 550 * S, "spool", "dropped", "disk budget full", seq=nxt(),
                                                    detail={"first_seq": 1, "last_seq": 2, "count": 2}))))
    return out


@pytest.fixture
def loaded_influxdb(influxdb, tmp_path):
    """InfluxDB 1.x holding what the bridge writes for gateway_messages() (its own line protocol)."""
    config = parse_bridge_config({"bridge": {"gateway_configs": [str(EXAMPLE)]},
                                  "mqtt": {"client_id": "dashboards-test"},
                                  "sequence": {"gap_grace": 0}})
    bridge = Bridge(config)
    try:
        lines = []
        for mid, (topic, payload) in enumerate(gateway_messages(), 1):
            msg = Incoming(mid, 1, topic, payload, False, T0 + mid, 0)
            parsed = parse_message(bridge.prefix, msg)
            assert parsed is not None
            lines += bridge.intake.points(parsed, msg)
        lines += [p.to_line_protocol() for p in bridge.tracker.due()]
    finally:
        bridge.writer.close()
    assert any("out_of_spec=true" in line for line in lines)
    assert any(line.startswith("integrity,") and "kind=gap" in line for line in lines)
    influxdb.write(lines)
    return influxdb


VALUES = {"site": SITE, "line": LINE, "characteristic": "bore_diameter", "counter": "parts_produced"}


def substitute(query: str, characteristic: str = "bore_diameter") -> str:
    """What Grafana sends: variables as regex-escaped values, the dashboard time range, an interval."""
    values = {**VALUES, "characteristic": characteristic}
    query = query.replace("$timeFilter", f"time >= {T0 - 3600 * S} AND time <= {T0 + 3600 * S}")
    query = query.replace("$__interval", "1m")
    for name, value in values.items():
        query = query.replace(f"${name}", re.escape(value))
    assert "$" not in query.replace("$/", "/"), f"unsubstituted variable in {query}"
    return query


def run(influxdb, query: str) -> list[dict]:
    result = influxdb.query(query)["results"][0]
    assert "error" not in result, f"{result['error']}\n  in {query}"
    return result.get("series", [])


def committed(uid: str) -> dict:
    return json.loads((ROOT / "dashboards" / "json" / f"{uid}.json").read_text())


def all_targets():
    for uid in gen.DASHBOARDS:
        for panel in committed(uid)["panels"]:
            for target in panel.get("targets", []):
                yield uid, panel["title"], target


def test_every_panel_query_returns_the_series_it_draws(loaded_influxdb):
    targets = list(all_targets())
    expectations = gen.expected_columns()
    assert len(targets) == len(expectations) >= 30
    for uid, title, target in targets:
        expected = expectations[(uid, title, target["refId"])]
        # X̄/R charts belong to subgrouped characteristics: net_weight has subgroups of five in example.toml
        characteristic = "net_weight" if "subgroups" in title else "bore_diameter"
        series = run(loaded_influxdb, substitute(target["query"], characteristic))
        assert series, f"{uid} / {title} / {target['refId']}: no data for {target['query']}"
        for s in series:
            missing = set(expected) - set(s["columns"])
            assert not missing, f"{uid} / {title}: columns {missing} missing from {s['columns']}"
            values = [v for row in s["values"] for v in row[1:] if v is not None]
            assert values, f"{uid} / {title} / {target['refId']}: only nulls"


def test_panel_queries_pick_the_right_rows(loaded_influxdb):
    def target(uid: str, title: str, ref: str = "A") -> str:
        return next(t["query"] for u, ti, t in all_targets() if (u, ti, t["refId"]) == (uid, title, ref))

    live = "Live readings against the spec"
    oot = run(loaded_influxdb, substitute(target("floorwatch-characteristic", live, "C")))
    assert [row[1] for row in oot[0]["values"]] == [pytest.approx(12.07)]  # only the reading above USL
    limits = run(loaded_influxdb, substitute(target("floorwatch-characteristic", live, "B")))
    bore = next(c for c in load_config(EXAMPLE).characteristics if c.name == "bore_diameter")
    assert limits[0]["values"][-1][1:] == [bore.nominal, bore.lsl, bore.usl]  # from example.toml
    parts = run(loaded_influxdb, substitute(target("floorwatch-line", "Parts produced")))
    assert parts[0]["values"][0][1] == 299  # counter 0 … 299
    gaps = run(loaded_influxdb, substitute(target("floorwatch-line", "Sequence gaps and dropped data")))
    by_kind = {s["tags"]["kind"]: s for s in gaps}
    assert set(by_kind) == {"gap", "dropped"}
    cols = by_kind["gap"]["columns"]
    assert by_kind["gap"]["values"][0][cols.index("count")] == 4
    assert by_kind["dropped"]["values"][0][cols.index("explained")] is True
    fleet = run(loaded_influxdb, substitute(target("floorwatch-fleet", "Gateways", "C")))
    assert fleet[0]["tags"] == {"site": SITE, "line": LINE, "gateway": GW} and fleet[0]["values"][0][1] == 1200
    instruments = run(loaded_influxdb, substitute(target("floorwatch-fleet", "Gateways", "D")))
    assert instruments[0]["values"][0][1] == 1


def test_template_variables_and_annotations_query_real_data(loaded_influxdb):
    for uid in gen.DASHBOARDS:
        board = committed(uid)
        for var in board["templating"].get("list", []):
            series = run(loaded_influxdb, substitute(var["query"]))
            values = {row[1] for s in series for row in s["values"]}
            assert VALUES[var["name"]] in values, f"{uid}: variable {var['name']} lacks {VALUES[var['name']]}"
        for ann in board.get("annotations", {}).get("list", []):
            target = ann["target"]
            series = run(loaded_influxdb, substitute(target["query"]))
            columns = set(series[0]["columns"])
            assert {target["textColumn"], *target["tagsColumn"].split(",")} <= columns
            assert len(series[0]["values"]) == 3  # raised, cleared, line stopped


def test_alert_rules_one_per_characteristic_with_its_own_limits(loaded_influxdb):
    config = load_config(EXAMPLE)
    doc = gen.alert_rules(config)
    rules = doc["groups"][0]["rules"]
    measured = [c for c in config.characteristics if c.kind == "measurement"]
    assert [r["labels"]["characteristic"] for r in rules] == [c.name for c in measured]
    for rule, c in zip(rules, measured, strict=True):
        math = next(d["model"]["expression"] for d in rule["data"] if d["refId"] == "C")
        assert math == f"$B < {c.lsl!r} || $B > {c.usl!r}"
        query = next(d["model"]["query"] for d in rule["data"] if d["refId"] == "A")
        series = run(loaded_influxdb, substitute(query))
        assert series and series[0]["columns"] == ["time", "value"], f"rule for {c.name} reads nothing"
        assert am.Rule.from_json(rule).to_json() is not None
        back = json.loads(json.dumps(am.Rule.from_json(rule), cls=JSONEncoder, sort_keys=True))
        assert back == rule
    assert len({r["uid"] for r in rules}) == len(rules)
    assert rules[0]["uid"] == gen.rule_uid(SITE, LINE, GW, "bore_diameter") == "fw-spec-" + rules[0]["uid"][8:]
    assert all(len(r["uid"]) <= 40 for r in rules)
    committed_rules = json.loads((ROOT / "dashboards/provisioning/alerting/floorwatch-rules.json").read_text())
    assert committed_rules == doc, "run 'make dashboards' and commit the result"


def test_generation_is_deterministic_and_matches_the_committed_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    config = load_config(EXAMPLE)
    paths = gen.generate(first, config)
    gen.generate(second, config)
    for path in paths:
        rel = path.relative_to(first)
        assert path.read_bytes() == (second / rel).read_bytes(), f"{rel} differs between two runs"
        assert path.read_bytes() == (ROOT / "dashboards" / rel).read_bytes(), (
            f"dashboards/{rel} is stale: run 'make dashboards' and commit the result")


def test_uids_and_panel_ids_are_stable():
    assert sorted(gen.DASHBOARDS) == ["floorwatch-characteristic", "floorwatch-fleet", "floorwatch-line"]
    for uid in gen.DASHBOARDS:
        board = committed(uid)
        assert board["uid"] == uid
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"] == {"type": "influxdb", "uid": gen.DATASOURCE_UID}
                assert target["rawQuery"] is True
    for ds in (ROOT / "dashboards/provisioning/datasources").glob("influxdb-*.yaml"):
        assert f"uid: {gen.DATASOURCE_UID}" in ds.read_text()


def test_dashboards_read_back_through_the_sdk_model_unchanged():
    for uid in gen.DASHBOARDS:
        board = committed(uid)
        back = json.loads(json.dumps(dm.Dashboard.from_json(board), cls=JSONEncoder, sort_keys=True))
        expected = copy.deepcopy(board)
        # The SDK's annotation target is datasource-neutral; InfluxDB's query keys are ours (checked above).
        for ann in expected.get("annotations", {}).get("list", []):
            for key in ("query", "rawQuery", "fromAnnotations", "textColumn", "tagsColumn", "refId"):
                ann["target"].pop(key)
        assert back == expected, f"{uid} does not survive the SDK model"
        kinds = {p["type"] for p in board["panels"]}
        assert kinds <= {"timeseries", "stat", "histogram", "state-timeline", "table", "row"}


def test_provisioning_files_are_valid_yaml_for_grafana():
    import yaml

    prov = ROOT / "dashboards" / "provisioning"
    for path in sorted((prov / "datasources").glob("influxdb-*.yaml")):
        (ds,) = yaml.safe_load(path.read_text())["datasources"]
        assert (ds["uid"], ds["type"], ds["jsonData"]["dbName"]) == (gen.DATASOURCE_UID, "influxdb", "floorwatch")
    (provider,) = yaml.safe_load((prov / "dashboards" / "floorwatch.yaml").read_text())["providers"]
    assert provider["folderUid"] == gen.FOLDER_UID and provider["type"] == "file"
    alerting = yaml.safe_load((prov / "alerting" / "contact-points.yaml").read_text())
    receiver = alerting["contactPoints"][0]["name"]
    assert alerting["policies"][0]["receiver"] == receiver
    assert ["source", "=", "floorwatch"] in alerting["policies"][0]["routes"][0]["object_matchers"]
    rules = json.loads((prov / "alerting" / "floorwatch-rules.json").read_text())
    assert all(r["labels"]["source"] == "floorwatch" for g in rules["groups"] for r in g["rules"])
