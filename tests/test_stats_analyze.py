"""``floorwatch analyze``: the statistics core over a CSV file, as a buyer would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from floorwatch.gateway.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, values, header="part;diameter_mm;operator", sep=";", decimal=","):
    rows = [header]
    for i, v in enumerate(values):
        cell = v if isinstance(v, str) else f"{v:.5f}".replace(".", decimal)
        rows.append(sep.join([str(i + 1), cell, "anna"]))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def bore(tmp_path):
    rng = np.random.default_rng(42)
    x = list(np.round(rng.normal(10.0, 0.01, 120), 5))
    x[60] = 10.08  # one point far beyond 3σ
    x[10] = "ERR"  # what a gauge export writes for a failed reading
    x[11] = ""
    return write_csv(tmp_path / "bore.csv", x), x


def run_json(capsys, *argv):
    assert main(["analyze", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_report_learns_limits_from_the_file_and_lists_violations(bore, capsys):
    path, x = bore
    rep = run_json(capsys, path, "--column", "diameter_mm", "--lsl", 9.97, "--usl", 10.03)
    good = np.array([v for v in x if not isinstance(v, str)])
    s = rep["snapshot"]
    assert (rep["readings"], rep["accepted"]) == (120, 118)
    assert rep["rejected"] == [{"line": 12, "text": "ERR"}, {"line": 13, "text": ""}]
    assert s["n"] == 118 and s["n_rejected"] == 2
    assert s["mean"] == pytest.approx(good.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(good.std(ddof=1), rel=1e-9)
    mr = np.abs(np.diff(good)).mean()
    assert s["center"] == pytest.approx(good.mean(), rel=1e-12)
    assert s["sigma"] == pytest.approx(mr / 1.128, rel=1e-9)
    assert s["cp"] == pytest.approx(0.06 / (6 * mr / 1.128), rel=1e-9)
    assert rep["limits"] == "learned from all 118 readings"
    spike = next(v for v in rep["violations"] if v["reading"] == 61)
    assert spike["line"] == 62 and spike["value"] == 10.08
    assert {"nelson_1", "above_usl"} <= set(spike["rules"])


def test_given_limits_and_text_report(bore, capsys):
    path, _ = bore
    assert main(["analyze", str(path), "--column", "diameter_mm", "--center", "10", "--sigma", "0.01",
                 "--usl", "10.03", "--rules", "nelson_1"]) == 0
    out = capsys.readouterr().out
    assert "control limits given" in out
    assert "centre 10   σ 0.01   UCL 10.03   LCL 9.97" in out
    assert "reading 61 (line 62): 10.08  nelson_1" in out
    assert "2 not numbers, left out: lines 12, 13" in out


def test_subgroups_and_a_baseline_phase(tmp_path, capsys):
    half = 0.2326 / 2
    values = [10.05 - half, 10.05, 10.05, 10.05, 10.05 + half] * 20
    path = write_csv(tmp_path / "sub.csv", values, header="a,value,b", sep=",", decimal=".")
    rep = run_json(capsys, path, "--column", "value", "--subgroup", 5, "--lsl", 9.5, "--usl", 10.5,
                   "--baseline", 50)
    s = rep["snapshot"]
    assert rep["limits"] == "learned from the first 50 readings"
    assert s["subgroup_size"] == 5 and s["r_bar"] == pytest.approx(0.2326)
    assert round(s["cp"], 3) == 1.667 and round(s["cpk"], 3) == 1.5
    assert s["r_ucl"] == pytest.approx(2.114 * 0.2326, rel=1e-6)


def test_window_limits_the_figures_to_the_last_readings(tmp_path, capsys):
    values = [1.0] * 50 + list(np.linspace(2.0, 3.0, 10))
    path = write_csv(tmp_path / "w.csv", values, header="n,v,op", sep=",", decimal=".")
    rep = run_json(capsys, path, "--column", "v", "--window", 10)
    assert rep["snapshot"]["n"] == 10 and rep["snapshot"]["min"] == 2.0


@pytest.mark.parametrize(("argv", "message"), [
    (["--column", "diameter"], "no column 'diameter'; did you mean 'diameter_mm'?"),
    (["--column", "diameter_mm", "--center", "10"], "give both --center and --sigma"),
    (["--column", "diameter_mm", "--rules", "nelson_9"], "unknown rule 'nelson_9'"),
    (["--column", "diameter_mm", "--lsl", "11", "--usl", "10"], "usl (10) must be greater than lsl (11)"),
    (["--column", "operator"], "column 'operator' has 0 usable reading(s)"),
])
def test_bad_input_is_one_clear_line(bore, capsys, argv, message):
    path, _ = bore
    assert main(["analyze", str(path), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_and_empty_files(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope.csv"), "--column", "x"]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("")
    assert main(["analyze", str(tmp_path / "empty.csv"), "--column", "x"]) == 1
    assert "the file is empty" in capsys.readouterr().err
    flat = write_csv(tmp_path / "flat.csv", [5.0] * 30, header="n,v,op", sep=",", decimal=".")
    assert main(["analyze", str(flat), "--column", "v"]) == 1
    assert "no variation" in capsys.readouterr().err


def test_command_line_entry_point(bore):
    path, _ = bore
    out = subprocess.run([sys.executable, "-m", "floorwatch.gateway.cli", "analyze", str(path), "--column", "diameter_mm",
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["snapshot"]["n"] == 118
