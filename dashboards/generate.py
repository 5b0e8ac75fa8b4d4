"""Generate the Grafana dashboards, datasource-independent InfluxQL queries and alert rules, with the
grafana-foundation-sdk (the maintained way to write dashboards as code).

    python3 -m floorwatch.dashboards.generate [--config gateway.toml] [--out dashboards]    (or: make dashboards)

Writes ``json/<uid>.json`` (one file per dashboard) and, with ``--config``, the alert rules
``provisioning/alerting/floorwatch-rules.json`` (one rule per characteristic, with that characteristic's
own spec limits). Output is deterministic: same input, same bytes (sorted keys, fixed uids and panel ids),
so the committed JSON shows every change in review.

Every query is InfluxQL (InfluxDB 1.x natively, 2.x through a DBRP mapping, 3.x natively) over the schema
of ``floorwatch.edge.influx`` / docs/influxdb-schema.md. Each target's expected result columns are recorded in
:data:`EXPECTED`; the test suite runs every query against a real InfluxDB loaded with the bridge's own line
protocol and checks them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import expr as eb
from grafana_foundation_sdk.builders import histogram, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from floorwatch.edge import influx
from floorwatch.edge.config import GatewayConfig

DATASOURCE_UID = "floorwatch-influxdb"  # every provisioning file in provisioning/datasources/ uses it
DS = dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
FOLDER_UID = "floorwatch"
FOLDER_TITLE = "Floorwatch"

# (dashboard uid, panel title, refId) -> columns the query must return (besides time)
EXPECTED: dict[tuple[str, str, str], tuple[str, ...]] = {}


# --- InfluxQL targets: the SDK has no InfluxDB query type, so this is one in its own model -----------


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB datasource (``rawQuery``: the text is sent as is)."""

    def __init__(self, ref_id: str = "", query: str = "", result_format: str = "time_series",
                 alias: str | None = None, datasource: dm.DataSourceRef | None = None) -> None:
        self.ref_id, self.query, self.result_format = ref_id, query, result_format
        self.alias, self.datasource = alias, datasource

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref_id, "query": self.query, "rawQuery": True,
                                  "resultFormat": self.result_format}
        if self.alias is not None:
            out["alias"] = self.alias
        if self.datasource is not None:
            out["datasource"] = self.datasource.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(data.get("refId", ""), data.get("query", ""), data.get("resultFormat", "time_series"),
                   data.get("alias"), dm.DataSourceRef.from_json(ds) if ds is not None else None)


# Reading dashboards back (Dashboard.from_json) maps InfluxDB targets to this model instead of a bag.
cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier="influxdb", from_json_hook=InfluxQLQuery.from_json))


class Q(cogbuilder.Builder[InfluxQLQuery]):
    def __init__(self, ref_id: str, query: str, result_format: str = "time_series", alias: str | None = None):
        self._internal = InfluxQLQuery(ref_id, query, result_format, alias, DS)

    def build(self) -> InfluxQLQuery:
        return self._internal


# --- query text ---------------------------------------------------------------------------------------

SITE = '"site" =~ /^$site$/'
LINE = '"line" =~ /^$line$/'
CHAR = '"characteristic" =~ /^$characteristic$/'
WHERE_CHAR = f"{SITE} AND {LINE} AND {CHAR} AND $timeFilter"
WHERE_LINE = f"{SITE} AND {LINE} AND $timeFilter"
OK = "\"status\" = 'ok'"


def sel(measurement: str, what: str, where: str, tail: str = "") -> str:
    return f'SELECT {what} FROM "{measurement}" WHERE {where}{" " + tail if tail else ""}'


BY_TIME = "GROUP BY time($__interval) fill(previous)"


@dataclass
class Board:
    """One dashboard under construction: panels get fixed ids in order; targets record expectations."""

    uid: str
    builder: db.Dashboard
    next_id: int = 1

    def target(self, panel_title: str, ref: str, query: str, columns: tuple[str, ...],
               fmt: str = "time_series", alias: str | None = None) -> Q:
        EXPECTED[(self.uid, panel_title, ref)] = columns
        return Q(ref, query, fmt, alias)

    def add(self, panel: Any, title: str, targets: list[Q], h: int = 8, w: int = 12) -> None:
        panel.id(self.next_id).title(title).datasource(DS).height(h).span(w)
        for t in targets:
            panel.with_target(t)
        self.next_id += 1
        self.builder.with_panel(panel)

    def row(self, title: str) -> None:
        self.builder.with_row(db.Row(title).id(self.next_id))
        self.next_id += 1


