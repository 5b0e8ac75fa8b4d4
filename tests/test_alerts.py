"""Alert debounce, clear_after and hysteresis on hand-built sequences, and the saved state."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from floorwatch.edge.alerts import AlertTracker, clear_of_limits
from floorwatch.edge.config import AlertsConfig
from floorwatch.edge.model import Alert, AlertState, PayloadError, Severity, decode, encode

LSL, USL = 11.95, 12.05


def run(tracker: AlertTracker, values: list[float], kind: str = "out_of_spec") -> list[tuple[int, str]]:
    """Feed a value sequence of an out-of-spec check; return (index, raised/cleared) for each transition."""
    out = []
    for i, v in enumerate(values):
        t = tracker.update("bore", kind, not LSL <= v <= USL, ts_ns=1000 + i, severity=Severity.CRITICAL,
                           value=v, limit=USL if v > USL else LSL, lsl=LSL, usl=USL)
        if t is not None:
            out.append((i, t.state.value))
    return out


def test_debounce_needs_consecutive_active_points() -> None:
    t = AlertTracker(AlertsConfig(debounce=3, clear_after=1))
    #        out    out    in    out    out    out
    seq = [12.06, 12.07, 12.0, 12.06, 12.06, 12.08]
    assert run(t, seq) == [(5, "raised")], "an isolated pair does not raise; three in a row do"


def test_clear_after_needs_consecutive_good_points() -> None:
    t = AlertTracker(AlertsConfig(debounce=1, clear_after=3))
    seq = [12.06, 12.0, 12.0, 12.06, 12.0, 12.0, 12.0, 12.0]
    assert run(t, seq) == [(0, "raised"), (6, "cleared")]
    assert t.active() == []


def test_value_sitting_on_the_limit_flaps_without_hysteresis_and_not_with_it() -> None:
    # The process mean sits right on the USL: tiny noise takes the value out and back in.
    on_limit = [12.051, 12.049, 12.049, 12.052, 12.048, 12.049, 12.051, 12.049, 12.049, 12.049]
    back_inside = [12.0] * 3
    flappy = AlertTracker(AlertsConfig(debounce=1, clear_after=2, hysteresis=0.0))
    flaps = run(flappy, on_limit + back_inside)
    assert [s for _, s in flaps].count("raised") >= 3, flaps
    steady = AlertTracker(AlertsConfig(debounce=1, clear_after=2, hysteresis=0.1))  # margin 0.01 mm
    assert run(steady, on_limit + back_inside) == [(0, "raised"), (len(on_limit) + 1, "cleared")]


def test_every_raised_alert_is_cleared_once_with_its_severity() -> None:
    t = AlertTracker(AlertsConfig(debounce=1, clear_after=1))
    raised = t.update("scale-1", "instrument_offline", True, ts_ns=1, severity=Severity.WARNING,
                      message="scale-1 stopped answering")
    assert t.update("scale-1", "instrument_offline", True, ts_ns=2, severity=Severity.WARNING) is None
    assert [a.kind for a in t.active()] == ["instrument_offline"] and t.is_active("scale-1", "instrument_offline")
    cleared = t.update("scale-1", "instrument_offline", False, ts_ns=3, severity=Severity.INFO)
    assert raised.state is AlertState.RAISED and cleared.state is AlertState.CLEARED
    assert cleared.severity is Severity.WARNING and cleared.message == "scale-1: instrument_offline cleared"
    assert t.update("scale-1", "instrument_offline", False, ts_ns=4, severity=Severity.INFO) is None


def test_clearance_ok_for_alerts_that_are_not_about_spec_limits() -> None:
    t = AlertTracker(AlertsConfig(debounce=1, clear_after=1, hysteresis=0.1))
    cpk = [1.2, 1.34, 1.36, 1.5]  # alert below 1.33; clear only once Cpk is comfortably above (>= 1.4)
    states = []
    for i, c in enumerate(cpk):
        tr = t.update("bore", "cpk_low", c < 1.33, ts_ns=i, severity=Severity.WARNING, value=c, limit=1.33,
                      clearance_ok=c >= 1.4)
        states.append(tr.state.value if tr else "-")
    assert states == ["raised", "-", "-", "cleared"]


def test_per_call_debounce_override_and_forced_clear() -> None:
    t = AlertTracker(AlertsConfig(debounce=5, clear_after=5))
    assert t.update("line", "line_stopped", True, ts_ns=1, severity=Severity.WARNING, debounce=1) is not None
    assert t.update("bore", "nelson_1", True, ts_ns=2, severity=Severity.WARNING) is None  # 1 of 5
    (cleared,) = t.clear("line", ts_ns=9, message="line removed from the configuration")
    assert cleared.state is AlertState.CLEARED and cleared.ts_ns == 9 and t.active() == []


def test_state_round_trip_continues_exactly_where_it_left_off() -> None:
    cfg = AlertsConfig(debounce=2, clear_after=3, hysteresis=0.1)
    seq = [12.06, 12.07, 12.0, 12.0, 12.06, 12.0, 12.0, 12.0, 12.06, 12.0]
    whole = run(AlertTracker(cfg), seq)
    for cut in range(1, len(seq)):
        first = AlertTracker(cfg)
        a = run(first, seq[:cut])
        saved = json.loads(json.dumps(first.state(), allow_nan=False))  # as it is stored: plain JSON
        second = AlertTracker.from_state(cfg, saved)
        b = [(i + cut, s) for i, s in run(second, seq[cut:])]
        assert a + b == whole, f"restart after point {cut} changed the alerts"
    assert whole == [(1, "raised"), (7, "cleared")]


def test_the_saved_state_keeps_its_format_and_gives_back_the_raised_alert() -> None:
    t = AlertTracker(AlertsConfig(debounce=1))
    raised = t.update("bore", "out_of_spec", True, ts_ns=5, severity=Severity.CRITICAL, value=12.061,
                      limit=USL, lsl=LSL, usl=USL, message="above USL")
    saved = json.loads(json.dumps(t.state(), allow_nan=False))
    # what state files written before alerts and published alerts became one record hold: no seq
    assert list(saved["alerts"][0]["raised"].items()) == [
        ("subject", "bore"), ("kind", "out_of_spec"), ("state", "raised"), ("severity", "critical"), ("ts_ns", 5),
        ("value", 12.061), ("limit", USL), ("lsl", LSL), ("usl", USL), ("message", "above USL")]
    assert AlertTracker.from_state(t.config, saved).active() == [raised]


def test_damaged_state_is_a_clear_error() -> None:
    cfg = AlertsConfig()
    with pytest.raises(ValueError, match="v=1"):
        AlertTracker.from_state(cfg, {"alerts": []})
    bad = {"v": 1, "alerts": [{"subject": "bore", "kind": "out_of_spec",
                               "raised": {"subject": "bore", "kind": "out_of_spec", "state": "up",
                                          "severity": "critical", "ts_ns": 1}}]}
    with pytest.raises(ValueError, match=r"alerts\[0\].*delete it"):
        AlertTracker.from_state(cfg, bad)
    with pytest.raises(ValueError, match="not an object"):
        AlertTracker.from_state(cfg, {"v": 1, "alerts": [3]})


def test_a_tracked_alert_once_numbered_becomes_a_v1_alert_payload() -> None:
    t = Alert(5, subject="bore", kind="out_of_spec", state=AlertState.RAISED, severity=Severity.CRITICAL,
              value=12.061, limit=USL, lsl=LSL, usl=USL, message="bore 12.061 mm above USL 12.05 mm")
    alert = replace(t, seq=9)
    data = encode(alert)
    assert data["seq"] == 9 and data["state"] == "raised" and data["severity"] == "critical"
    assert decode(data) == alert
    plain = replace(Alert(1, subject="gw", kind="spool_backlog", state=AlertState.CLEARED, severity=Severity.INFO),
                    seq=3)
    assert encode(plain)["value"] is None and math.isnan(plain.value)


def test_an_alert_leaves_the_gateway_only_numbered() -> None:
    tracker = AlertTracker(AlertsConfig(debounce=1))
    raised = tracker.update("bore", "out_of_spec", True, ts_ns=5, severity=Severity.CRITICAL, value=12.061,
                            limit=USL, lsl=LSL, usl=USL)
    assert raised is not None and raised.seq is None  # the tracker decides; the outbox numbers
    with pytest.raises(PayloadError, match="alert has no seq yet: the outbox assigns it"):
        encode(raised)
    unnumbered = {**encode(replace(raised, seq=9)), "seq": None}
    with pytest.raises(PayloadError, match="alert payload lacks field 'seq'"):
        decode(unnumbered)
    with pytest.raises(PayloadError, match="alert payload lacks field 'seq'"):
        decode({k: v for k, v in unnumbered.items() if k != "seq"})


def test_threshold_alerts_clear_plainly_unless_the_caller_asks_for_hysteresis() -> None:
    def states(tracker: AlertTracker, ask: bool) -> list[str]:
        out = []
        for i, cpk in enumerate([1.2, 1.34, 1.40, 1.47]):
            tr = tracker.update("bore", "cpk_low", cpk < 1.33, ts_ns=i, severity=Severity.WARNING, value=cpk,
                                limit=1.33, clearance_ok=tracker.inside_margin(cpk, 1.33) if ask else None)
            out.append(tr.state.value if tr else "-")
        return out

    cfg = AlertsConfig(debounce=1, clear_after=1, hysteresis=0.1)
    assert states(AlertTracker(cfg), ask=False) == ["raised", "cleared", "-", "-"]
    assert states(AlertTracker(cfg), ask=True) == ["raised", "-", "-", "cleared"]  # needs 1.33 + 0.133
    t = AlertTracker(cfg)
    assert t.inside_margin(math.nan, 1.33) and AlertTracker(AlertsConfig()).inside_margin(1.331, 1.33)


def test_restore_into_an_existing_tracker() -> None:
    cfg = AlertsConfig(debounce=1)
    first = AlertTracker(cfg)
    first.update("bore", "nelson_1", True, ts_ns=1, severity=Severity.WARNING)
    second = AlertTracker(cfg)
    second.restore(first.state())
    assert second.active() == first.active() and second.is_active("bore", "nelson_1")


def test_clear_of_limits() -> None:
    assert clear_of_limits(12.0, LSL, USL, 0.1)
    assert not clear_of_limits(12.045, LSL, USL, 0.1) and not clear_of_limits(11.955, LSL, USL, 0.1)
    assert not clear_of_limits(math.nan, LSL, USL, 0.0)
    assert clear_of_limits(5.0, math.nan, math.nan, 0.5)
    assert clear_of_limits(1.0, 0.5, math.nan, 0.1) and not clear_of_limits(0.52, 0.5, math.nan, 0.1)
