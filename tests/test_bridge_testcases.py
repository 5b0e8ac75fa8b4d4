"""Bridge field failures as data: every folder in tests/testcases/bridge/ is one case (see the README there).

A case is the MQTT messages the bridge received — ``case.json`` lists them in order with their topics, their
payloads are files in ``messages/``, byte for byte — and what the bridge must make of them, in
``expected/``: the points it writes, the integrity points (gaps, drops, resets) it writes, the dead letters
it publishes, and how many duplicates and gaps it counted.

The messages go through the bridge's own validation and sequence tracking (``floorwatch.bridge.intake``)
one batch each, as the service's writer thread takes them, on a manual clock: ``at`` is when the message
arrived, so the gap grace plays out exactly. The broker and the database are not involved here;
tests/test_bridge.py runs the same code against a real Mosquitto and a real InfluxDB write API.

``FLOORWATCH_WRITE_EXPECTED=1`` writes ``expected/`` from what the bridge does now, for a new case (read
every line before committing it: the files are the specification).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from floorwatch.bridge.dead_letters import DeadLetter
from floorwatch.bridge.intake import Intake
from floorwatch.bridge.message import Incoming
from floorwatch.bridge.points import to_lines
from floorwatch.bridge.sequence import SequenceTracker
from floorwatch.bridge.specs import SpecLimits

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "testcases" / "bridge"
PREFIX = "floorwatch/v1"
RECEIVED_NS = 1_700_000_000 * 10**9  # the bridge's wall clock at at=0 (presence points carry it)
EXPECTED = ("points.lp", "integrity.lp", "dead-letters.jsonl", "counts.json")
LETTER_KEYS = ("topic", "reason", "encoding")  # of each dead letter (payload and time are the input's)
WRITE = os.environ.get("FLOORWATCH_WRITE_EXPECTED") == "1"


class CaseError(ValueError):
    """A case folder that does not say what it must; the message names the file and the key."""


@dataclass(frozen=True)
class Message:
    at: float  # seconds since the first message, on the bridge's clock
    topic: str
    payload: Path
    retain: bool = False


@dataclass(frozen=True)
class BridgeCase:
    name: str
    report: str
    gap_grace: float
    gateway_configs: tuple[Path, ...]
    messages: tuple[Message, ...]
    end: float  # when the bridge looks for due gaps one last time, idle after the last message


@dataclass
class Outcome:
    """What the bridge made of a case's messages (or what it must make of them)."""

    points: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    dead_letters: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise CaseError(f"{where}: '{key}' is missing")
    if not isinstance(data[key], kind) or isinstance(data[key], bool) and kind is not bool:
        raise CaseError(f"{where}: '{key}' is {data[key]!r}, not {kind}")
    return data[key]


def load_case(folder: Path) -> BridgeCase:
    path = folder / "case.json"
    if not path.exists():
        raise CaseError(f"{path}: missing (every case folder has case.json: see the README)")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise CaseError(f"{path}: not JSON: {exc}") from None
    where = f"{folder.name}/case.json"
    unknown = set(data) - {"report", "gap_grace", "gateway_configs", "messages", "end"}
    if unknown:
        raise CaseError(f"{where}: unknown key(s) {sorted(unknown)}")
    report = _need(data, "report", str, where)
    if len(report) < 40:
        raise CaseError(f"{where}: 'report' says too little ({len(report)} characters): what failed in the field?")
    gap_grace = float(data.get("gap_grace", 10.0))
    configs = tuple(ROOT / p for p in data.get("gateway_configs", []))
    for p in configs:
        if not p.exists():
            raise CaseError(f"{where}: gateway_configs: {p} does not exist (paths are from the repository root)")
    messages = []
    for n, m in enumerate(_need(data, "messages", list, where)):
        at_where = f"{where}: messages[{n}]"
        unknown = set(m) - {"at", "topic", "payload", "retain"}
        if unknown:
            raise CaseError(f"{at_where}: unknown key(s) {sorted(unknown)}")
        payload = folder / "messages" / _need(m, "payload", str, at_where)
        if not payload.is_file():
            raise CaseError(f"{at_where}: payload file {payload.relative_to(folder)} does not exist")
        at = float(_need(m, "at", (int, float), at_where))
        if messages and at < messages[-1].at:
            raise CaseError(f"{at_where}: 'at' {at} is before the message before it ({messages[-1].at})")
        messages.append(Message(at, _need(m, "topic", str, at_where), payload, bool(m.get("retain", False))))
    if not messages:
        raise CaseError(f"{where}: 'messages' is empty")
    end = float(data.get("end", messages[-1].at + gap_grace))
    return BridgeCase(folder.name, report, gap_grace, configs, tuple(messages), end)