def _var(name: str, label: str, query: str, multi: bool = False) -> db.QueryVariable:
    v = (db.QueryVariable(name).label(label).datasource(DS).query(query)
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v.multi(True).include_all(True).all_value(".*")
    return v


# Template variable queries (tested like the panels).
VARIABLES = {
    "site": f'SHOW TAG VALUES FROM "{influx.READING}" WITH KEY = "site"',
    "line": f'SHOW TAG VALUES FROM "{influx.READING}" WITH KEY = "line" WHERE {SITE}',
    "characteristic": f'SHOW TAG VALUES FROM "{influx.READING}" WITH KEY = "characteristic" WHERE {SITE} AND {LINE}',
    "counter": (f'SHOW TAG VALUES FROM "{influx.READING}" WITH KEY = "characteristic" '
                f"WHERE {SITE} AND {LINE} AND \"unit\" =~ /^(pcs|parts|count)$/"),
}


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps])


def _fixed(name: str, color: str, points_only: bool = False, dashed: bool = False) -> tuple[str, list]:
    props = [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]
    if points_only:
        props += [dm.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
                  dm.DynamicConfigValue(id_val="custom.pointSize", value=9)]
    if dashed:
        props.append(dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}))
    return name, props


def _lines(panel: timeseries.Panel, *overrides: tuple[str, list]) -> timeseries.Panel:
    for name, props in overrides:
        panel.override_by_name(name, props)
    return panel


def _ts() -> timeseries.Panel:
    return timeseries.Panel().line_width(1).show_points(common.VisibilityMode.AUTO).span_nulls(True)


LIMITS = (_fixed("LSL", "red", dashed=True), _fixed("USL", "red", dashed=True), _fixed("nominal", "green", dashed=True))
CONTROL = (_fixed("UCL", "orange", dashed=True), _fixed("LCL", "orange", dashed=True), _fixed("CL", "blue", dashed=True))


# --- dashboards ---------------------------------------------------------------------------------------


