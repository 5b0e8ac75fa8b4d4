"""Golden frames (tests/testcases/<driver>/ and one folder per field report) through `floorwatch decode`.

Each JSON file: ``{"driver", "options"?, "source" | "report", "cases": [{"frame" | "hex", "expect"}]}``.
``expect`` lists the fields the decode output must have; ``reason_contains`` / ``what_contains`` match part of
a rejection reason or notice. Frames are text (JSON escapes for control bytes) or hex.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from floorwatch.drivers import registry
from floorwatch.gateway.cli import main
from floorwatch.gateway.commands.decode import decode_frames

CASES_DIR = Path(__file__).parent / "testcases"
SERIAL = [n for n in registry.names() if registry.get(n).transport == "serial"]


def _files() -> list[Path]:
    out = []
    for path in sorted(CASES_DIR.glob("*/*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "cases" in data and data.get("driver") in SERIAL:
            out.append(path)
    return out


FILES = _files()


def _frame(case: dict) -> bytes:
    return bytes.fromhex(case["hex"]) if "hex" in case else case["frame"].encode("latin-1")


def test_every_serial_driver_has_golden_frames():
    assert {json.loads(p.read_text())["driver"] for p in FILES} == set(SERIAL)


def test_field_reports_say_what_failed():
    reports = [p for p in FILES if p.parent.name not in SERIAL]
    assert len(reports) >= 5
    for path in reports:
        assert len(json.loads(path.read_text()).get("report", "")) > 40, f"{path}: describe the field failure"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_golden_frames(path):
    data = json.loads(path.read_text())
    cases = data["cases"]
    results = decode_frames(data["driver"], [_frame(c) for c in cases], data.get("options", {}))
    for case, got in zip(cases, results, strict=True):
        where = f"{path.relative_to(CASES_DIR)}: {case.get('frame', case.get('hex'))!r}"
        for key, want in case["expect"].items():
            if key == "reason_contains":
                assert want in got.get("reason", ""), (where, got)
            elif key == "what_contains":
                assert want in got.get("what", ""), (where, got)
            elif key == "value" and want is not None:
                assert got.get("value") is not None and math.isclose(got["value"], want, abs_tol=1e-12), (where, got)
            else:
                assert got.get(key) == want, (where, key, got)


def test_decode_command_prints_one_json_line_per_frame(capsys):
    assert main(["decode", "--driver", "mtsics", r"S S     100.00 g\r\n", r"S +\r\n"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["result"], d["value"], d["status"]) for d in lines] == [("decoded", 100.0, "ok"),
                                                                      ("decoded", None, "overload")]


def test_decode_command_hex_and_rejection_exit_status(capsys):
    assert main(["decode", "--driver", "xk3190", "--hex", "022B30303132333432314403", "41:42"]) == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["value"] == 12.34 and second["result"] == "rejected"


def test_decode_command_reads_a_capture_from_stdin(monkeypatch, capsys, tmp_path):
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"ST,+001234.5  g\r\nUS,+000012.0  g\r\nST,+00")
    with capture.open("rb") as f:
        monkeypatch.setattr("sys.stdin", type("S", (), {"buffer": f, "isatty": lambda self: False})())
        assert main(["decode", "--driver", "aandd"]) == 1  # the cut-off last line is rejected
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["result"] for d in lines] == ["decoded", "decoded", "rejected"]


@pytest.mark.parametrize(("argv", "message"), [
    (["decode", "--driver", "mtsic", "x"], "did you mean 'mtsics'?"),
    (["decode", "--driver", "regex", "x"], "option pattern: required"),
    (["decode", "--driver", "mtsics", "--option", "mode=sometimes", "x"], "option mode:"),
    (["decode", "--driver", "mtsics", r"bad\q"], "unknown escape"),
    (["decode", "--driver", "xk3190", "--hex", "0g"], "not valid hex"),
    (["decode", "--driver", "modbus", "x"], "does not decode frames"),
])
def test_decode_command_explains_bad_input(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