def run_case(case: BridgeCase) -> Outcome:
    """The messages through the bridge's intake, one batch each, with the due gaps written before (what fell
    due while the bridge waited) and after (what the batch revealed or changed) — as the service does."""
    now = 0.0
    tracker = SequenceTracker(gap_grace=case.gap_grace, clock=lambda: now)
    intake = Intake(PREFIX, tracker, SpecLimits.load(case.gateway_configs))
    out = Outcome()
    for mid, m in enumerate(case.messages, 1):
        now = m.at
        # Idle until the message came, the bridge looked for due gaps every 0.2 s: what fell due by now is
        # written before the message is taken.
        out.integrity += to_lines(tracker.due())
        msg = Incoming(mid, 1, m.topic, m.payload.read_bytes(), m.retain, RECEIVED_NS + round(m.at * 1e9), 0)
        batch = intake.take([msg])
        out.points += batch.lines
        for r in batch.rejected:
            letter = DeadLetter.of(r.message, r.reason)
            out.dead_letters.append({k: getattr(letter, k) for k in LETTER_KEYS})
        out.integrity += to_lines(tracker.due())
    now = case.end
    out.integrity += to_lines(tracker.due())
    out.counts = {"duplicates": tracker.duplicates, "gaps": tracker.gaps}
    return out


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def read_expected(folder: Path) -> Outcome:
    exp = folder / "expected"
    missing = [name for name in EXPECTED if not (exp / name).is_file()]
    if missing:
        raise CaseError(f"{folder.name}/expected: missing {missing} (an empty file says 'none')")
    letters = [json.loads(line) for line in _lines(exp / "dead-letters.jsonl")]
    for n, letter in enumerate(letters):
        if set(letter) != set(LETTER_KEYS):
            raise CaseError(f"{folder.name}/expected/dead-letters.jsonl: line {n + 1} has keys {sorted(letter)}, "
                            f"not {list(LETTER_KEYS)}")
    return Outcome(_lines(exp / "points.lp"), _lines(exp / "integrity.lp"), letters,
                   json.loads((exp / "counts.json").read_text()))


def write_expected(folder: Path, out: Outcome) -> None:
    exp = folder / "expected"
    exp.mkdir(exist_ok=True)
    (exp / "points.lp").write_text("".join(line + "\n" for line in out.points))
    (exp / "integrity.lp").write_text("".join(line + "\n" for line in out.integrity))
    (exp / "dead-letters.jsonl").write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in out.dead_letters))
    (exp / "counts.json").write_text(json.dumps(out.counts, indent=2) + "\n")


CASE_NAMES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())


def test_every_case_is_well_formed():
    assert len(CASE_NAMES) >= 4, f"the bridge's field cases went missing from {CASES_DIR}"
    assert (CASES_DIR / "README.md").exists()
    readme = (CASES_DIR / "README.md").read_text()
    for name in CASE_NAMES:
        folder = CASES_DIR / name
        case = load_case(folder)
        read_expected(folder)
        used = {m.payload.name for m in case.messages}
        stray = sorted(p.name for p in (folder / "messages").iterdir() if p.name not in used)
        assert not stray, f"{name}/messages: {stray} not listed in case.json"
        assert f"`{name}`" in readme, f"the README's table of cases lacks {name}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_bridge_handles_the_field_case(name):
    folder = CASES_DIR / name
    got = run_case(load_case(folder))
    if WRITE:
        write_expected(folder, got)
    expected = read_expected(folder)
    assert got.dead_letters == expected.dead_letters, f"{name}: dead letters"
    assert got.points == expected.points, f"{name}: points written"
    assert got.integrity == expected.integrity, f"{name}: integrity points (gaps, drops, resets) written"
    assert got.counts == expected.counts, f"{name}: duplicates and gaps counted"