def characteristic_dashboard() -> dict[str, Any]:
    uid = "floorwatch-characteristic"
    b = Board(uid, db.Dashboard("Floorwatch — characteristic (SPC)").uid(uid)
              .tags(["floorwatch", "spc"]).time("now-6h", "now").refresh("10s").timezone("browser")
              .description("Live readings against the spec, control charts and capability of one characteristic")
              .with_variable(_var("site", "Site", VARIABLES["site"]))
              .with_variable(_var("line", "Line", VARIABLES["line"]))
              .with_variable(_var("characteristic", "Characteristic", VARIABLES["characteristic"]))
              .annotation(_alert_annotation()))
    spec_q = sel(influx.STATS, 'last("nominal") AS "nominal", last("lsl") AS "LSL", last("usl") AS "USL"',
                 WHERE_CHAR, BY_TIME)
    t = "Live readings against the spec"
    b.add(_lines(_ts(), _fixed("out of tolerance", "red", points_only=True), *LIMITS), t, [
        b.target(t, "A", sel(influx.READING, '"value"', WHERE_CHAR), ("value",)),
        b.target(t, "B", spec_q, ("nominal", "LSL", "USL")),
        b.target(t, "C", sel(influx.READING, '"value" AS "out of tolerance"', f'{WHERE_CHAR} AND "out_of_spec" = true'),
                 ("out of tolerance",)),
    ], h=9, w=24)
    for name, field in (("Cp", "cp"), ("Cpk", "cpk"), ("Ppk", "ppk")):
        t = name
        b.add(stat.Panel().graph_mode(common.BigValueGraphMode.AREA).decimals(2)
              .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
              .thresholds(_thresholds((None, "red"), (1.0, "orange"), (1.33, "green")))
              .color_mode(common.BigValueColorMode.BACKGROUND), t, [
            b.target(t, "A", sel(influx.STATS, f'last("{field}") AS "{name}"', WHERE_CHAR,
                                 "GROUP BY time($__interval) fill(none)"), (name,)),
        ], h=5, w=4)
    t = "Capability trend"
    b.add(_ts().thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE))
          .thresholds(_thresholds((None, "red"), (1.0, "orange"), (1.33, "green"))), t, [
        b.target(t, "A", sel(influx.STATS, 'mean("cp") AS "Cp", mean("cpk") AS "Cpk", mean("ppk") AS "Ppk"',
                             WHERE_CHAR, "GROUP BY time($__interval) fill(none)"), ("Cp", "Cpk", "Ppk")),
    ], h=5, w=12)
    b.row("Control charts")
    control_q = sel(influx.STATS, 'last("center") AS "CL", last("ucl") AS "UCL", last("lcl") AS "LCL"',
                    WHERE_CHAR, BY_TIME)
    t = "Individuals (I) chart"
    b.add(_lines(_ts(), *CONTROL), t, [
        b.target(t, "A", sel(influx.READING, '"value" AS "X"', f"{WHERE_CHAR} AND {OK}"), ("X",)),
        b.target(t, "B", control_q, ("CL", "UCL", "LCL")),
    ])
    t = "Moving range (MR) chart"
    b.add(_lines(_ts(), _fixed("UCL", "orange", dashed=True), _fixed("MR̄", "blue", dashed=True)), t, [
        b.target(t, "A", sel(influx.READING, 'abs(difference("value")) AS "MR"', f"{WHERE_CHAR} AND {OK}"), ("MR",)),
        b.target(t, "B", sel(influx.STATS, 'last("mr_bar") AS "MR̄", last("mr_bar") * 3.267 AS "UCL"',
                             WHERE_CHAR, BY_TIME), ("MR̄", "UCL")),
    ])
    sub = f'{WHERE_CHAR} AND "subgroup_size" > 1'
    t = "X̄ chart (subgroups)"
    b.add(_lines(_ts(), *CONTROL), t, [
        b.target(t, "A", sel(influx.STATS, '"xbar" AS "X̄", "center" AS "CL", "xbar_ucl" AS "UCL", "xbar_lcl" AS "LCL"',
                             sub), ("X̄", "CL", "UCL", "LCL")),
    ])
    t = "R chart (subgroups)"
    b.add(_lines(_ts(), *CONTROL), t, [
        b.target(t, "A", sel(influx.STATS, '"r" AS "R", "r_bar" AS "CL", "r_ucl" AS "UCL", "r_lcl" AS "LCL"', sub),
                 ("R", "CL", "UCL", "LCL")),
    ])
    t = "EWMA drift"
    b.add(_lines(_ts(), *CONTROL), t, [
        b.target(t, "A", sel(influx.STATS, '"ewma" AS "EWMA", "ewma_ucl" AS "UCL", "ewma_lcl" AS "LCL", "center" AS "CL"',
                             WHERE_CHAR), ("EWMA", "UCL", "LCL", "CL")),
    ])
    t = "CUSUM drift"
    b.add(_ts(), t, [
        b.target(t, "A", sel(influx.STATS, '"cusum_pos" AS "C+", "cusum_neg" AS "C−"', WHERE_CHAR), ("C+", "C−")),
    ])
    b.row("Distribution and alerts")
    t = "Histogram against the spec"
    # LSL/USL from query B become the panel's thresholds (drawn as lines) through configFromData
    b.add(histogram.Panel().combine(True).thresholds(_thresholds((None, "green")))
          .with_transformation(dm.DataTransformerConfig(id_val="configFromData", options={
              "configRefId": "B", "applyTo": {"id": "byFrameRefID", "options": "A"},
              "mappings": [{"fieldName": "LSL", "handlerKey": "threshold1"},
                           {"fieldName": "USL", "handlerKey": "threshold1"}]})), t, [
        b.target(t, "A", sel(influx.READING, '"value"', f"{WHERE_CHAR} AND {OK}"), ("value",)),
        b.target(t, "B", sel(influx.STATS, 'last("lsl") AS "LSL", last("usl") AS "USL"', WHERE_CHAR), ("LSL", "USL")),
    ])
    t = "Alerts of this characteristic"
    b.add(_timeline(), t, [
        b.target(t, "A", sel(influx.ALERT, 'last("active") AS "active"', f'{SITE} AND {LINE} AND "subject" =~ '
                             "/^$characteristic$/ AND $timeFilter", 'GROUP BY time($__interval), "kind" fill(previous)'),
                 ("active",)),
    ])
    return _encode(b)


