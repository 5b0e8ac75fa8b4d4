"""Spool field failures kept as data: every folder in tests/testcases/spool/ is run here.

A folder holds ``spool.json`` (the report and the spool's parameters), ``operations.json`` (what happened, as
a list of operations), ``expected.json`` (what the spool must have reported and kept) and, optionally,
``prepared/`` (files put into the spool's directory before the first operation, e.g. a damaged spool file).
The format is described in tests/testcases/spool/README.md.

Besides what ``expected.json`` says, every case is held to what must always be true:

* every sequence number up to ``last_seq`` is exactly one of: on disk or delivered, reported dropped,
  reported skipped, or listed in ``expected.json``'s ``unaccounted`` — nothing lost silently, nothing twice;
* the drop totals in ``stats()`` are the sums of the ``dropped`` reports;
* after a clean close and a reopen, the totals are still there, numbering goes on where it was and nothing
  new is reported.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import floorwatch.edge.spool.database as spool_database
from floorwatch.edge.clock import SYSTEM_CLOCK, Clock, ManualClock
from floorwatch.edge.model import Reading, encode_batch
from floorwatch.edge.spool import Spool, SpoolRecord

CASES_DIR = Path(__file__).parent / "testcases" / "spool"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
SPOOL_FILE = "spool.sqlite"

Range = tuple[int, int]


def readings_payload(first_seq: int, n: int) -> bytes:
    """A readings message as the gateway encodes it: n readings of one characteristic."""
    rows = [Reading(ts_ns=1_700_000_000_000_000_000 + i * 1_000_000, seq=first_seq + i, instrument="caliper-1",
                    characteristic="bore_diameter", value=12.0 + (i % 17) * 0.001, unit="mm") for i in range(n)]
    return json.dumps(encode_batch(rows), separators=(",", ":")).encode()


def merged(ranges: list[Range]) -> list[Range]:
    """Sorted, with ranges that touch or overlap joined: [(1, 5), (6, 9)] -> [(1, 9)]."""
    out: list[list[int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def seq_range(record: SpoolRecord) -> Range | None:
    if record.first_seq is None:
        return None
    return record.first_seq, record.last_seq if record.last_seq is not None else record.first_seq


@dataclass
class Outcome:
    """What happened, in the terms ``expected.json`` uses."""

    events: list[dict] = field(default_factory=list)  # {"kind": ..., "detail": {...}}, in order
    results: dict[str, Any] = field(default_factory=dict)
    delivered: list[Range] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    on_disk: list[Range] = field(default_factory=list)
    retained: list[list[str]] = field(default_factory=list)

    def ranges(self, kind: str) -> list[Range]:
        return [(e["detail"]["first_seq"], e["detail"]["last_seq"]) for e in self.events
                if e["kind"] == kind and e["detail"]["first_seq"] is not None]

    def seq_ranges(self) -> dict[str, list[list[int]]]:
        found = {"on_disk": self.on_disk, "delivered": self.delivered, "dropped": self.ranges("dropped"),
                 "skipped": self.ranges("sequence_skipped")}
        return {name: [list(r) for r in merged(ranges)] for name, ranges in found.items()}


class CaseRun:
    """Runs one folder's operations against a real spool in a fresh directory."""

    def __init__(self, case: Path, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.case = case
        self.directory = directory
        params = json.loads((case / "spool.json").read_text())
        self.options = params["spool"]
        self.clock: Clock = ManualClock(params["clock_ns"]) if "clock_ns" in params else SYSTEM_CLOCK
        self.boot = directory / "boot_id"  # the machine's boot id, as the spool reads it
        self.boot.write_text(params.get("boot_id", "boot-1") + "\n")
        monkeypatch.setattr(spool_database, "_BOOT_ID", self.boot)
        self.spool: Spool | None = None
        self.handed: list[SpoolRecord] = []  # the last pending() result
        self.delivered: dict[int, SpoolRecord] = {}
        self.outcome = Outcome()
        prepared = case / "prepared"
        if prepared.is_dir():
            for src in prepared.iterdir():
                shutil.copy(src, directory / src.name)

    @property
    def path(self) -> Path:
        return self.directory / SPOOL_FILE

    def new_spool(self) -> Spool:
        return Spool(self.path, clock=self.clock, **self.options)

    def run(self, operations: list[dict]) -> None:
        for number, op in enumerate(operations, 1):
            try:
                self.do(op)
            except Exception as exc:
                raise AssertionError(f"{self.case.name}: operation {number} {op} failed: {exc!r}") from exc
            self.collect_events()

    def do(self, op: dict) -> None:
        kind = op["op"]
        if kind == "repeat":
            for _ in range(op["times"]):
                self.run(op["ops"])
            return
        if kind == "open":
            assert self.spool is None, "open: the spool is open already"
            self.spool = self.new_spool()
            self.spool.open()
            return
        if kind == "reboot":
            assert self.spool is None, "reboot: crash or close the spool first"
            self.boot.write_text(self.boot.read_text().strip() + "+\n")
            return
        spool = self.spool
        assert spool is not None, f"{kind}: open the spool first"
        if kind == "close":
            spool.close()
            self.spool = None
        elif kind == "crash":  # the process dies: no flush, no clean marker; the OS closes its files
            self.collect_events()
            spool._database.abandon()
            self.spool = None
        elif kind == "damage_pages":  # a failing SD card: the table's pages turn to garbage under the spool
            spool._database.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rows are in the main file
            size = self.path.stat().st_size
            with open(self.path, "r+b") as fh:  # the header and schema pages survive, the rest does not
                fh.seek(4096 * 2)
                fh.write(b"\xff" * (size - 4096 * 3))
            with contextlib.closing(sqlite3.connect(self.path)) as other:  # SQLite re-reads the damaged pages
                other.execute("INSERT OR REPLACE INTO meta VALUES ('touched', 1)")
                other.commit()
        elif kind == "add_batch":
            first = spool.issue(op["readings"])
            spool.add(op.get("topic", "fw/readings"), readings_payload(first, op["readings"]), first_seq=first,
                      last_seq=first + op["readings"] - 1)
            if "as" in op:
                self.outcome.results[op["as"]] = first
        elif kind == "add_retained":
            spool.add(op["topic"], op["payload"].encode(), first_seq=None, last_seq=None, retain=True)
        elif kind == "flush":
            spool.flush()
        elif kind == "pending":
            self.handed = spool.pending(op["limit"])
            if "as" in op:
                self.outcome.results[op["as"]] = [list(r) for r in map(seq_range, self.handed) if r]
        elif kind == "ack":
            records = self.positions(op["records"])
            spool.ack(r.id for r in records)
            self.delivered.update((r.id, r) for r in records)
        elif kind == "release":
            spool.release(r.id for r in self.positions(op["records"]))
        elif kind == "undeliverable":
            spool.undeliverable(self.handed[op["record"]], op["reason"])
        else:
            raise ValueError(f"unknown operation {kind!r} (see tests/testcases/spool/README.md)")

    def positions(self, which: list[int] | str) -> list[SpoolRecord]:
        """Records of the last pending() result, by position, or "all"."""
        return list(self.handed) if which == "all" else [self.handed[i] for i in which]

    def collect_events(self) -> None:
        if self.spool is None:
            return
        for event in self.spool.drain_events():
            self.outcome.events.append({"kind": event.kind,
                                        "detail": {k: self.relative(v) for k, v in event.detail().items()}})

    def relative(self, value: Any) -> Any:
        """Paths in reports, relative to the spool's directory (the case's folder is a new one each run)."""
        prefix = f"{self.directory}/"
        return value[len(prefix):] if isinstance(value, str) and value.startswith(prefix) else value

    def finish(self) -> Outcome:
        """Stats at the end, then a clean close; what is on disk; then a reopen that must change nothing."""
        spool = self.spool
        assert spool is not None, f"{self.case.name}: the operations must leave the spool open"
        out = self.outcome
        out.stats = spool.stats()
        spool.close()
        self.spool = None
        out.delivered = [r for r in map(seq_range, self.delivered.values()) if r]
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows = db.execute("SELECT first_seq, last_seq, retain, topic, payload FROM outbox ORDER BY id").fetchall()
        out.on_disk = [(fs, ls if ls is not None else fs) for fs, ls, _, _, _ in rows if fs is not None]
        out.retained = [[topic, bytes(payload).decode()] for _, _, retain, topic, payload in rows if retain]
        with self.new_spool() as again:
            stats = again.stats()
            events = again.drain_events()
        kept = ("dropped_records", "dropped_count", "dropped_first_seq", "dropped_last_seq", "corrupt_moved",
                "last_seq")
        assert {k: stats[k] for k in kept} == {k: out.stats[k] for k in kept}, "a clean restart kept the reports"
        assert events == [], f"a clean restart reported {events}"
        return out


# --- what expected.json says ------------------------------------------------------------------------------

def mismatches(want: Any, got: Any, where: str) -> list[str]:
    """Differences between an expectation and what happened. A dict checks only the keys it lists;
    ``{"between": [low, high]}`` matches a number in that range; anything else must be equal."""
    if isinstance(want, dict) and set(want) == {"between"}:
        low, high = want["between"]
        ok = isinstance(got, int | float) and low <= got <= high
        return [] if ok else [f"{where}: {got!r} is not between {low} and {high}"]
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected an object, got {got!r}"]
        return [p for key, value in want.items()
                for p in (mismatches(value, got[key], f"{where}.{key}") if key in got else [f"{where}.{key}: missing"])]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: expected {len(want)} items, got {got!r}"]
        return [p for i, (w, g) in enumerate(zip(want, got, strict=True)) for p in mismatches(w, g, f"{where}[{i}]")]
    return [] if want == got else [f"{where}: expected {want!r}, got {got!r}"]


def event_mismatches(want: list[dict], got: list[dict]) -> list[str]:
    """``want``: runs of events in order, each ``{"kind", "times"?, "detail"?}``; ``times`` (1 unless given)
    may be a ``between`` range. Every event that happened must be matched."""
    problems: list[str] = []
    i = 0
    for n, run in enumerate(want):
        start = i
        while i < len(got) and got[i]["kind"] == run["kind"]:
            problems += mismatches(run.get("detail", {}), got[i]["detail"], f"events[{i}] ({run['kind']})")
            i += 1
        problems += mismatches(run.get("times", 1), i - start, f"expected event run {n} ({run['kind']}): how many")
    if i < len(got):
        problems.append(f"events not expected: {got[i:]}")
    return problems


def accounting_mismatches(outcome: Outcome, unaccounted: list[Range]) -> list[str]:
    """Every number up to last_seq is on disk or delivered (at least once: QoS 1), or else in exactly one
    report (dropped, skipped) or listed as unaccounted."""
    last = outcome.stats["last_seq"]
    owners: dict[int, list[str]] = {}
    sources = {"dropped": outcome.ranges("dropped"), "skipped": outcome.ranges("sequence_skipped"),
               "unaccounted": [tuple(r) for r in unaccounted],
               "on disk or delivered": merged(outcome.on_disk + outcome.delivered)}
    for name, ranges in sources.items():
        for first, last_in in ranges:
            for seq in range(first, last_in + 1):
                owners.setdefault(seq, []).append(name)
    problems = [f"seq {seq}: {names}" for seq, names in sorted(owners.items()) if len(names) > 1 or seq > last]
    missing = [seq for seq in range(1, last + 1) if seq not in owners]
    if missing:
        problems.append(f"{len(missing)} numbers neither kept nor reported: {merged([(s, s) for s in missing])}")
    return problems[:10]


def totals_mismatches(outcome: Outcome) -> list[str]:
    drops = [e["detail"] for e in outcome.events if e["kind"] == "dropped"]
    numbered = [d for d in drops if d["first_seq"] is not None]
    want = {"dropped_records": sum(d["records"] for d in drops), "dropped_count": sum(d["count"] for d in drops),
            "dropped_first_seq": min((d["first_seq"] for d in numbered), default=None),
            "dropped_last_seq": max((d["last_seq"] for d in numbered), default=None)}
    return mismatches(want, outcome.stats, "stats (the drop totals against the drop reports)")


def test_there_are_spool_cases() -> None:
    assert len(CASES) >= 3, CASES
    for case in CASES:
        names = {p.name for p in case.iterdir()}
        assert {"spool.json", "operations.json", "expected.json"} <= names, f"{case.name}: {sorted(names)}"
        assert len(json.loads((case / "spool.json").read_text()).get("report", "")) > 40, (
            f"{case.name}: spool.json's report says what failed in the field")


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_spool_case(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = CaseRun(case, tmp_path, monkeypatch)
    run.run(json.loads((case / "operations.json").read_text()))
    outcome = run.finish()
    expected = json.loads((case / "expected.json").read_text())
    unknown = set(expected) - {"events", "results", "stats", "seq_ranges", "retained", "unaccounted", "files"}
    assert not unknown, f"{case.name}/expected.json: unknown keys {unknown} (see the README)"
    problems = event_mismatches(expected.get("events", []), outcome.events)
    problems += mismatches(expected.get("results", {}), outcome.results, "results")
    problems += mismatches(expected.get("stats", {}), outcome.stats, "stats")
    problems += mismatches(expected.get("seq_ranges", {}), outcome.seq_ranges(), "seq_ranges")
    if "retained" in expected:
        problems += mismatches(expected["retained"], outcome.retained, "retained")
    for name, want in expected.get("files", {}).items():
        path = tmp_path / name
        if not path.exists():
            problems.append(f"files: {name} is missing (there are {sorted(p.name for p in tmp_path.iterdir())})")
        elif not path.read_bytes().startswith(want["starts_with"].encode()):
            problems.append(f"files: {name} does not start with {want['starts_with']!r}")
    problems += accounting_mismatches(outcome, expected.get("unaccounted", []))
    problems += totals_mismatches(outcome)
    assert not problems, f"{case.name}:\n  " + "\n  ".join(problems)