def line_dashboard() -> dict[str, Any]:
    uid = "floorwatch-line"
    b = Board(uid, db.Dashboard("Floorwatch — line (production, alerts, data integrity)").uid(uid)
              .tags(["floorwatch", "production"]).time("now-24h", "now").refresh("30s").timezone("browser")
              .with_variable(_var("site", "Site", VARIABLES["site"]))
              .with_variable(_var("line", "Line", VARIABLES["line"]))
              .with_variable(_var("counter", "Counter", VARIABLES["counter"]))
              .annotation(_alert_annotation()))
    counter = f'{SITE} AND {LINE} AND "characteristic" =~ /^$counter$/ AND $timeFilter'
    t = "Parts produced"
    b.add(stat.Panel().graph_mode(common.BigValueGraphMode.NONE).decimals(0).unit("none"), t, [
        b.target(t, "A", 'SELECT sum("parts") AS "parts" FROM ('
                         + sel(influx.READING, 'non_negative_difference("value") AS "parts"', counter) + ")",
                 ("parts",)),
    ], h=6, w=6)
    t = "Production rate"
    b.add(_ts().unit("parts/min"), t, [
        b.target(t, "A", sel(influx.READING, 'non_negative_derivative(last("value"), 1m) AS "parts/min"', counter,
                             "GROUP BY time($__interval) fill(none)"), ("parts/min",)),
    ], h=6, w=10)
    t = "Line stopped"
    b.add(_timeline(), t, [
        b.target(t, "A", sel(influx.ALERT, 'last("active") AS "stopped"', f"{WHERE_LINE} AND \"kind\" = 'line_stopped'",
                             'GROUP BY time($__interval), "gateway" fill(previous)'), ("stopped",)),
    ], h=6, w=8)
    t = "Alerts"
    b.add(_timeline(), t, [
        b.target(t, "A", sel(influx.ALERT, 'last("active") AS "active"', WHERE_LINE,
                             'GROUP BY time($__interval), "subject", "kind" fill(previous)'), ("active",)),
    ], h=8, w=24)
    b.row("Data integrity")
    t = "Sequence gaps and dropped data"
    b.add(table.Panel(), t, [
        b.target(t, "A", sel(influx.INTEGRITY, '"first_seq", "last_seq", "count", "explained", "message"', WHERE_LINE,
                             'GROUP BY "gateway", "kind"'), ("first_seq", "last_seq", "count", "explained", "message"),
                 fmt="table"),
    ], h=8, w=12)
    t = "Records missing over time"
    b.add(_ts().draw_style(common.GraphDrawStyle.BARS), t, [
        b.target(t, "A", sel(influx.INTEGRITY, 'sum("count") AS "records"', WHERE_LINE,
                             'GROUP BY time($__interval), "gateway", "kind" fill(none)'), ("records",)),
    ], h=8, w=12)
    t = "Gateways online"
    b.add(_timeline(online=True), t, [
        b.target(t, "A", sel(influx.PRESENCE, 'last("online") AS "online"', WHERE_LINE,
                             'GROUP BY time($__interval), "gateway" fill(previous)'), ("online",)),
    ], h=6, w=12)
    t = "Instruments online"
    b.add(_timeline(online=True), t, [
        b.target(t, "A", sel(influx.EVENT, 'last("online") AS "online"', WHERE_LINE,
                             'GROUP BY time($__interval), "gateway", "subject" fill(previous)'), ("online",)),
    ], h=6, w=12)
    return _encode(b)


def fleet_dashboard() -> dict[str, Any]:
    uid = "floorwatch-fleet"
    b = Board(uid, db.Dashboard("Floorwatch — fleet overview").uid(uid).tags(["floorwatch", "fleet"])
              .time("now-7d", "now").refresh("1m").timezone("browser")
              .description("Every gateway that reported in the time range: online or not, last data, spool backlog"))
    gw = 'GROUP BY "site", "line", "gateway"'
    up = sel(influx.PRESENCE, 'last("online") AS "up"', "$timeFilter", gw)
    instruments_up = sel(influx.EVENT, 'last("online") AS "up"', "$timeFilter", gw + ', "subject"')
    t = "Gateways online"
    b.add(stat.Panel().graph_mode(common.BigValueGraphMode.NONE), t, [
        b.target(t, "A", f'SELECT sum("up") AS "online" FROM ({up})', ("online",)),
        b.target(t, "B", f'SELECT count("up") AS "known" FROM ({up})', ("known",)),
    ], h=5, w=6)
    t = "Records missing (all gateways)"
    b.add(stat.Panel().graph_mode(common.BigValueGraphMode.AREA)
          .thresholds(_thresholds((None, "green"), (1.0, "red"))), t, [
        b.target(t, "A", sel(influx.INTEGRITY, 'sum("count") AS "missing"', "$timeFilter AND \"explained\" = false",
                             "GROUP BY time($__interval) fill(0)"), ("missing",)),
    ], h=5, w=6)
    t = "Gateways"
    # Each query's rows carry the time of its own last point; drop it so that merge joins the rows on
    # site/line/gateway (the time of the last reading has its own panel below).
    b.add(table.Panel()
          .with_transformation(dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
          .with_transformation(dm.DataTransformerConfig(id_val="merge", options={})), t, [
        b.target(t, "A", sel(influx.PRESENCE, 'last("online") AS "online", last("version") AS "version"',
                             "$timeFilter", gw), ("online", "version"), fmt="table"),
        b.target(t, "B", sel(influx.READING, 'last("seq") AS "last data (seq)"', "$timeFilter", gw),
                 ("last data (seq)",), fmt="table"),
        b.target(t, "C", sel(influx.EVENT, 'last("detail_backlog") AS "spool backlog"',
                             "\"subject\" = 'spool' AND $timeFilter", gw), ("spool backlog",), fmt="table"),
        b.target(t, "D", f'SELECT sum("up") AS "instruments online" FROM ({instruments_up}) {gw}',
                 ("instruments online",), fmt="table"),
    ], h=10, w=16)
    t = "Last reading per gateway"
    b.add(table.Panel(), t, [
        b.target(t, "A", sel(influx.READING, 'last("seq") AS "sequence"', "$timeFilter", gw), ("sequence",),
                 fmt="table"),
    ], h=10, w=8)
    t = "Online over time"
    b.add(_timeline(online=True), t, [
        b.target(t, "A", sel(influx.PRESENCE, 'last("online") AS "online"', "$timeFilter",
                             'GROUP BY time($__interval), "site", "line", "gateway" fill(previous)'), ("online",)),
    ], h=8, w=24)
    return _encode(b)


def _timeline(online: bool = False) -> statetimeline.Panel:
    yes, no = ("online", "offline") if online else ("active", "clear")
    return (statetimeline.Panel().show_value(common.VisibilityMode.NEVER).merge_values(True)
            .mappings([dm.ValueMap(options={"1": dm.ValueMappingResult(text=yes, color="green" if online else "red"),
                                            "0": dm.ValueMappingResult(text=no, color="red" if online else "green")})]))


ALERT_ANNOTATION_QUERY = sel(influx.ALERT, '"message", "state", "kind", "subject"', WHERE_LINE)


class InfluxAnnotationTarget(dm.AnnotationTarget):
    """The SDK's annotation target plus what Grafana's InfluxDB datasource reads: the InfluxQL text and
    which columns give the annotation text and tags."""

    def __init__(self, query: str, text_column: str, tags_columns: str) -> None:
        super().__init__(limit=500, match_any=False, tags=[], type_val="dashboard")
        self.query, self.text_column, self.tags_columns = query, text_column, tags_columns

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "query": self.query, "rawQuery": True, "fromAnnotations": True,
                "textColumn": self.text_column, "tagsColumn": self.tags_columns, "refId": "Anno"}


class _Built(cogbuilder.Builder[dm.AnnotationTarget]):
    def __init__(self, target: dm.AnnotationTarget) -> None:
        self._target = target

    def build(self) -> dm.AnnotationTarget:
        return self._target


def _alert_annotation() -> db.AnnotationQuery:
    target = InfluxAnnotationTarget(ALERT_ANNOTATION_QUERY, "message", "kind,subject,state")
    return (db.AnnotationQuery().name("Alerts").datasource(DS).enable(True).icon_color("red")
            .target(_Built(target)))


def _encode(board: Board) -> dict[str, Any]:
    return json.loads(json.dumps(board.builder.build(), cls=JSONEncoder, sort_keys=True))


DASHBOARDS = {
    "floorwatch-characteristic": characteristic_dashboard,
    "floorwatch-line": line_dashboard,
    "floorwatch-fleet": fleet_dashboard,
}


def expected_columns() -> dict[tuple[str, str, str], tuple[str, ...]]:
    """(dashboard uid, panel title, refId) -> the columns each query must return, for the tests."""
    EXPECTED.clear()
    for make in DASHBOARDS.values():
        make()
    return dict(EXPECTED)


# --- alert rules --------------------------------------------------------------------------------------


def rule_uid(site: str, line: str, gateway: str, characteristic: str) -> str:
    """Stable, ≤ 40 characters (Grafana's limit), the same for the same characteristic every time."""
    digest = hashlib.sha1(f"{site}/{line}/{gateway}/{characteristic}".encode()).hexdigest()[:16]
    return f"fw-spec-{digest}"


def spec_rule_query(site: str, line: str, gateway: str, characteristic: str) -> str:
    where = (f"\"site\" = '{site}' AND \"line\" = '{line}' AND \"gateway\" = '{gateway}' AND "
             f"\"characteristic\" = '{characteristic}' AND {OK} AND $timeFilter")
    return sel(influx.READING, '"value"', where)


def alert_rules(config: GatewayConfig) -> dict[str, Any]:
    """Grafana alert-rule provisioning file: one rule per characteristic with spec limits.

    Grafana's static thresholds are one per rule, not per series, so each characteristic gets its own rule
    with its own limits: the latest ok reading outside [LSL, USL] fires, labelled with where it is.
    """
    g = config.gateway
    group = f"{g.site}/{g.line}/{g.id}"
    rules = []
    for c in config.characteristics:
        if c.kind != "measurement" or (c.lsl is None and c.usl is None):
            continue
        tests = [f"$B < {c.lsl!r}" if c.lsl is not None else "", f"$B > {c.usl!r}" if c.usl is not None else ""]
        limits = " and ".join(x for x in (f"LSL {c.lsl:g} {c.unit}" if c.lsl is not None else "",
                                            f"USL {c.usl:g} {c.unit}" if c.usl is not None else "") if x)
        rule = (ab.Rule(f"{c.name} out of tolerance ({g.site}/{g.line}/{g.id})")
                .uid(rule_uid(g.site, g.line, g.id, c.name)).folder_uid(FOLDER_UID).rule_group(group).org_id(1)
                .condition("C").for_val("0s").no_data_state("OK").exec_err_state("Error")
                .labels({"severity": "critical", "site": g.site, "line": g.line, "gateway": g.id,
                         "characteristic": c.name, "source": "floorwatch"})
                .annotations({"summary": f"{c.name} outside its spec limits ({limits})",
                              "description": f"Latest reading of {c.name} is {{{{ $values.B }}}} {c.unit}; "
                                             f"limits: {limits}.",
                              "__dashboardUid__": "floorwatch-characteristic"})
                .with_query(ab.Query("A").datasource_uid(DATASOURCE_UID)
                            .relative_time_range(am.RelativeTimeRange(from_val=600, to=0))
                            .model(Q("A", spec_rule_query(g.site, g.line, g.id, c.name))))
                .with_query(ab.Query("B").datasource_uid("__expr__")
                            .model(eb.TypeReduce().ref_id("B").expression("A").reducer("last")))
                .with_query(ab.Query("C").datasource_uid("__expr__")
                            .model(eb.TypeMath().ref_id("C").expression(" || ".join(x for x in tests if x)))))
        rules.append(json.loads(json.dumps(rule.build(), cls=JSONEncoder, sort_keys=True)))
    return {"apiVersion": 1,
            "groups": [{"orgId": 1, "name": group, "folder": FOLDER_TITLE, "interval": "1m", "rules": rules}]}


# --- output -------------------------------------------------------------------------------------------


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(out: Path, config: GatewayConfig | None = None) -> list[Path]:
    """Write every dashboard (and the alert rules when a gateway configuration is given); returns the paths."""
    written = []
    (out / "json").mkdir(parents=True, exist_ok=True)
    for uid, make in DASHBOARDS.items():
        path = out / "json" / f"{uid}.json"
        path.write_text(dump(make()), encoding="utf-8")
        written.append(path)
    if config is not None:
        path = out / "provisioning" / "alerting" / "floorwatch-rules.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(alert_rules(config)), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    from floorwatch.edge.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python3 -m floorwatch.dashboards.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="gateway configuration: one alert rule per characteristic")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="output directory")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    for path in generate(args.out, config):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
